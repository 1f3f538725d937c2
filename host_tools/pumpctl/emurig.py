"""The emulated Pico rig: the MicroPython RP2040 image (official, or self-built by opt-in) in rp2040py, wired to the pump.

A supervisor process (`python -m pumpctl.emurig serve`, started by `pumpctl emu start`) boots the
official image in the cycle-level RP2040 emulator, serves its USB-CDC console on a pseudo-
terminal that stays the same across resets and power cuts (the port to give `pumpctl` and
`mpremote`), keeps the chip's littlefs flash in `<rig dir>/flash.img`, and wires the pins of
`hw/pinmap.json` to the pump: STEP/DIR/EN into a driver model (every STEP edge is counted with
its DIR level, EN level and emulated time), DIAG out of it, the reservoir end stop, the patient
bolus button (pressed with contact bounce), the pressure sensor on its ADC channel, buzzer and
LEDs observed. Physics comes from `pumpsim.model` through `emuphys.EmuPhysics`.

Faults and observations go through a side channel (JSON lines on the UNIX socket
`<rig dir>/ctl.sock`), never through the pump's own serial protocol. Host code uses `EmuRig`.
Times on the side channel are emulated: `t_ns` is nanoseconds of emulated chip time since the
supervisor's first boot (the clock restarts at 0 for each boot; `boot_ns` says where).
"""
from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .virtualrig import EMU_RIG_NAME, process_alive, pumpctl_home
from .emuimage import ImageInfo, check_image, find_image
from .errors import PortError, RigTimeout, UsageError

REPO = Path(__file__).resolve().parents[2]
PINMAP_PATH = REPO / "hw" / "pinmap.json"

STATE_FILE = "emu.json"
SOCKET_FILE = "ctl.sock"
FLASH_FILE = "flash.img"
LOG_FILE = "emu.log"

BOOT_TIMEOUT_S = 60.0
"""Wall seconds allowed for the image to enumerate over USB after power-on."""
PHYSICS_PERIOD_NS = 1_000_000
"""Emulated interval between physics updates (inputs, ADC), 1 ms."""
HANG_ADDR = 0x20040000
"""SRAM address (SCRATCH_X, core 1's stack: unused by single-core MicroPython) of the `hang`
fault's endless `wfi; b` loop."""
OUTPUT_BURST_NS = 5_000_000
"""Buzzer edges closer than this (5 ms) belong to one beep; only a beep's first edge is logged."""
POWER_OFF_MAX_MS = 7 * 86_400_000
"""Longest emulated time without power a power_cut may stand for (7 days)."""
BOUNCE_US = (0, 150, 400, 650, 900)
"""Contact bounce of one press: the level toggles at these offsets (us) before settling."""


def default_rig_dir() -> Path:
    """`$PUMP_RIGS_DIR/emu` when that is set, else `$PUMPCTL_HOME/rigs/emu`: beside the virtual
    rigs (`pumpctl sim`), never inside the checkout."""
    base = os.environ.get("PUMP_RIGS_DIR")
    return (Path(base) if base else pumpctl_home() / "rigs") / EMU_RIG_NAME


LEGACY_RIG_DIR = REPO / "rigs" / EMU_RIG_NAME
"""Where the emulated Pico kept its state before it moved under $PUMPCTL_HOME (git-ignored)."""


def legacy_rig_dir_note(rig_dir: Path, legacy: Path = LEGACY_RIG_DIR) -> str | None:
    """One line for the user when an old `<repo>/rigs/emu/` is still in the checkout (its flash,
    state and log are no longer used), else None."""
    if rig_dir.resolve() == legacy.resolve() or not legacy.is_dir():
        return None
    return ("emulated-Pico state now lives in %s; the old %s is no longer used (move its flash.img "
            "there to keep that flash, or delete the old directory)" % (rig_dir, legacy))


EMU_HW_DIR = "hw"


def write_emu_hw_dir(rig_dir: Path, hw_dir: Path = REPO / "hw", mechanism: str | None = None) -> Path:
    """Write `<rig_dir>/hw/` for `pumpctl deploy --hw-dir`: the mechanism's file as is (only it,
    under its own name: hw/mechanism.json, or mechanism-NAME.json for `mechanism` NAME, so a
    deploy naming another mechanism is refused there; the chip's physics read the same file,
    emu_mechanism_path) and the one
    pin map without its driver UART. rp2040py 0.3.6 never returns from `machine.UART(...)`
    construction on the v1.22.2 image (silicon does), so on the emulator the firmware must treat
    the TMC2209 as configured by its MS1/MS2 pins; the emulator cannot test the driver UART.
    (Written without the key until pumphw.pinmap accepts an explicit `"driver_uart": null`.)"""
    out = rig_dir / EMU_HW_DIR
    out.mkdir(parents=True, exist_ok=True)
    pins = json.loads((hw_dir / "pinmap.json").read_text())
    pins.pop("driver_uart", None)
    pins["_what"] = ("Emulated-Pico copy of hw/pinmap.json, written by pumpctl emu start: no driver_uart "
                     "(rp2040py hangs in machine.UART construction; the emulator cannot test the UART).")
    (out / "pinmap.json").write_text(json.dumps(pins, indent=1) + "\n")
    from . import mechanisms
    src = mechanisms.path(mechanism, hw_dir)
    for stale in list(out.glob("mechanism*.json")):
        stale.unlink()
    (out / mechanisms.file_name(mechanism or mechanisms.DEFAULT)).write_text(src.read_text())
    return out


