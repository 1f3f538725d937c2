"""Fixtures for the persistence/alarm tests: firmware on sys.path, and a tally of injected power cuts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))  # pumpfw is not an installed host package

CUTS: dict[str, int] = {}
LEDGER: dict[str, int] = {}


@pytest.fixture
def cut_tally():
    """Add injected power cuts under a name: cut_tally("state/littlefs", n)."""
    def add(name: str, n: int) -> None:
        CUTS[name] = CUTS.get(name, 0) + n
    return add


@pytest.fixture
def ledger_figures() -> dict[str, int]:
    """Figures of the whole-app power-cut run (test_ledger_cuts), printed after the cut table."""
    return LEDGER


def pytest_terminal_summary(terminalreporter):
    if LEDGER:
        terminalreporter.write_sep("-", "dose ledger after whole-app power cuts (tests/persist)")
        for name, v in LEDGER.items():
            terminalreporter.write_line(f"{name:52s} {v:8d}")
    if not CUTS:
        return
    terminalreporter.write_sep("-", "power cuts injected (tests/persist)")
    for name in sorted(CUTS):
        terminalreporter.write_line(f"{name:48s} {CUTS[name]:6d}")
    terminalreporter.write_line(f"{'total':48s} {sum(CUTS.values()):6d}")
