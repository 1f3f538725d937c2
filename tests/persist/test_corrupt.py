"""Corrupt stored files: random bytes, truncation, bit flips, wrong version. Load says exactly
what is wrong, falls back to the other slot or to "no state" with an alarm, never crashes."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as hs

from pumpcore import alarms, logrec, statecodec
from pumpcore.crc import crc32
from pumpcore.statecodec import F_BOOT_COUNT, PersistentState, StateError
from pumpfw.store import (LOAD_CORRUPT, LOAD_MISSING, LOAD_OK, EventLog, Fs, ProgramStore,
                          StateStore)
from tests.support.tornflash import LITTLEFS, TornFlash

ROOT = "r"


def _state(i: int) -> PersistentState:
    st = PersistentState()
    st.set(F_BOOT_COUNT, i)
    st.sections[statecodec.SEC_SCHEDULER] = tuple(range(i, i + 10))
    return st


def _two_saves() -> TornFlash:
    fs = TornFlash(LITTLEFS)
    s = StateStore(fs, ROOT, min_interval_ms=0)
    s.load()
    s.save(_state(1))  # slot A, seq 1
    s.save(_state(2))  # slot B, seq 2
    return fs


def _with_version(data: bytes, version: int) -> bytes:
    b = bytearray(data)
    b[2] = version
    struct.pack_into("<I", b, len(b) - 4, crc32(bytes(b[:-4])))
    return bytes(b)


CORRUPTIONS = {
    "random bytes": (lambda d: bytes(random.Random(5).randrange(256) for _ in range(len(d))), "magic"),
    "truncated": (lambda d: d[:len(d) // 2], "total_len"),
    "empty": (lambda d: b"", "too short"),
    "bit flip": (lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "crc"),
    "wrong version": (lambda d: _with_version(d, 7), "version = 7: this firmware reads version 1"),
    "erased": (lambda d: b"\xff" * len(d), "magic"),
    "appended garbage": (lambda d: d + b"\x00\x01", "total_len"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("slot", ["state_a.bin", "state_b.bin"])
def test_one_bad_slot_falls_back_to_the_other(name, slot):
    fs = _two_saves()
    damage, words = CORRUPTIONS[name]
    path = f"{ROOT}/{slot}"
    fs.durable[path] = damage(fs.durable[path])
    s = StateStore(fs, ROOT, min_interval_ms=0)
    got = s.load()
    good = _state(1) if slot == "state_b.bin" else _state(2)
    assert got == good
    assert s.alarm() == 0
    i = 0 if slot == "state_a.bin" else 1
    assert s.status()[i] == LOAD_CORRUPT and s.status()[1 - i] == LOAD_OK
    assert words in s.report()[i], s.report()
    assert slot in s.report()[i]
    # the next save overwrites the bad slot, never the good one
    s.save(_state(3))
    again = StateStore(fs.reboot(), ROOT)
    assert again.load() == _state(3)
    assert again.status() == (LOAD_OK, LOAD_OK)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_both_slots_bad_gives_no_state_and_the_corrupt_alarm(name):
    fs = _two_saves()
    damage, words = CORRUPTIONS[name]
    for slot in ("state_a.bin", "state_b.bin"):
        fs.durable[f"{ROOT}/{slot}"] = damage(fs.durable[f"{ROOT}/{slot}"])
    s = StateStore(fs, ROOT)
    assert s.load() is None
    assert s.alarm() == alarms.ALARM_STATE_CORRUPT
    assert alarms.reaction(s.alarm()) == alarms.REACT_STOP
    assert all(words in line for line in s.report()), s.report()


def test_fresh_flash_is_no_state_without_alarm():
    s = StateStore(TornFlash(), ROOT)
    assert s.load() is None
    assert s.status() == (LOAD_MISSING, LOAD_MISSING)
    assert s.alarm() == 0


@settings(max_examples=300, deadline=None)
@given(hs.binary(max_size=300), hs.binary(max_size=300))
def test_any_bytes_in_both_slots_never_crash(a, b):
    fs = TornFlash()
    fs.durable[f"{ROOT}/state_a.bin"] = a
    fs.durable[f"{ROOT}/state_b.bin"] = b
    s = StateStore(fs, ROOT)
    got = s.load()
    assert got is None or isinstance(got, PersistentState)
    p = ProgramStore(fs, ROOT)
    fs.durable[f"{ROOT}/prog_a.bin"] = a
    fs.durable[f"{ROOT}/prog_b.bin"] = b
    assert p.load() is None or isinstance(p.load(), bytes)


def test_every_truncation_and_every_bit_flip_of_a_state_record_is_rejected():
    st = _state(9)
    st.blobs[statecodec.BLOB_APP] = b"hello"
    rec = statecodec.encode(st, 42)
    for n in range(len(rec)):
        with pytest.raises(StateError):
            statecodec.decode(rec[:n])
    for i in range(len(rec)):
        for bit in range(8):
            bad = bytearray(rec)
            bad[i] ^= 1 << bit
            with pytest.raises(StateError):
                statecodec.decode(bytes(bad))


def test_program_store_reports_and_falls_back():
    fs = TornFlash()
    p = ProgramStore(fs, ROOT)
    p.load()
    p.commit(b"program one")
    p.commit(b"program two")
    fs.durable[f"{ROOT}/prog_b.bin"] = fs.durable[f"{ROOT}/prog_b.bin"][:-3]
    q = ProgramStore(fs, ROOT)
    assert q.load() == b"program one"
    assert "prog_b.bin" in q.report()[1] and "length" in q.report()[1]
    fs.durable[f"{ROOT}/prog_a.bin"] = b"\x00" * 30
    r = ProgramStore(fs, ROOT)
    assert r.load() is None
    assert r.alarm() == alarms.ALARM_PROGRAM_CORRUPT


def test_log_with_garbage_records_skips_them_and_says_where():
    fs = TornFlash()
    log = EventLog(fs, ROOT, seg_records=8, max_segments=4)
    log.mount()
    for i in range(20):
        log.append(9000, i, logrec.EV_SUSPEND, i)
    seg = f"{ROOT}/ev000002.log"
    data = bytearray(fs.durable[seg])
    data[3 * 32 + 5] ^= 0xFF  # bit rot in record 12
    fs.durable[seg] = bytes(data)
    log2 = EventLog(fs, ROOT, seg_records=8, max_segments=4)
    notes = log2.mount()
    assert any("ev000002.log: record 3: crc" in n for n in notes), notes
    seqs = [r[0] for r in log2.read(1, 100)]
    assert seqs == [s for s in range(1, 21) if s != 12]
    assert log2.next_seq == 21
    assert log2.append(9000, 1, logrec.EV_RESUME) == 21
    assert [r[0] for r in log2.read(20, 5)] == [20, 21]


def test_real_directory_round_trip(tmp_path):
    """The default Fs (builtins/os) on a real directory."""
    s = StateStore(Fs(), str(tmp_path), min_interval_ms=0)
    assert s.load() is None
    s.save(_state(4))
    s.save(_state(5))
    (tmp_path / "state_b.bin").write_bytes(b"junk")
    t = StateStore(Fs(), str(tmp_path))
    assert t.load() == _state(4)
    assert "crc" in t.report()[1] or "short" in t.report()[1] or "magic" in t.report()[1]
    log = EventLog(Fs(), str(tmp_path))
    log.mount()
    log.append(1, 2, logrec.EV_PRIME, 3, 4)
    log2 = EventLog(Fs(), str(tmp_path))
    log2.mount()
    assert log2.read(1, 10) == [(1, 1, 2, logrec.EV_PRIME, 3, 4, 0, 0)]