def emu_mechanism_path(rig_dir: Path) -> Path:
    """The mechanism file write_emu_hw_dir left in `<rig_dir>/hw/` (hw/mechanism.json if none)."""
    found = sorted((rig_dir / EMU_HW_DIR).glob("mechanism*.json"))
    return found[0] if len(found) == 1 else REPO / "hw" / "mechanism.json"


def load_pinmap(path: Path = PINMAP_PATH) -> dict[str, Any]:
    """The one pin map (hw/pinmap.json), checked for the pins the rig wires."""
    pins = json.loads(path.read_text())
    for name in ("step", "dir", "en_n", "diag", "end_stop_n", "bolus_button_n", "alarm_led",
                 "buzzer", "status_led"):
        value = pins.get(name)
        if not isinstance(value, int) or not 0 <= value <= 29:
            raise UsageError(f"{path}: pin {name} = {value!r}: must be a GPIO number 0..29")
    enc = pins.get("screw_encoder")
    if enc is not None:
        for key, top in (("id", 1), ("sda", 29), ("scl", 29)):
            value = enc.get(key) if isinstance(enc, dict) else None
            if not isinstance(value, int) or not 0 <= value <= top:
                raise UsageError(f"{path}: screw_encoder.{key} = {value!r}: must be an integer 0..{top}")
    adc = pins.get("pressure_adc") or {}
    if adc.get("channel") not in (0, 1, 2, 3):
        raise UsageError(f"{path}: pressure_adc.channel = {adc.get('channel')!r}: must be 0..3")
    return pins


# --------------------------------------------------------------------------------------------
# The rig's side of the pins (runs inside the supervisor, on the emulator's own thread)
# --------------------------------------------------------------------------------------------

I2C_FUNCSEL = 3
"""RP2040 GPIO function 3 is I2C (datasheet 2.19.2): the AS5600 is on the bus only through it."""


class As5600:
    """The AS5600 screw encoder (ams AS5600 datasheet v1-06) as an I2C target on the emulated
    RP2040's I2C block `bus`, on the pins of hw/pinmap.json "screw_encoder".

    It acknowledges address 0x36 only while both its SDA and SCL GPIOs are switched to the I2C
    function (FUNCSEL 3), as wires on those pins would; any other address is not acknowledged.
    A write sets the register pointer (first byte) and is acknowledged; a read returns the
    registers from the pointer on with auto-increment, except that the pointer stays on RAW
    ANGLE, ANGLE and MAGNITUDE when it was set to their high byte (the datasheet's special
    case), so a re-read needs no pointer write. STATUS (0x0B) reads MD (magnet detected) unless
    the `magnet` flag is off (then ML, magnet too weak); RAW ANGLE and ANGLE (no ZPOS/MPOS
    programmed) come from `angle()`, sampled at the read's address phase, 12 bit. AGC 0x80,
    MAGNITUDE 0x0800. Bus time is modelled: each byte (9 bits) and each start/address phase
    completes after its bit times at the SCL the firmware configured (IC_FS_SCL_HCNT/LCNT at
    clk_sys 125 MHz), not at once. `reads` counts completed angle reads (for the tier's checks).
    """

    ADDR = 0x36
    SPECIAL_HIGH = (0x0C, 0x0E, 0x1B)

    def __init__(self, mcu: Any, bus: int, sda: int, scl: int, angle: Any) -> None:
        self.mcu = mcu
        self.i2c = mcu.i2c[bus]
        self.sda, self.scl = mcu.gpio[sda], mcu.gpio[scl]
        self.angle = angle
        self.magnet = True
        self.pointer = 0
        self.reads = 0
        self.naks = 0
        self._first_write = False
        self._sticky: int | None = None
        self._snapshot = 0
        self._pending: Any = None
        self._alarm = mcu.clock.create_alarm(self._fire)
        i2c = self.i2c
        i2c.on_start = self._on_start
        i2c.on_connect = self._on_connect
        i2c.on_write_byte = self._on_write
        i2c.on_read_byte = self._on_read
        i2c.on_stop = self._on_stop

    # bus timing -------------------------------------------------------------------------
    def _bit_ns(self) -> int:
        i2c = self.i2c
        clocks = int(i2c.scl_low_period) + int(i2c.scl_high_period)
        return max(clocks, 2) * 8          # clk_sys 125 MHz: 8 ns per clock

    def _after(self, bits: int, then: Any) -> None:
        self._pending = then
        self._alarm.schedule(bits * self._bit_ns())

    def _fire(self) -> None:
        then, self._pending = self._pending, None
        if then is not None:
            then()

    # target behaviour -------------------------------------------------------------------
    def _muxed(self) -> bool:
        return (getattr(self.sda, "function_select", None) == I2C_FUNCSEL
                and getattr(self.scl, "function_select", None) == I2C_FUNCSEL)

    def register(self, reg: int) -> int:
        a = self._snapshot & 0x0FFF
        if reg == 0x0B:
            return 0x20 if self.magnet else 0x10      # MD, or ML (magnet too weak, no MD)
        if reg in (0x0C, 0x0E):
            return a >> 8
        if reg in (0x0D, 0x0F):
            return a & 0xFF
        if reg == 0x1A:
            return 0x80
        if reg == 0x1B:
            return 0x08
        return 0x00                                   # ZMCO, ZPOS, MPOS, MANG, CONF, MAGNITUDE lo

    def _on_start(self, repeated: bool) -> None:
        self._after(1, self.i2c.complete_start)

    def _on_connect(self, address: int, mode: Any) -> None:
        ack = address == self.ADDR and self._muxed()
        if not ack:
            self.naks += 1
        elif int(mode) == 1:                          # I2CMode.READ: sample the angle now
            value = self.angle()
            self._snapshot = 0 if value is None else int(value)
            self._sticky = self.pointer if self.pointer in self.SPECIAL_HIGH else None
        else:
            self._first_write = True
        self._after(9, lambda: self.i2c.complete_connect(ack))

    def _on_write(self, value: int) -> None:
        if self._first_write:
            self.pointer = value & 0xFF
            self._first_write = False
        self._after(9, lambda: self.i2c.complete_write(True))

    def _on_read(self, ack: bool) -> None:
        reg = self.pointer
        value = self.register(reg)
        if reg in (0x0C, 0x0D):
            self.reads += reg == 0x0D
        if self._sticky is not None and reg == self._sticky + 1:
            self.pointer = self._sticky
        else:
            self.pointer = (reg + 1) & 0xFF
        self._after(9, lambda: self.i2c.complete_read(value))

    def _on_stop(self) -> None:
        self._after(1, self.i2c.complete_stop)


