"""Virtual time on the virtual rig: speed quiet and under load, and a scripted run repeated.

    .venv/bin/python bench/virtual_time.py [--seconds 5] [--hours 6]
    .venv/bin/python bench/virtual_time.py --demo 1 30 [--runs 3] [--pumpctl OTHER/.venv/bin/pumpctl]

Prints
- simulated seconds per wall second of a rig delivering 186 ug/day, at `--time-scale max` and
  at a 1000x ceiling, on a quiet machine and with both cores loaded by two CPU-bound processes
  this script starts and stops itself; at max also with the twin's input cache off (every input
  read a round trip to the supervisor), and the round trips per simulated hour either way;
- one scripted scenario (fresh rig, clock held, program + bolus, an occlusion and a stall
  landing at set sim times, run to `--hours`) run three times: quiet, with the load beside it,
  and quiet with the cache off: the step counts and the digest of the event log (every record:
  sequence, time, code, values) must be equal. Exit status 1 if they differ;
- with --demo: only the wall and CPU time of `pumpctl demo --time-scale max` for 24 h and
  30 days (whole processes, deploy included).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pumpctl.pump import Pump
from pumpctl.rigs.simsession import (REFILL_NL, SCENARIO_CONC, SCENARIO_DAY, scenario_program,
                                     scripted_run, start_deployed_rig)



def burners(n: int = 2) -> list[subprocess.Popen[bytes]]:
    """n CPU-bound processes (one per core on this 2-core machine)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def setup(pump: Pump) -> None:
    """The scripted run's setup on a running rig: alarms acknowledged, calendar, refill, program."""
    for a in pump.alarms():
        pump.ack_alarm(a.alarm_id)
    pump.time_sync(SCENARIO_DAY, 0)
    pump.refill(REFILL_NL, SCENARIO_CONC)
    pump.upload_program(scenario_program().encode(), confirm=lambda r: True)


def speed(home: Path, scale: float | str, seconds: float, loaded: bool,
          cache: bool = True) -> tuple[float, float]:
    """(sim s per wall s, twin requests per sim hour) over `seconds` of wall time."""
    rig = start_deployed_rig(home / f"speed-{scale}-{int(loaded)}-{int(cache)}", scale, "speed",
                             log=lambda s: None, cache=cache)
    try:
        with Pump.open(rig.port) as pump:
            setup(pump)
        procs = burners() if loaded else []
        try:
            w = rig.world()
            s0, c0, w0 = w["sim_us"], w["twin_calls"], time.monotonic()
            time.sleep(seconds)
            w = rig.world()
            s1, c1, w1 = w["sim_us"], w["twin_calls"], time.monotonic()
        finally:
            stop(procs)
        return (s1 - s0) / 1e6 / (w1 - w0), (c1 - c0) / ((s1 - s0) / 3.6e9)
    finally:
        rig.stop()


H_US = 3_600_000_000


def scenario(home: Path, hours: float, loaded: bool, cache: bool = True) -> tuple[dict[str, object], str, float]:
    """The scripted run (pumpctl.rigs.simsession.scripted_run, the one tests/rig/test_virtualtime.py
    checks): button presses, an occlusion and a stall at set sim times, to `hours`. Returns
    (counts, event-log digest, wall s)."""
    faults = [(H_US // 2, "button", {"count": 2, "gap_ms": 500}), (2 * H_US, "occlude", {}),
              (3 * H_US, "unocclude", {}), (4 * H_US, "stall", {}),
              (4 * H_US + 600_000_000, "unstall", {})]
    procs = burners() if loaded else []
    t0 = time.monotonic()
    try:
        counts, digest = scripted_run(home / f"scenario-{int(loaded)}-{int(cache)}", faults,
                                      int(hours * H_US), cache=cache)
        return counts, digest[:16], time.monotonic() - t0
    finally:
        stop(procs)


def demo_times(days: list[int], runs: int, pumpctl: str) -> int:
    """`pumpctl demo --time-scale max --days N` as a whole process (deploy included), `runs`
    times each: wall and CPU seconds (the process and its children: supervisor, firmware,
    mpremote), median and range. Exit status 1 if a demo did not PASS."""
    import resource
    import statistics
    bad = 0
    for n in days:
        walls, cpus = [], []
        for _ in range(runs):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            out = subprocess.run([pumpctl, "demo", "--time-scale", "max", "--days", str(n),
                                  "--name", "bench-demo"], capture_output=True, text=True)
            walls.append(time.monotonic() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            if out.returncode != 0 or "RESULT              PASS" not in out.stdout:
                bad += 1
                print(out.stdout[-2000:] + out.stderr[-2000:])
        print(f"  demo --days {n:2d} at max: wall {statistics.median(walls):7.1f} s median "
              f"({min(walls):.1f}..{max(walls):.1f}), CPU {statistics.median(cpus):7.1f} s, {runs} run(s)")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="wall seconds per speed figure")
    ap.add_argument("--hours", type=float, default=6.0, help="sim hours of the scripted scenario")
    ap.add_argument("--demo", type=int, nargs="+", metavar="DAYS",
                    help="only time `pumpctl demo --time-scale max --days DAYS` (e.g. --demo 1 30)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each --demo")
    ap.add_argument("--pumpctl", default=str(Path(sys.executable).parent / "pumpctl"),
                    help="the pumpctl to time with --demo (another checkout's, for a before/after)")
    args = ap.parse_args()
    os.environ.setdefault("PUMPCTL_HOME", tempfile.mkdtemp(prefix="vtime-home-"))
    home = Path(os.environ["PUMPCTL_HOME"])
    if args.demo:
        return demo_times(args.demo, args.runs, args.pumpctl)
    print("sim s per wall s (186 ug/day delivering); twin requests per sim hour:")
    for scale in ("max", 1000.0):
        quiet, rq = speed(home, scale, args.seconds, False)
        loaded, rl = speed(home, scale, args.seconds, True)
        print(f"  time scale {scale!s:>6}: quiet {quiet:8.0f}   both cores loaded {loaded:8.0f}"
              f"   requests/h {rq:6.0f} / {rl:6.0f}")
    off, roff = speed(home, "max", args.seconds, False, cache=False)
    print(f"  max, cache off: quiet {off:8.0f}   requests/h {roff:6.0f}")
    a, da, wa = scenario(home, args.hours, False)
    b, db, wb = scenario(home, args.hours, True)
    c, dc, wc = scenario(home, args.hours, False, cache=False)
    print(f"scripted scenario ({args.hours:g} sim h, max):")
    brief = lambda r: {k: v for k, v in r.items() if k != "fault_log"}
    print(f"  quiet          : {brief(a)} log {da} ({wa:.1f} s wall)")
    print(f"  loaded         : {brief(b)} log {db} ({wb:.1f} s wall)")
    print(f"  quiet, no cache: {brief(c)} log {dc} ({wc:.1f} s wall)")
    same = a == b == c and da == db == dc
    print("  equal" if same else "  DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
