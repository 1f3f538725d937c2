"""Independent reference for the stateful app test: what the programs and accepted boluses allow.

Exact arithmetic with Fractions, computed from what the test commanded (programs committed,
boluses accepted, suspend/resume, wall-clock corrections) and from the physical pulses the fake
motor made, never from the app's own dose counters. Units: ng, ng/day, pL, ms.
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction

from pumpcore.program import MODE_CONTINUOUS, MODE_FLEX, Program

MS_PER_DAY = 86_400_000
HOUR = 3_600_000

# the small set of programs the machine commits: name -> keyword arguments (concentration added)
PROGRAMS: dict[str, dict] = {
    "continuous_186": dict(mode=MODE_CONTINUOUS, rate_ng_day=186_000),
    # a high basal (a 5-min window holds ~97 microsteps on the 20 mL rig): an under-flow there
    # is beyond the FlowDetector's 10 % + 200 nL at once
    "continuous_1000": dict(mode=MODE_CONTINUOUS, rate_ng_day=1_000_000),
    "flex_4step": dict(mode=MODE_FLEX, patterns=[(0x7F, [(0, 200_000), (6 * HOUR, 180_000),
                                                          (12 * HOUR, 150_000), (20 * HOUR, 220_000)])]),
    "patient_1h_3": dict(mode=MODE_CONTINUOUS, rate_ng_day=186_000,
                         patient=(20_000, 600_000, HOUR, 3)),
    # short lockout and a small daily allotment: a few minutes of presses reach both limits
    "patient_short": dict(mode=MODE_CONTINUOUS, rate_ng_day=186_000,
                          patient=(2_000, 10_000, 120_000, 4)),
    "periodic_2x20": dict(mode=MODE_CONTINUOUS, rate_ng_day=150_000,
                          periodic=[(7 * HOUR, 20_000, 900_000), (19 * HOUR, 20_000, 900_000)]),
}


def make_program(name: str, conc_ug_ml: int) -> Program:
    """A fresh Program of the set `name` at concentration conc_ug_ml (ug/mL)."""
    kw = dict(PROGRAMS[name])
    if "patterns" in kw:
        kw["patterns"] = [(m, list(s)) for m, s in kw["patterns"]]
    if "periodic" in kw:
        kw["periodic"] = list(kw["periodic"])
    return Program(concentration_ug_ml=conc_ug_ml, **kw)


def basal_at(prog: Program, weekday: int, ms_of_day: int) -> int:
    """Programmed basal rate (ng/day) at a wall time (weekday Monday 0, ms of day)."""
    if prog.mode == MODE_CONTINUOUS:
        return prog.rate_ng_day
    if prog.mode == MODE_FLEX:
        for mask, steps in prog.patterns:
            if mask & (1 << weekday):
                rate = steps[0][1]
                for start, r in steps:
                    if start <= ms_of_day:
                        rate = r
                return rate
    return 0


def basal_change_points(prog: Program) -> list[int]:
    """ms of day at which the basal may change (flex step starts; midnight always)."""
    pts = {0}
    if prog.mode == MODE_FLEX:
        for _, steps in prog.patterns:
            for start, _ in steps:
                pts.add(start)
    return sorted(pts)


def basal_integral_ng(prog: Program, wall_ms: int, dt_ms: int) -> Fraction:
    """Exact programmed basal dose (ng) over wall time [wall_ms, wall_ms + dt_ms); wall_ms is
    ms since 2000-01-01 00:00 (a Saturday)."""
    total = Fraction(0)
    t, end = wall_ms, wall_ms + dt_ms
    pts = basal_change_points(prog)
    while t < end:
        day, ms = divmod(t, MS_PER_DAY)
        nxt = MS_PER_DAY
        for p in pts:
            if p > ms:
                nxt = p
                break
        seg_end = min(end, day * MS_PER_DAY + nxt)
        rate = basal_at(prog, (day + 5) % 7, ms)
        total += Fraction(rate * (seg_end - t), MS_PER_DAY)
        t = seg_end
    return total


def periodic_crossings(prog: Program, wall_ms: int, dt_ms: int) -> list[tuple[int, int, int]]:
    """Periodic boluses whose start falls in wall time [wall_ms, wall_ms + dt_ms): (day, ms, dose)."""
    out = []
    if not prog.periodic:
        return out
    d0, d1 = wall_ms // MS_PER_DAY, (wall_ms + dt_ms) // MS_PER_DAY
    for day in range(d0, d1 + 1):
        for t, dose, _ in prog.periodic:
            w = day * MS_PER_DAY + t
            if wall_ms <= w < wall_ms + dt_ms:
                out.append((day, t, dose))
    return out


class Line:
    """Drug concentration of each pulse, from the refills (the bridge: the catheter keeps the old
    drug until its volume has been pushed out). ng per pulse exact, as a Fraction."""

    def __init__(self, pl_per_step: int) -> None:
        self.pl = pl_per_step
        self.line_conc = 0          # ug/mL in the catheter (0: nothing known yet)
        self.res_conc = 0           # ug/mL in the reservoir
        self.bridge_left_pl = 0     # old drug still in the catheter (pL)

    def refill(self, conc_ug_ml: int, catheter_nl: int) -> None:
        """A refill at conc_ug_ml; catheter_nl is the running program's catheter (0: none)."""
        if self.res_conc == 0:
            self.res_conc = self.line_conc = conc_ug_ml
            return
        if conc_ug_ml != self.res_conc or self.bridge_left_pl > 0:
            self.res_conc = conc_ug_ml
            if catheter_nl > 0:
                self.bridge_left_pl = catheter_nl * 1000
            else:
                self.bridge_left_pl = 0
                self.line_conc = conc_ug_ml

    def load(self, conc_ug_ml: int) -> None:
        """A program commit on an empty reservoir record sets the drug (app/scheduler rule)."""
        if self.res_conc == 0:
            self.res_conc = self.line_conc = conc_ug_ml

    def pulse_ng(self) -> Fraction:
        """ng delivered by one more pulse (ng = pL * ug/mL / 1e6)."""
        pl = self.pl
        if self.bridge_left_pl <= 0:
            self.line_conc = self.res_conc
            return Fraction(pl * self.line_conc, 10**6)
        old = min(pl, self.bridge_left_pl)
        ng = Fraction(old * self.line_conc + (pl - old) * self.res_conc, 10**6)
        self.bridge_left_pl -= pl
        if self.bridge_left_pl <= 0:
            self.line_conc = self.res_conc
        return ng

    def max_step_ng(self) -> Fraction:
        """ng of one microstep at the strongest drug that can be in the line."""
        return Fraction(self.pl * max(self.line_conc, self.res_conc, 1), 10**6)


class Rolling24h:
    """Delivered ng per pulse with its device time; sum over the last 24 h of device time."""

    def __init__(self) -> None:
        self.pulses: deque[tuple[int, Fraction]] = deque()
        self.total = Fraction(0)
        self.peak = Fraction(0)

    def add(self, t_ms: int, ng: Fraction) -> None:
        self.pulses.append((t_ms, ng))
        self.total += ng
        while self.pulses and self.pulses[0][0] <= t_ms - MS_PER_DAY:
            self.total -= self.pulses.popleft()[1]
        if self.total > self.peak:
            self.peak = self.total
