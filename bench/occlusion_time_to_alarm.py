"""Occlusion time-to-alarm and missed volume on the twin (pumpsim.model with a mechanism file's
line and pressure sensor), with the OcclusionDetector the app builds: prints figures.

For each delivery the line is blocked after a patent lead-in and the detector is fed what the
sensor reads each tick; the same delivery on a patent line for as long checks that nothing
alarms. Missed volume = volume pushed into the blocked line before the alarm (or the stall).

Mechanisms (hw/mechanism*.json, --mechanism NAME, default all): per mechanism the deliveries are
186 ug/day at 2000 ug/mL, the basal ceiling (1.5 mg/day) at 2000 ug/mL and at the mechanism's
lowest concentration, the motor's fastest flow the hard limits admit (max_flow_ng_day at the
lowest concentration) and the 50 ug / 1 min screening bolus at 2000 ug/mL. Set-ups:
  default sps 3   the detector as the app built it before issue 14 (steps_per_sample 3)
  app             the detector the app builds now: steps_per_sample from the mechanism
                  (pumpcore.detect.occlusion_steps_per_sample: 3 on the 20 mL rig, 71 on the
                  precision drive)
The 20 mL rig's history (the old twin's ideal sensor and 150 kPa threshold): --history.

--app: the application itself (pumpfw.app.PumpApp on the in-process twin, pumphw.simhw with a
pumpsim World) for 186 ug/day and 1.5 mg/day, the line blocked at 12 phases across a step
period after a 10 min patent lead-in, read at the loop's own wake times: the wake policy
(pumpfw.app._sleep_ms, quiet sleeps to the next step, up to 60 s) against the 1 s tick it replaced (_QUIET_MAX_MS
set to IDLE_MAX_MS). Prints min / median / max of the time from the block to the alarm and of
the volume pushed into the blocked line.
Usage: python bench/occlusion_time_to_alarm.py [--mechanism NAME] [--history] [--app]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))
from pumpcore.detect import OcclusionDetector, occlusion_steps_per_sample  # noqa: E402
from pumpcore.limits import HardLimits  # noqa: E402
from pumpcore.pressure import sensor_from_mechanism  # noqa: E402
from pumpsim import model, sensorout  # noqa: E402

MECH_FILES = {"20ml": REPO / "hw" / "mechanism.json", "precision": REPO / "hw" / "mechanism-precision.json"}


def old_twin_reading(w: model.World) -> int:
    """The twin before: 0..2000 kPa on 12 bits, clamped at 0, never railing in range."""
    pa = w.pressure_pa()
    if pa <= 0:
        return 0
    count = min(4095, pa * 4095 // 2_000_000)
    return count * 20000 // 4095


def adc_reading(w: model.World) -> int:
    return w.pressure_adc_kpa_x10()


def run(mech: dict, flow_ng_day: int, conc_ug_ml: int, make_det: Callable[[], OcclusionDetector],
        read: Callable[[model.World], int], tick_ms: int, lead_ms: int, limit_ms: int,
        block: bool = True) -> tuple[str, float | None, float, str]:
    """(by, seconds from the block to the alarm, nL pushed into the blocked line, note); with
    block=False the line stays patent for lead_ms + limit_ms and any alarm is a false one."""
    line = mech["line"]
    w = model.World(model.Mechanism.from_dict(mech), model.Params(
        compliance_pl_per_kpa=line["compliance_pl_per_kpa"], tau_ms=line["tau_ms"]))
    w.enable(True)
    det = make_det()
    pl_per_us = flow_ng_day * 1e6 / conc_ug_ml / 86_400_000_000
    period_us = max(500, round(w.pl_per_step / pl_per_us))   # the app's fastest: 2 kHz
    w.queue_segment((lead_ms + limit_ms) * 1000 // period_us + 1, period_us, model.DIR_INFUSE)
    t = 0
    last = 0
    pulses_at_block = None
    while t < lead_ms + limit_ms:
        t += tick_ms
        if block and pulses_at_block is None and t >= lead_ms:
            w.set_occluded(True)
            pulses_at_block = w.pulses
        w.advance_to(t * 1000)
        made = w.pulses - last
        last = w.pulses
        since = t - lead_ms
        pushed = (w.pulses - (pulses_at_block or 0)) * w.pl_per_step / 1000
        if det.update(tick_ms, read(w), made):
            why = "pressure" if det.by_pressure else "decay"
            if not block:
                return why, t / 1000, 0.0, "FALSE ALARM on a patent line at %.0f kPa" % (w.pressure_pa() / 1000)
            return why, since / 1000, pushed, ""
        if w.diag():
            return "stall", since / 1000, pushed, "motor stalled at %.0f kPa, no occlusion alarm" % (
                w.pressure_pa() / 1000)
    if not block:
        return "none", None, 0.0, "no false alarm in %.0f min (plateau %.1f kPa)" % (
            (lead_ms + limit_ms) / 60_000, w.pressure_pa() / 1000)
    return "none", None, pushed, "no alarm"


def cases(mech: dict) -> list[tuple[str, int, int, int, int, int]]:
    """(name, flow ng/day, conc ug/mL, tick ms, patent lead-in ms, limit ms) for a mechanism."""
    pl = model.Mechanism.from_dict(mech).pl_per_step
    lim = HardLimits.for_mechanism(mech, pl)
    lo = lim.min_conc_ug_ml
    return [("186 ug/day @ 2000 ug/mL", 186_000, 2000, 500, 600_000, 6 * 3_600_000),
            ("%.1f mg/day @ 2000 ug/mL" % (lim.max_rate_ng_day / 1e6), lim.max_rate_ng_day, 2000, 100,
             600_000, 3_600_000),
            ("%.1f mg/day @ %d ug/mL" % (lim.max_rate_ng_day / 1e6, lo), lim.max_rate_ng_day, lo, 100,
             600_000, 3_600_000),
            ("max flow %.2f mg/day @ %d ug/mL" % (lim.max_flow_ng_day / 1e6, lo), lim.max_flow_ng_day, lo, 20,
             60_000, 600_000),
            ("50 ug in 1 min @ 2000 ug/mL", 50_000 * 1440, 2000, 20, 10_000, 50_000)]


def setups(mech: dict) -> list[tuple[str, Callable[[], OcclusionDetector]]]:
    sensor = sensor_from_mechanism(mech)
    line = mech["line"]
    pl = model.Mechanism.from_dict(mech).pl_per_step
    sps = occlusion_steps_per_sample(pl, line["compliance_pl_per_kpa"])
    return [("default sps 3", lambda: OcclusionDetector.for_sensor(sensor, min_sample_ms=line["tau_ms"])),
            ("app sps %d" % sps, lambda: OcclusionDetector.for_sensor(
                sensor, min_sample_ms=line["tau_ms"], steps_per_sample=sps))]


def history() -> None:
    """The 20 mL rig before issue 13: the old twin's sensor and threshold against the real one."""
    mech = json.loads(MECH_FILES["20ml"].read_text())
    sensor = sensor_from_mechanism(mech)
    tau = mech["line"]["tau_ms"]
    hist = (("before/twin", lambda: OcclusionDetector(threshold_kpa_x10=1500, min_sample_ms=tau), old_twin_reading),
            ("before/real", lambda: OcclusionDetector(threshold_kpa_x10=1500, min_sample_ms=tau), adc_reading),
            ("after", lambda: OcclusionDetector.for_sensor(sensor, min_sample_ms=tau), adc_reading))
    for name, flow, conc, tick, lead, limit in (cases(mech)[0], cases(mech)[2], cases(mech)[4]):
        for label, make, read in hist:
            why, t, missed, note = run(mech, flow, conc, make, read, tick, lead, limit)
            ts = "-" if t is None else "%.1f" % t
            print(f"{name:>34} {label:>14} {why:>9} {ts:>9} {missed:>10.1f}  {note}")


