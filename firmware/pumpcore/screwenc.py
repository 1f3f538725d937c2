"""Screw encoder: commanded microsteps against the lead screw's measured angle.

Pure core (both interpreters, small ints, no allocation in update). The encoder is an AS5600
magnetic angle sensor on the lead screw (12 bits per revolution, hw/bom.md); the hardware layer
hands its RAW ANGLE (0..counts_per_rev-1, or -1 when there is no reading or no magnet).

`ScrewMonitor.update(dt_ms, commanded_steps, raw_angle)` (commanded_steps: microsteps the step
generator emitted since the last call, signed, + = infuse):
- unwraps the angle (a change of more than half a revolution between two reads is taken the
  short way round, so reads must come at least twice per revolution: at the 20 mL rig's
  12800 microsteps/rev that is > 6400 microsteps between reads, far beyond any flow limit);
- missed steps: the deficit D = commanded_steps * counts_per_rev - counts * steps_per_rev (in
  1/steps_per_rev counts) is compared with (tol_counts + 1) * steps_per_rev. Quantisation
  keeps |D| below one count with nothing missing, so with tol_counts = 3 the alarm never fires
  on a sound drive and always fires once m microsteps are missing with
  m >= (tol_counts + 2) * steps_per_rev / counts_per_rev. 20 mL rig (12800 microsteps/rev,
  4096 counts/rev, 3.125 microsteps per count): m = 16 microsteps = 287 nL = 0.575 ug at
  2000 ug/mL; at 186 ug/day (one microstep every 16.7 s) 4.5 min of flow. The detector is
  independent of DIAG (`by` names it: "encoder");
- feeds a FlowDetector (measured vs commanded volume, pL carried exactly) with the screw's
  displacement: the detector that fired is `by` "flow" when only it did.
Without a reading (raw_angle < 0) both forget their history and say nothing.

Across a reset (power cut, watchdog) the deficit survives: the app saves `persist()` with the
state, and asks for an urgent save whenever the deficit has grown a count beyond what is on flash
(`save_wanted()`: only while steps go missing; a sound drive never asks). The next boot
`restore()`s it, less one count of quantisation (the new boot's reference reads the angle afresh),
so a sound drive never drifts to an alarm over any number of resets. The bound then holds
across resets, on the safe side:

    missed microsteps before the alarm, counted over k resets
        <= missed_steps_bound_across(spr, cpr, tol, k) = ceil((tol + 2 + 2k) * spr / cpr)
           + the microsteps made after the monitor's last read before each reset

(each reset loses at most one count not yet saved and one count of quantisation; the steps after
the last read are at most one main-loop iteration's). 20 mL rig and precision drive (both 12800
microsteps/rev): 16 within a boot, 22 across one reset, 29 across two. Provided the urgent saves
are written (the state store's urgent budget, 40 in a burst): a save not written leaves the last
one on flash, and its reset loses what grew since.
"""
from pumpcore.fixed import const
from pumpcore import text
from pumpcore import alarms as _alarms
from pumpcore.detect import FlowDetector, DetectError

AS5600_ADDR = const(0x36)
AS5600_REG_STATUS = const(0x0B)     # bit 5 MD magnet detected, 4 ML too weak, 3 MH too strong
_AS5600_REG_RAW_ANGLE = const(0x0C)  # 0x0C high nibble, 0x0D low byte
_AS5600_MD = const(0x20)
_AS5600_ML = const(0x10)
_AS5600_MH = const(0x08)

BY_NONE = 0
BY_ENCODER = 1
BY_FLOW = 2
BY_NAMES = ("none", "encoder", "flow")


def as5600_angle(status, hi, lo):
    """RAW ANGLE from the STATUS byte and the two angle bytes; -1 without a usable magnet."""
    if not (status & _AS5600_MD) or (status & (_AS5600_ML | _AS5600_MH)):
        return -1
    return ((hi & 0x0F) << 8) | lo


def missed_steps_bound(steps_per_rev, counts_per_rev, tol_counts):
    """Microsteps that may go missing within one boot before the alarm surely fires (ceil)."""
    return missed_steps_bound_across(steps_per_rev, counts_per_rev, tol_counts, 0)


def missed_steps_bound_across(steps_per_rev, counts_per_rev, tol_counts, resets):
    """The same counted over `resets` resets (ceil), the deficit carried by persist()/restore():
    each reset costs two counts; add the microsteps made after the last read before each reset."""
    n = (tol_counts + 2 + 2 * resets) * steps_per_rev
    return (n + counts_per_rev - 1) // counts_per_rev


_CARRY_MAX = const(0x20000000)   # a carried deficit saturates here (< 2**30, small int)


