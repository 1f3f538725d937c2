"""program upload/show through the real protocol server: review screen from the rig's own decoding, commit by CRC, no commit without a yes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pumpcore.program import MODE_CONTINUOUS, Program
from pumpctl.cli import cmd_program
from tests.cli.fakerig import FakeController
from tests.cli.test_device_cli import rig, run  # noqa: F401,F811  (rig is a fixture)


def baclofen(rate_ng_day: int) -> Program:
    p = Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=rate_ng_day)
    p.validate()
    return p


@pytest.fixture
def program_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Points `program upload FILE` at a Program built here (the TOML loader is tested apart)."""
    chosen: dict[str, Program] = {}

    def load(path: Path) -> Program:
        return chosen["p"]
    monkeypatch.setattr(cmd_program, "load_program", load)

    def use(p: Program) -> str:
        chosen["p"] = p
        return str(tmp_path / "prog.toml")
    return use


def test_upload_shows_both_decodings_and_commits_the_named_crc(rig: FakeController, program_file: Any,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    first = baclofen(186_000)
    rc, out, _ = run(capsys, "program", "upload", program_file(first), "--yes")
    assert rc == 0 and rig.calls[-1] == ("commit", first.crc32())
    assert "STAGED (as the rig decodes it, crc %08x)" % first.crc32() in out
    assert "(no program running)" in out and "committed program %08x" % first.crc32() in out
    second = baclofen(150_000)
    rc, out, _ = run(capsys, "program", "upload", program_file(second), "--yes")
    assert rc == 0 and rig.calls[-1] == ("commit", second.crc32())
    changed = [ln for ln in out.splitlines() if ln.startswith("* ")]
    assert any("150" in ln and "186" in ln for ln in changed), out   # the basal line, staged vs running


def test_no_confirmation_leaves_the_running_program(rig: FakeController, program_file: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "program", "upload", program_file(baclofen(186_000)))  # stdin is not a terminal
    assert rc == 1 and rig.calls == [] and rig.program is None
    assert "stdin is not a terminal" in err and "give --yes" in err and err.count("\n") == 1


def test_a_refused_confirmation_leaves_the_running_program(rig: FakeController, program_file: Any,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pumpctl.cli import cmd_program
    monkeypatch.setattr(cmd_program.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(cmd_program, "confirm", lambda prompt: False)
    rc, out, _ = run(capsys, "program", "upload", program_file(baclofen(186_000)))
    assert rc == 1 and "not committed" in out and rig.calls == [] and rig.program is None


def test_show_running(rig: FakeController, program_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--json", "program", "show")
    assert rc == 0 and json.loads(out) == {"schema": "pumpctl.program-show/1", "rig_id": "bench-1",
                                     "crc32": "00000000", "describe": []}
    p = baclofen(186_000)
    run(capsys, "program", "upload", program_file(p), "--yes")
    rc, out, _ = run(capsys, "--json", "program", "show")
    doc = json.loads(out)
    assert doc["crc32"] == "%08x" % p.crc32() and doc["describe"] == p.describe()


def test_missing_program_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pumpctl import cli
    rc = cli.main(["program", "validate", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err
    assert rc == 1 and "nope.toml: no such file" in err and err.count("\n") == 1
