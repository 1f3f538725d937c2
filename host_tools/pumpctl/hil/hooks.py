"""Hook specifications of the HIL plugin: how another rig kind (e.g. `--rig emu`) plugs in."""
from __future__ import annotations

from typing import Any

import pluggy
import pytest

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_pumprig_make_rig(config: pytest.Config, kind: str, base: Any, mechanism: str | None) -> Any:
    """Return a started rig for `--rig KIND` (an object with the methods of
    pumpctl.hil.rigs.Rig: port, rig_id, time_scale, now_s, can, fault, boots, reset_causes,
    wait_boot, balance_reading, world, describe, stop), or None if KIND is not yours.

    `mechanism` is the mechanism the test is marked for (`@pytest.mark.mechanism(NAME)`,
    pumpctl.mechanisms), None when it is not marked (then the default, 20ml, serves): a rig
    kind that can be made for either (the emulated Pico) makes it so; a rig that runs another
    is skipped by the fixture. An implementation may leave the argument out.

    `base` is a pathlib.Path scratch directory for this rig. Called once per test that uses
    the `rig` fixture (a fresh rig each time) unless the rig object has `shared = True`, in
    which case it is made once per session. Implement it in a plugin or conftest.py, e.g. for
    the emulated Pico: `if kind == "emu": return EmuHilRig(base)`.
    """
