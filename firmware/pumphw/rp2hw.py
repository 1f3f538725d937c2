"""RP2040 hardware layer: TMC2209 driver pins + PIO steps, sensors, button, alarms, WDT, USB serial.

Every pin comes from /pinmap.json (pumphw.pinmap). Construction leaves the motor released
(EN high: the safe state) before anything else is set up. The pure helpers at the top
(TMC2209 UART datagrams, button debouncer, alarm pattern timing)
run on any interpreter and are tested on the host; the classes below them need `machine`.
"""
import sys
import time

from pumpcore.fixed import const
from pumphw import base, text
from pumpcore.pressure import load_sensor
from pumpcore import screwenc

# --- occlusion pressure sensor ---------------------------------------------------------------
# Described once in /mechanism.json "pressure_sensor" (hw/mechanism.json; the BOM's Honeywell
# ABPDANV015PGAA3 when a deploy predates the field): pumpcore.pressure holds the transfer
# function. The sensor runs from the Pico's 3V3, which is also the ADC reference, so the raw
# reading needs no voltage reference (ratiometric). Above its range the output rails at 3V3,
# which reads as sensor.rail_kpa_x10 (116.3 kPa for the BOM part).
_ADC_SAMPLES = const(4)


# --- TMC2209 UART (datasheet section 4: 8-byte write datagram, 4-byte read request) -------------
_TMC_SYNC = const(0x05)
_TMC_REG_GCONF = const(0x00)
TMC_REG_IFCNT = const(0x02)
TMC_REG_CHOPCONF = const(0x6C)
# GCONF: I_scale_analog (bit 0), pdn_disable (6: PDN_UART is UART), mstep_reg_select (7:
# microsteps from MRES, not MS1/MS2), multistep_filt (8)
_TMC_GCONF_VALUE = const(0x1C1)
# CHOPCONF reset default 0x10000053 (TOFF 3, HSTRT 5, TBL 24 clocks, intpol) with MRES cleared
TMC_CHOPCONF_BASE = const(0x10000053 & ~(0xF << 24))
# Bounds of every driver-UART exchange: the reply to a read request (4 echoed + 8 bytes, about
# 1 ms at 115200 baud) must be complete within _TMC_REPLY_DEADLINE_MS ms of the request; the UART
# itself waits at most _TMC_CHAR_TIMEOUT_MS ms for a character. A silent driver is a driver fault.
_TMC_REPLY_DEADLINE_MS = const(20)
_TMC_CHAR_TIMEOUT_MS = const(5)
_TMC_ECHO_AND_REPLY = const(12)


def tmc_crc8(data, n):
    """CRC-8 of the first n bytes as the TMC2209 computes it (polynomial x^8+x^2+x+1, LSB first)."""
    crc = 0
    for i in range(n):
        b = data[i]
        for _ in range(8):
            if ((crc >> 7) ^ (b & 1)) & 1:
                crc = ((crc << 1) ^ 0x07) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
            b >>= 1
    return crc


def tmc_mres(microsteps):
    """MRES field for a microstep count (256 -> 0, 128 -> 1, ..., 1 -> 8); ValueError otherwise."""
    for mres in range(9):
        if 256 >> mres == microsteps:
            return mres
    raise ValueError(text("microsteps", microsteps))


def tmc_write_datagram(slave, reg, value):
    """8-byte write datagram: sync, slave address 0..3, register | 0x80, 32-bit value MSB first, CRC."""
    d = bytearray(8)
    d[0] = _TMC_SYNC
    d[1] = slave
    d[2] = reg | 0x80
    d[3] = (value >> 24) & 0xFF
    d[4] = (value >> 16) & 0xFF
    d[5] = (value >> 8) & 0xFF
    d[6] = value & 0xFF
    d[7] = tmc_crc8(d, 7)
    return bytes(d)


def tmc_read_request(slave, reg):
    """4-byte read request for register `reg`."""
    d = bytearray(4)
    d[0] = _TMC_SYNC
    d[1] = slave
    d[2] = reg & 0x7F
    d[3] = tmc_crc8(d, 3)
    return bytes(d)