class EmuWiring:
    """External circuit on the emulated RP2040's pins: driver (STEP/DIR/EN in, DIAG out), end
    stop, bolus button, pressure sensor, buzzer/LEDs. One instance lives across reboots; it is
    re-attached to each new chip (a power cut) and keeps its counts.

    Edge log: `edge_t` (emulated ns), `edge_dir` (DIR level 0/1), `edge_en` (1 if the driver was
    enabled, EN low, at the edge). Steps taken while EN is high are counted but not moved.
    """

    def __init__(self, pins: dict[str, Any], physics: Any = None) -> None:
        self.pins = pins
        self.physics = physics
        self.mcu: Any = None
        self.time_base_ns = 0
        self.edge_t = array.array("q")
        self.edge_dir = bytearray()
        self.edge_en = bytearray()
        self.en_log: list[tuple[int, bool]] = []
        self.outputs: dict[str, list[tuple[int, int]]] = {"alarm_led": [], "buzzer": [], "status_led": []}
        self.stall_forced = False
        self.end_stop_forced = False
        self.pressure_override: int | None = None
        self.button_down = False
        self.presses = 0
        self._alarm: Any = None
        self._buzz_last_ns = 0
        self._driven: dict[str, bool] = {}
        self.encoder: As5600 | None = None
        self.magnet = True

    # -- time ------------------------------------------------------------------------------
    def now_ns(self) -> int:
        """Emulated ns since the supervisor's first boot (monotonic across reboots)."""
        return self.time_base_ns + int(self.mcu.clock.nanos) if self.mcu is not None else self.time_base_ns

    def detach(self) -> None:
        """The chip lost power: remember where its clock stopped."""
        if self.mcu is not None:
            self.time_base_ns = self.now_ns()
        self.mcu = None
        self._alarm = None
        self.encoder = None

    def attach(self, mcu: Any) -> None:
        from rp2040py.gpio_pin import GPIOPinState

        self.mcu = mcu
        self._driven = {}
        high = GPIOPinState.HIGH
        gpio = mcu.gpio
        step_pin, dir_pin, en_pin = gpio[self.pins["step"]], gpio[self.pins["dir"]], gpio[self.pins["en_n"]]

        def on_step(value: Any, old: Any) -> None:
            if value == high and old != high:
                enabled = en_pin.value != high and en_pin.output_enable
                self.edge_t.append(self.now_ns())
                self.edge_dir.append(1 if dir_pin.value == high else 0)
                self.edge_en.append(1 if enabled else 0)
                if enabled and self.physics is not None:
                    self.physics.step(1 if dir_pin.value == high else 0, self.now_ns())

        def on_en(value: Any, old: Any) -> None:
            enabled = value != high and en_pin.output_enable
            if not self.en_log or self.en_log[-1][1] != enabled:
                self.en_log.append((self.now_ns(), enabled))

        step_pin.add_listener(on_step)
        en_pin.add_listener(on_en)
        for name in self.outputs:
            log = self.outputs[name]

            def on_out(value: Any, old: Any, log: list[tuple[int, int]] = log) -> None:
                # The buzzer is PWM (kHz): keep the first edge of each burst, not every cycle.
                now = self.now_ns()
                if log and log is self.outputs["buzzer"] and now - self._buzz_last_ns < OUTPUT_BURST_NS:
                    self._buzz_last_ns = now
                    return
                if log is self.outputs["buzzer"]:
                    self._buzz_last_ns = now
                log.append((now, 1 if value == high else 0))

            gpio[self.pins[name]].add_listener(on_out)
        self.en_log.append((self.now_ns(), False))  # power-on: EN pulled high on the board
        enc = self.pins.get("screw_encoder")
        self.encoder = None
        if enc and self.physics is not None and self.physics.has_model:
            self.encoder = As5600(mcu, enc["id"], enc["sda"], enc["scl"],
                                  lambda: self.physics.screw_angle(self.now_ns()))
            self.encoder.magnet = self.magnet
        self._alarm = mcu.clock.create_alarm(self._tick)
        self._apply_inputs()
        self._alarm.schedule(PHYSICS_PERIOD_NS)

    # -- inputs --------------------------------------------------------------------------
    def _tick(self) -> None:
        self._apply_inputs()
        if self._alarm is not None:
            self._alarm.schedule(PHYSICS_PERIOD_NS)

    def state(self) -> dict[str, Any]:
        """Pressure (kPa x 10), stall and end stop as the pins present them now."""
        phys = self.physics.sample(self.now_ns()) if self.physics is not None else {}
        pressure = self.pressure_override if self.pressure_override is not None else phys.get("pressure_kpa_x10", 0)
        enc = self.encoder
        return {"pressure_kpa_x10": pressure,
                "stall": bool(self.stall_forced or phys.get("stall", False)),
                "end_stop": bool(self.end_stop_forced or phys.get("end_stop", False)),
                "encoder": None if enc is None else {"reads": enc.reads, "naks": enc.naks,
                                                     "magnet": enc.magnet, "pointer": enc.pointer},
                "physics": phys}

    def _apply_inputs(self) -> None:
        if self.mcu is None:
            return
        from .emuphys import pressure_to_adc_counts

        s = self.state()
        self._drive("diag", s["stall"])
        self._drive("end_stop_n", not s["end_stop"])
        self._drive("bolus_button_n", not self.button_down)
        self.mcu.adc.channel_values[self.pins["pressure_adc"]["channel"]] = pressure_to_adc_counts(
            s["pressure_kpa_x10"])

    def _drive(self, name: str, level: bool) -> None:
        """Drive an input pin, only when its level changes: rp2040py latches an edge IRQ on
        every set_input_value(), even at an unchanged level (a spurious edge per call)."""
        if self._driven.get(name) is not level:
            self._driven[name] = level
            self.mcu.gpio[self.pins[name]].set_input_value(level)

    def press_button(self, count: int, hold_ms: int, gap_ms: int, bounce: bool) -> int:
        """Schedule `count` presses of the bolus button in emulated time; returns the emulated
        ns at which the last release has settled."""
        if self.mcu is None:
            raise UsageError("press: the emulated Pico is powered off")
        events: list[tuple[int, bool]] = []
        t = 0
        for _ in range(count):
            offsets = BOUNCE_US if bounce else (0,)
            for k, off in enumerate(offsets):
                events.append((t + off * 1000, k % 2 == 0))  # down, up, down, ... ends down
            t += hold_ms * 1_000_000
            for k, off in enumerate(offsets):
                events.append((t + off * 1000, k % 2 == 1 if bounce else False))
            if bounce:
                events.append((t + (BOUNCE_US[-1] + 250) * 1000, False))
            t += gap_ms * 1_000_000
        start = self.now_ns()
        for when, down in events:
            alarm = self.mcu.clock.create_alarm(lambda down=down: self._set_button(down))
            alarm.schedule(max(when, 1))
        self.presses += count
        return start + t

    def _set_button(self, down: bool) -> None:
        self.button_down = down
        if self.mcu is not None:
            self._drive("bolus_button_n", not down)

    def edges(self, since: int = 0) -> dict[str, Any]:
        return {"since": since, "count": len(self.edge_t), "t_ns": list(self.edge_t[since:]),
                "dir": list(self.edge_dir[since:]), "en": list(self.edge_en[since:])}

    def counts(self) -> dict[str, int]:
        infuse = retract = disabled = 0
        for d, e in zip(self.edge_dir, self.edge_en):
            if not e:
                disabled += 1
            elif d:
                infuse += 1
            else:
                retract += 1
        return {"edges": len(self.edge_t), "infuse": infuse, "retract": retract, "while_disabled": disabled}


