"""pumphw.rp2hw on the official RP2040 image, judged only by what its pins and ADC do.

The firmware's hardware layer (and the modules it imports) is copied as source to the chip's
flash, exactly as deploy would; each test drives one `Rp2Hardware` instance from the REPL and
reads the rig's side of the wires: EN level, STEP edges with DIR, DIAG, end stop, bouncy button,
pressure on the ADC, buzzer and LED, the watchdog.
"""
from __future__ import annotations

import json

import pytest

from pumpctl import devicecode
from pumpctl.rigs.emu.rigdir import REPO
from pumpctl.rigs.emu.rig import EmuRig

from .conftest import copy_to_chip, mpremote

pytestmark = pytest.mark.emu

# what rp2hw imports, found from the imports as deploy finds them (a hand-kept list went stale
# twice: screwenc and detect, then sensorcheck, each an ImportError on the chip)
FILES = devicecode.device_imports(REPO / "firmware", "rp2", ("pumphw/rp2hw.py", "pumphw/__init__.py"))[0]
HW = ("import time\n"
      "from pumphw import base\n"
      "if 'hw' not in globals():\n"
      "    from pumphw.rp2hw import Rp2Hardware\n"
      "    hw = Rp2Hardware()\n"
      "def run_out():\n"
      "    while hw.stepper.busy():\n"
      "        time.sleep_ms(1)\n")


@pytest.fixture(scope="module")
def chip(emu: EmuRig, tmp_path_factory: pytest.TempPathFactory) -> EmuRig:
    # rp2040py 0.3.6 hangs in machine.UART() construction on the v1.22.2 image, so the driver's
    # optional UART configuration is left out of the chip's pin map (rp2hw then skips it).
    pinmap = json.loads((REPO / "hw" / "pinmap.json").read_text())
    pinmap.pop("driver_uart", None)
    local_pinmap = tmp_path_factory.mktemp("pinmap") / "pinmap.json"
    local_pinmap.write_text(json.dumps(pinmap))
    files = {f: REPO / "firmware" / f for f in FILES}
    files.update({"pinmap.json": local_pinmap, "mechanism.json": REPO / "hw" / "mechanism.json"})
    copy_to_chip(emu.port, files)
    return emu


def _hw(chip: EmuRig, code: str) -> list[str]:
    return mpremote(chip.port, "exec", HW + code).split()


def test_construction_keeps_the_motor_released_and_step_quiet(chip: EmuRig) -> None:
    en_before = len(chip.request("en_log")["en_log"])
    edges_before = chip.request("edges", since=0)["count"]
    assert _hw(chip, "print(hw.stepper.enabled())") == ["False"]
    assert not any(on for _t, on in chip.request("en_log")["en_log"][en_before:])
    assert chip.request("edges", since=0)["count"] == edges_before
    assert chip.request("status")["enabled"] is False


def test_queued_steps_reach_the_pin_and_match_steps_done(chip: EmuRig) -> None:
    since = chip.request("edges", since=0)["count"]
    out = _hw(chip, "s0 = hw.stepper.steps_done()\nhw.stepper.enable(True)\n"
                    "hw.stepper.queue(50, 100, base.DIR_INFUSE)\nhw.stepper.queue(20, 40, base.DIR_RETRACT)\n"
                    "run_out()\nhw.stepper.enable(False)\nprint(hw.stepper.steps_done() - s0)")
    edges = chip.request("edges", since=since)
    assert int(out[-1]) == 70 == len(edges["t_ns"])
    assert edges["dir"] == [1] * 50 + [0] * 20 and all(edges["en"])


