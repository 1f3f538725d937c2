"""The line pressure sensor, described once: hw/mechanism.json "pressure_sensor" -> transfer function.

Every part that turns line pressure into a reading or back uses this module with the same
description: pumphw.rp2hw (ADC read_u16 -> kPa x 10 on the Pico), pumpfw.app (the occlusion
threshold and the open-wire fault band), and the simulated rigs through pumpsim.sensorout (the
forward direction, line pressure -> ADC counts -> the reading: the virtual rig's twin and the
emulated Pico's ADC input; the device does not carry it, issue 16).

The description (all integers; "permille" = thousandths of the supply voltage):
    part                        text, e.g. "Honeywell ABPDANV015PGAA3"
    range_pa                    [Pmin, Pmax] of the transfer function, Pa (gauge)
    output_min_permille         output at Pmin (100 = 10 % of supply)
    output_max_permille         output at Pmax (900 = 90 % of supply)
    supply_mv, adc_ref_mv       sensor supply and ADC reference; they must be the same rail
                                (ratiometric reading: the supply cancels)
    open_wire_below_permille    an output below this is a sensor fault (open wire, short to GND)
    short_above_permille        an output above this is a short to the supply OR a pressure
                                above the range (the output rails at the supply there: the two
                                cannot be told apart, so it counts as over-pressure)
Outside the range the output keeps its slope until it rails at 0 V or at the supply; the
reading at the supply (`rail_kpa_x10`) is the most the sensor can ever report.

A mechanism.json without "pressure_sensor" (a deploy older than this module) means BOM_SENSOR,
the part in hw/bom.md: it is the only sensor this rig has been built with, and refusing to
boot over a file that predates the field would interrupt the infusion. A "pressure_sensor" that
is present but wrong raises SensorError naming the field (somebody described another sensor and
got it wrong: guessing would misread the line).

Occlusion threshold: pumpcore.sensorcheck._OCCLUSION_THRESHOLD_PERMILLE (850) of the range, i.e. 87.9 kPa for the BOM
sensor. Why 85 %: it is 15 % of full scale (15.5 kPa) below Pmax, about 8x the sensor's total
error band (+-2 % FSS), and 28 kPa below the rail, so it is reachable on the real sensor with
margin; it stays above the patent line's flow plateau of every program the examples use and of
the fastest flow the hard limits allow at 2000 ug/mL (57.9 kPa on the bench line: see
tests/hw/test_pressure_sensor.py for the arithmetic). Readings at the rail are above it.
"""
from pumpcore.fielderror import FieldError
from pumpcore.fixed import const
from pumpcore import call_once

U16_MAX = const(65535)    # full scale of read_u16

BOM_SENSOR = {
    "part": "Honeywell ABPDANV015PGAA3",
    "range_pa": [0, 103421],            # 0..15 psi gauge
    "output_min_permille": 100,
    "output_max_permille": 900,
    "supply_mv": 3300,
    "adc_ref_mv": 3300,
    "open_wire_below_permille": 60,     # -5.2 kPa
    "short_above_permille": 950,        # 109.9 kPa
}

class SensorError(FieldError):
    """A pressure-sensor description that is missing a field or out of range."""


class PressureSensor:
    """One pressure sensor from its description (a dict as in hw/mechanism.json
    "pressure_sensor"; None: BOM_SENSOR). `where` prefixes field names in errors."""

    def __init__(self, desc=None, where="mechanism.pressure_sensor"):
        if desc is None:
            desc = BOM_SENSOR
        from pumpcore import sensorcheck      # checked and derived there, let go after (issue 16)
        call_once(sensorcheck, "build", self, desc, where)

    @staticmethod
    def u16_at_permille(permille):
        """read_u16 value of an output at `permille` of the supply (rounded)."""
        return (U16_MAX * permille + 500) // 1000

    def kpa_x10_from_u16(self, raw):
        """Gauge pressure in kPa x 10 (floor) from a read_u16 value 0..65535. Allocation-free:
        small ints only (|(2 raw - offset) * mul| < 2**30)."""
        return self._min_x10 + (2 * raw - self._off2) * self._mul // self._div


def sensor_from_mechanism(mech):
    """The sensor of a parsed mechanism.json: its "pressure_sensor", or BOM_SENSOR when the
    file predates that field (see the module docstring). SensorError if present but wrong."""
    if not isinstance(mech, dict):
        raise SensorError("mechanism", repr(mech), "must be a JSON object")
    return PressureSensor(mech.get("pressure_sensor"))


def load_sensor(path):
    """The sensor described in a mechanism.json file; BOM_SENSOR if the file does not exist.
    SensorError if the file is not JSON or its description is wrong."""
    import json
    try:
        f = open(path)
    except OSError:
        return PressureSensor(None)
    try:
        try:
            mech = json.load(f)
        except ValueError as exc:
            raise SensorError(path, "unreadable", "not valid JSON (%s)" % (exc,))
    finally:
        f.close()
    return sensor_from_mechanism(mech)