def app_run(mech_name: str, rate_ng_day: int, quiet_ms: int, block_after_ms: int) -> tuple[float, float]:
    """(s from the block to ALARM_OCCLUSION, nL pushed into the blocked line) for the app on the
    in-process twin, the line blocked block_after_ms after its program's commit."""
    import os
    import shutil
    import tempfile
    sys.path.insert(0, str(REPO / "host_tools"))
    from pumpcore import alarms as al
    from pumpcore.program import MODE_CONTINUOUS, Program
    from pumpfw import app as appmod
    from pumphw.simhw import make_sim_hardware
    from pumpsim.twinport import OP_IDLE
    os.environ.pop("PUMPSIM_SOCK", None)
    flash = Path(tempfile.mkdtemp(prefix="occl-app-"))
    try:
        shutil.copy(MECH_FILES[mech_name], flash / "mechanism.json")
        shutil.copy(REPO / "hw" / "pinmap.json", flash / "pinmap.json")
        appmod._QUIET_MAX_MS = quiet_ms          # CPython: const() is a plain int, read per call
        hw = make_sim_hardware(flash_root=str(flash))
        w = hw._port.world
        app = appmod.PumpApp(hw)
        app.boot()
        assert app.set_time(9000, 0) is None
        assert app.refill(w.capacity_pl // 1000 // 2, 2000) is None
        assert app.commit_program(Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000,
                                          rate_ng_day=rate_ng_day)) is None
        for code in app.alarm_set.active():
            app.ack_alarm(code)
        t_block = w.t_us + block_after_ms * 1000
        port = hw._port
        call = port.call
        at_block = []

        def blocking_call(op, sim_us, a, b, c):
            # the block lands at t_block, inside whatever sleep or read spans it
            end = sim_us + a if op == OP_IDLE else sim_us
            if not at_block and end >= t_block:
                w.advance_to(t_block)
                w.set_occluded(True)
                at_block.append(w.pulses)
            return call(op, sim_us, a, b, c)

        port.call = blocking_call
        while not at_block:
            app.step()
        pulses = at_block[0]
        while not app.alarm_set.is_active(al.ALARM_OCCLUSION):
            t = hw._clock.t_us
            app.step()
            if t - t_block > 3600_000_000:
                raise SystemExit("no occlusion alarm in 1 h")
        return (t - t_block) / 1e6, (w.pulses - pulses) * w.pl_per_step / 1000
    finally:
        shutil.rmtree(flash, ignore_errors=True)