def tmc_parse_reply(reply, reg):
    """Register value from an 8-byte read reply (sync, 0xFF, reg, value, CRC), or -1 if bad."""
    if len(reply) != 8 or reply[0] & 0x0F != _TMC_SYNC or reply[1] != 0xFF or reply[2] != reg:
        return -1
    if tmc_crc8(reply, 7) != reply[7]:
        return -1
    return (reply[3] << 24) | (reply[4] << 16) | (reply[5] << 8) | reply[6]


# --- patient bolus button ---------------------------------------------------------------------
DEBOUNCE_MS = const(50)


class EdgeDebouncer:
    """Debounced, edge-counted presses of an active-low button; the IRQ part only counts.

    `edge(now_ms)` runs in the pin's hard IRQ on both edges: an edge that comes after the line
    was quiet for DEBOUNCE_MS starts a real transition and is counted; edges closer together
    are bounce and only move the quiet timer. Transitions alternate press/release, so odd
    counts are presses. `update(...)` runs in the main loop and returns the presses since its
    last call; when the line has been quiet for DEBOUNCE_MS it checks the parity against the
    settled level, which repairs a transition hidden inside another's bounce (a tap shorter
    than DEBOUNCE_MS, or a press right after a release). A button held at boot is no press.
    """

    def __init__(self, level, now_ms, ticks_diff):
        self.transitions = 0     # written by the IRQ only
        self.edge_ms = now_ms    # written by the IRQ only
        self._fresh = 1
        self._diff = ticks_diff
        self._adjust = 1 if level == 0 else 0   # held at boot: parity says pressed
        self._seen = self._adjust

    def edge(self, now_ms):
        """Hard-IRQ half: count the first edge after a quiet line; allocates nothing."""
        if self._fresh or self._diff(now_ms, self.edge_ms) >= DEBOUNCE_MS:
            self.transitions += 1
        self._fresh = 0
        self.edge_ms = now_ms

    def update(self, transitions, edge_ms, now_ms, level):
        """Main-loop half: presses since the last call. transitions, edge_ms: read from this
        object with IRQs off; level: the pin now (0 = pressed)."""
        eff = transitions + self._adjust
        if self._fresh or self._diff(now_ms, edge_ms) >= DEBOUNCE_MS:
            if (level == 0) != (eff & 1 == 1):
                self._adjust += 1
                eff += 1
        presses = (eff + 1) // 2 - (self._seen + 1) // 2
        self._seen = eff
        return presses


# --- alarm buzzer and LED ---------------------------------------------------------------------
BUZZER_HZ = const(4000)        # resonance of the piezo sounder in hw/bom.md (PKM22EPPH4001)
BUZZER_DUTY_U16 = const(32768)
_ALARM_TICK_MS = const(20)      # pattern timer period


def pattern_levels(spec, t_ms):
    """(buzzer_on, led_on) at t_ms since the pattern started, for one PATTERN_SPEC row
    (buzz_on_ms, buzz_off_ms, beeps, repeat_ms, colour, led_period_ms) of pumpcore.alarms."""
    on_ms, off_ms, beeps, repeat_ms, colour, led_period = spec
    buzz = 0
    if beeps and on_ms:
        phase = t_ms % repeat_ms if repeat_ms else t_ms
        cycle = on_ms + off_ms
        if phase // cycle < beeps and phase % cycle < on_ms:
            buzz = 1
    led = 0
    if colour != "off":
        led = 1 if led_period == 0 or t_ms % led_period < led_period // 2 else 0
    return buzz, led


# --- the hardware -----------------------------------------------------------------------------
_WDT_MAX_MS = const(8300)
# RP2040 watchdog CTRL register through its atomic-clear alias (datasheet 2.1.2, 4.7.6):
# writing bit 30 (ENABLE) there stops the watchdog; machine.WDT itself cannot be stopped.
_WATCHDOG_CTRL_CLR = const(0x40058000 + 0x3000)
_WATCHDOG_ENABLE = const(1 << 30)
_WATCHDOG_SCRATCH0 = const(0x40058000 + 0x0C)   # SCRATCH0..3 at +0x0C..+0x18 (datasheet 4.7.6)
STEP_SM_ID = const(0)
_SERIAL_CHUNK = const(256)      # bytes taken from USB per serial_read() at most
MECHANISM_PATH = "/mechanism.json"
_DEFAULT_MICROSTEPS = const(64)


