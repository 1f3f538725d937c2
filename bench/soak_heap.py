"""Does the firmware's heap grow on the virtual rig? The app's hourly heap after gc, hour by hour.

Starts a virtual rig at `--time-scale` (default max), runs a 186 ug/day continuous program for
`--hours` simulated hours while the host reads status continuously (each read a host round
trip; each loop iteration makes its own round trips to the simulated hardware), then prints the
EV_HEAP records (bytes in use after gc.collect(), logged every hour) and the least-squares
slope over the hours after the first two (imports and first allocations settle).

The question it answers (docs/virtual-time.md): each round trip on the unix port was seen to
leave ~64 bytes on the heap (gc.mem_alloc without a collection). A leak would make the after-gc
figure climb by that much per round trip (~3,600 iterations an hour); a pool growing to a
plateau would climb, then stop; garbage that each collection returns keeps it flat.

    python bench/soak_heap.py --hours 48
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host_tools"))
sys.path.insert(0, str(REPO / "firmware"))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx of `points` (0 for fewer than two)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=48)
    ap.add_argument("--time-scale", default="max")
    args = ap.parse_args(argv)
    scale: float | str = args.time_scale if args.time_scale == "max" else float(args.time_scale)
    home = Path(tempfile.mkdtemp(prefix="soak-heap-"))
    os.environ["PUMPCTL_HOME"] = str(home / "home")

    from pumpcore import logrec
    from pumpcore.program import MODE_CONTINUOUS, Program
    from pumpctl.pump import Pump
    from pumpctl.rigs.simsession import prepare_for_delivery, start_deployed_rig

    rig = start_deployed_rig(home / "rig", scale, "soak-heap", log=lambda line: None)
    t0 = time.monotonic()
    reads = 0
    try:
        with Pump.open(rig.port, timeout_s=5) as pump:
            prepare_for_delivery(pump, 2000, log=lambda line: None)
            pump.upload_program(Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000,
                                        rate_ng_day=186_000).encode(), confirm=lambda r: True)
            st = pump.status()
            end = st.day * 86_400_000 + st.ms_of_day + args.hours * 3_600_000
            while st.day * 86_400_000 + st.ms_of_day < end:
                st = pump.status()
                reads += 1
            records = [logrec.decode(r) for _, r in pump.iter_log(1)]
    finally:
        rig.stop()
    wall = time.monotonic() - t0
    # a record logged after the soak's end was written while the log was being pulled (the rig
    # runs on at max): the server's response cache then holds log-read replies (up to 4 x 1.4 KB),
    # so it is printed apart and left out of the slope
    pulled = [(r[1] * 24 + r[2] / 3_600_000, r[4]) for r in records
              if r[3] == logrec.EV_HEAP and r[1] * 86_400_000 + r[2] > end]
    heap = [(r[1] * 24 + r[2] / 3_600_000, r[4]) for r in records
            if r[3] == logrec.EV_HEAP and r[1] * 86_400_000 + r[2] <= end]
    h0 = heap[-1][0] - args.hours if heap else 0.0   # the records at boot predate the clock set
    print("%d simulated hours at %s in %.0f s wall; %d host status reads; %d EV_HEAP records"
          % (args.hours, args.time_scale, wall, reads, len(heap)))
    print("hour  heap in use after gc (bytes)")
    for h, used in heap:
        print("%5s %8d" % ("boot" if h < h0 - 1 else "%.0f" % (h - h0), used))
    for h, used in pulled:
        print("%5s %8d  (logged during the log pull, after the soak's end)" % ("%.0f" % (h - h0), used))
    settled = [(h - h0, float(used)) for h, used in heap[2:]]
    if settled:
        ys = [y for _, y in settled]
        per_hour = slope(settled)
        print("after the first two records: min %d, max %d, spread %d bytes; slope %+.1f bytes per "
              "simulated hour (%+.4f bytes per loop iteration at one a second; a 64-byte-per-round-trip "
              "leak would be ~+230,000 per hour)" % (min(ys), max(ys), max(ys) - min(ys), per_hour, per_hour / 3600))
    return 0


if __name__ == "__main__":
    sys.exit(main())
