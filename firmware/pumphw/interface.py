"""The hardware layer's interface: what the firmware calls on a Stepper and a Hardware, with the
units and the promises each method makes. The RP2040 layer (pumphw.rp2hw), the twin
(pumphw.simhw) and the tests' fakes implement it.

Not imported on a Pico (issue 16's RAM budget): these methods only raise NotImplementedError
or give a default, and on v1.22.2 each would sit in the heap for the whole run. rp2hw's
classes therefore define every method themselves, and tests/hw/test_interface.py holds them
(and the twin) to this list.
"""


class Stepper:
    """Step generator and driver (TMC2209 class): EN, DIR, STEP (from PIO), DIAG in.

    The motor is disabled (EN high) at construction: the safe state. `queue` hands a segment
    to the step generator; pulses are produced by PIO (or the model), never by Python timing.
    """

    def enable(self, on):
        """Energise (True) or release (False) the motor driver."""
        raise NotImplementedError

    def enabled(self):
        raise NotImplementedError

    def queue(self, steps, period_us, direction):
        """Queue `steps` pulses `period_us` apart in `direction`. Returns False if the queue
        is full (the caller retries next tick); never blocks."""
        raise NotImplementedError

    def steps_done(self):
        """Total pulses actually emitted since boot (monotonic, wraps at 2**30)."""
        raise NotImplementedError

    def pending(self):
        """Pulses queued and not yet known to be emitted: an upper bound of those still to reach
        the STEP pin (rp2hw counts a PIO segment's pulses when the segment reports completion,
        a full period after its last pulse)."""
        raise NotImplementedError

    def abort(self):
        """Drop every queued pulse at once (fault reaction). Returns pulses dropped."""
        raise NotImplementedError

    def stall(self):
        """True while the driver's DIAG output reports a stall."""
        raise NotImplementedError


class Hardware:
    """Everything the firmware touches. One instance per boot."""

    stepper = None  # a Stepper
    flash_root = "."  # directory of the flash filesystem for state and logs
    flash_fs = None   # the stores' filesystem object (None: Fs, builtins open + os)

    # time -----------------------------------------------------------------
    def ticks_ms(self):
        raise NotImplementedError

    def ticks_diff(self, a, b):
        raise NotImplementedError

    def sleep_ms(self, ms):
        raise NotImplementedError

    def idle(self, ms):
        """Wait up to `ms` (device time), returning early when host bytes arrive, so the main
        loop can sleep until its next due step yet answer a command within a few ms. Layers
        that can wait on the serial link (select.poll) override this; this fallback sleeps."""
        self.sleep_ms(ms)

    # inputs ---------------------------------------------------------------
    def pressure_kpa_x10(self):
        """Line pressure from the occlusion sensor, kPa x 10 (integer)."""
        raise NotImplementedError

    def end_stop(self):
        """True when the plunger is at its end stop (reservoir empty)."""
        raise NotImplementedError

    def screw_angle(self):
        """The lead screw encoder's RAW ANGLE, 0..4095 per revolution (AS5600, 12 bits), or -1
        when there is no encoder, no reading, or its magnet is missing/too weak/too strong.
        This default: no encoder."""
        return -1

    def bolus_button_presses(self):
        """Debounced presses of the patient bolus button since the last call (then cleared)."""
        raise NotImplementedError

    # outputs --------------------------------------------------------------
    def alarm_output(self, pattern):
        """Drive buzzer and alarm LED with an alarm pattern id (pumpcore.alarms.PATTERN_*)."""
        raise NotImplementedError

    # watchdog and reset ------------------------------------------------------
    def watchdog_start(self, timeout_ms):
        raise NotImplementedError

    def watchdog_feed(self):
        raise NotImplementedError

    def watchdog_stop(self):
        """Disarm the watchdog: only on a keyless rig (no rigkey.bin) whose app a Ctrl-C sent to
        the REPL, after the motor is disabled and the state saved (deploy to a fresh rig). A
        keyed rig uses maintenance_hold instead. The next boot arms it again."""
        raise NotImplementedError

    def reset_cause(self):
        """One of RESET_* for the boot that is running."""
        raise NotImplementedError

    def reset(self):
        """Reset the chip now, as machine.reset() does (it reads as RESET_WATCHDOG at the next
        boot and keeps the scratch registers). Never returns."""
        raise NotImplementedError

    # maintenance -------------------------------------------------------------------------------
    def link_interrupt(self, enabled):
        """Ctrl-C (0x03) from the host link: True, it interrupts Python (KeyboardInterrupt, the
        REPL's default, micropython.kbd_intr(3)); False, it is an ordinary byte that
        serial_read returns (micropython.kbd_intr(-1)): while the app owns the link on a keyed
        rig no byte from the host can stop it."""
        raise NotImplementedError

    def maintenance_hold(self, window_ms, tag, pattern):
        """Start the maintenance hold, which runs on its own (a timer, not the main loop) after
        the application has left for the REPL: for `window_ms` it feeds the watchdog (armed by
        watchdog_start) and keeps the alarm output playing `pattern`; then it stops feeding,
        so the watchdog resets the rig back into the application. Opens the scratch record
        (tag, elapsed ms, window) that maintenance_record() reads at the next boot. The motor
        must already be released and the state saved."""
        raise NotImplementedError

    def maintenance_record(self):
        """(tag, elapsed_ms, window_ms) of the maintenance hold that ended with the reset that
        started this boot, or None (no hold, or a power-on erased the scratch registers).
        Clears the record: a second call returns None."""
        raise NotImplementedError

    # host link ----------------------------------------------------------------
    def serial_read(self):
        """Bytes received from the host since the last call (b"" if none); never blocks."""
        raise NotImplementedError

    def serial_write(self, data):
        raise NotImplementedError

    def rig_id(self):
        """Stable id of this rig (RP2040 unique id as hex, or the virtual rig's name)."""
        raise NotImplementedError
