"""Output formatting: exact unit text from integers, tables, the side-by-side review screen, JSON."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

from pumpctl.cli import output


def test_units_are_exact_integer_text() -> None:
    assert output.ug(186_000) == "186.000 ug"
    assert output.ug(50_001) == "50.001 ug"
    assert output.ug(-1) == "-0.001 ug"
    assert output.ug_day(186_000) == "186.000 ug/day"
    assert output.ml(20_000_000) == "20.000 mL"
    assert output.ml(1_234_567) == "1.234 mL"
    assert output.conc(2000) == "2000 ug/mL"
    assert output.duration_ms(42_000) == "42 s"
    assert output.duration_ms(3 * 3_600_000 + 5 * 60_000) == "3 h 05 min"
    assert output.duration_ms(60_000 * 60_000) == "41 d 16 h"
    assert output.wall_time(0, 0) == "2000-01-01 00:00:00"
    assert output.wall_time(9490, 86_399_999) == "2025-12-25 23:59:59"
    assert output.ug(None) == "-"


def test_table_aligns_and_handles_empty() -> None:
    t = output.table(("A", "LONGER"), [(1, "x"), (22, None)])
    assert t.splitlines() == ["A   LONGER", "--  ------", "1   x", "22  -"]
    assert output.table(("A",), [], empty="nothing") == "nothing"


def test_side_by_side_marks_differences() -> None:
    text = output.side_by_side("STAGED", ["rate 186", "bolus 50"], "RUNNING", ["rate 150", "bolus 50"])
    lines = text.splitlines()
    assert lines[2].startswith("* rate 186") and lines[2].endswith("rate 150")
    assert lines[3].startswith("  bolus 50")


def test_emit_json_and_human() -> None:
    @dataclass
    class D:
        a: int
        b: bytes

    buf = io.StringIO()
    output.emit(True, {"d": D(1, b"\x01\xff")}, lambda d: "never", out=buf)
    assert json.loads(buf.getvalue()) == {"d": {"a": 1, "b": "01ff"}}
    buf = io.StringIO()
    output.emit(False, {"x": 1}, lambda d: "x is %d" % d["x"], out=buf)
    assert buf.getvalue() == "x is 1\n"


def test_progress_draws_only_when_enabled() -> None:
    buf = io.StringIO()
    p = output.Progress(10, "pull", stream=buf, force=True, width=10)
    p.update(5)
    p.finish()
    assert "[#####.....] 5/10" in buf.getvalue()
    quiet = io.StringIO()
    output.Progress(10, "pull", stream=quiet).update(5)
    assert quiet.getvalue() == ""
