"""All rig state under one home (issue 16): the emulated Pico beside the virtual rigs."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl.rigs import virtualrig
from pumpctl.rigs.emu.rigdir import REPO, default_rig_dir, legacy_rig_dir_note
from pumpctl.errors import UsageError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PUMP_RIGS_DIR", raising=False)
    return tmp_path / "home"


def test_the_emulated_pico_lives_beside_the_virtual_rigs(home: Path) -> None:
    assert default_rig_dir() == home / "rigs" / "emu"
    assert virtualrig.rig_dir_for("bench1").parent == default_rig_dir().parent
    assert REPO not in default_rig_dir().parents


def test_pump_rigs_dir_still_overrides(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUMP_RIGS_DIR", str(tmp_path / "elsewhere"))
    assert default_rig_dir() == tmp_path / "elsewhere" / "emu"


def test_an_old_rig_directory_in_the_checkout_is_named(home: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "checkout" / "rigs" / "emu"
    assert legacy_rig_dir_note(default_rig_dir(), legacy) is None
    legacy.mkdir(parents=True)
    note = legacy_rig_dir_note(default_rig_dir(), legacy)
    assert note is not None and "\n" not in note
    assert str(legacy) in note and str(home / "rigs" / "emu") in note and "no longer used" in note
    assert legacy_rig_dir_note(legacy, legacy) is None    # --dir pointing at it: it is used


def test_no_virtual_rig_takes_the_emulated_picos_name(home: Path) -> None:
    with pytest.raises(UsageError, match="reserved for the emulated Pico"):
        virtualrig.rig_dir_for("emu")


def test_the_virtual_rig_list_leaves_the_emulated_pico_out(home: Path) -> None:
    (home / "rigs" / "emu").mkdir(parents=True)
    (home / "rigs" / "bench1").mkdir()
    (home / "rigs" / "bench1" / "rig.json").write_text('{"pid": 999999999, "port": "/dev/pts/9"}')
    rigs = virtualrig.list_rigs()
    assert [r["name"] for r in rigs] == ["bench1"]
    assert rigs[0]["running"] is False and rigs[0]["port"] is None
