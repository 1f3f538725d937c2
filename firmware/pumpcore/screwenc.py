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
"""
from pumpcore.fixed import const
from pumpcore import alarms as _alarms
from pumpcore.detect import FlowDetector, DetectError

AS5600_ADDR = const(0x36)
AS5600_REG_STATUS = const(0x0B)     # bit 5 MD magnet detected, 4 ML too weak, 3 MH too strong
AS5600_REG_RAW_ANGLE = const(0x0C)  # 0x0C high nibble, 0x0D low byte
AS5600_MD = const(0x20)
AS5600_ML = const(0x10)
AS5600_MH = const(0x08)

BY_NONE = 0
BY_ENCODER = 1
BY_FLOW = 2
BY_NAMES = ("none", "encoder", "flow")


def as5600_angle(status, hi, lo):
    """RAW ANGLE from the STATUS byte and the two angle bytes; -1 without a usable magnet."""
    if not (status & AS5600_MD) or (status & (AS5600_ML | AS5600_MH)):
        return -1
    return ((hi & 0x0F) << 8) | lo


def missed_steps_bound(steps_per_rev, counts_per_rev, tol_counts):
    """Microsteps that may go missing before the alarm surely fires (ceil)."""
    n = (tol_counts + 2) * steps_per_rev
    return (n + counts_per_rev - 1) // counts_per_rev


class ScrewMonitor:
    def __init__(self, steps_per_rev, pl_per_step, counts_per_rev=4096, tol_counts=3, flow=None):
        if not isinstance(steps_per_rev, int) or steps_per_rev < 1 or steps_per_rev > 1 << 20:
            raise DetectError("steps_per_rev = %r: must be an integer in 1..%d" % (steps_per_rev, 1 << 20))
        if not isinstance(counts_per_rev, int) or counts_per_rev < 2 or counts_per_rev > 1 << 16:
            raise DetectError("counts_per_rev = %r: must be an integer in 2..65536" % (counts_per_rev,))
        if not isinstance(tol_counts, int) or tol_counts < 0 or tol_counts > 1000:
            raise DetectError("tol_counts = %r: must be an integer in 0..1000" % (tol_counts,))
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
        """Forget history (motor stopped, or no reading); a latched alarm stays in the AlarmSet."""
        self._last = -1
        self._cmd = 0        # commanded microsteps since the reference
        self._counts = 0     # measured counts since the reference
        self._cmd_pl = 0     # pL not yet handed to the flow detector
        self._meas_pl = 0    # pL x counts_per_rev not yet handed
        self.missed = False
        self.deficit_steps = 0
        self.flow.reset()

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
        deficit = self._cmd * cpr - self._counts * spr
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
