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
    # the server and the request handlers it loads for the call (pumpfw.programlink, readreply)
    code = "".join((FIRMWARE / "pumpfw" / name).read_text() for name in ("server.py", "programlink.py", "readreply.py"))
    want = _methods(IFACE, "Controller")
    called = {name for name in want if "ctl.%s(" % name in code or "controller.%s(" % name in code}
    # every method of the interface is called, so none is kept for nothing
    assert called == set(want), sorted(set(want) - called)


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
