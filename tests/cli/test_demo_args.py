"""pumpctl demo: the run's length as --hours or --days, each checked before a rig starts."""
from __future__ import annotations

import pytest

from pumpctl import cli


@pytest.mark.parametrize("argv, message", [
    (["--days", "31"], "--days = 31: must be 1..30"),
    (["--days", "0"], "--days = 0: must be 1..30"),
    (["--hours", "721"], "--hours = 721: must be 1..720"),
    (["--hours", "5", "--days", "1"], "--hours and --days: give one of them"),
])
def test_run_length_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path))
    assert cli.main(["demo", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "rigs").exists()          # nothing was started
