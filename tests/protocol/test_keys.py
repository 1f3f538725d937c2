"""Per-rig key store: file modes, refusal of unsafe files, counters that never go back."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pumpctl import keys
from pumpctl.errors import AuthError, UsageError


def test_save_and_load_with_private_modes(state_dir: Path) -> None:
    key = bytes(range(32))
    path = keys.save_key("rig-a", key)
    assert path == state_dir / "keys" / "rig-a.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.load_key("rig-a") == key
    assert keys.load_key("rig-b") is None
    assert not list(path.parent.glob("*.tmp*"))


def test_unsafe_or_malformed_key_files_refused(state_dir: Path) -> None:
    path = keys.save_key("rig-a", bytes(32))
    os.chmod(path, 0o644)
    with pytest.raises(AuthError, match=r"has mode 0644: must be 0600 \(chmod 600 "):
        keys.load_key("rig-a")
    os.chmod(path, 0o600)
    path.write_text("zz\n")
    with pytest.raises(AuthError, match="not hex text"):
        keys.load_key("rig-a")
    path.write_text("00" * 16)
    with pytest.raises(AuthError, match="16 bytes, a rig key is 32"):
        keys.load_key("rig-a")
    with pytest.raises(UsageError, match="key for rig rig-a: 3 bytes, a rig key is 32"):
        keys.save_key("rig-a", b"abc")


@pytest.mark.parametrize("rig", ["", "../etc", "a b", "x" * 33, "-lead"])
def test_rig_ids_that_are_not_file_names_refused(state_dir: Path, rig: str) -> None:
    with pytest.raises(UsageError, match="rig id = "):
        keys.key_path(rig)


def test_counter_never_goes_back(state_dir: Path) -> None:
    assert keys.load_counter("rig-a") == 0
    keys.save_counter("rig-a", 5)
    keys.save_counter("rig-a", 3)
    assert keys.load_counter("rig-a") == 5


def test_home_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PUMPCTL_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.home() == tmp_path / ".local" / "state" / "pumpctl"
