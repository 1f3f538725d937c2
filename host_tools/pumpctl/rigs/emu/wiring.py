"""The emulated Pico's pins wired to the pump (STEP/DIR/EN into the physics, DIAG, end stop,
button with bounce, pressure on the ADC, buzzer and LEDs observed) and the PIO's pacing.
"""
from __future__ import annotations

import array
from typing import Any

from ...errors import UsageError
from .encoder import As5600

PHYSICS_PERIOD_NS = 1_000_000
"""Emulated interval between physics updates (inputs, ADC), 1 ms."""

OUTPUT_BURST_NS = 5_000_000
"""Buzzer edges closer than this (5 ms) belong to one beep; only a beep's first edge is logged."""

BOUNCE_US = (0, 150, 400, 650, 900)
"""Contact bounce of one press: the level toggles at these offsets (us) before settling."""


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
        from .physics import pressure_to_adc_counts

        s = self.state()
        self._drive("diag", s["stall"])
        self._drive("end_stop_n", not s["end_stop"])
        self._drive("bolus_button_n", not self.button_down)
        kpa_x10 = s["pressure_kpa_x10"]
        self.mcu.adc.channel_values[self.pins["pressure_adc"]["channel"]] = (
            self.physics.adc_counts(kpa_x10) if self.physics is not None else pressure_to_adc_counts(kpa_x10))

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



PIO_BUS_KEYS = (0x50200, 0x50300)
"""rp2040py's peripheral-table keys of PIO0 and PIO1 (`(address >> 14) << 2` of 0x50200000 and
0x50300000): the bus looks a block up there for every CPU or DMA register access."""

_FIFO_WAITS = (2, 3, 5)
"""rp2040py WaitType values only a register access can end: RX_FIFO (a blocked `push`), TX_FIFO
(a blocked `pull`) and OUT (an autopull `out`). PIN and IRQ waits end on a GPIO edge or another
machine, which the pacer does not see, so a block waiting on them is never parked."""


class _PioOnBus:
    """A PIO block as the bus sees it: every register read and write goes on to the block,
    then tells the pacer (`on_access`), which wakes from parking if the access made a machine
    runnable (a TX FIFO write ending a `pull(block)`, an RX read ending a `push(block)`, a CTRL
    write enabling a machine). Anything else is the block's own (`__getattr__`)."""

    def __init__(self, pio: Any, on_access: Any) -> None:
        self._pio = pio
        self._on_access = on_access

    def read_uint32(self, offset: int) -> int:
        value = self._pio.read_uint32(offset)
        self._on_access()
        return value

    def write_uint32_atomic(self, offset: int, value: int, atomic_type: int) -> None:
        self._pio.write_uint32_atomic(offset, value, atomic_type)
        self._on_access()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pio, name)