def app_figures(names: list[str]) -> None:
    from pumpfw import app as appmod
    quiet = appmod._QUIET_MAX_MS
    print("== the app's loop on the in-process twin: time and volume from the block to the alarm")
    print(f"{'mechanism':>10} {'delivery':>12} {'wake':>14} {'time s min/median/max':>24} {'nL min/median/max':>22}")
    for name in names:
        for label, rate in (("186 ug/day", 186_000), ("1.5 mg/day", 1_500_000)):
            for wake, q in (("1 s tick", appmod.IDLE_MAX_MS), ("wake policy", quiet)):
                res = [app_run(name, rate, q, 600_000 + k * 1370) for k in range(12)]
                ts = sorted(r[0] for r in res)
                vs = sorted(r[1] for r in res)
                print(f"{name:>10} {label:>12} {wake:>14} {ts[0]:>8.1f}/{ts[6]:.1f}/{ts[-1]:.1f}"
                      f" {vs[0]:>10.0f}/{vs[6]:.0f}/{vs[-1]:.0f}")
    appmod._QUIET_MAX_MS = quiet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mechanism", choices=sorted(MECH_FILES), action="append")
    ap.add_argument("--history", action="store_true", help="the 20 mL rig's old sensor set-ups too")
    ap.add_argument("--app", action="store_true", help="only the app's loop on the twin: wake policy vs 1 s tick")
    args = ap.parse_args()
    if args.app:
        app_figures(args.mechanism or sorted(MECH_FILES))
        return
    for name in args.mechanism or sorted(MECH_FILES):
        mech = json.loads(MECH_FILES[name].read_text())
        m = model.Mechanism.from_dict(mech)
        print("== mechanism %s: %d pL per microstep; line %d nL/kPa, tau %d ms; %s" % (
            name, m.pl_per_step, mech["line"]["compliance_pl_per_kpa"] // 1000, mech["line"]["tau_ms"],
            sensorout.describe(sensor_from_mechanism(mech))))
        print(f"{'delivery':>34} {'set-up':>14} {'by':>9} {'time s':>9} {'missed nL':>10}  note")
        for cname, flow, conc, tick, lead, limit in cases(mech):
            for label, make in setups(mech):
                why, t, missed, note = run(mech, flow, conc, make, adc_reading, tick, lead, limit)
                ts = "-" if t is None else "%.1f" % t
                print(f"{cname:>34} {label:>14} {why:>9} {ts:>9} {missed:>10.1f}  {note}")
                why, t, _m, note = run(mech, flow, conc, make, adc_reading, tick, lead, limit, block=False)
                print(f"{'':>34} {'  patent':>14} {why:>9} {'':>9} {'':>10}  {note}")
    if args.history:
        history()


if __name__ == "__main__":
    main()
