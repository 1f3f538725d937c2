"""Wall time of a HIL subset on a loopback labgrid lab of 1, 2 and 4 virtual rigs (one pytest-xdist worker per rig).

    .venv/bin/python bench/lab_scaling.py [--rigs 1,2,4] [--keep]

Needs the lab environment (scripts/bootstrap --lab). For each rig count it starts a fresh lab
(coordinator, exporter, N virtual rigs behind RFC 2217 bridges; pumpctl.lab.loopback), runs the
same HIL subset with `-n N --rig labgrid:mechanism=precision,kind=virtual` and prints the wall
time of the run (each worker's first check includes its place's `pumpctl deploy`), the lab's
start-up time, how many places were taken and the load average beside it. Exit status 1 if a
run failed or a place was held twice at once.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pumpctl.lab.loopback import REPO, LoopbackLab
from pumpctl.lab.places import HoldLog, hold_intervals, hold_problems

SUBSET = ["tests/hil/test_deploy_program.py", "-k",
          "deploy_verified or unconfirmed or flex_4step or continuous_186 or patient_bolus or screening_bolus "
          "or periodic_bolus or weekday_pattern"]


def run(rigs: int, work: Path) -> tuple[float, float, int, int, list[str], str]:
    t0 = time.monotonic()
    with LoopbackLab(work / ("lab%d" % rigs), rigs=rigs) as lab:
        up_s = time.monotonic() - t0
        t1 = time.monotonic()
        done = subprocess.run(lab.pytest_argv(*SUBSET, "-n", str(rigs), "-q"), capture_output=True, text=True,
                              cwd=REPO, env=lab.env(), timeout=3600)
        wall = time.monotonic() - t1
        recs = HoldLog(lab.hold_log).read()
    tail = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return wall, up_s, len(hold_intervals(recs)), done.returncode, hold_problems(recs), tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rigs", default="1,2,4", help="rig counts to run, comma separated (default 1,2,4)")
    ap.add_argument("--keep", action="store_true", help="keep the labs' directories (logs) and print where")
    args = ap.parse_args()
    counts = [int(x) for x in args.rigs.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="lab-scaling-"))
    print("HIL subset: %s" % " ".join(SUBSET))
    print("%5s  %10s  %8s  %9s  %7s  %6s  %s" % ("rigs", "subset s", "speed-up", "lab up s", "holds", "load1", "pytest"))
    bad = 0
    base = None
    for n in counts:
        wall, up_s, holds, rc, problems, tail = run(n, work)
        base = base or wall
        print("%5d  %10.1f  %8s  %9.1f  %7d  %6.1f  %s" % (
            n, wall, "x%.2f" % (base / wall), up_s, holds, os.getloadavg()[0], tail), flush=True)
        if rc != 0 or problems:
            bad = 1
            for p in problems:
                print("    problem: %s" % p)
    if args.keep:
        print("labs kept in %s" % work)
    else:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return bad


if __name__ == "__main__":
    sys.exit(main())