# --------------------------------------------------------------------------------------------
# Supervisor
# --------------------------------------------------------------------------------------------

class PioPacer:
    """Keeps the emulated PIO running while the CPU sleeps.

    rp2040py advances PIO by at most one instruction per CPU instruction or per idle jump, and
    writes off a state machine's backlog (re-arming it from "now") when a jump left it more
    than 8 system clocks behind. With the CPU asleep in WFE (the app idles most of the time),
    the step program's low-time loop (one instruction per 1 us state-machine cycle) got one
    instruction per jump: a 200 ng bolus showed 1 STEP edge instead of 5. On silicon PIO runs
    on its own.

    This alarm lands an idle jump on every state-machine cycle (GRID_NS = 1 us, 125 system
    clocks, the step program's clock) while a PIO block runs, in phase with the machine: when
    the CPU is executing (the PIO is then current to within one instruction) the alarm is set
    on the machine's own next due time; while the CPU sleeps it steps on by one machine cycle.
    Every due instruction thus runs on time, to within one CPU instruction. A few write-offs
    still happen (2-7 in the 4 pin-test runs of tests/emu/test_steppio_pins.py, e.g. when the
    alarm fires in the tick of the WFE itself and steps on from there); each moves that
    machine's phase by less than one of its cycles. `pio_backlog_drops` in the rig's status
    counts them; the pin tests measure the edges themselves (period within 500 ns). Cost: one
    Python call per emulated us while a PIO block is enabled, ~IDLE_CHECK_NS otherwise.
    """

    GRID_NS = 1_000
    IDLE_CHECK_NS = 10_000
    NEVER_DUE = 1 << 62                   # rp2040py's "no machine due" (all stalled or disabled)

    def __init__(self, mcu: Any) -> None:
        self.pios = list(mcu.pio)
        self.core = mcu.core
        self.alarm = mcu.clock.create_alarm(self._pace)
        self.alarm.schedule(self.IDLE_CHECK_NS)

    def _pace(self) -> None:
        running = False
        delay = 0
        executing = not self.core.waiting
        for pio in self.pios:
            if pio.stopped:
                continue
            running = True
            if executing and pio.next_due_fp < self.NEVER_DUE:
                ahead = (pio.next_due_fp - pio.cycle_fp) >> 8     # system clocks to its next step
                ns = (ahead if ahead > 0 else 1) * 8              # 125 MHz: 8 ns per clock
                if delay == 0 or ns < delay:
                    delay = ns
        if delay == 0:
            delay = self.GRID_NS if running else self.IDLE_CHECK_NS
        self.alarm.schedule(delay)

    def backlog_drops(self) -> int:
        return sum(int(pio.backlog_drops) for pio in self.pios)

    def cancel(self) -> None:
        self.alarm.cancel()


