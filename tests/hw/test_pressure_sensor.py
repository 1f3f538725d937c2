"""The line pressure sensor, described once (hw/mechanism.json "pressure_sensor", pumpcore.pressure):
transfer function, railing, fault bands, the occlusion threshold it gives and the patent-line
plateau margin under it, and the twin that must never read more than the real part can."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpcore import alarms as A
from pumpcore import pressure
from pumpcore.detect import DetectError, OcclusionDetector
from pumpcore.limits import HardLimits
from pumpsim import model, sensorout

REPO = Path(__file__).resolve().parents[2]
MECH = json.loads((REPO / "hw" / "mechanism.json").read_text())
SENSOR = pressure.sensor_from_mechanism(MECH)
DESC = MECH["pressure_sensor"]


def exact_kpa_x10(raw: int) -> float:
    """The datasheet line, in floats, from the description itself."""
    lo, hi = DESC["output_min_permille"] / 1000, DESC["output_max_permille"] / 1000
    p0, p1 = DESC["range_pa"]
    return (p0 + (raw / 65535 - lo) / (hi - lo) * (p1 - p0)) / 100


def test_the_description_is_the_bom_part():
    assert SENSOR.part == "Honeywell ABPDANV015PGAA3"
    assert DESC["range_pa"] == [0, 103421]                       # 15 psi
    # a deploy without the field gets the same sensor (defaults match the BOM)
    bom = pressure.sensor_from_mechanism({k: v for k, v in MECH.items() if k != "pressure_sensor"})
    for attr in ("min_pa", "max_pa", "output_min_permille", "output_max_permille", "supply_mv",
                 "open_wire_below_permille", "short_above_permille", "rail_kpa_x10",
                 "occlusion_threshold_kpa_x10"):
        assert getattr(bom, attr) == getattr(SENSOR, attr), attr
    assert pressure.load_sensor(str(REPO / "no-such-mechanism.json")).rail_kpa_x10 == SENSOR.rail_kpa_x10


def test_transfer_function_points():
    at = SENSOR.u16_at_permille
    assert SENSOR.kpa_x10_from_u16(at(DESC["output_min_permille"])) == 0          # 10 %: 0 psi
    assert SENSOR.kpa_x10_from_u16(at(DESC["output_max_permille"])) == 1034       # 90 %: 103.4 kPa
    assert SENSOR.kpa_x10_from_u16(at(500)) == 517                                # 50 %: 7.5 psi
    assert SENSOR.full_scale_kpa_x10 == 1034


@given(st.integers(0, 65534))
def test_conversion_is_monotonic_exact_and_small_int(raw):
    a = SENSOR.kpa_x10_from_u16(raw)
    assert a <= SENSOR.kpa_x10_from_u16(raw + 1)
    assert abs((2 * raw - SENSOR._off2) * SENSOR._mul) < 2**30    # no big int on the RP2040
    exact = exact_kpa_x10(raw)
    assert exact - 1.05 < a <= exact + 0.05


def test_rail_floor_and_fault_bands():
    # the output rails at the supply above the range: the most the sensor can ever report
    assert SENSOR.rail_kpa_x10 == SENSOR.kpa_x10_from_u16(65535) == 1163        # 116.3 kPa
    assert SENSOR.floor_kpa_x10 == SENSOR.kpa_x10_from_u16(0) == -130
    assert SENSOR.floor_kpa_x10 < SENSOR.fault_low_kpa_x10 < 0 < SENSOR.full_scale_kpa_x10
    assert SENSOR.full_scale_kpa_x10 < SENSOR.fault_high_kpa_x10 < SENSOR.rail_kpa_x10
    assert abs(SENSOR.fault_low_kpa_x10 - exact_kpa_x10(65535 * 0.060)) <= 1


@pytest.mark.parametrize("change, field", [
    ({"range_pa": [0]}, "range_pa"),
    ({"range_pa": [1000, 500]}, "range_pa"),
    ({"output_max_permille": 1200}, "output_max_permille"),
    ({"adc_ref_mv": 5000}, "adc_ref_mv"),
    ({"open_wire_below_permille": 150}, "open_wire_below_permille"),
    ({"short_above_permille": 800}, "short_above_permille"),
    ({"part": ""}, "part"),
    ({"fullscale": 3}, "fullscale"),
    ({"supply_mv": "3.3 V"}, "supply_mv"),
])
def test_a_wrong_description_names_its_field(change, field):
    desc = dict(DESC, **change)
    with pytest.raises(pressure.SensorError) as e:
        pressure.sensor_from_mechanism(dict(MECH, pressure_sensor=desc))
    assert str(e.value).startswith("mechanism.pressure_sensor.%s = " % field), str(e.value)
    assert "\n" not in str(e.value)
    desc = dict(DESC)
    del desc["supply_mv"]
    with pytest.raises(pressure.SensorError, match="pressure_sensor.supply_mv = missing"):
        pressure.PressureSensor(desc)


# --- the occlusion threshold ----------------------------------------------------------------------
def test_threshold_is_85_percent_of_the_range_below_the_rail():
    thr = SENSOR.occlusion_threshold_kpa_x10
    assert thr == (DESC["range_pa"][0] + (DESC["range_pa"][1] - DESC["range_pa"][0]) * 85 // 100) // 100
    assert thr == 879                                             # 87.9 kPa
    # reachable with margin: 15 % of full scale below Pmax, well below the rail
    assert SENSOR.full_scale_kpa_x10 - thr >= 150 and SENSOR.rail_kpa_x10 - thr >= 250
    assert OcclusionDetector().threshold_kpa_x10 == thr           # the detector's default is the BOM's
    det = OcclusionDetector.for_sensor(SENSOR)
    assert det.threshold_kpa_x10 == thr and det.fault_low_kpa_x10 == SENSOR.fault_low_kpa_x10
    with pytest.raises(DetectError, match="threshold_kpa_x10 = 1500: must be below the sensor's rail 1163"):
        OcclusionDetector.for_sensor(SENSOR, threshold_kpa_x10=1500)


def plateau_kpa_x10(flow_ng_day: int, conc_ug_ml: int) -> float:
    """Steady pressure of the patent bench line at a flow: P = Q * R = Q * tau / C."""
    line = MECH["line"]
    q_pl_per_ms = flow_ng_day / conc_ug_ml * 1e6 / 86_400_000     # ug/mL = ng/uL: ng/day -> pL/ms
    return q_pl_per_ms * line["tau_ms"] / line["compliance_pl_per_kpa"] * 10


def test_fastest_flow_into_a_patent_line_stays_under_the_threshold():
    """The hard limits' fastest flow (basal + bolus, max_flow_ng_day) at the bench drug
    (2000 ug/mL, the highest concentration they allow) holds the patent line at 57.9 kPa: 34 %
    under the 87.9 kPa threshold. The examples' fastest flows (screening bolus 50 ug in 1 min,
    1.5 mg/day at 50 ug/mL) hold 20.8 and 17.4 kPa."""
    lim = HardLimits()
    thr = SENSOR.occlusion_threshold_kpa_x10
    p = plateau_kpa_x10(lim.max_flow_ng_day, lim.max_conc_ug_ml)
    assert round(p) == 579 and p < 0.8 * thr
    assert round(plateau_kpa_x10(50_000 * 1440, 2000)) == 208      # screening bolus
    assert round(plateau_kpa_x10(1_500_000, 50)) == 174            # high_rate_1500
    # the limit of the claim: the largest patent flow under the threshold, and the lowest
    # concentration at which max_flow_ng_day stays under it (below it only the volume flow
    # of the program keeps the line patent-quiet: 6.3 mL/h at most)
    line = MECH["line"]
    q_max_pl_ms = thr / 10 * line["compliance_pl_per_kpa"] / line["tau_ms"]
    assert 6.3 < q_max_pl_ms * 3600 / 1e6 < 6.4                    # mL/h
    c_min = lim.max_flow_ng_day / 86_400_000 / (q_max_pl_ms / 1e6)   # ng/ms over uL/ms = ug/mL
    assert 1310 < c_min < 1320 <= lim.max_conc_ug_ml


def test_the_twin_holds_that_plateau_below_the_threshold():
    """The arithmetic above, on the twin: max_flow_ng_day at 2000 ug/mL for 20 tau."""
    w = model.World(model.Mechanism.from_dict(MECH), model.Params(
        compliance_pl_per_kpa=MECH["line"]["compliance_pl_per_kpa"], tau_ms=MECH["line"]["tau_ms"]))
    w.enable(True)
    lim = HardLimits()
    q_pl_per_us = lim.max_flow_ng_day / lim.max_conc_ug_ml * 1e6 / 86_400_000_000
    period_us = round(w.pl_per_step / q_pl_per_us)
    w.queue_segment(20 * MECH["line"]["tau_ms"] * 1000 // period_us, period_us, model.DIR_INFUSE)
    top = 0
    for t_ms in range(10 * MECH["line"]["tau_ms"], 20 * MECH["line"]["tau_ms"], 7):
        w.advance_to(t_ms * 1000)
        top = max(top, w.pressure_adc_kpa_x10())
    assert abs(top - plateau_kpa_x10(lim.max_flow_ng_day, lim.max_conc_ug_ml)) < 15   # + one step's ripple
    assert top < SENSOR.occlusion_threshold_kpa_x10


# --- the twin reads what the real part reads ----------------------------------------------------
@given(st.integers(-2_000_000, 20_000_000))
def test_twin_reading_is_the_sensors_and_never_above_the_rail(pa):
    w = model.World(model.Mechanism.from_dict(MECH))
    w.line_pl = pa * w.params.compliance_pl_per_kpa // 1000
    r = w.pressure_adc_kpa_x10()
    assert SENSOR.floor_kpa_x10 <= r <= SENSOR.rail_kpa_x10
    pa = w.pressure_pa()
    if 0 <= pa <= DESC["range_pa"][1]:
        # within one 12-bit ADC count of the span (0.316 kPa x 10) plus the integer floor (1)
        count_kpa_x10 = DESC["range_pa"][1] / 100 / (
            (DESC["output_max_permille"] - DESC["output_min_permille"]) / 1000 * 4095)
        assert abs(r - pa / 100) <= 1 + count_kpa_x10 + 1e-9
    counts = sensorout.adc_counts(SENSOR, pa, 4095)
    assert r == SENSOR.kpa_x10_from_u16((counts * 65535 + 2047) // 4095)


def test_occluded_twin_rails_at_the_supply_up_to_the_stall():
    w = model.World(model.Mechanism.from_dict(MECH))
    w.enable(True)
    w.set_occluded(True)
    w.queue_segment(10 ** 5, 1000, model.DIR_INFUSE)
    w.advance_to(10 ** 8)
    assert not w.diag() and w.pressure_pa() > 800_000              # ~870 kPa: skips, DIAG silent
    assert w.pressure_adc_kpa_x10() == SENSOR.rail_kpa_x10


def test_old_world_files_with_the_retired_sensor_parameter_load():
    p = model.Params(**dict(model.Params().as_dict(), sensor_full_scale_kpa=2000))
    assert "sensor_full_scale_kpa" not in p.as_dict()
    with pytest.raises(ValueError, match="params.bogus: unknown parameter"):
        model.Params(bogus=1)


# --- detector: saturation and the fault bands -----------------------------------------------------
def test_a_railed_reading_for_the_confirm_time_is_an_occlusion():
    det = OcclusionDetector.for_sensor(SENSOR)
    s = A.AlarmSet()
    t = 0
    while not det.update(100, SENSOR.rail_kpa_x10, 0):
        t += 100
        assert t <= det.confirm_ms
    assert det.by_pressure and not det.sensor_fault
    det.report(s)
    assert s.is_active(A.ALARM_OCCLUSION) and not s.motor_allowed()


def test_just_under_the_threshold_is_not():
    det = OcclusionDetector.for_sensor(SENSOR)
    for _ in range(100):
        assert not det.update(100, SENSOR.occlusion_threshold_kpa_x10 - 1, 0)


def test_an_open_wire_raises_the_sensor_fault_alarm_and_holds_boluses():
    det = OcclusionDetector.for_sensor(SENSOR)
    s = A.AlarmSet()
    for _ in range(10):
        det.update(100, SENSOR.floor_kpa_x10, 0)          # 0 V at the ADC
    det.report(s)
    assert not det.sensor_fault                            # 1 s: not yet confirmed
    for _ in range(10):
        det.update(100, SENSOR.floor_kpa_x10, 0)
    det.report(s)
    assert det.sensor_fault and not det.active
    assert s.is_active(A.ALARM_SENSOR_FAULT) and s.motor_allowed() and not s.bolus_allowed()
    assert A.alarm_name(A.ALARM_SENSOR_FAULT) == "pressure-sensor-fault"
    for _ in range(25):
        det.update(100, 0, 0)
    det.report(s)
    assert not det.sensor_fault and s.is_active(A.ALARM_SENSOR_FAULT)   # latched until ack
    s.ack(A.ALARM_SENSOR_FAULT)
    assert not s.is_active(A.ALARM_SENSOR_FAULT)
    # a suction reading inside the band is no fault
    det = OcclusionDetector.for_sensor(SENSOR)
    for _ in range(50):
        det.update(100, SENSOR.fault_low_kpa_x10, 0)
    assert not det.sensor_fault
