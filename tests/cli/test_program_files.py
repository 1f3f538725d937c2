"""`pumpctl program validate` on the shipped examples and on broken files: field, value and why, before any rig is touched."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pumpctl import cli

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "programs").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_validates_offline(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["--json", "program", "validate", str(path)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["valid"] and doc["describe"][0].startswith("Mode: ")
    assert doc["crc32"] == doc["describe"][-1].split()[-1]     # CRC line of the rig's review screen


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("text, expect", [
    ('[program]\nmode = "continuous"\nconcentration = "2000 ug/mL"\nrate = "2500 ug/day"\n', ["2500", "rate"]),
    ('[program]\nmode = "continuous"\nconcentration = "3000 ug/mL"\nrate = "186 ug/day"\n', ["3000", "concentration"]),
    ('[program]\nmode = "continuous"\nconcentration = "2000 ug/mL"\nrate = "186 ug/hour"\n', ["186 ug/hour"]),
    ('[program]\nmode = "continuous\n', ["not valid TOML"]),
    ('[program]\nmode = "sometimes"\n', ["program.mode", "sometimes"]),
])
def test_invalid_file_is_one_line_naming_field_value_why(tmp_path: Path, text: str, expect: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "pumpctl.cli", "program", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("pumpctl: ") and "bad.toml" in line
    for word in expect:
        assert word in line, line


def test_invalid_file_never_reaches_the_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[program]\nmode = "continuous"\nconcentration = "2000 ug/mL"\nrate = "2500 ug/day"\n')
    rc = cli.main(["program", "upload", str(path), "--port", str(tmp_path / "no-such-port"), "--yes"])
    err = capsys.readouterr().err
    assert rc == 1 and "2500" in err and "no-such-port" not in err
