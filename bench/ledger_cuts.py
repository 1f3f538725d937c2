"""Long power-cut exploration of the whole app (tests/support/cutrig.py) in CPython, off the suite.

The suite's run (tests/persist/test_ledger_cuts.py) is 48 chains of 24 cuts at one seed, in
micropython; this runs as many chains and seeds as you like and prints, per seed and in all:
restarts checked, exact hourly checks, cuts in the minute after an hour's record, failures (the
first of each kind, described), largest over-count, wall and CPU time. Exit status 1 if any check
failed. Run from the repository root, niced (the machine is shared):

    nice -n 10 .venv/bin/python bench/ledger_cuts.py --seeds 11 12 13 --chains 400 --cuts 24

A failure's seed and chain reproduce with cutrig.run(seed, chains, cuts) alone (the PRNG is the
rig's own, the same on CPython and MicroPython).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))
sys.path.insert(0, str(REPO / "tests" / "support"))

import cutrig  # noqa: E402

KEYS = ("restarts checked", "hourly sums checked", "hour records cut after", "cut during boot/littlefs",
        "cut during boot/posix", "cuts/littlefs", "cuts/posix", "hourly sums not exact (log wrapped)",
        "primes started", "cuts while a prime ran", "acks taken", "ack records checked")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--chains", type=int, default=400)
    ap.add_argument("--cuts", type=int, default=24, help="cuts per chain")
    args = ap.parse_args(argv)
    total: dict[str, int] = {}
    failed = 0
    t_wall, t_cpu = time.monotonic(), time.process_time()
    for seed in args.seeds:
        root = Path(tempfile.mkdtemp(prefix="ledger_cuts_"))
        try:
            shutil.copy(REPO / "hw" / "mechanism.json", root / "mechanism.json")
            w, c = time.monotonic(), time.process_time()
            res = cutrig.run(seed, args.chains, args.cuts, root=str(root))
            counts, failures = res["counts"], res["failures"]
        finally:
            shutil.rmtree(root, ignore_errors=True)
        fails = {k: v for k, v in counts.items() if k.startswith("fail")}
        failed += sum(fails.values())
        for k in KEYS:
            total[k] = total.get(k, 0) + counts.get(k, 0)
        total["max over-count ng"] = max(total.get("max over-count ng", 0), counts.get("max over-count ng", 0))
        print("seed %d: %d chains x %d cuts, %d restarts, %d exact hourly checks, %d cuts after an hour's "
              "record, %d primes (%d cuts while one ran), %d acks, max over-count %d ng, failures %s, "
              "%.0f s wall, %.0f s CPU"
              % (seed, args.chains, args.cuts, counts.get("restarts checked", 0),
                 counts.get("hourly sums checked", 0), counts.get("hour records cut after", 0),
                 counts.get("primes started", 0), counts.get("cuts while a prime ran", 0),
                 counts.get("acks taken", 0),
                 counts.get("max over-count ng", 0), fails or "none", time.monotonic() - w,
                 time.process_time() - c))
        for f in failures:
            print("  " + f)
        sys.stdout.flush()
    print("all: %s; %d failed checks; %.0f s wall, %.0f s CPU"
          % (", ".join("%s %d" % kv for kv in sorted(total.items())), failed,
             time.monotonic() - t_wall, time.process_time() - t_cpu))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
