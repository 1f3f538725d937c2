"""What every hardware layer shares: direction and reset-cause codes, the maintenance record's
words, and the filesystem the stores use (Fs). Units: ms, us, microsteps, kPa x 10.

The interface itself (the Stepper's and the Hardware's methods, with their units and
promises) is pumphw.interface, which the Pico does not import. The application (pumpfw.app)
talks to hardware only through an object with those names: the real RP2040 layer
(pumphw.rp2hw) defines each itself; the simulated twin (pumphw.simhw) subclasses the
interface and adds nothing the firmware may call (its fault-injection side channel is
private to the rig).
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
