"""Fixtures of the emulated-Pico tier: skip (one line: what to provide) without an image."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pumpctl.rigs.emu.image import unavailable_reason
from pumpctl.rigs.emu.rig import EmuRig

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"


def pytest_report_header(config: pytest.Config) -> str:
    """Which image the tier boots, official or self-built (never a silent substitute)."""
    return "emulated Pico: " + image_header()


def image_header() -> str:
    """One line: the image's label (official / unofficial, SHA-256), or why there is none."""
    from pumpctl.rigs.emu.image import ImageUnavailable, find_image

    try:
        return find_image()[1].label()
    except ImageUnavailable as exc:
        return f"no image ({exc})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("emu") is None:
            continue
        if reason is None:
            reason = unavailable_reason() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start deploying and booting the application tier's chip in the background as soon as
    the session knows it will run that tier: it costs ~80 s of wall time, almost all of it in
    the emulator process and mpremote, so it overlaps the tests collected before it."""
    from .appchip import WARMUP

    if any(item.nodeid.startswith("tests/emu/test_app.py") and not item.get_closest_marker("skip")
           for item in session.items):
        WARMUP.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from .appchip import WARMUP

    WARMUP.discard()


def mpremote(port: str, *args: str, timeout: float = 300.0) -> str:
    """Run `mpremote connect PORT resume ARGS...` (no soft reset, as deploy does); return stdout,
    raise AssertionError with both streams on failure."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"mpremote {' '.join(args)[:80]} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    return proc.stdout


def copy_to_chip(port: str, files: dict[str, Path]) -> None:
    """Copy local files to the chip's flash ({remote path: local path}), streamed in one
    raw-REPL session as `pumpctl deploy` does (fs cp costs ~5x more on the emulator)."""
    from pumpctl import deploy

    planned = [deploy.DeployFile(local=local, remote=remote, kind="config") for remote, local in files.items()]
    mp = deploy.Mpremote(port, 300)
    mp.exec(deploy.prepare_code(planned), "making directories")
    deploy.stream_files(mp, planned)


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