class Rp2Stepper:   # a pumphw.interface.Stepper (not a subclass: the Pico does not import it)
    """TMC2209 on EN/DIR/STEP/DIAG; pulses from the PIO StepGenerator (pumphw.steppio).

    `prepare`, if given, runs before every released -> energised change and raises if the
    driver is not fit to move (Rp2Hardware passes the UART microstep configuration)."""

    def __init__(self, generator, en_pin, diag_pin, prepare=None):
        self._gen = generator
        self._en = en_pin
        self._diag = diag_pin
        self._prepare = prepare
        self._on = False
        en_pin.value(1)

    def enable(self, on):
        """Energise (True) or release (False). Energising first (re)configures and checks the
        driver; if that raises, the motor stays released. Releasing first aborts every queued
        pulse, so no pulse reaches a released motor (it would be counted but not move)."""
        if on:
            if not self._on and self._prepare is not None:
                self._prepare()
            self._en.value(0)
            self._on = True
        else:
            self._gen.abort()
            self._en.value(1)
            self._on = False

    def enabled(self):
        return self._on

    def queue(self, steps, period_us, direction):
        """See interface.Stepper.queue; ValueError for out-of-range values, RuntimeError if released."""
        if not self._on and steps:
            raise RuntimeError(text("released", steps))
        return self._gen.queue(steps, period_us, direction)

    def steps_done(self):
        return self._gen.steps_done()

    def pending(self):
        return self._gen.pending()

    def busy(self):
        return self._gen.busy()

    def abort(self):
        return self._gen.abort()

    def stall(self):
        return self._diag.value() == 1


class _Buses:
    """The pin map's buses as the running layer needs them (the driver UART, the encoder's I2C),
    copied out of the checked PinMap: the checking code (pumphw.pinmap, ~14 KB of the RP2040
    heap) is boot-only and make_hardware() lets it go (issue 16)."""

    def __init__(self, pm):
        self.uart_id = pm.uart_id
        self.uart_tx = pm.uart_tx
        self.uart_rx = pm.uart_rx
        self.uart_baud = pm.uart_baud
        self.i2c_id = pm.i2c_id
        self.i2c_sda = pm.i2c_sda
        self.i2c_scl = pm.i2c_scl
        self.i2c_freq = pm.i2c_freq


