"""Fixtures of the emulated-Pico tier: skip (one line: what to provide) without an image."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pumpctl.emuimage import unavailable_reason
from pumpctl.emurig import EmuRig

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("emu") is None:
            continue
        if reason is None:
            reason = unavailable_reason() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def mpremote(port: str, *args: str, timeout: float = 300.0) -> str:
    """Run `mpremote connect PORT resume ARGS...` (no soft reset, as deploy does); return stdout,
    raise AssertionError with both streams on failure."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"mpremote {' '.join(args)[:80]} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    return proc.stdout


def copy_firmware_files(port: str, relpaths: list[str]) -> None:
    """Copy firmware/<relpath> files (source) to the same paths on the chip's flash."""
    dirs = sorted({str(Path(p).parent) for p in relpaths if str(Path(p).parent) != "."})
    args: list[str] = []
    for d in dirs:
        args += ["exec", f"import os\ntry:\n os.mkdir('/{d}')\nexcept OSError:\n pass", "+"]
    for p in relpaths:
        args += ["fs", "cp", str(FIRMWARE / p), f":/{p}", "+"]
    mpremote(port, *args[:-1])


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmuRig]:
    """A freshly flashed emulated Pico (empty littlefs) for one test module."""
    rig = EmuRig.start(tmp_path_factory.mktemp("emu"), fresh=True)
    try:
        yield rig
    finally:
        rig.stop()


def wait_until(pred, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
