"""WallClock: wall time as (day since 2000-01-01, ms_of_day), advanced by dt increments.

Both parts stay small ints for a century: day < 36,600, ms_of_day < 86,400,000. Day 0,
2000-01-01, was a Saturday; weekday() numbers Monday 0 .. Sunday 6.
"""
from pumpcore.fixed import const
from pumpcore import text

MS_PER_DAY = const(86400000)
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WallClock:
    """Wall time (day, ms_of_day). advance(dt_ms) is allocation-free."""

    def __init__(self, day=0, ms_of_day=0):
        self.day = 0
        self.ms = 0
        self.set(day, ms_of_day)

    def set(self, day, ms_of_day):
        """Set the wall time; day >= 0, 0 <= ms_of_day < 86,400,000."""
        if not isinstance(day, int) or day < 0 or day > 1000000:
            raise ValueError(text("clock_day", day))
        if not isinstance(ms_of_day, int) or ms_of_day < 0 or ms_of_day >= MS_PER_DAY:
            raise ValueError(text("clock_ms", ms_of_day))
        self.day = day
        self.ms = ms_of_day

    def advance(self, dt_ms):
        """Move on by dt_ms >= 0 (any size)."""
        ms = self.ms + dt_ms
        if ms >= MS_PER_DAY:
            days = ms // MS_PER_DAY
            self.day += days
            ms -= days * MS_PER_DAY
        self.ms = ms

    def weekday(self):
        """Weekday of the current day: Monday 0 .. Sunday 6."""
        return (self.day + 5) % 7

    def ms_to_midnight(self):
        """ms until the next midnight (1..86,400,000)."""
        return MS_PER_DAY - self.ms

    def ms_until(self, day, ms_of_day, cap):
        """ms from now until (day, ms_of_day), clamped to 0..cap (cap < 2**29)."""
        dd = day - self.day
        if dd > 7:
            return cap
        if dd < -7:
            return 0
        d = dd * MS_PER_DAY + ms_of_day - self.ms
        if d < 0:
            return 0
        if d > cap:
            return cap
        return d

    def ms_since(self, day, ms_of_day, cap):
        """ms elapsed since (day, ms_of_day), clamped to 0..cap (cap < 2**29)."""
        dd = self.day - day
        if dd > 7:
            return cap
        if dd < -7:
            return 0
        d = dd * MS_PER_DAY + self.ms - ms_of_day
        if d < 0:
            return 0
        if d > cap:
            return cap
        return d
