"""Occlusion time-to-alarm and missed volume on the twin (pumpsim.model with hw/mechanism.json's
line and pressure sensor), with the OcclusionDetector the app builds: prints figures.

For each delivery (186 ug/day at 2000 ug/mL, 1.5 mg/day at 50 ug/mL, the 50 ug / 1 min
screening bolus at 2000 ug/mL) the line is blocked after a patent lead-in and the detector is
fed what the sensor reads each tick. Three set-ups:
  before/twin   the old twin: ideal 0..2000 kPa sensor, 150 kPa threshold
  before/real   the real sensor (rails at 116.3 kPa) with the old 150 kPa threshold
  after         the real sensor with the threshold from its description (85 % of range)
Missed volume = volume pushed into the blocked line before the alarm (or the stall).
Usage: python bench/occlusion_time_to_alarm.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))
from pumpcore.detect import OcclusionDetector  # noqa: E402
from pumpcore.pressure import sensor_from_mechanism  # noqa: E402
from pumpsim import model  # noqa: E402

MECH = json.loads((REPO / "hw" / "mechanism.json").read_text())
SENSOR = sensor_from_mechanism(MECH)


def old_twin_reading(w: model.World) -> int:
    """The twin before: 0..2000 kPa on 12 bits, clamped at 0, never railing in range."""
    pa = w.pressure_pa()
    if pa <= 0:
        return 0
    count = min(4095, pa * 4095 // 2_000_000)
    return count * 20000 // 4095


def run(flow_ng_day: int, conc_ug_ml: int, threshold: int, read: Callable[[model.World], int],
        tick_ms: int, lead_ms: int, limit_ms: int) -> tuple[str, float | None, float, str]:
    line = MECH["line"]
    w = model.World(model.Mechanism.from_dict(MECH), model.Params(
        compliance_pl_per_kpa=line["compliance_pl_per_kpa"], tau_ms=line["tau_ms"]))
    w.enable(True)
    det = OcclusionDetector.for_sensor(SENSOR, threshold_kpa_x10=threshold,
                                       min_sample_ms=line["tau_ms"]) if threshold < SENSOR.rail_kpa_x10 \
        else OcclusionDetector(threshold_kpa_x10=threshold, min_sample_ms=line["tau_ms"])
    pl_per_us = flow_ng_day * 1e6 / conc_ug_ml / 86_400_000_000
    period_us = max(1, round(w.pl_per_step / pl_per_us))
    w.queue_segment((lead_ms + limit_ms) * 1000 // period_us + 1, period_us, model.DIR_INFUSE)
    t = 0
    last = 0
    pulses_at_block = None
    while t < lead_ms + limit_ms:
        t += tick_ms
        if pulses_at_block is None and t >= lead_ms:
            w.set_occluded(True)
            pulses_at_block = w.pulses
        w.advance_to(t * 1000)
        made = w.pulses - last
        last = w.pulses
        if det.update(tick_ms, read(w), made):
            why = "pressure" if det.by_pressure else "decay"
            return why, (t - lead_ms) / 1000, (w.pulses - pulses_at_block) * w.pl_per_step / 1000, ""
        if w.diag():
            return "stall", (t - lead_ms) / 1000, (w.pulses - pulses_at_block) * w.pl_per_step / 1000, \
                "motor stalled at %.0f kPa, no occlusion alarm" % (w.pressure_pa() / 1000)
    return "none", None, (w.pulses - (pulses_at_block or 0)) * w.pl_per_step / 1000, "no alarm"


def main() -> None:
    print(SENSOR.describe())
    print("line: %d nL/kPa, tau %d ms; %d pL per microstep" % (
        MECH["line"]["compliance_pl_per_kpa"] // 1000, MECH["line"]["tau_ms"],
        model.Mechanism.from_dict(MECH).pl_per_step))
    cases = (("186 ug/day @ 2000 ug/mL", 186_000, 2000, 500, 600_000, 6 * 3_600_000),
             ("1.5 mg/day @ 50 ug/mL", 1_500_000, 50, 100, 600_000, 3_600_000),
             ("50 ug in 1 min @ 2000 ug/mL", 50_000 * 1440, 2000, 20, 10_000, 50_000))
    setups = (("before/twin", 1500, old_twin_reading),
              ("before/real", 1500, lambda w: w.pressure_adc_kpa_x10()),
              ("after", SENSOR.occlusion_threshold_kpa_x10, lambda w: w.pressure_adc_kpa_x10()))
    print(f"{'delivery':>28} {'set-up':>12} {'by':>9} {'time s':>9} {'missed nL':>10}  note")
    for name, flow, conc, tick, lead, limit in cases:
        for label, thr, read in setups:
            why, t, missed, note = run(flow, conc, thr, read, tick, lead, limit)
            ts = "-" if t is None else "%.1f" % t
            print(f"{name:>28} {label:>12} {why:>9} {ts:>9} {missed:>10.0f}  {note}")


if __name__ == "__main__":
    main()
