"""The checks of a pressure-sensor description (pumpcore.pressure.PressureSensor), with their
SensorError texts, and the derivation of the sensor's fields and integer transfer function
from it (`build`: the whole of PressureSensor.__init__).

Its own module for the RP2040's RAM (issue 16): a sensor is described once, when the hardware
layer and the detectors are built at boot, and on v1.22.2 this code and its texts would sit in
the heap for the whole run; PressureSensor loads it for the call and lets it go after
(`pumpcore.call_once`).
"""
from pumpcore.fixed import SMALL_INT_MAX, const
from pumpcore.pressure import U16_MAX, SensorError

_OCCLUSION_THRESHOLD_PERMILLE = const(850)
_V_MAX = const(131070)      # |2 * raw - offset| never exceeds 2 * 65535


# (key, lo, hi) of the integer fields; range_pa is checked on its own
_INT_FIELDS = (
    ("output_min_permille", 0, 500),
    ("output_max_permille", 500, 1000),
    ("supply_mv", 1000, 5500),
    ("adc_ref_mv", 1000, 5500),
    ("open_wire_below_permille", 0, 1000),
    ("short_above_permille", 0, 1000),
)
_KEYS = ("part", "range_pa") + tuple(f[0] for f in _INT_FIELDS)




def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check(desc, where):
    """(part, range_pa, {integer field: value}) of a valid description `desc`; SensorError
    naming the field (prefixed by `where`), its value and the rule for the first wrong one."""
    if not isinstance(desc, dict):
        raise SensorError(where, repr(desc), "must be an object with the fields %s" % ", ".join(_KEYS))
    for k in desc:
        if k not in _KEYS and not (isinstance(k, str) and k.startswith("_")):
            raise SensorError(where + "." + str(k), repr(desc[k]), "unknown field (known: %s)" % ", ".join(_KEYS))
    for k in _KEYS:
        if k not in desc:
            raise SensorError(where + "." + k, "missing", "required to read the line pressure")
    part = desc["part"]
    if not isinstance(part, str) or not part:
        raise SensorError(where + ".part", repr(part), "must be a non-empty text")
    rng = desc["range_pa"]
    if (not isinstance(rng, (list, tuple)) or len(rng) != 2 or not _is_int(rng[0])
            or not _is_int(rng[1])):
        raise SensorError(where + ".range_pa", repr(rng), "must be [Pmin, Pmax] in Pa (integers)")
    if rng[0] < -1000000 or rng[1] > 10000000 or rng[1] - rng[0] < 1000:
        raise SensorError(where + ".range_pa", repr(list(rng)),
                          "need -1000000 <= Pmin, Pmax <= 10000000 and Pmax - Pmin >= 1000 Pa")
    vals = {}
    for k, lo, hi in _INT_FIELDS:
        v = desc[k]
        if not _is_int(v) or v < lo or v > hi:
            raise SensorError(where + "." + k, repr(v), "must be an integer in %d..%d" % (lo, hi))
        vals[k] = v
    lo_pm = vals["output_min_permille"]
    hi_pm = vals["output_max_permille"]
    if hi_pm - lo_pm < 100:
        raise SensorError(where + ".output_max_permille", hi_pm,
                          "must be at least 100 above output_min_permille %d" % lo_pm)
    if vals["adc_ref_mv"] != vals["supply_mv"]:
        raise SensorError(where + ".adc_ref_mv", vals["adc_ref_mv"],
                          "must equal supply_mv %d (the reading is ratiometric: the sensor must "
                          "run from the ADC reference rail)" % vals["supply_mv"])
    if vals["open_wire_below_permille"] >= lo_pm:
        raise SensorError(where + ".open_wire_below_permille", vals["open_wire_below_permille"],
                          "must be below output_min_permille %d (else Pmin reads as a fault)" % lo_pm)
    if vals["short_above_permille"] <= hi_pm:
        raise SensorError(where + ".short_above_permille", vals["short_above_permille"],
                          "must be above output_max_permille %d (else Pmax reads as a fault)" % hi_pm)
    return part, rng, vals


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def build(sensor, desc, where):
    """PressureSensor.__init__: check `desc` (`where` prefixes field names in errors), then set
    the sensor's fields and the integer transfer function its readings use."""
    part, rng, vals = check(desc, where)
    lo_pm = vals["output_min_permille"]
    hi_pm = vals["output_max_permille"]
    sensor.part = part
    sensor.min_pa = rng[0]
    sensor.max_pa = rng[1]
    sensor.output_min_permille = lo_pm
    sensor.output_max_permille = hi_pm
    sensor.supply_mv = vals["supply_mv"]
    sensor.adc_ref_mv = vals["adc_ref_mv"]
    sensor.open_wire_below_permille = vals["open_wire_below_permille"]
    sensor.short_above_permille = vals["short_above_permille"]
    # read_u16 -> kPa x 10:  P = Pmin + (r - lo) / (hi - lo) * (Pmax - Pmin), r = raw / 65535;
    # in integers  P[kPa x 10] = Pmin/100 + (2 raw - 131.07 lo) * 5 (Pmax - Pmin) / (65535 (hi - lo)),
    # the fraction reduced (and, if still too large, rounded) so |v * mul| < 2**30
    sensor._off2 = (2 * U16_MAX * lo_pm + 500) // 1000
    mul = 5 * (sensor.max_pa - sensor.min_pa)
    div = U16_MAX * (hi_pm - lo_pm)
    g = _gcd(mul, div)
    mul //= g
    div //= g
    while mul * _V_MAX > SMALL_INT_MAX:
        mul = (mul + 5) // 10
        div = (div + 5) // 10
        g = _gcd(mul, div)
        mul //= g
        div //= g
    sensor._mul = mul
    sensor._div = div
    sensor._min_x10 = sensor.min_pa // 100
    sensor.full_scale_kpa_x10 = (sensor.max_pa + 50) // 100
    sensor.span_kpa_x10 = (sensor.max_pa - sensor.min_pa + 50) // 100
    sensor.rail_kpa_x10 = sensor.kpa_x10_from_u16(U16_MAX)       # output at the supply
    sensor.floor_kpa_x10 = sensor.kpa_x10_from_u16(0)            # output at 0 V
    sensor.fault_low_kpa_x10 = sensor.kpa_x10_from_u16(
        sensor.u16_at_permille(sensor.open_wire_below_permille))
    sensor.fault_high_kpa_x10 = sensor.kpa_x10_from_u16(
        sensor.u16_at_permille(sensor.short_above_permille))
    sensor.occlusion_threshold_kpa_x10 = (
        sensor.min_pa + (sensor.max_pa - sensor.min_pa) * _OCCLUSION_THRESHOLD_PERMILLE // 1000) // 100
