"""The application is the whole controller (pumpfw.controller), without subclassing it.

PumpApp does not subclass pumpfw.controller.Controller (the Pico does not import the interface:
issue 16's RAM budget), so nothing at run time would catch a method it lacks until the host
sent the command and got ERR_INTERNAL back. These tests read the sources and hold PumpApp to the
interface: every method, with the same arguments.
"""
from __future__ import annotations

import sys

from tests.hw.test_interface import _methods
from tests.support.mpy import FIRMWARE

IFACE = FIRMWARE / "pumpfw" / "controller.py"
APP = FIRMWARE / "pumpfw" / "app.py"


def test_the_interface_lists_what_the_server_calls() -> None:
    server = (FIRMWARE / "pumpfw" / "server.py").read_text()
    want = _methods(IFACE, "Controller")
    called = {name for name in want if "ctl.%s(" % name in server or "controller.%s(" % name in server}
    # every method the server calls is in the interface, and the interface has nothing it never calls
    assert called == set(want) - {"decode_program", "check_program", "running_program"}, sorted(set(want) - called)
    programlink = (FIRMWARE / "pumpfw" / "programlink.py").read_text()
    for name in ("decode_program", "check_program", "running_program"):
        assert "ctl.%s(" % name in programlink or "controller.%s(" % name in programlink, name


def test_the_app_defines_every_controller_method_with_its_arguments() -> None:
    want = _methods(IFACE, "Controller")
    have = _methods(APP, "PumpApp")
    missing = sorted(set(want) - set(have))
    assert not missing, "PumpApp lacks %s" % missing
    for name, args in want.items():
        assert have[name] == args, "PumpApp.%s%s, the interface says %s" % (name, have[name], args)


def test_the_pico_does_not_carry_the_controller_interface() -> None:
    from pumpctl import devicecode
    files = devicecode.device_files(FIRMWARE, "rp2")
    assert "pumpfw/server.py" in files and "pumpfw/controller.py" not in files


def test_the_test_fakes_are_controllers() -> None:
    sys.path.insert(0, str(FIRMWARE))
    from pumpfw.controller import Controller
    from tests.protocol.fakes import FakeController
    assert issubclass(FakeController, Controller)
