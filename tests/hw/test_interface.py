"""Every hardware layer implements the whole interface (pumphw.interface).

The RP2040 layer's classes do not subclass the interface (the Pico does not import it: issue
16's RAM budget), so nothing at run time would catch a method it lacks until the app called
it on a pump. These tests read the classes' sources and hold each to the interface: every
method, with the same arguments.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from tests.support.mpy import FIRMWARE

IFACE = FIRMWARE / "pumphw" / "interface.py"
IMPLEMENTATIONS = [
    ("Stepper", FIRMWARE / "pumphw" / "rp2hw.py", "Rp2Stepper"),
    ("Hardware", FIRMWARE / "pumphw" / "rp2hw.py", "Rp2Hardware"),
    ("Stepper", FIRMWARE / "pumphw" / "simhw.py", "SimStepper"),
    ("Hardware", FIRMWARE / "pumphw" / "simhw.py", "SimHardware"),
]


def _methods(path: Path, cls: str) -> dict[str, list[str]]:
    """{method: argument names} of the methods class `cls` defines in `path`."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {m.name: [a.arg for a in m.args.args] for m in node.body if isinstance(m, ast.FunctionDef)}
    raise AssertionError("no class %s in %s" % (cls, path))


def test_the_interface_lists_the_methods_the_app_calls() -> None:
    assert {"enable", "queue", "steps_done", "pending", "abort", "stall"} <= set(_methods(IFACE, "Stepper"))
    assert {"ticks_ms", "idle", "pressure_kpa_x10", "watchdog_feed", "serial_read", "serial_write",
            "maintenance_hold", "reset_cause"} <= set(_methods(IFACE, "Hardware"))


@pytest.mark.parametrize("iface,path,cls", IMPLEMENTATIONS, ids=[i[2] for i in IMPLEMENTATIONS])
def test_each_layer_defines_every_interface_method_with_its_arguments(iface: str, path: Path, cls: str) -> None:
    want = _methods(IFACE, iface)
    have = _methods(path, cls)
    missing = sorted(set(want) - set(have))
    assert not missing, "%s lacks %s" % (cls, missing)
    for name, args in want.items():
        assert have[name] == args, "%s.%s%s, the interface says %s" % (cls, name, have[name], args)


def test_the_pico_does_not_carry_the_interface() -> None:
    from pumpctl import devicecode
    files = devicecode.device_files(FIRMWARE, "rp2")
    assert "pumphw/rp2hw.py" in files and "pumphw/interface.py" not in files


def test_the_twin_is_an_interface_subclass() -> None:
    import sys
    sys.path.insert(0, str(FIRMWARE))
    from pumphw import interface, simhw
    assert issubclass(simhw.SimHardware, interface.Hardware)
    assert issubclass(simhw.SimStepper, interface.Stepper)
    assert inspect.getdoc(interface.Hardware.idle)
