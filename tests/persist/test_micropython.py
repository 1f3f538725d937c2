"""The store and codecs in the real `micropython` binary: SIGKILL mid-write on a real directory,
and the per-tick detector/alarm paths run under micropython.heap_lock() (no allocation)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pumpcore import alarms, logrec, statecodec
from pumpfw.store import EventLog, Fs, StateStore
from tests.support.mpy import FIRMWARE, micropython_binary, run_micropython

pytestmark = pytest.mark.micropython

SEG_RECORDS = 16
MAX_SEGMENTS = 4

WRITER = """
import sys
from pumpfw.store import StateStore, EventLog
from pumpcore import logrec
from pumpcore.statecodec import PersistentState, F_BOOT_COUNT, F_SAVE_MS, SEC_SCHEDULER
root = %r
ss = StateStore(None, root, min_interval_ms=0)
st = ss.load()
if st is None:
    st = PersistentState()
log = EventLog(None, root, seg_records=%d, max_segments=%d)
log.mount()
i = st.get(F_BOOT_COUNT)
while True:
    i += 1
    st.set(F_BOOT_COUNT, i)
    st.set(F_SAVE_MS, (i * 7) %% 86400000)
    st.sections[SEC_SCHEDULER] = tuple([i * k for k in range(14)])
    ss.save(st)
    print("S", i)
    seq = log.append(9000, i %% 86400000, logrec.EV_HOURLY_TOTAL, i, 3 * i, 0, 7)
    print("L", seq, i)
"""


def _expect_state(st: statecodec.PersistentState) -> None:
    i = st.get(statecodec.F_BOOT_COUNT)
    assert st.get(statecodec.F_SAVE_MS) == (i * 7) % 86_400_000
    assert st.sections[statecodec.SEC_SCHEDULER] == tuple(i * k for k in range(14))


def test_sigkill_mid_write_never_corrupts_state_or_loses_committed_records(tmp_path, cut_tally):
    root = tmp_path / "flash"
    root.mkdir()
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen")
    script = WRITER % (str(root), SEG_RECORDS, MAX_SEGMENTS)
    rng = random.Random(2024)
    committed_logs: dict[int, int] = {}   # seq -> i, reported after append returned
    last_state = 0
    kills = 0
    for round_no in range(40):
        proc = subprocess.Popen([micropython_binary(), "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        if round_no % 2:
            time.sleep(rng.uniform(0.0, 0.15))   # anywhere, start-up and mount included
        else:                                      # mid-loop, whatever the machine's load
            deadline = time.monotonic() + 5
            while not lines and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.06))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(5)
        err = proc.stderr.read().decode(errors="replace")
        assert proc.returncode == -signal.SIGKILL, (
            f"round {round_no}: writer died by itself: {err[-2000:]} {b''.join(lines)[-300:]!r}")
        kills += 1
        for raw in lines:
            parts = raw.split()
            if len(parts) == 2 and parts[0] == b"S":
                last_state = max(last_state, int(parts[1]))
            elif len(parts) == 3 and parts[0] == b"L":
                committed_logs[int(parts[1])] = int(parts[2])
        # what a reboot finds, read by CPython with the same store code
        ss = StateStore(Fs(), str(root))
        st = ss.load()
        if st is None:  # killed before its first save returned (or even started)
            assert last_state == 0 and ss.alarm() in (0, alarms.ALARM_STATE_CORRUPT), ss.report()
            got = 0
        else:
            _expect_state(st)
            got = st.get(statecodec.F_BOOT_COUNT)
        assert last_state <= got <= last_state + 1, (round_no, last_state, got, ss.report())
        last_state = got  # the next writer continues from what this reboot found
        log = EventLog(Fs(), str(root), seg_records=SEG_RECORDS, max_segments=MAX_SEGMENTS)
        log.mount()
        recs = {r[0]: r for r in log.read(1, 10_000)}
        keep_from = log.last_seq() - (MAX_SEGMENTS - 1) * SEG_RECORDS + 1
        for seq, i in committed_logs.items():
            if seq >= keep_from:
                assert seq in recs, f"round {round_no}: committed record {seq} lost"
                assert recs[seq][4] == i and recs[seq][5] == 3 * i
        for r in recs.values():
            assert r[5] == 3 * r[4] and r[3] == logrec.EV_HOURLY_TOTAL
        seqs = sorted(recs)
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) if seqs else not committed_logs
    assert last_state > 20, "the writer made too little progress to test anything"
    cut_tally("SIGKILL micropython writer", kills)


HEAP_LOCK = """
import micropython
from pumpcore import alarms
from pumpcore.detect import OcclusionDetector, StallDetector, FlowDetector, ReservoirDetector
from pumpfw.store import StateStore
a = alarms.AlarmSet()
occ = OcclusionDetector(trend_samples=8, steps_per_sample=2, min_sample_ms=3000)
stall = StallDetector()
flow = FlowDetector()
res = ReservoirDetector()
ss = StateStore(None, ".")