class ScrewMonitor:
    def __init__(self, steps_per_rev, pl_per_step, counts_per_rev=4096, tol_counts=3, flow=None):
        if not isinstance(steps_per_rev, int) or steps_per_rev < 1 or steps_per_rev > 1 << 20:
            raise DetectError(text("enc_steps", steps_per_rev, 1 << 20))
        if not isinstance(counts_per_rev, int) or counts_per_rev < 2 or counts_per_rev > 1 << 16:
            raise DetectError(text("enc_counts", counts_per_rev))
        if not isinstance(tol_counts, int) or tol_counts < 0 or tol_counts > 1000:
            raise DetectError(text("enc_tol", tol_counts))
        self.steps_per_rev = steps_per_rev
        self.counts_per_rev = counts_per_rev
        self.tol_counts = tol_counts
        self.pl_per_step = pl_per_step
        self.flow = flow if flow is not None else FlowDetector()
        self._limit = (tol_counts + 1) * steps_per_rev
        self.missed_bound_steps = missed_steps_bound(steps_per_rev, counts_per_rev, tol_counts)
        self.missed_bound_nl = self.missed_bound_steps * pl_per_step // 1000
        self.by = BY_NONE
        self.missed = False
        self.reset()

    def reset(self):
        """Forget history (no reading, or a reported alarm); a latched alarm stays in the AlarmSet."""
        self._carry = 0      # deficit carried over a reset (restore), in deficit units
        self._saved = 0      # the deficit in the state record last written (mark_saved)
        self._last = -1
        self._cmd = 0        # commanded microsteps since the reference
        self._counts = 0     # measured counts since the reference
        self._cmd_pl = 0     # pL not yet handed to the flow detector
        self._meas_pl = 0    # pL x counts_per_rev not yet handed
        self.missed = False
        self.deficit_steps = 0
        self.flow.reset()

    def hold(self):
        """The motor is held by an alarm: the flow window starts over; a missed-steps alarm that
        fired is reported, so the count starts over too. Otherwise the deficit stays (a held
        screw does not move, and a hold at boot must not forget what the last boot carried)."""
        if self.missed:
            self.reset()
        else:
            self.flow.reset()

    def deficit(self):
        """The unexplained deficit now, in 1/steps_per_rev counts (< 0: the screw is ahead)."""
        return self._carry + self._cmd * self.counts_per_rev - self._counts * self.steps_per_rev

    def persist(self):
        """The value to save with the state (pumpfw.app.save): the deficit, 0..2**29."""
        d = self.deficit()
        if d < 0:
            return 0
        return d if d < _CARRY_MAX else _CARRY_MAX

    def mark_saved(self, value):
        """The state record holding persist()'s `value` is on flash."""
        self._saved = value

    def save_wanted(self):
        """True when the deficit has grown a whole count beyond the one on flash: steps are going
        missing, and a reset now would lose them. Never on a sound drive (|deficit| < 1 count)."""
        return self.deficit() >= self._saved + self.steps_per_rev

    def restore(self, value):
        """Boot: carry a saved persist() value, less one count of quantisation (the new
        reference's). Call before the first update."""
        if not isinstance(value, int) or value < 0:
            return
        c = value - self.steps_per_rev
        self._carry = c if c > 0 else 0
        self._saved = value

    def update(self, dt_ms, commanded_steps, raw_angle):
        if raw_angle < 0:
            if self._last >= 0:
                self.reset()
            self.flow.update(dt_ms, 0, 0, False)
            return False
        cpr = self.counts_per_rev
        if self._last < 0:
            self._last = raw_angle
            return self.missed
        d = (raw_angle - self._last) % cpr
        if d >= cpr // 2:
            d -= cpr
        self._last = raw_angle
        self._cmd += commanded_steps
        self._counts += d
        spr = self.steps_per_rev
        deficit = self._carry + self._cmd * cpr - self._counts * spr
        self.deficit_steps = deficit // cpr
        if deficit >= self._limit:
            self.missed = True
        # keep the references small: take whole revolutions out of both
        while self._cmd >= spr and self._counts >= cpr:
            self._cmd -= spr
            self._counts -= cpr
        while self._cmd <= -spr and self._counts <= -cpr:
            self._cmd += spr
            self._counts += cpr
        # volumes for the flow detector, exact: a count is pl_per_step * spr / cpr pL
        self._cmd_pl += commanded_steps * self.pl_per_step
        self._meas_pl += d * self.pl_per_step * spr
        c_nl = self._cmd_pl // 1000
        self._cmd_pl -= c_nl * 1000
        m_nl = self._meas_pl // (1000 * cpr)
        self._meas_pl -= m_nl * 1000 * cpr
        self.flow.update(dt_ms, c_nl, m_nl, True)
        return self.missed

    def report(self, alarm_set):
        """Raise or clear missed-steps (20) and the flow alarms; `by` names the detector."""
        if self.missed:
            self.by = BY_ENCODER
        elif self.flow.active:
            self.by = BY_FLOW
        a = alarm_set.update(_alarms.ALARM_MISSED_STEPS, self.missed)
        b = self.flow.report(alarm_set)
        return a or b