def test_release_mid_segment_stops_pulses_before_en_goes_high(chip: EmuRig) -> None:
    since = chip.request("edges", since=0)["count"]
    out = _hw(chip, "s0 = hw.stepper.steps_done()\nhw.stepper.enable(True)\n"
                    "hw.stepper.queue(1000, 100, base.DIR_INFUSE)\ntime.sleep_ms(15)\n"
                    "hw.stepper.enable(False)\ntime.sleep_ms(5)\n"
                    "print(hw.stepper.steps_done() - s0, hw.stepper.pending())\n"
                    "try:\n hw.stepper.queue(5, 100, 1)\nexcept RuntimeError as e:\n print('refused')")
    edges = chip.request("edges", since=since)
    made = int(out[0])
    assert out[1:] == ["0", "refused"]
    assert len(edges["t_ns"]) == made and 50 <= made <= 200
    assert all(edges["en"]), "a STEP pulse reached the driver after EN released it"
    assert chip.request("status")["enabled"] is False


def test_diag_end_stop_and_pressure_read_through_the_layer(chip: EmuRig) -> None:
    chip.request("stall", on=True)
    chip.request("empty", on=True)
    chip.request("pressure", kpa_x10=800)
    chip.request("wait", ms=2)
    stall, end, kpa = _hw(chip, "print(hw.stepper.stall(), hw.end_stop(), hw.pressure_kpa_x10())")
    assert (stall, end) == ("True", "True") and abs(int(kpa) - 800) <= 1
    chip.request("stall", on=False)
    chip.request("empty", on=False)
    chip.request("pressure", kpa_x10=None)
    chip.request("wait", ms=2)
    # released: the pins show the model's own line pressure again (earlier tests in this chip
    # session pumped into the line, so it need not be zero); with no steps it only decays, so
    # the reading lies between the model's pressure just before and just after it
    before = chip.request("status")["inputs"]["pressure_kpa_x10"]
    stall, end, kpa = _hw(chip, "print(hw.stepper.stall(), hw.end_stop(), hw.pressure_kpa_x10())")
    after = chip.request("status")["inputs"]["pressure_kpa_x10"]
    quantum = 5   # one ADC count of the ABP sensor transfer, kPa x 10, with margin
    rail = 1163   # rp2hw.pressure_kpa_x10_from_u16(65535): the 15 psi sensor's output at 3.3 V
    assert (stall, end) == ("False", "False"), (stall, end)
    assert min(after, rail) - quantum <= int(kpa) <= min(before, rail) + quantum, (before, kpa, after)


def _model_angle(chip: EmuRig) -> int:
    return chip.request("status")["inputs"]["physics"]["screw_angle"]


def test_screw_encoder_reads_the_model_through_i2c_and_sees_jam_and_slip(chip: EmuRig) -> None:
    """The AS5600 on I2C0 GP16/17 (hw/pinmap.json) answers rp2hw.screw_angle() on the chip's own
    I2C block, at the bus's real speed; the angle follows the screw, not the motor: 640
    microsteps (1/20 rev of 12800) move it by 204-205 counts of 4096; under a jam or a slip the
    STEP edges still reach the pin and the angle stands still. No magnet: -1."""
    enc0 = chip.request("status")["inputs"]["encoder"]
    assert enc0 is not None, "the rig wired no AS5600 (screw_encoder missing from the pin map?)"
    out = _hw(chip, "t = time.ticks_us()\na0 = hw.screw_angle()\nprint(a0, time.ticks_diff(time.ticks_us(), t))")
    a0, took_us = int(out[0]), int(out[1])
    assert a0 == _model_angle(chip) and 0 <= a0 < 4096
    # pointer write + repeated start + 3 bytes at 400 kHz: ~57 bit times of 2.5 us on the wire
    assert took_us >= 120, f"an I2C read took {took_us} us: the bus time is not modelled"
    enc1 = chip.request("status")["inputs"]["encoder"]
    assert enc1["reads"] == enc0["reads"] + 1 and enc1["naks"] == enc0["naks"]

    def move(steps: int) -> tuple[int, int]:
        since = chip.request("edges", since=0)["count"]
        o = _hw(chip, "hw.stepper.enable(True)\nhw.stepper.queue(%d, 50, base.DIR_INFUSE)\nrun_out()\n"
                      "hw.stepper.enable(False)\nprint(hw.screw_angle())" % steps)
        return int(o[-1]), chip.request("edges", since=since)["count"] - since

    a1, edges = move(640)
    assert edges == 640 and (a1 - a0) % 4096 in (204, 205) and a1 == _model_angle(chip)
    for fault in ("jam", "slip"):
        chip.request(fault, on=True)
        a2, edges = move(320)
        chip.request(fault, on=False)
        assert edges == 320 and a2 == a1, f"{fault}: the STEP edges reached the pin and the screw did not turn"
    chip.request("magnet", on=False)
    assert _hw(chip, "print(hw.screw_angle())") == ["-1"]
    chip.request("magnet", on=True)
    assert int(_hw(chip, "print(hw.screw_angle())")[0]) == a1