class _NakingHost:
    """The USB host's side of the CDC data OUT endpoint, as a real host behaves.

    rp2040py's host model answers every armed OUT buffer at once, with zero bytes when it has
    nothing to send. TinyUSB re-arms the endpoint from that completion interrupt, so an idle
    emulated Pico took a USB interrupt every ~44 us and never reached WFE: `time.sleep_ms` ran
    as a busy loop and the emulator crawled at ~0.05x real time (measured: 2,287 wakeups in
    100 ms, a bare Python loop at ~10 % of its speed). A real host NAKs the OUT token until it
    has data, which costs the device nothing. This model holds an armed read while there is no
    data and completes it when the pty delivers bytes (`data_arrived`), so the chip idles as
    it does on a bench.
    """

    def __init__(self, cdc: Any) -> None:
        self.cdc = cdc
        self.usb = cdc.usb
        self.serve = self.usb.on_endpoint_read
        self.pending: tuple[int, int] | None = None
        self.usb.on_endpoint_read = self._on_read
        self._host_reset = self.usb.on_reset
        self.usb.on_reset = self._on_reset

    def _on_read(self, endpoint: int, size: int) -> None:
        out = self.cdc._out_endpoint
        if endpoint != 0 and endpoint == out and self.cdc.tx_fifo.item_count == 0:
            self.pending = (endpoint, size)      # NAK: nothing to send yet
            return
        self.serve(endpoint, size)

    def data_arrived(self) -> None:
        if self.pending is not None and self.cdc.tx_fifo.item_count:
            endpoint, size = self.pending
            self.pending = None
            self.serve(endpoint, size)

    def _on_reset(self) -> None:
        self.pending = None
        if self._host_reset is not None:
            self._host_reset()


class _PtyBridge:
    """A pty pair that outlives every boot: host bytes go to the current chip's USB-CDC,
    chip output comes back. While the chip is off, host bytes are dropped (unplugged port)."""

    def __init__(self) -> None:
        import pty
        import tty

        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.cdc: Any = None
        self.clock: Any = None
        self._in = bytearray()
        self._out = bytearray()
        self._alarm: Any = None
        self._host: _NakingHost | None = None
        self._writer = False

    def bind(self, cdc: Any, clock: Any) -> None:
        self.cdc, self.clock = cdc, clock
        self._in.clear()
        self._alarm = clock.create_alarm(self._pump_tick) if clock is not None else None
        self._host = _NakingHost(cdc) if cdc is not None else None
        if cdc is not None:
            cdc.on_serial_data = self.from_device

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            data = b""
        if data and self.cdc is not None:
            self._in += data
            if not self._pump() and self._alarm is not None:
                self._alarm.schedule(1_000_000)

    def _pump(self) -> bool:
        if self.cdc is None:
            self._in.clear()
            return True
        fifo = self.cdc.tx_fifo
        free = max(fifo.size - fifo.item_count, 0)
        chunk = bytes(self._in[:free])
        del self._in[:free]
        for b in chunk:
            self.cdc.send_serial_byte(b)
        if chunk and self._host is not None:
            self._host.data_arrived()
        return not self._in

    def _pump_tick(self) -> None:
        if not self._pump() and self._alarm is not None:
            self._alarm.schedule(1_000_000)

    def from_device(self, data: bytes | bytearray) -> None:
        self._out += data
        if len(self._out) > 1 << 20:
            del self._out[: len(self._out) - (1 << 20)]
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                n = os.write(self.master, self._out)
                del self._out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._out.clear()
        if self._out and not self._writer:
            self.loop.add_writer(self.master, self._flush)
            self._writer = True
        elif not self._out and self._writer:
            self.loop.remove_writer(self.master)
            self._writer = False