class Rp2Hardware:  # a pumphw.interface.Hardware (not a subclass, as Rp2Stepper)
    """The real rig: one instance per boot, built from /pinmap.json."""

    flash_root = "/"

    def __init__(self, pinmap_path=None):
        import machine
        from machine import Pin
        from pumphw import pinmap as pinmap_mod
        from pumphw.steppio import make_step_generator

        self._machine = machine
        pm = pinmap_mod.load_pinmap(pinmap_path or pinmap_mod.PINMAP_PATH)
        self.pinmap = _Buses(pm)    # not the PinMap: its class would hold pumphw.pinmap's code
        # safe state first: motor released, STEP low
        en = Pin(pm.en_n, Pin.OUT, value=1)
        Pin(pm.step, Pin.OUT, value=0)
        self._diag = Pin(pm.diag, Pin.IN, Pin.PULL_DOWN)
        self.driver_configured = False
        self.driver_error = None     # why the last energise was refused (text), or None
        self._uart = None
        self._i2c = None
        self._i2c_buf = None
        prepare = self._prepare_driver if pm.uart_id >= 0 else None
        self.stepper = Rp2Stepper(make_step_generator(STEP_SM_ID, pm.step, pm.dir), en, self._diag,
                                  prepare)

        self._end_stop = Pin(pm.end_stop_n, Pin.IN, Pin.PULL_UP)
        self._button = Pin(pm.bolus_button_n, Pin.IN, Pin.PULL_UP)
        self._debounce = EdgeDebouncer(self._button.value(), time.ticks_ms(), time.ticks_diff)
        self._button_cb = self._on_button_edge  # bound once: the IRQ allocates nothing
        self._button.irq(handler=self._button_cb, trigger=Pin.IRQ_FALLING | Pin.IRQ_RISING,
                         hard=True)

        # the sensor description: a wrong one stops the boot here with its field named
        self.pressure_sensor = load_sensor(MECHANISM_PATH)
        self._to_kpa_x10 = self.pressure_sensor.kpa_x10_from_u16   # bound once: no allocation per read
        self._adc = machine.ADC(pm.adc_channel)

        self._led = Pin(pm.alarm_led, Pin.OUT, value=0)
        self._buzzer = machine.PWM(Pin(pm.buzzer))
        self._buzzer.freq(BUZZER_HZ)
        self._buzzer.duty_u16(0)
        Pin(pm.status_led, Pin.OUT, value=1)  # powered and booted
        self._pattern = 0
        self._pattern_t0 = time.ticks_ms()
        self._spec = None
        self._timer = None
        self._timer_cb = self._on_alarm_tick
        self._hold_ms = 0          # maintenance hold window (0: no hold)
        self._hold_t0 = 0

        self._wdt = None

        import select
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._rx = bytearray(_SERIAL_CHUNK)
        self._rx_mv = memoryview(self._rx)
        self._one = bytearray(1)

    # time ---------------------------------------------------------------------------------
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def idle(self, ms):
        """Wait up to `ms` ms, returning as soon as host bytes arrive on USB (select.poll)."""
        if ms <= 0:
            return
        for _ in self._poll.ipoll(ms):
            break

    # inputs ---------------------------------------------------------------------------------
    def pressure_kpa_x10(self):
        """Mean of 4 ADC readings through the sensor's transfer function (pumpcore.pressure)."""
        total = 0
        for _ in range(_ADC_SAMPLES):
            total += self._adc.read_u16()
        return self._to_kpa_x10(total // _ADC_SAMPLES)

    def screw_angle(self):
        """AS5600 on the lead screw (pumpcore.screwenc): STATUS (0x0B) then RAW ANGLE (0x0C,
        0x0D) in one read; -1 without the encoder in the pin map, on a bus error or without a
        usable magnet (MD clear, ML or MH set)."""
        pm = self.pinmap
        if pm.i2c_id < 0:
            return -1
        try:
            if self._i2c is None:
                import machine as m
                self._i2c = m.I2C(pm.i2c_id, sda=m.Pin(pm.i2c_sda), scl=m.Pin(pm.i2c_scl), freq=pm.i2c_freq)
                self._i2c_buf = bytearray(3)
            self._i2c.readfrom_mem_into(screwenc.AS5600_ADDR, screwenc.AS5600_REG_STATUS, self._i2c_buf)
        except OSError:
            return -1
        b = self._i2c_buf
        return screwenc.as5600_angle(b[0], b[1], b[2])

    def end_stop(self):
        return self._end_stop.value() == 0

    def _on_button_edge(self, pin):
        # hard IRQ: count only (EdgeDebouncer.edge allocates nothing)
        self._debounce.edge(time.ticks_ms())

    def bolus_button_presses(self):
        m = self._machine
        d = self._debounce
        state = m.disable_irq()
        transitions = d.transitions
        edge_ms = d.edge_ms
        m.enable_irq(state)
        return d.update(transitions, edge_ms, time.ticks_ms(), self._button.value())

    # outputs --------------------------------------------------------------------------------
    def alarm_output(self, pattern):
        """Start pattern `pattern` (pumpcore.alarms.PATTERN_*) on buzzer and alarm LED; the
        same pattern again keeps its phase. A 20 ms soft timer plays it."""
        if self._spec is None:
            from pumpcore.alarms import PATTERN_SPEC
            self._spec = PATTERN_SPEC
        if not isinstance(pattern, int) or pattern < 0 or pattern >= len(self._spec):
            raise ValueError(text("pattern", pattern, len(self._spec) - 1))
        if pattern == self._pattern and self._timer is not None:
            return
        self._pattern = pattern
        self._pattern_t0 = time.ticks_ms()
        if self._timer is None:
            self._timer = self._machine.Timer(-1)
            self._timer.init(mode=self._machine.Timer.PERIODIC, period=_ALARM_TICK_MS,
                             callback=self._timer_cb)
        self._on_alarm_tick(None)

    def _on_alarm_tick(self, timer):
        now = time.ticks_ms()
        t = time.ticks_diff(now, self._pattern_t0)
        buzz, led = pattern_levels(self._spec[self._pattern], t)
        self._buzzer.duty_u16(BUZZER_DUTY_U16 if buzz else 0)
        self._led.value(led)
        if self._hold_ms:
            # maintenance hold (the app has left for the REPL): feed the watchdog until the
            # window ends, record the ms elapsed in SCRATCH2; then stop feeding: the reset
            el = time.ticks_diff(now, self._hold_t0)
            if el < self._hold_ms:
                if self._wdt is not None:
                    self._wdt.feed()
            else:
                el = self._hold_ms
            self._machine.mem32[_WATCHDOG_SCRATCH0 + 8] = el

    # watchdog and reset -----------------------------------------------------------------------
    def watchdog_start(self, timeout_ms):
        """Start the RP2040 watchdog (cannot be stopped again): 1..8300 ms."""
        if not isinstance(timeout_ms, int) or timeout_ms < 1 or timeout_ms > _WDT_MAX_MS:
            raise ValueError(text("watchdog", timeout_ms, _WDT_MAX_MS))
        self._wdt = self._machine.WDT(timeout=timeout_ms)

    def watchdog_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def watchdog_stop(self):
        """Disarm the watchdog for maintenance (motor already released, state saved): clears
        CTRL.ENABLE, since machine.WDT has no stop. The next boot arms it again."""
        self._machine.mem32[_WATCHDOG_CTRL_CLR] = _WATCHDOG_ENABLE
        self._wdt = None

    def reset(self):
        """machine.reset(): through the watchdog, so the next boot reads RESET_WATCHDOG and the
        scratch registers survive."""
        self._machine.reset()

    # maintenance ---------------------------------------------------------------------------------
    def link_interrupt(self, enabled):
        """micropython.kbd_intr(3) (Ctrl-C raises KeyboardInterrupt, USB CDC takes it out of
        band) or kbd_intr(-1) (0x03 is data that serial_read returns)."""
        import micropython
        micropython.kbd_intr(3 if enabled else -1)

    def maintenance_hold(self, window_ms, tag, pattern):
        """The alarm pattern timer (a soft machine.Timer, which keeps running at the REPL) also
        feeds the watchdog for `window_ms`, then stops: the watchdog resets the chip. A soft
        reset (Ctrl-D, `mpremote` without `resume`) frees the timer: the watchdog then resets
        the chip within its timeout, which ends maintenance early but safely."""
        if not isinstance(window_ms, int) or not base.MAINT_HOLD_MIN_MS <= window_ms <= base.MAINT_HOLD_MAX_MS:
            raise ValueError(text("hold", window_ms, base.MAINT_HOLD_MIN_MS, base.MAINT_HOLD_MAX_MS))
        words = base.maint_record_words(tag, window_ms)
        mem = self._machine.mem32
        for i in range(base.MAINT_SCRATCH_WORDS):
            mem[_WATCHDOG_SCRATCH0 + 4 * i] = words[i]
        self._hold_t0 = time.ticks_ms()
        self._hold_ms = window_ms
        self.alarm_output(pattern)      # starts the timer if no alarm pattern ran yet

    def maintenance_record(self):
        mem = self._machine.mem32
        words = [mem[_WATCHDOG_SCRATCH0 + 4 * i] & 0xFFFFFFFF for i in range(base.MAINT_SCRATCH_WORDS)]
        for i in range(base.MAINT_SCRATCH_WORDS):
            mem[_WATCHDOG_SCRATCH0 + 4 * i] = 0
        return base.maint_record_decode(words)

    def reset_cause(self):
        """RESET_WATCHDOG or RESET_POWER_ON from machine.reset_cause(); the RP2040 cannot tell
        a soft reset (Ctrl-D keeps the last hardware cause) and machine.reset() reads as
        watchdog, because it uses the watchdog."""
        m = self._machine
        c = m.reset_cause()
        if c == m.WDT_RESET:
            return base.RESET_WATCHDOG
        if c == m.PWRON_RESET:
            return base.RESET_POWER_ON
        return base.RESET_UNKNOWN

    # host link ------------------------------------------------------------------------------------
    def serial_read(self):
        """Bytes waiting on USB CDC (up to 256), b"" if none; never blocks."""
        n = 0
        stdin = sys.stdin.buffer
        while n < _SERIAL_CHUNK:
            ready = False
            for _ in self._poll.ipoll(0):
                ready = True
            if not ready:
                break
            if not stdin.readinto(self._one):
                break
            self._rx[n] = self._one[0]
            n += 1
        if n == 0:
            return b""
        return bytes(self._rx_mv[:n])

    def serial_write(self, data):
        sys.stdout.buffer.write(data)

    def rig_id(self):
        import binascii
        return binascii.hexlify(self._machine.unique_id()).decode()

    # TMC2209 configuration over UART ----------------------------------------------------------
    def _mechanism_microsteps(self):
        try:
            import json
            with open(MECHANISM_PATH) as f:
                return json.load(f)["microsteps"]
        except (OSError, ValueError, KeyError):
            return _DEFAULT_MICROSTEPS

    def _prepare_driver(self):
        # Before every energise: the TMC2209 forgets its registers whenever VM (12 V) drops, and
        # with MS1 = MS2 = GND it would then run 8 microsteps: 8x the dose per step.
        # A UART error or a silent driver (bounded by _TMC_REPLY_DEADLINE_MS) is a driver fault.
        microsteps = self._mechanism_microsteps()
        try:
            ok = self.configure_driver(microsteps)
        except OSError as exc:
            ok = False
            self.driver_configured = False
            self.driver_error = text("uart", exc)
        else:
            self.driver_error = None if ok else text("no_reply", _TMC_REPLY_DEADLINE_MS)
        if not ok:
            raise RuntimeError(text("no_confirm", self.pinmap.uart_id, microsteps, self.driver_error))

    def configure_driver(self, microsteps, slave=0):
        """Write GCONF and CHOPCONF (MRES for `microsteps`) and check that the driver's
        write counter IFCNT moved by 2. Returns True when the driver confirmed both writes,
        False on a bad or missing reply. Every UART exchange is bounded (UART timeouts of
        _TMC_CHAR_TIMEOUT_MS and a _TMC_REPLY_DEADLINE_MS deadline per read): a silent driver
        costs at most about 2 * _TMC_REPLY_DEADLINE_MS + 10 ms, never a hang.
        Called by stepper.enable(True); not at construction (VM may still be off then)."""
        m = self._machine
        pm = self.pinmap
        mres = tmc_mres(microsteps)
        self.driver_configured = False
        if self._uart is None:
            self._uart = m.UART(pm.uart_id, baudrate=pm.uart_baud, tx=m.Pin(pm.uart_tx),
                                rx=m.Pin(pm.uart_rx), timeout=_TMC_CHAR_TIMEOUT_MS,
                                timeout_char=_TMC_CHAR_TIMEOUT_MS)
        uart = self._uart
        before = self._tmc_read(TMC_REG_IFCNT, slave)
        if before < 0:
            return False
        uart.write(tmc_write_datagram(slave, _TMC_REG_GCONF, _TMC_GCONF_VALUE))
        time.sleep_ms(2)
        uart.write(tmc_write_datagram(slave, TMC_REG_CHOPCONF, TMC_CHOPCONF_BASE | (mres << 24)))
        time.sleep_ms(2)
        after = self._tmc_read(TMC_REG_IFCNT, slave)
        self.driver_configured = after >= 0 and ((after - before) & 0xFF) == 2
        return self.driver_configured

    def _tmc_read(self, reg, slave):
        """Register `reg`, or -1 if no valid reply came within _TMC_REPLY_DEADLINE_MS ms."""
        uart = self._uart
        # drop stale bytes, bounded: a line stuck at a babbling level cannot keep us here
        for _ in range(64):
            if not uart.any():
                break
            uart.read(uart.any())
        uart.write(tmc_read_request(slave, reg))
        # single-wire bus: our 4 request bytes echo back before the 8-byte reply
        want = _TMC_ECHO_AND_REPLY
        buf = bytearray(want)
        got = 0
        t0 = time.ticks_ms()
        while got < want and time.ticks_diff(time.ticks_ms(), t0) < _TMC_REPLY_DEADLINE_MS:
            n = uart.any()
            if n:
                chunk = uart.read(min(n, want - got)) or b""
                buf[got:got + len(chunk)] = chunk
                got += len(chunk)
            else:
                time.sleep_ms(1)
        if got < 8:
            return -1
        return tmc_parse_reply(bytes(buf[got - 8:got]), reg)
