"""Flash-wear figures: block erases per state save and per log append on real littlefs (VfsLfs2).

Runs pumpfw.store inside the `micropython` unix binary on a littlefs v2 filesystem built on a
RAM block device shaped like the Pico's (4096-byte blocks, 352 blocks = 1408 KiB, progsize
256 as the rp2 port mounts it), with ~160 KiB of static files standing in for the firmware.
Counts erases per block, then turns them into years of flash life at the write rates stated in
docs/persistence.md. Prints figures; asserts nothing. Usage: python bench/persist_wear.py [N]

N saves and N appends (default 20,000, the figure docs/persistence.md states). The hot-spot
factor needs a long run: littlefs levels wear dynamically, so over a few thousand writes the
blocks the first writes hit stand far above the mean (3,000: factor 5.1, "8.4 years"; 20,000:
1.7, 24 years; it keeps falling slowly with N), and the life of the most-erased block is the
even-levelling life divided by it. The erases of the set-up (mkfs, the static files) are left
out of the per-block counts. The state record carries the sections the app saves
(pumpfw.app.save: scheduler, bolus gate, app, ledger, alarm ages, screw); the ceiling row uses
the app's own urgent-save budget (pumpfw.app URGENT_BURST / URGENT_REFILL_MS).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.mpy import run_micropython  # noqa: E402

SCRIPT = """
import os, vfs
from pumpfw.store import StateStore, EventLog
from pumpcore.statecodec import (PersistentState, F_BOOT_COUNT, SEC_SCHEDULER, SEC_BOLUS_GATE, SEC_LEDGER,
                                 SEC_ALARM_AGE, SEC_APP, SEC_SCREW)
from pumpcore import logrec

class RAMBD:
    def __init__(self, bs, n):
        self.bs = bs
        self.n = n
        self.data = bytearray(b"\\xff" * (bs * n))
        self.erases = [0] * n
    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.data[a:a + len(buf)]
    def writeblocks(self, b, buf, off=None):
        if off is None:
            off = 0
            self.ioctl(6, b)
        a = b * self.bs + off
        self.data[a:a + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            self.erases[arg] += 1
            a = arg * self.bs
            self.data[a:a + self.bs] = b"\\xff" * self.bs
            return 0

N = %d
bd = RAMBD(4096, 352)
vfs.VfsLfs2.mkfs(bd, progsize=256)
vfs.mount(vfs.VfsLfs2(bd, progsize=256), "/flash")
for k in range(40):                      # static firmware files, ~160 KiB
    with open("/flash/fw%%02d.mpy" %% k, "wb") as f:
        f.write(bytes(4000))
base = list(bd.erases)
from pumpcore.scheduler import DoseScheduler
from pumpcore.limits import HardLimits
st = PersistentState()
st.sections[SEC_SCHEDULER] = DoseScheduler(17962, HardLimits()).snapshot()  # with ledger: 177 ints
st.sections[SEC_BOLUS_GATE] = tuple(range(2000, 2008))
st.sections[SEC_LEDGER] = (1, 12, 123456, 4000, 7, 5000, 140, 0, 1)   # write-ahead reservation
st.sections[SEC_ALARM_AGE] = tuple(range(100000, 100000 + 19))      # ages of 19 alarm codes
st.sections[SEC_APP] = (17962,)                                      # the measured calibration
st.sections[SEC_SCREW] = (3,)                                        # the encoder's deficit
ss = StateStore(None, "/flash", min_interval_ms=0)
ss.load()
e0 = sum(bd.erases)
for i in range(N):
    st.set(F_BOOT_COUNT, i)
    ss.save(st)
e1 = sum(bd.erases)
log = EventLog(None, "/flash")
log.mount()
for i in range(N):
    log.append(9000, i, logrec.EV_HOURLY_TOTAL, i %% 24, i, i, 0)
e2 = sum(bd.erases)
worn = [bd.erases[b] - base[b] for b in range(bd.n)]      # the saves' and appends' erases only
used = [e for e in worn if e]
print("state_record_bytes", len(open("/flash/state_a.bin", "rb").read()))
print("saves", N, "erases", e1 - e0)
print("appends", N, "erases", e2 - e1)
print("blocks_touched", len(used), "max_erases_one_block", max(worn),
      "mean_over_touched", (e2 - e0) // max(1, len(used)))
st_vfs = os.statvfs("/flash")
print("fs_blocks", st_vfs[2], "free_blocks", st_vfs[3])
"""


def urgent_saves_per_day() -> int:
    """The most urgent saves a day the app's token bucket lets through (pumpfw.app)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))
    from pumpfw import app
    return 86_400_000 // app.URGENT_REFILL_MS


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    out = run_micropython(SCRIPT % n, timeout=900)
    vals: dict[str, list[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        vals[parts[0]] = parts[1:]
        print(line)
    per_save = int(vals["saves"][2]) / n
    per_append = int(vals["appends"][2]) / n
    free = int(vals["fs_blocks"][2])
    budget = free * 100_000
    total = int(vals["saves"][2]) + int(vals["appends"][2])
    hot = int(vals["blocks_touched"][2]) / (total / free)
    print(f"erases per state save   {per_save:.3f}")
    print(f"erases per log append   {per_append:.3f}")
    print(f"free blocks {free} x 100k cycles = {budget:,} block erases (dynamic wear levelling)")
    print(f"hot-spot factor (most-erased block / mean over free blocks) {hot:.2f}")
    urgent = urgent_saves_per_day()
    for label, saves_day, events_day in (
            ("expected: 1 save/min + 60 urgent/day, 150 events/day", 1440 + 60, 150),
            ("rate-limit ceiling: 1 save/min + %d urgent/day (every token spent), 2000 events/day" % urgent,
             1440 + urgent, 2000)):
        per_day = saves_day * per_save + events_day * per_append
        years = budget / per_day / 365.25
        print(f"{label}: {per_day:,.0f} erases/day -> {years:,.1f} years if levelled evenly, "
              f"{years / hot:,.1f} years for the most-erased block")


if __name__ == "__main__":
    main()