def tick(i):
    p = 100 + (i * 37) % 2000
    occ.update(100, p, i % 3)
    occ.report(a)
    stall.update(100, i % 50 == 0, i % 4, i % 2, i % 7 != 0)
    stall.report(a)
    flow.update(10000, 10, 5 + i % 9, True)
    flow.report(a)
    res.update(3000000 - i * 1000, 93000, i % 100 == 0)
    res.report(a)
    a.tick(100)
    a.pattern()
    a.motor_allowed()
    a.bolus_allowed()
    a.highest_priority()
    ss.tick(100)

for i in range(200):
    tick(i)
micropython.heap_lock()
try:
    for i in range(200, 3200):
        tick(i)
finally:
    micropython.heap_unlock()
print("ticks", 3000, "raised", len(a.active()), "occl", occ.active, "flow", flow.low, flow.high)
"""


def test_per_tick_paths_allocate_nothing_under_heap_lock():
    out = run_micropython(HEAP_LOCK)
    assert out.startswith("ticks 3000")
    # the run exercised the alarm paths, not a no-op
    assert "raised 0 " not in out


def test_micropython_writes_what_cpython_reads(tmp_path):
    """Records written by the device interpreter decode identically on the host."""
    root = tmp_path / "f"
    root.mkdir()
    run_micropython(f"""
from pumpfw.store import StateStore, ProgramStore, EventLog
from pumpcore.statecodec import PersistentState, F_AUTH_COUNTER, SEC_BOLUS_GATE
from pumpcore import logrec
st = PersistentState()
st.set(F_AUTH_COUNTER, 2000000000)
st.set_program_crc(0xCBF43926)
st.sections[SEC_BOLUS_GATE] = (1, -2, 1073741823)
st.blobs[1] = b"abc"
StateStore(None, {str(root)!r}).save(st)
ProgramStore(None, {str(root)!r}).commit(b"prog")
log = EventLog(None, {str(root)!r})
log.mount()
log.append(9000, 86399999, logrec.EV_TIME_SET, -1, 2147483647, -2147483648, 5)
""")
    st = StateStore(Fs(), str(root)).load()
    assert st.get(statecodec.F_AUTH_COUNTER) == 2_000_000_000
    assert st.program_crc() == 0xCBF43926
    assert st.sections[statecodec.SEC_BOLUS_GATE] == (1, -2, 1073741823)
    assert st.blobs[1] == b"abc"
    log = EventLog(Fs(), str(root))
    log.mount()
    assert log.read(1, 5) == [(1, 9000, 86_399_999, logrec.EV_TIME_SET, -1, 2**31 - 1, -2**31, 5)]
    assert (Path(root) / "prog_a.bin").exists()


def test_corrupt_files_reported_not_crashing_in_micropython(tmp_path):
    """The error paths run on the device interpreter too: bad slots, torn log tail, bad record."""
    root = tmp_path / "c"
    root.mkdir()
    s = StateStore(Fs(), str(root), min_interval_ms=0)
    s.load()
    good = statecodec.PersistentState()
    good.set(statecodec.F_BOOT_COUNT, 5)
    s.save(good)
    (root / "state_b.bin").write_bytes(b"PS\x07" + bytes(40))        # wrong version
    (root / "prog_a.bin").write_bytes(b"\xff" * 50)                   # erased
    log = EventLog(Fs(), str(root), seg_records=8, max_segments=3)
    log.mount()
    for i in range(5):
        log.append(1, i, logrec.EV_SUSPEND, i)
    seg = root / "ev000001.log"
    data = bytearray(seg.read_bytes())
    data[40] ^= 1
    seg.write_bytes(bytes(data) + b"\x01\x02\x03")                   # bad record 1 + torn tail
    out = run_micropython(f"""
from pumpfw.store import StateStore, ProgramStore, EventLog
from pumpcore import logrec
s = StateStore(None, {str(root)!r})
st = s.load()
print("state", st.get(3), s.alarm())
for line in s.report():
    print("R", line)
p = ProgramStore(None, {str(root)!r})
print("prog", p.load(), p.alarm())
for line in p.report():
    print("P", line)
log = EventLog(None, {str(root)!r}, seg_records=8, max_segments=3)
for n in log.mount():
    print("N", n)
print("seqs", [r[0] for r in log.read(1, 100)])
print("next", log.append(1, 9, logrec.EV_RESUME))
""")
    assert "state 5 0" in out
    assert "version = 7: this firmware reads version 1" in out
    assert f"prog None {alarms.ALARM_PROGRAM_CORRUPT}" in out and "magic" in out
    assert "record 1: crc" in out and "torn tail of 3 bytes" in out
    assert "seqs [1, 3, 4, 5]" in out
    assert "next 6" in out


LFS_CUTS = """
import vfs
from pumpfw.store import StateStore, EventLog
from pumpcore.statecodec import PersistentState, F_BOOT_COUNT, SEC_SCHEDULER
from pumpcore import logrec