class EmuSupervisor:
    """Owns the emulated chip, its flash image, the pty and the side channel."""

    def __init__(self, rig_dir: Path, image: Path, info: ImageInfo, pinmap: Path = PINMAP_PATH) -> None:
        from .emuphys import EmuPhysics

        self.dir = rig_dir
        self.image = image
        self.info = info
        # the physics of the mechanism this chip's hw/ holds (the file its deploy copies)
        self.wiring = EmuWiring(load_pinmap(pinmap), EmuPhysics.create(emu_mechanism_path(rig_dir)))
        self.device: Any = None
        self.pacer: PioPacer | None = None
        self.pio_drops_before = 0      # PIO backlog write-offs of chips that lost power since
        self.boots = 0
        self.chip_resets: list[dict[str, Any]] = []
        self.power_cuts: list[int] = []
        self.hangs: list[int] = []
        self.powered = False
        self.started_wall = time.monotonic()
        self.boot_wall_s: list[float] = []
        self._stop = asyncio.Event()
        self._cut_pending: Any = None

    # -- flash -------------------------------------------------------------------------------
    @property
    def flash_path(self) -> Path:
        return self.dir / FLASH_FILE

    def save_flash(self) -> None:
        """Write the chip's littlefs region to flash.img atomically (tmp + rename)."""
        if self.device is None:
            return
        tmp = self.flash_path.with_suffix(".tmp")
        self.device.dump_flash_image(tmp)
        os.replace(tmp, self.flash_path)

    # -- power -------------------------------------------------------------------------------
    async def power_on(self) -> None:
        from rp2040py.boards import BOARDS, resolve_firmware
        from rp2040py.device import MicroPythonDevice

        board = resolve_firmware(BOARDS["pico"], "micropython", str(self.image))
        flash = self.flash_path if self.flash_path.exists() else None
        wall0 = time.monotonic()
        device = MicroPythonDevice(board=board, filesystem=flash)
        self.device = device
        original_trigger = device.mcu.watchdog.on_watchdog_trigger

        def on_trigger() -> None:
            reason = device.mcu.watchdog.read_uint32(0x08) if hasattr(device.mcu.watchdog, "read_uint32") else 0
            self.chip_resets.append({"t_ns": self.wiring.now_ns(), "reason": reason})
            self.wiring.en_log.append((self.wiring.now_ns(), False))
            original_trigger()

        device.mcu.watchdog.on_watchdog_trigger = on_trigger
        self.wiring.attach(device.mcu)
        self.pacer = PioPacer(device.mcu)
        self.bridge.bind(device.cdc, device.mcu.clock)
        await device.astart(timeout=BOOT_TIMEOUT_S)
        self.boots += 1
        self.powered = True
        self.boot_wall_s.append(time.monotonic() - wall0)

    def power_off(self) -> None:
        """Cut power now: flash keeps what the chip had written, RAM and pins are lost."""
        if self.device is None:
            return
        self.save_flash()
        if self.pacer is not None:
            self.pio_drops_before += self.pacer.backlog_drops()
            self.pacer.cancel()
            self.pacer = None
        self.device.stop()
        self.wiring.detach()
        self.bridge.bind(None, None)
        self.device = None
        self.powered = False

    # -- side channel ----------------------------------------------------------------------
    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        w = self.wiring
        if cmd == "status":
            return self.status()
        if cmd == "edges":
            return w.edges(int(req.get("since", 0)))
        if cmd == "en_log":
            return {"en_log": w.en_log}
        if cmd == "outputs":
            return {"outputs": w.outputs}
        if cmd == "occlude":
            if w.physics is not None and w.physics.has_model:
                w.physics.occlude(bool(req.get("on", True)))
            else:
                w.pressure_override = int(req.get("kpa_x10", 1500)) if req.get("on", True) else None
            return self.status()
        if cmd == "pressure":
            value = req.get("kpa_x10")
            if value is not None and not (isinstance(value, int) and 0 <= value <= 100_000):
                raise UsageError(f"pressure kpa_x10 = {value!r}: must be an integer 0..100000 or null")
            w.pressure_override = value
            return self.status()
        if cmd == "stall":
            w.stall_forced = bool(req.get("on", True))
            return self.status()
        if cmd in ("jam", "slip"):
            # invisible to DIAG (StallGuard off as rp2hw configures the TMC2209): the model only
            if w.physics is None or not w.physics.has_model:
                raise UsageError(f"{cmd}: needs the physical model (pumpsim) on the emulated rig")
            getattr(w.physics, cmd)(bool(req.get("on", True)))
            return self.status()
        if cmd == "magnet":
            w.magnet = bool(req.get("on", True))
            if w.encoder is not None:
                w.encoder.magnet = w.magnet
            return self.status()
        if cmd == "empty":
            w.end_stop_forced = bool(req.get("on", True))
            if w.physics is not None and w.physics.has_model:
                w.physics.empty(bool(req.get("on", True)))
            return self.status()
        if cmd == "press":
            count = int(req.get("count", 1))
            hold = int(req.get("hold_ms", 150))
            gap = int(req.get("gap_ms", 300))
            if not 1 <= count <= 20:
                raise UsageError(f"press count = {count}: must be 1..20")
            if not 1 <= hold <= 10_000 or not 1 <= gap <= 60_000:
                raise UsageError(f"press hold_ms = {hold} (1..10000), gap_ms = {gap} (1..60000)")
            done = w.press_button(count, hold, gap, bool(req.get("bounce", True)))
            return {"settled_ns": done, **self.status()}
        if cmd == "hang":
            if self.device is None:
                raise UsageError("hang: the emulated Pico is powered off")
            self.hang()
            return self.status()
        if cmd == "wait":
            ms = int(req.get("ms", 0))
            if not 0 <= ms <= 600_000:
                raise UsageError(f"wait ms = {ms}: must be 0..600000 (emulated ms)")
            await self.wait_emulated(ms * 1_000_000)
            return self.status()
        if cmd == "power_cut":
            after = int(req.get("after_ms", 0))
            off = float(req.get("off_s", 0.0))
            off_ms = int(req.get("off_ms", 0))
            if not 0 <= after <= 600_000 or not 0 <= off <= 60 or not 0 <= off_ms <= POWER_OFF_MAX_MS:
                raise UsageError(f"power_cut after_ms = {after} (0..600000), off_s = {off} (0..60 wall s), "
                                 f"off_ms = {off_ms} (0..{POWER_OFF_MAX_MS} emulated ms)")
            if after:
                await self.wait_emulated(after * 1_000_000)
            cut_ns = w.now_ns()
            self.power_off()
            self.power_cuts.append(cut_ns)
            # the world's time goes on while the chip is off: the rig's clock (t_ns) and the
            # model move on by off_ms at once, without the wall time it would take
            w.time_base_ns += off_ms * 1_000_000
            if off:
                await asyncio.sleep(off)
            if not req.get("stay_off", False):
                await self.power_on()
            return {"cut_ns": cut_ns, **self.status()}
        if cmd == "power_on":
            if not self.powered:
                await self.power_on()
            return self.status()
        if cmd == "save_flash":
            self.save_flash()
            return self.status()
        if cmd == "stop":
            self._stop.set()
            return {"stopping": True}
        raise UsageError(f"side channel: unknown cmd {cmd!r}")

    def hang(self) -> None:
        """Hang the firmware where it stands, as a C-level deadlock would: the core is sent to a
        two-instruction loop (`wfi; b wfi`) in SRAM and never comes back to the application.
        Interrupts (USB, timers) still run; the watchdog stays exactly as the application left
        it, so only its own arming can bring the chip back. (A Ctrl-C would not do: the app
        takes Ctrl-C as maintenance and disarms its watchdog on purpose.) The loop lives in
        SCRATCH_X (`HANG_ADDR`), core 1's stack, which single-core MicroPython leaves unused."""
        mcu = self.device.mcu
        mcu.write_uint16(HANG_ADDR, 0xBF30)        # wfi
        mcu.write_uint16(HANG_ADDR + 2, 0xE7FD)    # b HANG_ADDR  (pc+4-6)
        mcu.core.waiting = False
        mcu.core.pc = HANG_ADDR
        self.hangs.append(self.wiring.now_ns())

    async def wait_emulated(self, nanos: int) -> None:
        """Return after `nanos` of emulated time (or when the chip loses power)."""
        if self.device is None or nanos <= 0:
            return
        done = asyncio.get_running_loop().create_future()

        def fire() -> None:
            if not done.done():
                done.set_result(None)

        self.device.mcu.clock.create_alarm(fire).schedule(nanos)
        while not done.done() and self.device is not None and self.device.simulator.executing:
            await asyncio.wait([done], timeout=0.2)

    def status(self) -> dict[str, Any]:
        w = self.wiring
        enabled = w.en_log[-1][1] if w.en_log else False
        return {"pid": os.getpid(), "port": self.bridge.path, "image": str(self.image),
                "version": self.info.version, "mpy": list(self.info.mpy), **_image_fields(self.info),
                "powered": self.powered,
                "boots": self.boots, "chip_resets": self.chip_resets, "power_cuts": self.power_cuts,
                "t_ns": w.now_ns(), "wall_s": round(time.monotonic() - self.started_wall, 3),
                "boot_wall_s": [round(x, 3) for x in self.boot_wall_s], "enabled": enabled,
                "steps": w.counts(), "inputs": w.state(), "presses": w.presses,
                "hangs": self.hangs, "watchdog": self._watchdog_state(),
                "pio_backlog_drops": self.pio_drops_before + (self.pacer.backlog_drops() if self.pacer else 0),
                "flash": str(self.flash_path)}

    def _watchdog_state(self) -> dict[str, Any] | None:
        """The chip's watchdog as the firmware left it: armed or not, and the emulated ms left
        before it fires (the RP2040 counts down twice per us, erratum RP2040-E1)."""
        if self.device is None:
            return None
        wd = self.device.mcu.watchdog
        armed = bool(getattr(wd, "_enable", False))
        left = int(wd.timer.counter) // 2000 if armed else None
        return {"armed": armed, "ms_left": left}

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, **await self.handle(json.loads(line))}
                except (UsageError, ValueError, TypeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.bridge = _PtyBridge()
        self.bridge.start(loop)
        sock_path = self.dir / SOCKET_FILE
        sock_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_client, path=str(sock_path))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        state = {"pid": os.getpid(), "port": self.bridge.path, "socket": str(sock_path),
                 "image": str(self.image), "version": self.info.version, **_image_fields(self.info),
                 "ready": False}
        _write_state(self.dir, state)
        await self.power_on()
        os.symlink(self.bridge.path, self.dir / "port.tmp")
        os.replace(self.dir / "port.tmp", self.dir / "port")
        _write_state(self.dir, {**state, "ready": True, "boot_wall_s": self.boot_wall_s[0]})
        try:
            await self._stop.wait()
        finally:
            self.power_off()
            server.close()
            sock_path.unlink(missing_ok=True)
            (self.dir / STATE_FILE).unlink(missing_ok=True)
            (self.dir / "port").unlink(missing_ok=True)


