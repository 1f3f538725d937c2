"""Transports over a real pty served by the firmware ProtocolServer: errors a user meets, URLs, tracing."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
import serial

from pumpcore import wire, wirehost
from pumpctl.errors import PortError, RigTimeout
from pumpctl.pump import Pump
from pumpctl.transport import import_server
from tests.protocol.fakes import KEY, FakeController


class PtyRig:
    """A ProtocolServer answering on the master side of a pty, in a thread."""

    def __init__(self, unplug_on: int | None = None) -> None:
        self.master, self.slave = os.openpty()   # the slave stays open: a master alone reads EIO
        self.path = os.ttyname(self.slave)
        import tty
        tty.setraw(self.slave)
        self.controller = FakeController()
        self.unplug_on = unplug_on
        self.server = import_server()(self.controller, self._write)
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _run(self) -> None:
        import select
        while not self.stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if self.unplug_on is not None and self._has_cmd(data):
                os.close(self.master)   # the rig vanishes mid-transfer
                self.stop = True
                return
            self.server.feed(data)

    def _has_cmd(self, data: bytes) -> bool:
        for line in data.split(b"\n"):
            f = wirehost.decode_line(line + b"\n")
            if f is not None and f[3] == self.unplug_on:
                return True
        return False

    def close(self) -> None:
        # an "unplug" test closes and replaces the slave fd itself; fd numbers are reused, so a
        # descriptor may already be gone here: closing is best effort
        if not self.stop:
            self.stop = True
            self.thread.join(1)
            with contextlib.suppress(OSError):
                os.close(self.master)
        with contextlib.suppress(OSError):
            os.close(self.slave)


@pytest.fixture
def rig():
    r = PtyRig()
    yield r
    r.close()


def test_pump_over_a_real_pty(rig: PtyRig) -> None:
    with Pump.open(rig.path, key=KEY, timeout_s=1.0) as p:
        assert p.status().basal_ng_day == 186_000
        p.bolus(50_000)
        assert len(list(p.iter_log(0))) == 100
    assert ("bolus", wire.BOLUS_CLINICIAN, 50_000, 0) in rig.controller.calls


def test_no_such_port() -> None:
    with pytest.raises(PortError, match="cannot open /dev/ttyNOPE9: no such port"):
        Pump.open("/dev/ttyNOPE9")


def test_port_busy(rig: PtyRig) -> None:
    holder = serial.Serial(rig.path, exclusive=True)
    try:
        with pytest.raises(PortError, match=r"port busy \(another program holds it"):
            Pump.open(rig.path, timeout_s=0.2)
    finally:
        holder.close()


def test_unplugged_mid_transfer() -> None:
    r = PtyRig(unplug_on=wire.CMD_STATUS)
    try:
        with Pump.open(r.path, key=KEY, timeout_s=1.0) as p:
            os.close(r.slave)     # as the kernel does when the USB device goes away
            r.slave = os.open("/dev/null", os.O_RDONLY)
            with pytest.raises(PortError, match=r"lost .* rig unplugged mid-transfer"):
                p.status()
    finally:
        r.close()


def test_loop_url_echo_is_not_an_answer() -> None:
    with pytest.raises(RigTimeout, match="no answer from rig on loop:// to hello after 2 tries of 0.1 s: the port "
                       "echoes our requests back, so the rig is probably at the MicroPython REPL"):
        Pump.open("loop://", timeout_s=0.05, retries=1)


def test_spy_url_and_trace(rig: PtyRig, tmp_path: Path) -> None:
    log = tmp_path / "spy.txt"
    lines: list[str] = []
    with Pump.open("spy://%s?file=%s" % (rig.path, log), key=KEY, timeout_s=1.0, trace=lines.append) as p:
        p.status()
    assert any(s.startswith("> b'~") for s in lines) and any(s.startswith("< b'~") for s in lines)
    assert "TX" in log.read_text() or "RX" in log.read_text().upper()
