"""Units parsing/formatting and the mechanism calibration (integer, documented rounding)."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from pumpcore import calibration as cal
from pumpcore import unittext as u
from pumpctl import quantity as q

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,ng", [("50 ug", 50_000), ("0.5 mg", 500_000), ("186ug", 186_000),
                                     ("1.5 mcg", 1500), ("7 ng", 7), ("2 mg", 2_000_000)])
def test_parse_dose(text: str, ng: int) -> None:
    assert q.parse_dose_ng(text) == ng


@pytest.mark.parametrize("text,v", [("186 ug/day", 186_000), ("2 mg/day", 2_000_000), ("0.186 mg/day", 186_000)])
def test_parse_rate(text: str, v: int) -> None:
    assert q.parse_rate_ng_day(text) == v


@pytest.mark.parametrize("text,v", [("2000 ug/mL", 2000), ("2 mg/mL", 2000), ("50 ug/ml", 50), ("0.5 mg/mL", 500)])
def test_parse_conc(text: str, v: int) -> None:
    assert q.parse_conc_ug_ml(text) == v


def test_parse_volume_duration_time() -> None:
    assert q.parse_volume_nl("180 uL") == 180_000
    assert q.parse_volume_nl("20 mL") == 20_000_000
    assert q.parse_duration_ms("10 min") == 600_000
    assert q.parse_duration_ms("1.5 h") == 5_400_000
    assert q.parse_time_of_day_ms("07:30") == 27_000_000
    assert q.parse_time_of_day_ms("23:59:59") == 86_399_000


@pytest.mark.parametrize("fn,text,needle", [
    (q.parse_dose_ng, "50 kg", "unit must be one of ng, ug, mg"),
    (q.parse_dose_ng, "0.0001 ng", "more decimals"),
    (q.parse_dose_ng, "ug", "no number"),
    (q.parse_rate_ng_day, "186 ug", "per day"),
    (q.parse_conc_ug_ml, "2000 ug/L", "ug/mL or mg/mL"),
    (q.parse_time_of_day_ms, "24:00", "not a time of day"),
    (q.parse_time_of_day_ms, "7:30", "two digits"),
    (q.parse_dose_ng, 50, "as a string"),
])
def test_parse_errors_name_field_value_reason(fn, text, needle: str) -> None:
    with pytest.raises(q.QuantityError) as e:
        fn(text, field="bolus.dose")
    msg = str(e.value)
    assert msg.startswith("bolus.dose = ") and repr(text) in msg and needle in msg


@given(st.integers(0, 10**9))
def test_dose_format_parse_round_trip(ng: int) -> None:
    assert q.parse_dose_ng(u.fmt_dose(ng)) == ng


@given(st.integers(0, 10**9))
def test_rate_format_parse_round_trip(v: int) -> None:
    assert q.parse_rate_ng_day(u.fmt_rate(v)) == v


def test_mechanism_calibration_is_nearest_pl() -> None:
    mech = json.loads((REPO / "hw" / "mechanism.json").read_text())
    pl = cal.pl_per_step_from_mechanism(mech)
    # exact value with a 50-digit pi, rounded to the nearest pL
    pi = Fraction("3.14159265358979323846264338327950288419716939937510")
    exact = pi * mech["syringe_id_um"] ** 2 * mech["lead_um"] / (4 * 1000 * mech["full_steps_per_rev"] * mech["microsteps"])
    assert abs(pl - exact) <= Fraction(1, 2)
    assert pl == 17964


@given(st.integers(1000, 40000), st.integers(100, 2000), st.integers(1, 64), st.integers(100, 3000))
def test_calibration_rounding_property(id_um: int, lead: int, micro: int, fsteps: int) -> None:
    mech = {"syringe_id_um": id_um, "lead_um": lead, "microsteps": micro, "full_steps_per_rev": fsteps}
    pi = Fraction("3.14159265358979323846264338327950288419716939937510")
    exact = pi * id_um**2 * lead / (4 * 1000 * fsteps * micro)
    if not (cal.MIN_PL_PER_STEP <= round(exact) <= cal.MAX_PL_PER_STEP):
        with pytest.raises(cal.CalibrationError):
            cal.pl_per_step_from_mechanism(mech)
        return
    assert abs(cal.pl_per_step_from_mechanism(mech) - exact) <= Fraction(1, 2)


def test_measured_calibration_overrides_and_is_checked() -> None:
    mech = json.loads((REPO / "hw" / "mechanism.json").read_text())
    assert cal.from_measurement(17_800, 1000) == 17_800
    assert cal.select(mech, 17_800) == 17_800
    assert cal.select(mech) == 17_964
    with pytest.raises(cal.CalibrationError, match=r"calibration.pl_per_step = 25000: more than 10 %"):
        cal.select(mech, 25_000)
    with pytest.raises(cal.CalibrationError, match="calibration.steps = 0"):
        cal.from_measurement(1000, 0)
    with pytest.raises(cal.CalibrationError, match="mechanism.lead_um = missing"):
        cal.pl_per_step_from_mechanism({"syringe_id_um": 1, "microsteps": 1, "full_steps_per_rev": 1})
