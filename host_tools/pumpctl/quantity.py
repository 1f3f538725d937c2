"""Clinician-style quantity parsing ("186 ug/day", "0.5 mg", "10 min", "07:30") into base units.

The host reads program files and command arguments the way clinicians write them; the device
only shows quantities (`pumpcore.units` formats them) and never parses text, so this module is
not part of the firmware. Base units as in `pumpcore.units`: dose ng, rate ng/day, concentration
ug/mL (= ng/uL), volume nL, time ms, time of day ms since midnight. Accepted: "50 ug", "0.5 mg",
"186 ug/day", "2 mg/day", "2000 ug/mL", "2 mg/mL", "180 uL", "20 mL", "10 min", "3 h", "07:30".
Decimal fractions are exact (no float): a value that is not a whole number of the base unit is
refused, never rounded.
"""
from __future__ import annotations

from pumpcore.fielderror import FieldError

# unit name -> multiplier to the base unit
_DOSE_UNITS = {"ng": 1, "ug": 1000, "mcg": 1000, "mg": 1000000}
# per-time unit -> how many of it make a day ("7.75 ug/h" = 186 ug/day, exactly)
_RATE_TIME = {"day": 1, "d": 1, "24h": 1, "h": 24, "hr": 24, "hour": 24}
MAX_DIGITS = 18   # a number longer than this cannot be a dose, rate, volume or time here
_CONC_UNITS = {"ug/ml": 1, "mcg/ml": 1, "mg/ml": 1000, "ng/ul": 1}
_VOLUME_UNITS = {"nl": 1, "ul": 1000, "ml": 1000000}
_DURATION_UNITS = {"ms": 1, "s": 1000, "sec": 1000, "min": 60000, "h": 3600000,
                   "hr": 3600000, "d": 86400000, "day": 86400000}


class QuantityError(FieldError):
    """A quantity that cannot be parsed or is out of range: names the field, value and reason."""



def _split(text: str, field: str) -> tuple[str, str]:
    """Split "186 ug/day" into ("186", "ug/day"); the unit is lower-cased."""
    if not isinstance(text, str):
        raise QuantityError(field, repr(text), "expected a quantity with a unit, as a string")
    s = text.strip()
    i = 0
    n = len(s)
    while i < n and (("0" <= s[i] <= "9") or s[i] == "."):   # ASCII digits only: int() refuses others
        i += 1
    number = s[:i]
    # the micro sign (U+00B5) and Greek mu (U+03BC) as clinicians type them: "186 \u00b5g/day"
    unit = s[i:].strip().lower().replace(" ", "").replace("\u00b5", "u").replace("\u03bc", "u")
    shown = repr(text) if len(text) <= 40 else repr(text[:20]) + "... (%d characters)" % len(text)
    if number == "" or number.count(".") > 1 or number == ".":
        if i < n and s[i].isdigit():
            raise QuantityError(field, shown, "digits must be 0-9 (not %r)" % s[i])
        raise QuantityError(field, shown, "no number at the start")
    if len(number.replace(".", "")) > MAX_DIGITS:
        raise QuantityError(field, shown, "number longer than %d digits" % MAX_DIGITS)
    if unit and unit[0].isdigit():
        raise QuantityError(field, shown, "digits must be 0-9 (not %r)" % unit[0])
    return number, unit


def _scale(number: str, multiplier: int, field: str, text: str) -> int:
    """Exact integer value of the decimal `number` times `multiplier`, or QuantityError."""
    if "." in number:
        whole, frac = number.split(".")
    else:
        whole, frac = number, ""
    if whole == "":
        whole = "0"
    den = 1
    for _ in frac:
        den *= 10
    num = int(whole) * den + (int(frac) if frac else 0)
    value = num * multiplier
    if value % den:
        raise QuantityError(field, repr(text), "more decimals than the base unit can hold")
    return value // den


def parse_dose_ng(text: str, field: str = "dose") -> int:
    """Parse a dose such as "50 ug" or "0.5 mg"; return ng."""
    number, unit = _split(text, field)
    if unit not in _DOSE_UNITS:
        raise QuantityError(field, repr(text), "unit must be one of ng, ug, mg")
    return _scale(number, _DOSE_UNITS[unit], field, text)


def parse_rate_ng_day(text: str, field: str = "rate") -> int:
    """Parse a rate such as "186 ug/day" or "2 mg/day"; return ng/day."""
    number, unit = _split(text, field)
    if "/" not in unit:
        raise QuantityError(field, repr(text), "rate needs a unit per day, e.g. ug/day")
    dose_unit, per = unit.split("/", 1)
    if dose_unit not in _DOSE_UNITS or per not in _RATE_TIME:
        raise QuantityError(field, repr(text), "unit must be ng, ug or mg per day or per h (ug/day, ug/h)")
    return _scale(number, _DOSE_UNITS[dose_unit] * _RATE_TIME[per], field, text)


def parse_conc_ug_ml(text: str, field: str = "concentration") -> int:
    """Parse a concentration such as "2000 ug/mL" or "2 mg/mL"; return ug/mL."""
    number, unit = _split(text, field)
    if unit not in _CONC_UNITS:
        raise QuantityError(field, repr(text), "unit must be ug/mL or mg/mL")
    return _scale(number, _CONC_UNITS[unit], field, text)


def parse_volume_nl(text: str, field: str = "volume") -> int:
    """Parse a volume such as "180 uL" or "20 mL"; return nL."""
    number, unit = _split(text, field)
    if unit not in _VOLUME_UNITS:
        raise QuantityError(field, repr(text), "unit must be nL, uL or mL")
    return _scale(number, _VOLUME_UNITS[unit], field, text)


def parse_duration_ms(text: str, field: str = "duration") -> int:
    """Parse a duration such as "10 min", "3 h", "30 s"; return ms."""
    number, unit = _split(text, field)
    if unit not in _DURATION_UNITS:
        raise QuantityError(field, repr(text), "unit must be ms, s, min, h or d")
    return _scale(number, _DURATION_UNITS[unit], field, text)


def parse_time_of_day_ms(text: str, field: str = "time") -> int:
    """Parse a time of day "HH:MM" or "HH:MM:SS" (24 h clock); return ms since midnight."""
    if not isinstance(text, str):
        raise QuantityError(field, repr(text), "expected a time of day as \"HH:MM\"")
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        raise QuantityError(field, repr(text), "expected a time of day as \"HH:MM\"")
    for p in parts:
        if not p.isdigit() or len(p) != 2:
            raise QuantityError(field, repr(text), "expected two digits per part, as \"07:30\"")
    h = int(parts[0])
    m = int(parts[1])
    s = int(parts[2]) if len(parts) == 3 else 0
    if h > 23 or m > 59 or s > 59:
        raise QuantityError(field, repr(text), "not a time of day (00:00 to 23:59:59)")
    return (h * 3600 + m * 60 + s) * 1000


def volume_nl_for_dose(dose_ng: int, conc_ug_ml: int) -> int:
    """Volume in nL (rounded down) that carries dose_ng at conc_ug_ml (ug/mL = ng/uL)."""
    return dose_ng * 1000 // conc_ug_ml


def dose_ng_for_volume(volume_nl: int, conc_ug_ml: int) -> int:
    """Dose in ng (rounded down) carried by volume_nl at conc_ug_ml."""
    return volume_nl * conc_ug_ml // 1000
