"""TOML program files -> pumpcore Program, for `pumpctl program validate/upload`; errors name the TOML key, value and why.

File layout (every quantity as clinicians write it, with its unit; see examples/programs/):

    [program]
    mode = "continuous"            # stopped | continuous | flexible | single_bolus
    concentration = "2000 ug/mL"
    rate = "186 ug/day"            # continuous only
    catheter_volume = "180 uL"     # bridge bolus volume on a drug change (default 180 uL)

    [reservoir]                    # optional: low-reservoir alarm thresholds
    low_volume = "2 mL"
    low_days = 7

    [[flex]]                       # flexible only: one table per weekday pattern
    days = "weekdays"              # "all", "weekdays", "weekend" or a list ["mon", "sat", ...]
    steps = [{ from = "00:00", rate = "150 ug/day" }, { from = "07:00", rate = "200 ug/day" }]

    [[periodic_bolus]]             # optional, every day
    time = "08:00"
    dose = "20 ug"
    duration = "15 min"

    [patient_bolus]                # optional
    dose = "10 ug"
    duration = "10 min"
    lockout = "3 h"
    per_24h = 4

    [single_bolus]                 # single_bolus mode only: delivered at commit, then stop
    dose = "50 ug"
    duration = "1 min"

Unknown keys are refused (with the nearest known key) so a typo never silently drops a setting.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

from pumpcore.limits import HardLimits
from pumpcore.program import (MODE_CONTINUOUS, MODE_FLEX, MODE_SINGLE_BOLUS, MODE_STOPPED, Program,
                              ProgramError)

from . import quantity
from .errors import UsageError

MODES = {"stopped": MODE_STOPPED, "continuous": MODE_CONTINUOUS, "flexible": MODE_FLEX,
         "flex": MODE_FLEX, "single_bolus": MODE_SINGLE_BOLUS}
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_SETS = {"all": 0x7F, "every day": 0x7F, "weekdays": 0x1F, "weekend": 0x60}

_SECTIONS: dict[str, set[str]] = {
    "program": {"mode", "concentration", "rate", "catheter_volume"},
    "reservoir": {"low_volume", "low_days"},
    "patient_bolus": {"dose", "duration", "lockout", "per_24h"},
    "single_bolus": {"dose", "duration"},
    "periodic_bolus": {"time", "dose", "duration"},
    "flex": {"days", "steps"},
}
_STEP_KEYS = {"from", "rate"}

# ProgramError field path (regex) -> TOML key template
_FIELD_TO_KEY: list[tuple[str, str]] = [
    (r"^mode$", "program.mode"),
    (r"^concentration_ug_ml$", "program.concentration"),
    (r"^rate_ng_day$", "program.rate"),
    (r"^catheter_nl$", "program.catheter_volume"),
    (r"^low_volume_nl$", "reservoir.low_volume"),
    (r"^low_days$", "reservoir.low_days"),
    (r"^single_bolus\.dose_ng$", "single_bolus.dose"),
    (r"^single_bolus\.duration_ms$", "single_bolus.duration"),
    (r"^single_bolus$", "single_bolus"),
    (r"^patient\.dose_ng$", "patient_bolus.dose"),
    (r"^patient\.duration_ms$", "patient_bolus.duration"),
    (r"^patient\.lockout_ms$", "patient_bolus.lockout"),
    (r"^patient\.per_24h$", "patient_bolus.per_24h"),
    (r"^patient$", "patient_bolus"),
    (r"^periodic\[(\d+)\]\.time_ms$", r"periodic_bolus[\1].time"),
    (r"^periodic\[(\d+)\]\.dose_ng$", r"periodic_bolus[\1].dose"),
    (r"^periodic\[(\d+)\]\.duration_ms$", r"periodic_bolus[\1].duration"),
    (r"^periodic$", "periodic_bolus"),
    (r"^flex\.patterns\[(\d+)\]\.weekdays$", r"flex[\1].days"),
    (r"^flex\.patterns\[(\d+)\]\.steps\[(\d+)\]\.start_ms$", r"flex[\1].steps[\2].from"),
    (r"^flex\.patterns\[(\d+)\]\.steps\[(\d+)\]\.rate_ng_day$", r"flex[\1].steps[\2].rate"),
    (r"^flex\.patterns\[(\d+)\]\.steps$", r"flex[\1].steps"),
    (r"^flex\.patterns$", "flex"),
    (r"^worst_case_24h_ng$", "program (worst-case 24 h dose)"),
]


class ProgramFileError(UsageError):
    """A program file that cannot become a valid Program: names file, TOML key, value and why."""

    def __init__(self, source: str, key: str, value: Any, reason: str, shown: str | None = None) -> None:
        super().__init__("%s: %s = %s: %s" % (source, key, shown if shown is not None else _show(value), reason))
        self.source = source
        self.key = key
        self.value = value
        self.reason = reason


def _show(value: Any) -> str:
    """A value as the error line shows it: a long one is cut (the line stays one line)."""
    if isinstance(value, str):
        if len(value) > 40:
            return '"%s..." (%d characters)' % (value[:20], len(value))
        return '"%s"' % value
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a whole number of about %d digits" % int(value.bit_length() * 0.30103 + 1)
    text = str(value)
    return text if len(text) <= 60 else text[:40] + "... (%d characters)" % len(text)


def toml_key_for(field: str) -> str:
    """TOML key of a ProgramError field path (e.g. flex.patterns[0].steps[3].rate_ng_day -> flex[0].steps[3].rate)."""
    for pattern, template in _FIELD_TO_KEY:
        if re.match(pattern, field):
            return re.sub(pattern, template, field)
    return field


class _Reader:
    """Reads one file's tables, remembering each key's raw text for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.raw: dict[str, Any] = {}

    def fail(self, key: str, value: Any, reason: str) -> ProgramFileError:
        return ProgramFileError(self.source, key, value, reason,
                                shown="(missing)" if isinstance(value, str) and value == "(missing)" else None)

    def check_keys(self, table: Any, allowed: set[str], where: str) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(where, table, "must be a table")
        for k in table:
            if k not in allowed:
                near = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = "; did you mean '%s'?" % near[0] if near else "; known keys: %s" % ", ".join(sorted(allowed))
                raise self.fail("%s.%s" % (where, k) if where else k, table[k], "unknown key" + hint)
        return table

    def quantity(self, table: dict[str, Any], key: str, where: str, parse: Callable[..., int],
                 default: int | None = None) -> int:
        full = "%s.%s" % (where, key)
        if key not in table:
            if default is None:
                raise self.fail(full, "(missing)", "required")
            return default
        text = table[key]
        self.raw[full] = text
        try:
            return parse(text, field=full)
        except quantity.QuantityError as e:
            raise self.fail(full, text, e.reason) from None

    def integer(self, table: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
        full = "%s.%s" % (where, key)
        if key not in table:
            if default is None:
                raise self.fail(full, "(missing)", "required")
            return default
        v = table[key]
        self.raw[full] = v
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(full, v, "must be a whole number")
        return v


def _days_mask(r: _Reader, value: Any, key: str) -> int:
    if isinstance(value, str):
        if value.lower() in DAY_SETS:
            return DAY_SETS[value.lower()]
        value = [value]
    if not isinstance(value, list) or not value:
        raise r.fail(key, value, 'must be "all", "weekdays", "weekend" or a list of day names')
    mask = 0
    for d in value:
        if not isinstance(d, str) or d.lower()[:3] not in DAY_NAMES:
            raise r.fail(key, d, "not a day name (mon, tue, wed, thu, fri, sat, sun)")
        bit = 1 << DAY_NAMES.index(d.lower()[:3])
        if mask & bit:
            raise r.fail(key, d, "named twice")
        mask |= bit
    return mask


def loads(text: str, source: str = "<program>", limits: HardLimits | None = None) -> Program:
    """Program from TOML text, validated against `limits` (default HardLimits())."""
    r = _Reader(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProgramFileError(source, "(file)", "", "not valid TOML: %s" % e, shown="(unparsable)") from None
    except ValueError:   # an integer of more than 4300 digits: Python refuses to convert it
        m = re.search(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*[+-]?\d{4000,}", text, re.M)
        key = m.group(1) if m else "(a value)"
        raise ProgramFileError(source, key, "", "a whole number thousands of digits long: not a "
                               "count this program can hold", shown="(too long to show)") from None
    r.check_keys(doc, set(_SECTIONS), "")
    prog_t = r.check_keys(doc.get("program"), _SECTIONS["program"], "program") if "program" in doc else None
    if prog_t is None:
        raise r.fail("program", "(missing)", "every program file needs a [program] table")
    mode_text = prog_t.get("mode")
    if not isinstance(mode_text, str) or mode_text.lower() not in MODES:
        raise r.fail("program.mode", mode_text if mode_text is not None else "(missing)",
                     "must be one of stopped, continuous, flexible, single_bolus")
    mode = MODES[mode_text.lower()]
    kw: dict[str, Any] = {"mode": mode}
    kw["concentration_ug_ml"] = r.quantity(prog_t, "concentration", "program", quantity.parse_conc_ug_ml)
    if mode == MODE_CONTINUOUS:
        kw["rate_ng_day"] = r.quantity(prog_t, "rate", "program", quantity.parse_rate_ng_day)
    elif "rate" in prog_t:
        raise r.fail("program.rate", prog_t["rate"], "only a continuous program has a single rate "
                     "(a flexible program gives rates in [[flex]] steps)")
    kw["catheter_nl"] = r.quantity(prog_t, "catheter_volume", "program", quantity.parse_volume_nl, default=180_000)
    if "reservoir" in doc:
        res = r.check_keys(doc["reservoir"], _SECTIONS["reservoir"], "reservoir")
        kw["low_volume_nl"] = r.quantity(res, "low_volume", "reservoir", quantity.parse_volume_nl, default=0)
        kw["low_days"] = r.integer(res, "low_days", "reservoir", default=0)
    if "flex" in doc:
        pats = doc["flex"]
        if not isinstance(pats, list):
            raise r.fail("flex", pats, "must be an array of tables: [[flex]]")
        patterns = []
        for i, pt in enumerate(pats):
            where = "flex[%d]" % i
            r.check_keys(pt, _SECTIONS["flex"], where)
            if "days" not in pt:
                raise r.fail(where + ".days", "(missing)", "required")
            mask = _days_mask(r, pt["days"], where + ".days")
            steps_t = pt.get("steps")
            if not isinstance(steps_t, list) or not steps_t:
                raise r.fail(where + ".steps", steps_t if steps_t is not None else "(missing)",
                             "needs a list of { from = \"HH:MM\", rate = \"... ug/day\" }")
            steps = []
            for j, st in enumerate(steps_t):
                sw = "%s.steps[%d]" % (where, j)
                r.check_keys(st, _STEP_KEYS, sw)
                steps.append((r.quantity(st, "from", sw, quantity.parse_time_of_day_ms),
                              r.quantity(st, "rate", sw, quantity.parse_rate_ng_day)))
            patterns.append((mask, steps))
        kw["patterns"] = patterns
    if "periodic_bolus" in doc:
        per_t = doc["periodic_bolus"]
        if not isinstance(per_t, list):
            raise r.fail("periodic_bolus", per_t, "must be an array of tables: [[periodic_bolus]]")
        per = []
        for i, bt in enumerate(per_t):
            where = "periodic_bolus[%d]" % i
            r.check_keys(bt, _SECTIONS["periodic_bolus"], where)
            per.append((r.quantity(bt, "time", where, quantity.parse_time_of_day_ms),
                        r.quantity(bt, "dose", where, quantity.parse_dose_ng),
                        r.quantity(bt, "duration", where, quantity.parse_duration_ms)))
        kw["periodic"] = per
    if "patient_bolus" in doc:
        pb = r.check_keys(doc["patient_bolus"], _SECTIONS["patient_bolus"], "patient_bolus")
        kw["patient"] = (r.quantity(pb, "dose", "patient_bolus", quantity.parse_dose_ng),
                         r.quantity(pb, "duration", "patient_bolus", quantity.parse_duration_ms),
                         r.quantity(pb, "lockout", "patient_bolus", quantity.parse_duration_ms),
                         r.integer(pb, "per_24h", "patient_bolus"))
    if "single_bolus" in doc:
        sb = r.check_keys(doc["single_bolus"], _SECTIONS["single_bolus"], "single_bolus")
        kw["single_bolus"] = (r.quantity(sb, "dose", "single_bolus", quantity.parse_dose_ng),
                              r.quantity(sb, "duration", "single_bolus", quantity.parse_duration_ms))
    program = Program(**kw)
    try:
        program.validate(limits or HardLimits())
    except ProgramError as e:
        key = toml_key_for(e.field)
        if key in r.raw:
            raise ProgramFileError(source, key, r.raw[key], e.reason,
                                   shown="%s (%s)" % (_show(r.raw[key]), e.value)) from None
        raise ProgramFileError(source, key, e.value, e.reason, shown=str(e.value)) from None
    return program


def load(path: str | Path, limits: HardLimits | None = None) -> Program:
    """Program from a TOML file, validated against `limits` (default HardLimits())."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise ProgramFileError(str(p), "(file)", str(p), "is a directory, not a program file",
                               shown=str(p)) from None
    except OSError as e:
        raise ProgramFileError(str(p), "(file)", str(p), "cannot read: %s" % e.strerror, shown=str(p)) from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and b"\x00" in data[:64] and
                                                 data.count(b"\x00") * 3 >= min(len(data), 64)):
        raise ProgramFileError(str(p), "(file)", str(p), "looks like UTF-16 text: save it as UTF-8 "
                               "(TOML files are UTF-8)", shown=str(p))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProgramFileError(str(p), "(file)", str(p), "not a UTF-8 text file (byte 0x%02x at offset %d): "
                               "is it a TOML program file?" % (data[e.start], e.start), shown=str(p)) from None
    if "\x00" in text:
        raise ProgramFileError(str(p), "(file)", str(p), "contains NUL bytes: not a TOML program file",
                               shown=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProgramFileError(str(p), "(file)", str(p), "cannot read: %s" % e.strerror, shown=str(p)) from None
    return loads(text, source=str(p), limits=limits)
