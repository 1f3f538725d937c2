"""What `pumpctl deploy`'s mpy-cross flags (-O3: no source-line tables, issue 16's RAM) take
away must not be something the firmware relies on: -O3 also compiles `assert` statements out
and makes `__debug__` False, so a device module with either would change meaning on the device."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pumpctl import deploy, devicecode

FIRMWARE = deploy.DEFAULT_FIRMWARE_DIR


def debug_only_code(path: Path) -> list[str]:
    """`file:line what` for each assert statement and each use of __debug__ in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assert):
            found.append("%s:%d assert" % (path.name, node.lineno))
        elif isinstance(node, ast.Name) and node.id == "__debug__":
            found.append("%s:%d __debug__" % (path.name, node.lineno))
    return found


def test_the_check_finds_what_O3_would_drop(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f(x):\n    assert x > 0\n    return x if __debug__ else 0\n")
    assert debug_only_code(src) == ["m.py:2 assert", "m.py:3 __debug__"]


@pytest.mark.parametrize("platform", ["rp2", "linux"])
def test_no_device_module_has_code_that_O3_drops(platform: str) -> None:
    assert "-O3" in deploy.COMPILE_FLAGS
    found = [hit for rel in devicecode.device_files(FIRMWARE, platform) for hit in debug_only_code(FIRMWARE / rel)]
    assert found == []


def test_the_flags_reach_mpy_cross(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(deploy.subprocess, "run", lambda argv, **kw: seen.append(list(argv)) or Done())
    deploy.compile_file("mpy-cross", tmp_path / "m.py", tmp_path / "m.mpy", "m.py", "armv6m")
    assert seen and seen[0][1:1 + len(deploy.COMPILE_FLAGS)] == list(deploy.COMPILE_FLAGS)
