"""Pin map checks and the hardware layer's pure helpers: pressure transfer, TMC2209 UART, button, alarms."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumphw import pinmap, rp2hw

REPO = Path(__file__).resolve().parents[2]
RAW = json.loads((REPO / "hw" / "pinmap.json").read_text())


def test_the_repository_pin_map_loads():
    pm = pinmap.load_pinmap(str(REPO / "hw" / "pinmap.json"))
    assert (pm.step, pm.dir, pm.en_n, pm.diag) == (RAW["step"], RAW["dir"], RAW["en_n"], RAW["diag"])
    assert pm.adc_channel == RAW["pressure_adc"]["channel"]
    gpios = [g for _, g, _ in pm.rows()]
    assert len(gpios) == len(set(gpios))


def _with(**changes):
    raw = json.loads(json.dumps(RAW))
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__")
            if value is None:
                del raw[outer][inner]
            else:
                raw[outer][inner] = value
        elif value is None:
            del raw[key]
        else:
            raw[key] = value
    return json.dumps(raw)


@pytest.mark.parametrize("text, key, value, limit", [
    (_with(step=None), "step", "missing", "required"),
    (_with(step=30), "step", "30", "0..29"),
    (_with(step="2"), "step", "'2'", "integer"),
    (_with(step=True), "step", "True", "integer"),
    (_with(diag=2), "diag", "2", "already used by step"),
    (_with(stepp=7), "stepp", "7", "unknown key"),
    (_with(driver_uart__tx=6), "driver_uart.tx", "6", "UART1 TX is only on GPIO"),
    (_with(driver_uart__rx=None), "driver_uart.rx", "missing", "required"),
    (_with(driver_uart__id=2), "driver_uart.id", "2", "0 or 1"),
    (_with(driver_uart__baud=1200), "driver_uart.baud", "1200", "9600..500000"),
    (_with(pressure_adc__gpio=22), "pressure_adc.gpio", "22", "ADC inputs are GPIO 26"),
    (_with(pressure_adc__channel=1), "pressure_adc.channel", "1", "GPIO 26 is ADC channel 0"),
    ("{not json", "(file)", "not JSON", ""),
    ("[1, 2]", "(top level)", "list", "JSON object"),
])
def test_bad_pin_maps_name_key_value_and_limit(text, key, value, limit):
    with pytest.raises(pinmap.PinMapError) as err:
        pinmap.parse_pinmap(text)
    assert err.value.key == key
    msg = str(err.value)
    assert msg.startswith("pinmap.%s = %s" % (key, value))
    assert limit in msg


def test_missing_file_says_what_to_deploy(tmp_path):
    with pytest.raises(pinmap.PinMapError) as err:
        pinmap.load_pinmap(str(tmp_path / "pinmap.json"))
    assert "hw/pinmap.json" in str(err.value)


def test_comment_keys_are_allowed_and_uart_is_optional():
    raw = json.loads(_with(driver_uart=None))
    raw["_note"] = "bench rig 2"
    pm = pinmap.PinMap(raw)
    assert pm.uart_id == -1


# --- pressure: tests/hw/test_pressure_sensor.py (pumpcore.pressure) ---------------------------


# --- TMC2209 UART ---------------------------------------------------------------------------------
def _crc_reference(data: bytes) -> int:
    """CRC-8 (poly 0x07, MSB first) over each byte with its bits reversed: the datasheet's
    LSB-first CRC restated the textbook way."""
    crc = 0
    for b in data:
        b = int("{:08b}".format(b)[::-1], 2)
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@given(st.binary(min_size=1, max_size=7))
def test_tmc_crc_matches_reference(data):
    assert rp2hw.tmc_crc8(data, len(data)) == _crc_reference(data)


def test_tmc_datagrams():
    d = rp2hw.tmc_write_datagram(0, rp2hw.TMC_REG_CHOPCONF, 0x12345678)
    assert d[:7] == bytes([0x05, 0x00, 0xEC, 0x12, 0x34, 0x56, 0x78])
    assert d[7] == _crc_reference(d[:7])
    r = rp2hw.tmc_read_request(3, rp2hw.TMC_REG_IFCNT)
    assert r[:3] == bytes([0x05, 0x03, 0x02]) and r[3] == _crc_reference(r[:3])
    reply = bytearray([0x05, 0xFF, 0x02, 0, 0, 0, 7, 0])
    reply[7] = _crc_reference(bytes(reply[:7]))
    assert rp2hw.tmc_parse_reply(bytes(reply), 0x02) == 7
    reply[6] = 8
    assert rp2hw.tmc_parse_reply(bytes(reply), 0x02) == -1        # CRC no longer matches
    assert rp2hw.tmc_parse_reply(b"", 0x02) == -1


def test_microstep_resolution_field():
    assert rp2hw.tmc_mres(256) == 0 and rp2hw.tmc_mres(64) == 2 and rp2hw.tmc_mres(1) == 8
    mech = json.loads((REPO / "hw" / "mechanism.json").read_text())
    assert rp2hw.tmc_mres(mech["microsteps"]) == 2
    with pytest.raises(ValueError, match=r"microsteps = 48: must be a power of two 1..256"):
        rp2hw.tmc_mres(48)
    assert (rp2hw.TMC_CHOPCONF_BASE | (2 << 24)) >> 24 & 0xF == 2


# --- bolus button ---------------------------------------------------------------------------------
def _ticks_diff(a, b):
    return a - b


class Line:
    """An active-low button line whose edges go to the debouncer's IRQ half."""

    def __init__(self, deb):
        self.level = 1
        self.deb = deb

    def set(self, t, level):
        if level != self.level:
            self.level = level
            self.deb.edge(t)