def _image_fields(info: ImageInfo) -> dict[str, Any]:
    """What every report of the rig states about its image: official or self-built, SHA-256,
    and the one-line label (ImageInfo.label) to print."""
    return {"official": info.official, "sha256": info.sha256, "image_label": info.label()}


def _write_state(rig_dir: Path, state: dict[str, Any]) -> None:
    tmp = rig_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, rig_dir / STATE_FILE)


# --------------------------------------------------------------------------------------------
# Host-side handle
# --------------------------------------------------------------------------------------------


class EmuRig:
    """Handle on a running emulated-Pico supervisor: its port and its side channel."""

    def __init__(self, rig_dir: Path, state: dict[str, Any]) -> None:
        self.dir = rig_dir
        self.state = state
        self.port: str = state["port"]
        self.pid: int = state["pid"]
        self._sock: socket.socket | None = None
        self._file: Any = None

    @classmethod
    def attach(cls, rig_dir: Path | None = None) -> EmuRig:
        """The rig running in `rig_dir`, or raise PortError saying how to start one."""
        rig_dir = rig_dir or default_rig_dir()
        path = rig_dir / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            raise PortError(f"no emulated Pico running in {rig_dir} (start one: pumpctl emu start)") from None
        if not process_alive(state["pid"]):
            path.unlink(missing_ok=True)
            raise PortError(f"emulated Pico in {rig_dir} died (pid {state['pid']}); see {rig_dir / LOG_FILE}")
        return cls(rig_dir, state)

    @classmethod
    def start(cls, rig_dir: Path | None = None, firmware: str | None = None, fresh: bool = False,
              timeout: float = BOOT_TIMEOUT_S, detach: bool = False,
              owner_pid: int | None = None, mechanism: str | None = None) -> EmuRig:
        """Start a supervisor in the background, wait until the image has enumerated, return its
        handle. `fresh` wipes the flash image first. detach: it outlives this process (`pumpctl
        emu start`); otherwise it ends when `owner_pid` (default: this process) ends, so a test
        run cut by a timeout leaves no emulator running."""
        rig_dir = rig_dir or default_rig_dir()
        image, _info = find_image(firmware)
        try:
            running = cls.attach(rig_dir)
        except PortError:
            running = None
        if running is not None:
            raise UsageError(f"an emulated Pico is already running in {rig_dir} on {running.port} "
                             f"(pid {running.pid}); pumpctl emu stop first")
        rig_dir.mkdir(parents=True, exist_ok=True)
        write_emu_hw_dir(rig_dir, mechanism=mechanism)
        if fresh:
            (rig_dir / FLASH_FILE).unlink(missing_ok=True)
        (rig_dir / STATE_FILE).unlink(missing_ok=True)
        log = open(rig_dir / LOG_FILE, "ab")
        owner = [] if detach else ["--owner-pid", str(owner_pid or os.getpid())]
        proc = subprocess.Popen([sys.executable, "-m", "pumpctl.emurig", "serve", "--dir", str(rig_dir),
                                 "--image", str(image), *owner], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, cwd=str(rig_dir))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (rig_dir / LOG_FILE).read_text(errors="replace")[-800:]
                raise PortError(f"emulated Pico supervisor exited with {proc.returncode}: {tail}")
            try:
                state = json.loads((rig_dir / STATE_FILE).read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("pid") == proc.pid and state.get("ready"):
                return cls(rig_dir, state)
            time.sleep(0.05)
        proc.terminate()
        raise RigTimeout(f"emulated Pico did not boot within {timeout:.0f} s; see {rig_dir / LOG_FILE}")

    def request(self, cmd: str, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
        """One side-channel request; returns the reply or raises UsageError with its error."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._sock.connect(self.state["socket"])
            except OSError as exc:
                self._sock = None
                raise PortError(f"emulated Pico side channel {self.state['socket']}: {exc}") from None
            self._file = self._sock.makefile("rwb")
        self._sock.settimeout(timeout)
        self._file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            self.close()
            raise PortError("emulated Pico side channel closed (supervisor gone)")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise UsageError(f"emu {cmd}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._file = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the supervisor; the flash image is saved first (like switching the rig off)."""
        try:
            self.request("stop", timeout=timeout)
        except (PortError, OSError):
            pass
        self.close()
        deadline = time.monotonic() + timeout
        while process_alive(self.pid) and time.monotonic() < deadline:
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if process_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


def watch_owner(pid: int, every_s: float = 0.5, grace_s: float = 10.0) -> None:
    """A daemon thread: when process `pid` is gone, SIGTERM ourselves (the supervisor saves the
    flash and stops); if the emulation keeps the event loop from stopping within grace_s, exit
    hard. A thread, not the asyncio loop, because a busy emulator can starve the loop."""
    import threading

    def watch() -> None:
        while process_alive(pid):
            time.sleep(every_s)
        print(f"emurig: owner {pid} is gone: stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(3)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pumpctl.emurig", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    serve = sub.add_parser("serve", help="run the supervisor in the foreground")
    serve.add_argument("--dir", type=Path, default=default_rig_dir())
    serve.add_argument("--image", type=Path, required=True)
    serve.add_argument("--owner-pid", type=int, default=None,
                       help="end when this process ends (a chip started for a test or a session)")
    args = parser.parse_args(argv)
    info = check_image(args.image)
    print(f"emurig: {info.label()}", file=sys.stderr, flush=True)
    if args.owner_pid is not None:
        watch_owner(args.owner_pid)
    asyncio.run(EmuSupervisor(args.dir, args.image, info).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
