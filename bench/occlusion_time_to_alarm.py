"""Occlusion time-to-alarm at 186 ug/day (2000 ug/mL) for several line compliances: prints figures.

Uses the test-local line model of tests/persist/test_detect.py (pressure +pl_per_step/compliance
per microstep, exponential decay through the catheter when patent, sensor noise) and the
OcclusionDetector set up as its docstring says. For each compliance: missed microsteps and
volume at the alarm (decay criterion), the stated bound, the time at the basal rate, and what
the pressure threshold alone (150 kPa) would have needed. Usage: python bench/occlusion_time_to_alarm.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pumpcore.detect import OcclusionDetector  # noqa: E402
from tests.persist.test_detect import (BASAL_PERIOD_MS, PL_PER_STEP, Line, params_for,  # noqa: E402
                                        run)

THRESHOLD = 1500  # kPa x 10


def main() -> None:
    print(f"bench mechanism: {PL_PER_STEP} pL per microstep; 186 ug/day at 2000 ug/mL = 93 uL/day, "
          f"one microstep every {BASAL_PERIOD_MS / 1000:.1f} s")
    print(f"{'compliance nL/kPa':>18} {'tau s':>6} {'dp/step kPa':>12} {'steps/sample':>12} {'missed steps':>12} "
          f"{'missed nL':>10} {'bound nL':>9} {'time min':>9} {'threshold-only h':>16}")
    # (compliance nL/kPa, decay time constant ms); 20 nL/kPa with 30 s is pumpsim's default line
    for compliance_kpa, tau_ms in ((5, 3000), (20, 3000), (20, 30000), (100, 3000), (500, 3000)):
        line = Line(compliance_kpa / 10, tau_ms=tau_ms, noise=1.0, seed=compliance_kpa)
        det = OcclusionDetector(threshold_kpa_x10=THRESHOLD, **params_for(line))
        t, missed = run(det, line, BASAL_PERIOD_MS, 500, 14 * 86_400_000, block_at_ms=3_600_000)
        bound = det.missed_steps_bound() * PL_PER_STEP / 1000
        thr_h = THRESHOLD / line.dp * BASAL_PERIOD_MS / 3_600_000
        if t is None:
            print(f"{compliance_kpa:>18} {tau_ms // 1000:>6} {line.dp / 10:>12.3f}  no alarm in 14 days")
            continue
        print(f"{compliance_kpa:>18} {tau_ms // 1000:>6} {line.dp / 10:>12.3f} {det.steps_per_sample:>12} {missed:>12} "
              f"{missed * PL_PER_STEP / 1000:>10.0f} {bound:>9.0f} {(t - 3_600_000) / 60_000:>9.1f} "
              f"{thr_h:>16.1f}")


if __name__ == "__main__":
    main()
