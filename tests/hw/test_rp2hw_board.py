"""Rp2Hardware end to end on the host: fake machine/select pins, and rp2 backed by the PIO emulator.

The fakes implement only the names the stub check (test_pico_names) proved exist on a Pico.
They record every pin write in order, so the tests can check the safe state at boot (EN high
before anything else), the fault reaction (abort before release), and the wiring of each
input and output to the pin map.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pumphw import base, steppio
from tests.hw.pio_host import EmulatedStateMachine, assemble, pulses

REPO = Path(__file__).resolve().parents[2]
PINMAP = REPO / "hw" / "pinmap.json"
PM = json.loads(PINMAP.read_text())


class Clock:
    def __init__(self):
        self.now = 1000

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.now += ms


class FakeMachine(types.ModuleType):
    """machine module: Pin, ADC, PWM, WDT, UART, Timer, reset causes, IRQ masking."""

    PWRON_RESET = 1
    WDT_RESET = 3

    def __init__(self, clock: Clock):
        super().__init__("machine")
        self.log: list[tuple] = []
        self.pins: dict[int, "FakeMachine.Pin"] = {}
        self.adc_value = 6554
        self.cause = self.PWRON_RESET
        self.wdt: list[int] = []
        self.irq_disabled = 0
        self.timers: list = []
        self.tmc_alive = True
        self.mem32: dict[int, int] = {}
        self.tmc_regs: dict[int, int] = {2: 41}
        machine = self

        class Pin:
            IN, OUT = 0, 1
            PULL_UP, PULL_DOWN = 1, 2
            IRQ_FALLING, IRQ_RISING = 4, 8

            def __init__(self, gpio, mode=-1, pull=-1, value=None):
                self.id = gpio
                self.handler = None
                old = machine.pins.get(gpio)
                self.level = old.level if old else (1 if pull == Pin.PULL_UP else 0)
                machine.pins[gpio] = self
                machine.log.append(("init", gpio, mode, value))
                if value is not None:
                    self.value(value)

            def value(self, v=None):
                if v is None:
                    return self.level
                self.level = int(v)
                machine.log.append(("value", self.id, int(v)))
                return None

            def irq(self, handler=None, trigger=0, hard=False):
                self.handler = handler
                machine.log.append(("irq", self.id, trigger, hard))

            def drive(self, level):   # the outside world moves the line
                if level != self.level:
                    self.level = level
                    if self.handler:
                        self.handler(self)

        class ADC:
            def __init__(self, channel):
                machine.log.append(("adc", channel))

            def read_u16(self):
                return machine.adc_value

        class PWM:
            def __init__(self, pin):
                self.pin = pin
                self.duty = 0

            def freq(self, hz):
                machine.log.append(("pwm_freq", self.pin.id, hz))

            def duty_u16(self, d):
                self.duty = d
                machine.log.append(("pwm_duty", self.pin.id, d))

        class WDT:
            def __init__(self, timeout=5000):
                machine.wdt.append(timeout)

            def feed(self):
                machine.log.append(("wdt_feed",))

        class UART:
            """A TMC2209 on a single-wire bus: every byte echoes; valid writes count in IFCNT."""

            def __init__(self, uid, baudrate=0, tx=None, rx=None, timeout=None, timeout_char=None):
                assert timeout is not None and timeout_char is not None, "driver UART without a timeout"
                machine.log.append(("uart", uid, baudrate, tx.id, rx.id))
                self.rx = bytearray()

            def any(self):
                return len(self.rx)

            def read(self, n=None):
                n = len(self.rx) if n is None else n
                data, self.rx = bytes(self.rx[:n]), self.rx[n:]
                return data or None

            def write(self, data):
                from pumphw import rp2hw
                data = bytes(data)
                machine.log.append(("uart_write", data))
                self.rx += data
                if not machine.tmc_alive or rp2hw.tmc_crc8(data, len(data) - 1) != data[-1]:
                    return
                if len(data) == 8 and data[2] & 0x80:
                    machine.tmc_regs[data[2] & 0x7F] = int.from_bytes(data[3:7], "big")
                    machine.tmc_regs[2] = (machine.tmc_regs.get(2, 0) + 1) & 0xFF
                elif len(data) == 4:
                    reply = bytearray([0x05, 0xFF, data[2]])
                    reply += machine.tmc_regs.get(data[2], 0).to_bytes(4, "big")
                    reply.append(rp2hw.tmc_crc8(reply, 7))
                    self.rx += reply

        class Timer:
            PERIODIC = 1

            def __init__(self, tid=-1):
                self.callback = None
                machine.timers.append(self)

            def init(self, mode=PERIODIC, period=0, callback=None):
                self.callback = callback

        self.Pin, self.ADC, self.PWM, self.WDT, self.UART, self.Timer = Pin, ADC, PWM, WDT, UART, Timer

    def disable_irq(self):
        self.irq_disabled += 1
        return 7

    def enable_irq(self, state):
        assert state == 7
        self.irq_disabled -= 1

    def reset_cause(self):
        return self.cause

    def unique_id(self):
        return b"\xe6\x61\x41\x04\x03\x2b\x6a\x2c"


def fake_rp2(machine: FakeMachine) -> types.ModuleType:
    rp2 = types.ModuleType("rp2")
    rp2.PIO = types.SimpleNamespace(OUT_LOW=2, SHIFT_RIGHT=1)
    rp2.machines = []

    def asm_pio(**kw):
        assert kw == {"sideset_init": 2, "out_init": 2, "out_shiftdir": 1}
        return lambda f: assemble(f)

    def StateMachine(sm_id, prog, freq=-1, sideset_base=None, out_base=None):
        assert freq == steppio.SM_FREQ
        sm = EmulatedStateMachine(prog, step_pin=sideset_base.id, dir_pin=out_base.id)
        rp2.machines.append(sm)
        return sm

    rp2.asm_pio = asm_pio
    rp2.StateMachine = StateMachine
    return rp2


class Stdin:
    def __init__(self):
        self.data = bytearray()
        self.buffer = self

    def readinto(self, buf):
        if not self.data:
            return 0
        buf[0] = self.data.pop(0)
        return 1


@pytest.fixture
def rig(monkeypatch):
    from pumphw import rp2hw
    clock = Clock()
    machine = FakeMachine(clock)
    stdin = Stdin()
    select = types.ModuleType("select")
    select.POLLIN = 1

    class Poll:
        def register(self, obj, mask):
            assert obj is stdin

        def ipoll(self, timeout):
            return iter([(stdin, 1)] if stdin.data else [])

    select.poll = Poll
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "rp2", fake_rp2(machine))
    monkeypatch.setitem(sys.modules, "select", select)
    monkeypatch.setattr(rp2hw, "time", clock)
    monkeypatch.setattr(rp2hw, "MECHANISM_PATH", str(REPO / "hw" / "mechanism.json"))
    monkeypatch.setattr(sys, "stdin", stdin)
    hw = rp2hw.Rp2Hardware(str(PINMAP))
    return types.SimpleNamespace(hw=hw, machine=machine, clock=clock, stdin=stdin,
                                 sm=sys.modules["rp2"].machines[0], rp2hw=rp2hw)


def test_motor_is_released_before_anything_else(rig):
    first = rig.machine.log[0]
    assert first == ("init", PM["en_n"], rig.machine.Pin.OUT, 1)
    assert rig.machine.pins[PM["en_n"]].level == 1
    assert rig.machine.pins[PM["step"]].level == 0
    assert not rig.hw.stepper.enabled()


def test_steps_go_through_pio_on_the_mapped_pins(rig):
    st = rig.hw.stepper
    assert (rig.sm.step_pin, rig.sm.dir_pin) == (PM["step"], PM["dir"])
    with pytest.raises(RuntimeError, match="released"):
        st.queue(3, 100, base.DIR_INFUSE)
    st.enable(True)
    assert rig.machine.pins[PM["en_n"]].level == 0
    assert st.queue(3, 100, base.DIR_INFUSE)
    rig.sm.run_until_idle()
    assert len(pulses(rig.sm.edges, PM["step"])) == 3 == st.steps_done()


def test_release_aborts_queued_pulses_first(rig):
    st = rig.hw.stepper
    st.enable(True)
    st.queue(50, 100, base.DIR_INFUSE)
    rig.sm.run(1000)
    st.enable(False)
    made = len(pulses(rig.sm.edges, PM["step"]))
    assert 0 < made < 50 and st.steps_done() == made and st.pending() == 0
    assert rig.machine.pins[PM["en_n"]].level == 1
    rig.sm.run(100_000)
    assert len(pulses(rig.sm.edges, PM["step"])) == made       # nothing after release


def test_diag_end_stop_and_pressure(rig):
    m = rig.machine
    assert not rig.hw.stepper.stall()
    m.pins[PM["diag"]].drive(1)
    assert rig.hw.stepper.stall()
    assert not rig.hw.end_stop()
    m.pins[PM["end_stop_n"]].drive(0)
    assert rig.hw.end_stop()
    assert ("adc", PM["pressure_adc"]["channel"]) in m.log
    m.adc_value = 58982
    assert rig.hw.pressure_kpa_x10() == 1034


def test_bolus_button_irq_counts_and_main_loop_debounces(rig):
    m, clock = rig.machine, rig.clock
    pin = m.pins[PM["bolus_button_n"]]
    assert ("irq", PM["bolus_button_n"], m.Pin.IRQ_FALLING | m.Pin.IRQ_RISING, True) in m.log
    for level in (0, 1, 0, 1, 0):           # press with bounce
        pin.drive(level)
        clock.now += 1
    assert rig.hw.bolus_button_presses() == 1
    clock.now += 200
    for level in (1, 0, 1):                 # release with bounce
        pin.drive(level)
        clock.now += 1
    clock.now += 200
    assert rig.hw.bolus_button_presses() == 0
    assert m.irq_disabled == 0


def test_alarm_patterns_drive_buzzer_and_led(rig):
    alarms = pytest.importorskip("pumpcore.alarms")
    m = rig.machine
    assert ("pwm_freq", PM["buzzer"], rig.rp2hw.BUZZER_HZ) in m.log
    rig.hw.alarm_output(alarms.PATTERN_SOUND_HIGH)
    assert m.pins[PM["alarm_led"]].level == 1
    assert ("pwm_duty", PM["buzzer"], rig.rp2hw.BUZZER_DUTY_U16) in m.log
    timer = m.timers[0]
    rig.clock.now += 160                    # between beeps of the high-priority burst
    timer.callback(timer)
    assert m.log[-2] == ("pwm_duty", PM["buzzer"], 0)
    rig.hw.alarm_output(alarms.PATTERN_OFF)
    assert m.pins[PM["alarm_led"]].level == 0
    with pytest.raises(ValueError, match=r"alarm pattern = 99: must be 0\.\."):
        rig.hw.alarm_output(99)


def test_watchdog_reset_cause_id_and_serial(rig):
    m = rig.machine
    with pytest.raises(ValueError, match=r"watchdog timeout_ms = 9000: must be an integer 1\.\.8300"):
        rig.hw.watchdog_start(9000)
    rig.hw.watchdog_start(8300)
    rig.hw.watchdog_feed()
    assert m.wdt == [8300] and ("wdt_feed",) in m.log
    rig.hw.watchdog_stop()
    assert m.mem32 == {0x4005B000: 1 << 30}                 # CTRL.ENABLE cleared (atomic alias)
    feeds = m.log.count(("wdt_feed",))
    rig.hw.watchdog_feed()
    assert m.log.count(("wdt_feed",)) == feeds
    assert rig.hw.reset_cause() == base.RESET_POWER_ON
    m.cause = m.WDT_RESET
    assert rig.hw.reset_cause() == base.RESET_WATCHDOG
    m.cause = 99
    assert rig.hw.reset_cause() == base.RESET_UNKNOWN
    assert rig.hw.rig_id() == "e6614104032b6a2c"
    assert rig.hw.serial_read() == b""
    rig.hw.idle(0)
    rig.hw.idle(5)
    rig.stdin.data += b"~abc\n" * 60
    got = rig.hw.serial_read()
    assert got == (b"~abc\n" * 60)[:256]
    assert rig.hw.serial_read() == (b"~abc\n" * 60)[256:]
    assert rig.hw.flash_root == "/"


def test_driver_is_configured_over_uart_before_each_energise(rig):
    m = rig.machine
    assert not [e for e in m.log if e[0] == "uart"]           # construction: no UART traffic
    rig.hw.stepper.enable(True)
    uart = [e for e in m.log if e[0] == "uart"]
    assert uart == [("uart", PM["driver_uart"]["id"], PM["driver_uart"]["baud"],
                     PM["driver_uart"]["tx"], PM["driver_uart"]["rx"])]
    assert m.tmc_regs[0x6C] >> 24 & 0xF == rig.rp2hw.tmc_mres(64)   # MRES = 64 microsteps
    assert m.tmc_regs[0x00] & 0x80                                 # mstep_reg_select
    assert rig.hw.driver_configured is True and m.tmc_regs[2] == 43
    rig.hw.stepper.enable(False)
    m.tmc_regs = {2: 0}                                            # VM dropped: registers reset
    rig.hw.stepper.enable(True)
    assert m.tmc_regs[0x6C] >> 24 & 0xF == 2


def test_silent_driver_keeps_the_motor_released(rig):
    rig.machine.tmc_alive = False
    with pytest.raises(RuntimeError, match=r"did not confirm 64 microsteps.*motor stays released"):
        rig.hw.stepper.enable(True)
    assert rig.machine.pins[PM["en_n"]].level == 1
    assert not rig.hw.stepper.enabled() and rig.hw.driver_configured is False
