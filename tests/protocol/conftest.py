"""Protocol tests: put firmware/ on sys.path (pumpfw is not a host package) and share fixtures."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

from tests.protocol.fakes import KEY, FakeController  # noqa: E402


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def pump(controller: FakeController, state_dir: Path):
    from pumpctl.pump import Pump
    from pumpctl.transport import LoopbackTransport
    link = LoopbackTransport(controller)
    with Pump.open(link, key=KEY, timeout_s=0.05) as p:
        yield p
