"""The hardware-layer interface: what the application may call, implemented by rp2hw and simhw.

The application (pumpfw.app) talks to hardware only through an object with these names. The
real RP2040 layer (pumphw.rp2hw) and the simulated twin (pumphw.simhw) both subclass
`Hardware`; the twin adds nothing the firmware may call (its fault-injection side channel is
private to the rig). Units: ms, us, microsteps, kPa x 10 for pressure.
"""
import os

DIR_INFUSE = 1   # plunger forward: drug leaves the outlet
DIR_RETRACT = 0  # plunger back (refill of the bench syringe by hand; never in therapy)

RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2
RESET_UNKNOWN = 3

RESET_NAMES = ("power-on", "watchdog", "soft", "unknown")

# --- the maintenance record in the RP2040 watchdog scratch registers 0..3 ----------------------
# SCRATCH0..7 (datasheet 4.7.6) keep their value through a watchdog reset (also machine.reset(),
# which uses the watchdog) and a soft reset, and read 0 after a power-on. The pico-sdk uses
# SCRATCH4..7 (watchdog_reboot, watchdog_enable); 0..3 are free. Layout of one record:
#   0: MAINT_MAGIC ^ tag ^ window_ms (check word)   1: tag (the maintenance command's auth counter)
#   2: ms since the window started, written by the hold's timer (stops at the window end or at
#      the reset, whichever comes first)             3: window_ms
MAINT_MAGIC = 0x4D41494E     # "MAIN"
MAINT_SCRATCH_WORDS = 4
MAINT_HOLD_MIN_MS = 1000
MAINT_HOLD_MAX_MS = 1800000  # the longest window the wire admits (pumpcore.wire.MAINT_MAX_MS)


def maint_record_words(tag, window_ms):
    """The four scratch words that open a maintenance record (elapsed 0)."""
    return ((MAINT_MAGIC ^ tag ^ window_ms) & 0xFFFFFFFF, tag, 0, window_ms)


def maint_record_decode(words):
    """(tag, elapsed_ms, window_ms) from four scratch words, or None if they hold no record."""
    check, tag, elapsed, window = words[0], words[1], words[2], words[3]
    if not window or check != (MAINT_MAGIC ^ tag ^ window) & 0xFFFFFFFF:
        return None
    if window > MAINT_HOLD_MAX_MS or elapsed > window:
        return None
    return (tag, elapsed, window)


class Fs:
    """The real filesystem: builtins open() and os, as on the Pico (littlefs) or a host dir."""

    def open(self, path, mode):
        return open(path, mode)

    def remove(self, path):
        os.remove(path)

    def rename(self, old, new):
        os.rename(old, new)

    def listdir(self, path):
        return os.listdir(path)

    def size(self, path):
        return os.stat(path)[6]

    def exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def mkdir(self, path):
        try:
            os.mkdir(path)
        except OSError:
            if not self.exists(path):
                raise

    def sync(self, f):
        """Make what was written durable: littlefs commits on flush(); on a host, fsync too."""
        f.flush()
        fsync = getattr(os, "fsync", None)
        if fsync is not None:
            try:
                fsync(f.fileno())
            except (AttributeError, OSError):
                pass


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