def test_one_bouncy_press_is_one_press(chip: EmuRig) -> None:
    _hw(chip, "hw.bolus_button_presses()")
    # held down for 2 s: the REPL exec below runs at real time at most (the rig's ceiling), so
    # a host taking up to ~2 s for it still finds the button down (a 300 ms hold was
    # over before a loaded host's exec reached the chip: `wait ms = -449`)
    reply = chip.request("press", count=1, hold_ms=2_000, gap_ms=10)
    chip.request("wait", ms=70)            # held down, bounce settled for > 50 ms
    during = _hw(chip, "print(hw.bolus_button_presses())\n"
                       "d = hw._debounce\n"
                       "print(d.transitions, d._seen, d._adjust, hw._button.value(), "
                       "time.ticks_diff(time.ticks_ms(), d.edge_ms))")
    detail = during[1:]
    during = during[:1]
    left_ms = (reply["settled_ns"] - chip.request("status")["t_ns"]) // 1_000_000
    assert left_ms > 0, "the exec outlasted a 2 s hold: the button was up before it looked"
    chip.request("wait", ms=left_ms + 60)
    after = _hw(chip, "print(hw.bolus_button_presses(), hw.bolus_button_presses())")
    assert during == ["1"] and after == ["0", "0"], (during, detail, after)
    # press and release between two polls: still exactly one
    reply = chip.request("press", count=1, hold_ms=80, gap_ms=10)
    chip.request("wait", ms=(reply["settled_ns"] - reply["t_ns"]) // 1_000_000 + 60)
    assert _hw(chip, "print(hw.bolus_button_presses(), hw.bolus_button_presses())") == ["1", "0"]


def test_alarm_pattern_drives_buzzer_and_led(chip: EmuRig) -> None:
    before = chip.request("outputs")["outputs"]
    _hw(chip, "from pumpcore import alarms\nhw.alarm_output(alarms.PATTERN_SOUND_CRITICAL)")
    chip.request("wait", ms=400)
    _hw(chip, "hw.alarm_output(alarms.PATTERN_OFF)")
    chip.request("wait", ms=30)
    after = chip.request("outputs")["outputs"]
    beeps = [e for e in after["buzzer"][len(before["buzzer"]):]]
    led = after["alarm_led"][len(before["alarm_led"]):]
    assert len(beeps) >= 3, f"critical pattern: {len(beeps)} beeps in 400 ms"
    gaps = [(b[0] - a[0]) / 1e6 for a, b in zip(beeps, beeps[1:])]
    assert all(140 <= g <= 200 for g in gaps[:2]), gaps  # 100 ms on + 60 ms off, 20 ms timer
    assert len(led) >= 3 and led[-1][1] == 0


def test_unfed_watchdog_resets_and_the_layer_reports_it(chip: EmuRig) -> None:
    resets = len(chip.request("status")["chip_resets"])
    _hw(chip, "hw.watchdog_start(100)")
    chip.request("wait", ms=150)
    status = chip.request("status")
    assert len(status["chip_resets"]) == resets + 1 and status["enabled"] is False
    # a new boot: build the layer again (the REPL's globals are gone) and ask why it started
    out = mpremote(chip.port, "exec", "from pumphw.rp2hw import Rp2Hardware\nfrom pumphw import base\n"
                                      "hw = Rp2Hardware()\nprint(hw.reset_cause() == base.RESET_WATCHDOG)")
    assert out.split()[-1] == "True"