class Cut(Exception):
    pass

class BD:
    # RAM block device; power fails at the `cut`-th program/erase (a program is left torn)
    def __init__(self, bs, n):
        self.bs = bs
        self.n = n
        self.data = bytearray(b"\\xff" * (bs * n))
        self.cut = -1
        self.ops = 0
    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.data[a:a + len(buf)]
    def _tick(self):
        if self.cut >= 0 and self.ops == self.cut:
            self.ops += 1
            raise Cut()
        self.ops += 1
    def writeblocks(self, b, buf, off=None):
        if off is None:
            off = 0
            self.ioctl(6, b)
        a = b * self.bs + off
        if self.cut >= 0 and self.ops == self.cut:
            half = len(buf) // 2
            self.data[a:a + half] = buf[:half]    # torn program
        self._tick()
        self.data[a:a + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            self._tick()
            a = arg * self.bs
            self.data[a:a + self.bs] = b"\\xff" * self.bs
            return 0

bd = BD(4096, 48)
vfs.VfsLfs2.mkfs(bd, progsize=256)
mounted = [False]

def mount():
    if mounted[0]:
        vfs.umount("/f")
    vfs.mount(vfs.VfsLfs2(bd, progsize=256), "/f")
    mounted[0] = True

def state(i):
    st = PersistentState()
    st.set(F_BOOT_COUNT, i)
    st.sections[SEC_SCHEDULER] = tuple([i * k for k in range(20)])
    return st

def save(i):
    ss = StateStore(None, "/f", min_interval_ms=0)
    ss.load()
    ss.save(state(i))

def append(i):
    log = EventLog(None, "/f", seg_records=8, max_segments=3)
    log.mount()
    log.append(9000, i, logrec.EV_HOURLY_TOTAL, i, 2 * i, 0, 0)

def check(old_i, new_i, committed):
    ss = StateStore(None, "/f")
    st = ss.load()
    got = -1 if st is None else st.get(F_BOOT_COUNT)
    if got not in (old_i, new_i) or (st is not None and st != state(got)):
        raise AssertionError("state %d not old %d or new %d: %r" % (got, old_i, new_i, ss.report()))
    log = EventLog(None, "/f", seg_records=8, max_segments=3)
    log.mount()
    have = {}
    for r in log.read(1, 1000):
        have[r[4]] = r
        if r[5] != 2 * r[4]:
            raise AssertionError("log record changed %r" % (r,))
    keep = log.last_seq() - 16
    for seq, i in committed:
        if seq > keep and i not in have:
            raise AssertionError("committed record %d (seq %d) lost" % (i, seq))

mount()
cuts = 0
committed = []
last_state = -1
for i in range(N_ITER):
    for what in ("save", "append"):
        snap = bytes(bd.data)
        bd.cut = -1
        bd.ops = 0
        mount()
        (save if what == "save" else append)(i)
        n = bd.ops
        done = bytes(bd.data)
        for k in range(n):
            bd.data[:] = snap
            mount()
            bd.ops = 0
            bd.cut = k
            try:
                (save if what == "save" else append)(i)
            except Cut:
                pass
            bd.cut = -1
            mount()
            check(last_state, i if what == "save" else last_state, committed)
            cuts += 1
        bd.data[:] = done
        mount()
        if what == "save":
            last_state = i
        else:
            committed.append((i + 1, i))
print("cuts", cuts)
"""


def test_real_littlefs_power_cut_at_every_block_operation(cut_tally):
    """The store on MicroPython's own littlefs (VfsLfs2 on a RAM block device): power fails at
    every program/erase (leaving the program torn) of 200 saves and 200 appends, including
    metadata compactions and segment roll-over; every reboot finds old-or-new state and every
    committed record."""
    out = run_micropython(LFS_CUTS.replace("N_ITER", "200"), timeout=600)
    cuts = int(out.split("cuts")[1])
    assert cuts >= 400
    cut_tally("real littlefs block ops (micropython)", cuts)


BACKLOG_HEAP_LOCK = """
import micropython
from pumpcore import logrec
from pumpfw.store import LogBacklog, BACKLOG_RECORDS

def fill(q):
    micropython.heap_lock()
    try:
        for i in range(BACKLOG_RECORDS + 5):
            q.put(9000, 86399999, logrec.EV_ALARM_RAISED, 2000000000, -2000000000, i, 1)
        for i in range(100):
            due = q.due(10)
        w = q.waiting()
    finally:
        micropython.heap_unlock()
    return w, due

w, due = fill(LogBacklog())
print("backlog", w, due)
"""


def test_the_log_backlog_keeps_records_without_allocating():
    """A record the flash refused joins the backlog from the loop's paths: nothing allocates
    (a full backlog counts the rest), the retry schedule neither."""
    out = run_micropython(BACKLOG_HEAP_LOCK)
    assert out.strip() == "backlog True True"
