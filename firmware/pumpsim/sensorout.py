"""The pressure sensor's forward direction: line pressure -> what the ADC reads -> the reading.

The firmware only inverts the transfer function (pumpcore.pressure.PressureSensor: read_u16 ->
kPa x 10); the simulated rigs need it forwards, from the same description: the virtual rig's
twin (pumpsim.model) and the emulated Pico's ADC input (pumpctl.rigs.emu.physics). It is here,
beside the one physical model, so the Pico does not carry it (issue 16). `sensor` is a
pumpcore.pressure.PressureSensor; pressures in Pa (gauge), readings in kPa x 10.
"""
from pumpcore.pressure import U16_MAX


def adc_counts(sensor, pressure_pa, adc_max):
    """What an ADC with full scale `adc_max` (its reference = the sensor supply) reads for a
    line pressure in Pa: the transfer function continued outside the range, railing at
    0 V and at the supply (rounded half up, clamped to 0..adc_max). Host and twin only
    (products exceed small ints)."""
    span = sensor.max_pa - sensor.min_pa
    lo = sensor.output_min_permille
    num = adc_max * (lo * span + (sensor.output_max_permille - lo) * (pressure_pa - sensor.min_pa))
    den = 1000 * span
    c = (2 * num + den) // (2 * den)
    if c < 0:
        return 0
    if c > adc_max:
        return adc_max
    return c


def reading_kpa_x10(sensor, pressure_pa, adc_bits=12):
    """The reading the firmware gets for a line pressure: ADC counts of an adc_bits ADC
    scaled to read_u16 (0..65535), then kpa_x10_from_u16. Never above rail_kpa_x10."""
    adc_max = (1 << adc_bits) - 1
    c = adc_counts(sensor, pressure_pa, adc_max)
    return sensor.kpa_x10_from_u16((c * U16_MAX + adc_max // 2) // adc_max)


def describe(sensor):
    """One line for logs and docs."""
    return ("%s: %d..%d Pa = %d..%d %% of %d mV; reads %d..%d kPa x 10 (rails), fault below %d, "
            "occlusion at %d" % (sensor.part, sensor.min_pa, sensor.max_pa, sensor.output_min_permille // 10,
                                 sensor.output_max_permille // 10, sensor.supply_mv, sensor.floor_kpa_x10,
                                 sensor.rail_kpa_x10, sensor.fault_low_kpa_x10,
                                 sensor.occlusion_threshold_kpa_x10))
