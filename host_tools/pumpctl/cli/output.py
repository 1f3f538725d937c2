"""The one place pumpctl formats results: human tables and unit text, or --json documents.

Read commands build a plain JSON-able document (dicts, lists, ints, strings) and hand it to
`emit` with a function that renders it for people. With `--json` the document is printed as
is (sorted keys, one object), so every read command's JSON is exactly its human view's data.
Quantities stay integers in the base units of docs/ARCHITECTURE.md in JSON (`_ng`, `_ng_day`,
`_nl`, `_ug_ml`, `_ms`); the human view converts them to ug, ug/day, mL.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import sys
from typing import Any, Callable, Iterable, Sequence, TextIO

JSON_SCHEMA_VERSION = 1


def to_jsonable(obj: Any) -> Any:
    """Plain JSON value for results of the Pump API (dataclasses, enums, bytes, tuples)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)


def dumps(doc: Any) -> str:
    return json.dumps(to_jsonable(doc), sort_keys=True, indent=2)


def emit(as_json: bool, doc: Any, human: Callable[[Any], str], out: TextIO | None = None) -> None:
    """Print `doc` as JSON (as_json) or as `human(doc)` text."""
    out = out or sys.stdout
    text = dumps(doc) if as_json else human(doc)
    out.write(text.rstrip("\n") + "\n")
    out.flush()


# ------------------------------------------------------------------------------ unit text
def _fixed3(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(int(value)), 1000)
    return "%s%d.%03d" % (sign, whole, frac)


def ug(ng: int | None) -> str:
    """ng -> '186.000 ug' (exact: integer arithmetic)."""
    return "-" if ng is None else _fixed3(ng) + " ug"


def ug_day(ng_day: int | None) -> str:
    """ng/day -> '186.000 ug/day'."""
    return "-" if ng_day is None else _fixed3(ng_day) + " ug/day"


def ml(nl: int | None) -> str:
    """nL -> '20.000 mL' (to the uL)."""
    if nl is None:
        return "-"
    return _fixed3(int(nl) // 1000 if nl >= 0 else -((-int(nl)) // 1000)) + " mL"


def ul(nl: int | None) -> str:
    """nL -> '0.287 uL' (to the nL): volumes of a few microsteps."""
    return "-" if nl is None else _fixed3(int(nl)) + " uL"


def conc(ug_ml: int | None) -> str:
    return "-" if ug_ml is None else "%d ug/mL" % ug_ml


def duration_ms(ms: int | None) -> str:
    """ms -> '42 s' / '95 min' / '3 h 05 min' / '41 d 16 h'."""
    if ms is None:
        return "-"
    s = int(ms) // 1000
    if s < 120:
        return "%d s" % s
    m = s // 60
    if m < 120:
        return "%d min" % m
    if m < 48 * 60:
        return "%d h %02d min" % (m // 60, m % 60)
    return "%d d %d h" % (m // 1440, m // 60 % 24)


def days(value_x10: int | None) -> str:
    """Days in tenths -> '12.5 days'."""
    return "-" if value_x10 is None else "%d.%d days" % divmod(int(value_x10), 10)


def wall_time(day: int | None, ms_of_day: int | None) -> str:
    """(day since 2000-01-01, ms of day) -> 'YYYY-MM-DD HH:MM:SS'."""
    if day is None or ms_of_day is None:
        return "-"
    date = datetime.date(2000, 1, 1) + datetime.timedelta(days=int(day))
    s = int(ms_of_day) // 1000
    return "%s %02d:%02d:%02d" % (date.isoformat(), s // 3600, s // 60 % 60, s % 60)


# ------------------------------------------------------------------------------ layout
def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "(none)") -> str:
    """Fixed-width text table; `empty` when there are no rows."""
    body = [["-" if c is None else str(c) for c in row] for row in rows]
    if not body:
        return empty
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join("%%-%ds" % w for w in widths)
    lines = [fmt % tuple(headers), fmt % tuple("-" * w for w in widths)]
    lines += [(fmt % tuple(row)).rstrip() for row in body]
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """'label: value' lines, labels aligned."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join("%-*s  %s" % (width + 1, k + ":", "-" if v is None else v) for k, v in pairs)


def side_by_side(left_title: str, left: Sequence[str], right_title: str, right: Sequence[str],
                 gap: int = 3) -> str:
    """Two columns of lines (the program review screen: staged beside running); '*' marks
    lines that differ."""
    width = max([len(left_title)] + [len(s) for s in left])
    n = max(len(left), len(right))
    lines = ["  %-*s%s%s" % (width, left_title, " " * gap, right_title),
             "  %s%s%s" % ("-" * width, " " * gap, "-" * max([len(right_title)] + [len(s) for s in right]))]
    for i in range(n):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        mark = "* " if a != b else "  "
        lines.append(("%s%-*s%s%s" % (mark, width, a, " " * gap, b)).rstrip())
    return "\n".join(lines)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal or forced)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, force: bool = False,
                 width: int = 30) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled or self.total <= 0:
            return
        filled = self.width * min(done, self.total) // self.total
        self.stream.write("\r%s [%s%s] %d/%d" % (self.label, "#" * filled, "." * (self.width - filled),
                                                 done, self.total))
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.total > 0:
            self.stream.write("\n")
            self.stream.flush()