class PioPacer:
    """Keeps the emulated PIO running while the CPU sleeps.

    rp2040py advances PIO by at most one instruction per CPU instruction or per idle jump, and
    writes off a state machine's backlog (re-arming it from "now") when a jump left it more
    than 8 system clocks behind. With the CPU asleep in WFE (the app idles most of the time),
    the step program's low-time loop (one instruction per 1 us state-machine cycle) got one
    instruction per jump: a 200 ng bolus showed 1 STEP edge instead of 5. On silicon PIO runs
    on its own.

    This alarm lands an idle jump on every state-machine cycle (GRID_NS = 1 us, 125 system
    clocks, the step program's clock) while a machine can run, in phase with the machine: when
    the CPU is executing (the PIO is then current to within one instruction) the alarm is set
    on the machine's own next due time; while the CPU sleeps it steps on by one machine cycle.
    Every due instruction thus runs on time, to within one CPU instruction. A few write-offs
    still happen (2-7 in the 4 pin-test runs of tests/emu/test_steppio_pins.py, e.g. when the
    alarm fires in the tick of the WFE itself and steps on from there); each moves that
    machine's phase by less than one of its cycles. `pio_backlog_drops` in the rig's status
    counts them; the pin tests measure the edges themselves (period within 500 ns).

    Parked: when no machine can run until a register access lets it (every enabled machine
    waits on a FIFO: the step program in `pull(block)` between two basal steps, 16.7 s of every
    16.7 s step period but its low time; or no block enabled), nothing is due, however long the
    CPU sleeps, so the alarm only checks every PARK_CHECK_NS. Only a CPU (or DMA) register
    access can end such a wait, and every one passes through `_PioOnBus`, which wakes the
    pacer at once, from inside the access: the machine's first instruction is then due one
    cycle later, and the alarm is set on it before the CPU can sleep again. (Parking until the
    clock's next other alarm, re-armed only at each simulator batch, was tried and reverted: a
    CPU that left WFE on a latched event, wrote the TX FIFO and slept again within one batch
    started that step in arrears.) Cost: one Python call per emulated us while a machine runs,
    one per PARK_CHECK_NS and per PIO register access otherwise.
    """

    GRID_NS = 1_000
    PARK_CHECK_NS = 1_000_000
    NEVER_DUE = 1 << 62                   # rp2040py's "no machine due" (all stalled or disabled)

    def __init__(self, mcu: Any) -> None:
        self.pios = list(mcu.pio)
        self.core = mcu.core
        self.parked = False
        self.wakes = 0                        # parked -> running through a register access
        self.alarm = mcu.clock.create_alarm(self._pace)
        self._mcu = mcu
        for key in PIO_BUS_KEYS:
            mcu.peripherals[key] = _PioOnBus(mcu.peripherals[key], self._on_access)
        self._pace()

    def _parkable(self) -> bool:
        """True when no machine can run before a register access: every block disabled, or
        every enabled machine of a running block waiting on a FIFO."""
        for pio in self.pios:
            if pio.stopped:
                continue
            if pio.next_due_fp < self.NEVER_DUE:
                return False
            for sm in pio.machines:
                if sm.enabled and not (sm.waiting and sm.wait_type in _FIFO_WAITS):
                    return False
        return True

    def _pace(self) -> None:
        if self._parkable():
            self.parked = True
            self.alarm.schedule(self.PARK_CHECK_NS)
            return
        self.parked = False
        delay = 0
        executing = not self.core.waiting
        for pio in self.pios:
            if pio.stopped:
                continue
            if executing and pio.next_due_fp < self.NEVER_DUE:
                ahead = (pio.next_due_fp - pio.cycle_fp) >> 8     # system clocks to its next step
                ns = (ahead if ahead > 0 else 1) * 8              # 125 MHz: 8 ns per clock
                if delay == 0 or ns < delay:
                    delay = ns
        self.alarm.schedule(delay or self.GRID_NS)

    def _on_access(self) -> None:
        """A PIO register was read or written: leave parking if a machine can run now."""
        if self.parked and not self._parkable():
            self.wakes += 1
            self._pace()

    def backlog_drops(self) -> int:
        return sum(int(pio.backlog_drops) for pio in self.pios)

    def cancel(self) -> None:
        self.alarm.cancel()
        for key, pio in zip(PIO_BUS_KEYS, self.pios):
            self._mcu.peripherals[key] = pio


class RealTimeCeiling:
    """Emulated time runs no faster than wall time, except inside a side-channel `wait`.

    With the PIO pacer parked an idle chip runs far ahead of real time (tens of emulated s per
    wall s: the idle jumps go from one 1 ms physics tick to the next). That is what a check
    wants while it waits for rig time to pass (`wait`, `power_cut` after_ms): nothing talks to
    the chip then. It is wrong while the host talks to it: a REPL exec or a pump request that
    takes 0.2 s of the host's wall time would last seconds of the firmware's time, longer than
    any Pico ever sees (a button held 300 ms was released before the host could look). Outside
    waits this alarm therefore holds the chip to real time at most, as silicon is: every
    CHECK_NS of emulated time it sleeps off what emulated time gained on wall time since the
    anchor (at most MAX_SLEEP_S at once, so the pty and the side channel stay served). Behind
    real time (busy code, ~1/40 of the chip's speed) it never races to catch up: the anchor
    moves. `slept_s` sums the wall time given away."""

    CHECK_NS = 1_000_000
    MAX_SLEEP_S = 0.02
    BEHIND_S = 0.05

    def __init__(self, mcu: Any) -> None:
        import time

        self._time = time
        self.clock = mcu.clock
        self.waits = 0                        # side-channel waits in progress: no ceiling
        self.slept_s = 0.0
        self.anchor()
        self.alarm = mcu.clock.create_alarm(self._check)
        self.alarm.schedule(self.CHECK_NS)

    def anchor(self) -> None:
        """Count from now: emulated and wall time start level."""
        self._wall0 = self._time.monotonic()
        self._emu0 = self.clock.nanos

    def _check(self) -> None:
        if self.waits:
            self.anchor()
        else:
            ahead = (self.clock.nanos - self._emu0) / 1e9 - (self._time.monotonic() - self._wall0)
            if ahead > 0:
                nap = min(ahead, self.MAX_SLEEP_S)
                self._time.sleep(nap)
                self.slept_s += nap
            elif ahead < -self.BEHIND_S:
                self.anchor()
        self.alarm.schedule(self.CHECK_NS)

    def cancel(self) -> None:
        self.alarm.cancel()