def _run(events, poll_every, end, start_level=1):
    """events: sorted (t_ms, level). Returns presses reported by polling every poll_every ms."""
    deb = rp2hw.EdgeDebouncer(start_level, 0, _ticks_diff)
    line = Line(deb)
    line.level = start_level
    presses = 0
    i = 0
    for t in range(0, end, 1):
        while i < len(events) and events[i][0] <= t:
            line.set(*events[i])
            i += 1
        if t % poll_every == 0 or t == end - 1:
            presses += deb.update(deb.transitions, deb.edge_ms, t, line.level)
    return presses


def _bouncy(t, level, bounces):
    out = []
    for k in range(bounces):
        out.append((t + k, level if k % 2 == 0 else 1 - level))
    out.append((t + bounces, level))
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(60, 400), st.integers(60, 400), st.integers(0, 6), st.integers(0, 6)),
                min_size=1, max_size=5),
       st.integers(1, 700))
def test_each_bouncy_press_counts_once_whatever_the_poll_rate(presses, poll_every):
    events = []
    t = 100
    for gap, hold, b_down, b_up in presses:
        events += _bouncy(t, 0, b_down)
        t += hold
        events += _bouncy(t, 1, b_up)
        t += gap
    assert _run(events, poll_every, t + 200) == len(presses)


def test_tap_shorter_than_the_debounce_time_is_one_press():
    assert _run(_bouncy(1000, 0, 3) + _bouncy(1030, 1, 3), 10, 3000) == 1
    assert _run(_bouncy(1000, 0, 3) + _bouncy(1030, 1, 3), 5000, 3000) == 1


def test_press_inside_the_release_bounce_still_counts():
    events = _bouncy(1000, 0, 2) + _bouncy(1200, 1, 2) + _bouncy(1230, 0, 2) + _bouncy(1400, 1, 2)
    assert _run(events, 10, 3000) == 2


def test_held_at_boot_is_not_a_press_and_silence_is_none():
    assert _run([], 5, 1000, start_level=0) == 0
    assert _run([(500, 1), (900, 0), (1000, 1)], 5, 2000, start_level=0) == 1
    assert _run([], 5, 1000) == 0


# --- alarm patterns -------------------------------------------------------------------------------
def _count_beeps(spec, window_ms):
    beeps = 0
    prev = 0
    for t in range(window_ms):
        b, _ = rp2hw.pattern_levels(spec, t)
        beeps += b and not prev
        prev = b
    return beeps


def test_pattern_levels_follow_the_spec():
    high = (150, 100, 5, 2500, "red", 500)
    assert _count_beeps(high, 2500) == 5
    assert _count_beeps(high, 5000) == 10
    once = (200, 200, 3, 0, "yellow", 1000)
    assert _count_beeps(once, 20_000) == 3
    assert rp2hw.pattern_levels(high, 0) == (1, 1)
    assert rp2hw.pattern_levels(high, 260)[1] == 0                 # LED off in 2nd half of 500 ms
    assert rp2hw.pattern_levels((0, 0, 0, 0, "off", 0), 123) == (0, 0)
    assert rp2hw.pattern_levels((0, 0, 0, 0, "yellow", 0), 999) == (0, 1)


def test_every_alarm_pattern_of_the_core_is_playable():
    alarms = pytest.importorskip("pumpcore.alarms")
    for spec in alarms.PATTERN_SPEC:
        for t in range(0, 6000, 7):
            b, led = rp2hw.pattern_levels(spec, t)
            assert b in (0, 1) and led in (0, 1)


def test_screw_encoder_pins_are_checked():
    pm = pinmap.PinMap(RAW)
    assert (pm.i2c_id, pm.i2c_sda, pm.i2c_scl, pm.i2c_freq) == (0, 16, 17, 400000)
    for patch, needle in (({"sda": 17, "scl": 16}, "I2C0 SDA is only on GPIO"),
                          ({"freq": 5}, "screw_encoder.freq"),
                          ({"id": 2}, "must be 0 or 1"),
                          ({"sda": 2}, "I2C0 SDA is only on GPIO"),
                          ({"sda": 4}, "already used by en_n")):
        raw = json.loads(json.dumps(RAW))
        raw["screw_encoder"].update(patch)
        with pytest.raises(pinmap.PinMapError, match=needle):
            pinmap.PinMap(raw)
    raw = json.loads(json.dumps(RAW))
    del raw["screw_encoder"]
    assert pinmap.PinMap(raw).i2c_id == -1        # optional: no encoder, screw_angle() is -1
