"""Hard limits re-derived per mechanism (pumpcore.limits.HardLimits.for_mechanism): every step
counter stays below 2**30 over 30 days at the maximum rates, for both mechanisms in hw/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pumpcore import calibration
from pumpcore.limits import COUNTER_DAYS, MAX_STEP_HZ, HardLimits, LimitsError
from pumpcore.screwenc import ScrewMonitor

REPO = Path(__file__).resolve().parents[2]
MECHS = {"20ml": REPO / "hw" / "mechanism.json", "precision": REPO / "hw" / "mechanism-precision.json"}


def _limits(name: str) -> tuple[dict, int, HardLimits]:
    mech = json.loads(MECHS[name].read_text())
    pl = calibration.pl_per_step_from_mechanism(mech)
    return mech, pl, HardLimits.for_mechanism(mech, pl)


@pytest.mark.parametrize("name", sorted(MECHS))
def test_counters_stay_below_2_30_over_30_days_at_the_maximum_rates(name):
    mech, pl, lim = _limits(name)
    assert calibration.mechanism_name(mech) == name
    # the most volume the limits let through in a day: max_24h_ng at the lowest concentration
    daily_nl = lim.max_24h_ng * 1000 // lim.min_conc_ug_ml
    assert daily_nl <= lim.max_daily_nl
    steps_30d = COUNTER_DAYS * daily_nl * 1000 // pl
    assert steps_30d < 2 ** 30
    # the basal at its maximum, all of it missed (suspended: counted, never issued) for 30 days
    basal_steps_30d = COUNTER_DAYS * lim.max_rate_ng_day * 1000 * 1000 // lim.min_conc_ug_ml // 1000 // pl
    assert basal_steps_30d < 2 ** 30
    # the fastest flow the limits allow is one the motor makes (at the lowest concentration)
    flow_nl_day = lim.max_flow_ng_day * 1000 // lim.min_conc_ug_ml
    assert flow_nl_day * 1000 // pl <= MAX_STEP_HZ * 86400
    assert lim.max_rate_ng_day <= lim.max_flow_ng_day
    # the reservoir is the syringe, and a full one is a small-int number of microsteps
    assert lim.reservoir_capacity_nl == mech["syringe_capacity_nl"]
    assert lim.reservoir_capacity_nl * 1000 // pl < 2 ** 30


def test_the_precision_drive_is_sized_for_the_therapy():
    mech, pl, lim = _limits("precision")
    assert pl <= 1000                                   # <= 1 nL per microstep
    assert pl == 652
    steps_day = 93_000 * 1000 // pl                     # 186 ug/day at 2000 ug/mL = 93 uL/day
    assert 142_000 < steps_day < 143_000
    assert lim.reservoir_capacity_nl == 1_000_000       # 1 mL Hamilton gastight: 10.7 days of 93 uL
    assert lim.min_conc_ug_ml == 86                     # 2 mg in 24 h fits 23.3 mL/day
    # the 20 mL rig keeps its 100 mL/day and 50 ug/mL
    _m, _pl, big = _limits("20ml")
    assert (big.max_daily_nl, big.min_conc_ug_ml) == (100_000_000, 50)


def test_a_24h_limit_beyond_the_mechanisms_counters_is_refused_with_the_reason():
    _mech, _pl, lim = _limits("precision")
    with pytest.raises(LimitsError) as e:
        HardLimits.from_tuple((1500000, 2000000, 500000, lim.max_flow_ng_day, 50, 2000, 1000000),
                              max_daily_nl=lim.max_daily_nl)
    assert "limits.max_24h_ng" in str(e.value) and "2**30" in str(e.value)


@pytest.mark.parametrize("name,steps,nl", [("20ml", 16, 287), ("precision", 16, 10)])
def test_missed_step_alarm_volume_per_mechanism(name, steps, nl):
    """hw/mechanism.md states these: the AS5600 on the screw, 3 counts of tolerance."""
    mech, pl, _lim = _limits(name)
    mon = ScrewMonitor(mech["full_steps_per_rev"] * mech["microsteps"], pl)
    assert (mon.missed_bound_steps, mon.missed_bound_nl) == (steps, nl)


def test_a_bad_mechanism_name_is_refused():
    with pytest.raises(calibration.CalibrationError) as e:
        calibration.mechanism_name({"name": "Precision Drive"})
    assert "mechanism.name" in str(e.value)
    assert calibration.mechanism_name({}) == "20ml"
