"""The hardware-layer interface: what the application may call, implemented by rp2hw and simhw.

The application (pumpfw.app) talks to hardware only through an object with these names. The
real RP2040 layer (pumphw.rp2hw) and the simulated twin (pumphw.simhw) both subclass
`Hardware`; the twin adds nothing the firmware may call (its fault-injection side channel is
private to the rig). Units: ms, us, microsteps, kPa x 10 for pressure.
"""

DIR_INFUSE = 1   # plunger forward: drug leaves the outlet
DIR_RETRACT = 0  # plunger back (refill of the bench syringe by hand; never in therapy)

RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2
RESET_UNKNOWN = 3

RESET_NAMES = ("power-on", "watchdog", "soft", "unknown")


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
        """Pulses queued but not yet emitted."""
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
        """Disarm the watchdog for maintenance: called only after the motor is disabled and the
        state saved, when the application hands the link to the REPL (mpremote deploy). The
        next boot arms it again."""
        raise NotImplementedError

    def reset_cause(self):
        """One of RESET_* for the boot that is running."""
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
