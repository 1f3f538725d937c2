"""ReservoirTracker: drug volume left (nL + pL remainder) and concentration; days to low / empty.

The scheduler takes every microstep's volume (pL) from it, prime included. Volume never goes
below 0 (the plunger end stop is the hardware's alarm; the tracker reports empty).
"""


class ReservoirTracker:
    """Volume left in the reservoir (volume_nl + rem_pl/1000) at concentration conc_ug_ml."""

    def __init__(self, capacity_nl):
        self.capacity_nl = capacity_nl
        self.volume_nl = 0
        self.rem_pl = 0
        self.conc_ug_ml = 0

    def refill(self, volume_nl, conc_ug_ml):
        """The reservoir now holds volume_nl of drug at conc_ug_ml (checked by the caller)."""
        self.volume_nl = volume_nl
        self.rem_pl = 0
        self.conc_ug_ml = conc_ug_ml

    def take_pl(self, pl):
        """Remove pl picolitres (hot path: allocation-free)."""
        r = self.rem_pl - pl
        if r < 0:
            k = (999 - r) // 1000
            self.volume_nl -= k
            r += k * 1000
            if self.volume_nl < 0:
                self.volume_nl = 0
                r = 0
        self.rem_pl = r

    def give_back_pl(self, pl):
        """Return pl picolitres (steps that were counted but not made)."""
        r = self.rem_pl + pl
        k = r // 1000
        self.volume_nl += k
        self.rem_pl = r - k * 1000

    def dose_left_ng(self):
        """Drug left, in ng (rounded down)."""
        return self.volume_nl * self.conc_ug_ml // 1000

    def hours_to_empty(self, rate_ng_day):
        """Whole hours until empty at rate_ng_day (a large number if the rate is 0)."""
        if rate_ng_day <= 0:
            return 1000000
        return self.volume_nl * self.conc_ug_ml * 24 // (rate_ng_day * 1000)

    def days_to_empty(self, rate_ng_day):
        """Whole days until empty at rate_ng_day."""
        return self.hours_to_empty(rate_ng_day) // 24

    def is_low(self, low_volume_nl, low_days, rate_ng_day):
        """True when the volume is at or below low_volume_nl or fewer than low_days remain."""
        if self.volume_nl <= low_volume_nl:
            return True
        return self.hours_to_empty(rate_ng_day) < low_days * 24

    def snapshot(self):
        """Plain tuple of ints for persistence."""
        return (self.volume_nl, self.rem_pl, self.conc_ug_ml)

    def restore(self, snap):
        """Inverse of snapshot()."""
        self.volume_nl, self.rem_pl, self.conc_ug_ml = snap
