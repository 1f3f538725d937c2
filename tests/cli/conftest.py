"""Fixtures for the CLI tests: a private PUMPCTL_HOME and a bare MicroPython REPL on a pty."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.cli.replrig import ReplRig


@pytest.fixture(autouse=True)
def pumpctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $PUMPCTL_HOME (log stores, keys, private mpy-cross copies)."""
    home = tmp_path / "pumpctl-home"
    monkeypatch.setenv("PUMPCTL_HOME", str(home))
    monkeypatch.delenv("PUMP_PORT", raising=False)
    return home


@pytest.fixture
def repl_rig(tmp_path: Path) -> Iterator[ReplRig]:
    """A MicroPython unix-port REPL whose cwd (the device root) is tmp_path/flash."""
    root = tmp_path / "flash"
    root.mkdir()
    rig = ReplRig(root)
    try:
        yield rig
    finally:
        rig.close()
