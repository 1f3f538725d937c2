"""Quantities in base units (pumpcore.units) as a clinician reads them: "50 ug", "186 ug/day",
"07:30", "10 min". The device needs them only for its review screen (pumpcore.programtext,
loaded for the call), so they are not in its heap while it doses (issue 16).
"""
from pumpcore.fixed import const
from pumpcore.units import MS_PER_HOUR

_MS_PER_MIN = const(60000)


def _decimal(value, den, unit):
    """Format value/den with up to the needed decimals and the unit: (1860, 10, "ug") -> 186 ug."""
    sign = "-" if value < 0 else ""
    value = -value if value < 0 else value
    whole = value // den
    frac = value - whole * den
    if frac == 0:
        return "%s%d %s" % (sign, whole, unit)
    digits = 0
    d = den
    while d > 1:
        d //= 10
        digits += 1
    text = str(frac)
    text = "0" * (digits - len(text)) + text
    return "%s%d.%s %s" % (sign, whole, text.rstrip("0"), unit)


def fmt_dose(ng):
    """Format a dose in ng the way a clinician reads it: "50 ug", "0.5 ug", "1.5 mg"."""
    if ng >= 1000000 and ng % 1000 == 0:
        return _decimal(ng, 1000000, "mg")
    return _decimal(ng, 1000, "ug")


def fmt_rate(ng_day):
    """Format a rate in ng/day: "186 ug/day"."""
    return _decimal(ng_day, 1000, "ug/day")


def fmt_conc(ug_ml):
    """Format a concentration in ug/mL: "2000 ug/mL"."""
    return "%d ug/mL" % ug_ml


def fmt_volume(nl):
    """Format a volume in nL: "180 uL", "20 mL", "0.5 uL"."""
    if nl >= 1000000 and nl % 1000 == 0:
        return _decimal(nl, 1000000, "mL")
    return _decimal(nl, 1000, "uL")


def fmt_time_of_day(ms):
    """Format ms since midnight as "HH:MM" (or "HH:MM:SS" when seconds are set)."""
    s = ms // 1000
    h = s // 3600
    m = (s // 60) % 60
    sec = s % 60
    if sec or ms % 1000:
        return "%02d:%02d:%02d" % (h, m, sec)
    return "%02d:%02d" % (h, m)


def fmt_duration(ms):
    """Format a duration in ms: "10 min", "3 h", "1.5 s"."""
    if ms % MS_PER_HOUR == 0 and ms:
        return "%d h" % (ms // MS_PER_HOUR)
    if ms % _MS_PER_MIN == 0 and ms:
        return "%d min" % (ms // _MS_PER_MIN)
    return _decimal(ms, 1000, "s")
