"""Errors a user meets on device commands: one `pumpctl: ...` line, exit 1, no traceback (in process and as a subprocess)."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import types
from typing import Any

import pytest

from pumpcore import wire
from pumpctl import cli, keys, pump as pump_mod
from pumpctl.cli import cmd_device
from pumpctl.transport import LoopbackTransport
from tests.cli.fakerig import FakeController


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, **(env or {}))
    e.pop("PUMP_PORT", None)
    return subprocess.run([sys.executable, "-m", "pumpctl.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=e)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pumpctl: "), proc.stderr
    return lines[0]


def test_no_pico_attached_says_how_to_choose_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmd_device, "list_ports", lambda: [])
    with pytest.raises(Exception, match="no Pico .* pass --port PORT or set PUMP_PORT"):
        cmd_device.resolve_port(None)
    assert "no port" in one_line(run_cli("status"))


def test_two_picos_are_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    picos = [cmd_device.PortInfo("/dev/ttyACM%d" % i, 0x2E8A, 0x0005, "E66%d" % i, "Board in FS mode")
             for i in range(2)]
    other = cmd_device.PortInfo("/dev/ttyUSB0", 0x0403, 0x6001, None, "FTDI")
    monkeypatch.setattr(cmd_device, "list_ports", lambda: picos + [other])
    with pytest.raises(Exception, match="several Picos attached .*ttyACM0, /dev/ttyACM1"):
        cmd_device.resolve_port(None)
    monkeypatch.setattr(cmd_device, "list_ports", lambda: picos[1:] + [other])
    assert cmd_device.resolve_port(None) == "/dev/ttyACM1"
    assert cmd_device.resolve_port("/dev/explicit") == "/dev/explicit"


def test_missing_port_subprocess(tmp_path: Any) -> None:
    line = one_line(run_cli("--port", str(tmp_path / "ttyACM7"), "status"))
    assert "ttyACM7" in line


def test_silent_port_times_out(tmp_path: Any) -> None:
    master, slave = pty.openpty()          # a device that never answers a frame
    try:
        line = one_line(run_cli("status", "--port", os.ttyname(slave)))
    finally:
        os.close(master)
        os.close(slave)
    assert "time" in line.lower() or "no answer" in line.lower()


def test_firmware_with_another_protocol_table_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ctrl = FakeController("bench-1", bytes(32))
    keys.save_key("bench-1", bytes(32))
    monkeypatch.setattr(pump_mod, "open_transport", lambda port: LoopbackTransport(ctrl, port))
    newer = types.SimpleNamespace(**{k: getattr(wire, k) for k in dir(wire) if not k.startswith("__")})
    newer.TABLE_CRC = wire.TABLE_CRC ^ 1      # this pumpctl was built for another command table
    monkeypatch.setattr(pump_mod, "wire", newer)
    rc = cli.main(["--port", "fake:old", "status"])
    err = capsys.readouterr().err
    assert rc == 1 and "pumpctl deploy" in err and err.count("\n") == 1


def test_unplugged_mid_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctrl = FakeController("bench-1", bytes(32))
    keys.save_key("bench-1", bytes(32))
    ctrl.add_log(500)
    links: list[LoopbackTransport] = []

    def open_transport(port: str) -> LoopbackTransport:
        links.append(LoopbackTransport(ctrl, port))
        return links[-1]
    monkeypatch.setattr(pump_mod, "open_transport", open_transport)
    real_read = ctrl.read_log

    def read_then_unplug(first: int, count: int) -> list[bytes]:
        if first > 100:
            links[-1].closed = True             # cable pulled after a few batches
        return real_read(first, count)
    monkeypatch.setattr(ctrl, "read_log", read_then_unplug)
    rc = cli.main(["--port", "fake:x", "logs", "pull"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("pumpctl: ") and err.count("\n") == 1
    # what was pulled before the cable went is kept; the next pull resumes after it
    monkeypatch.setattr(ctrl, "read_log", real_read)
    rc = cli.main(["--port", "fake:x", "--json", "logs", "pull"])
    import json
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["stored"] == 500 and 0 < doc["pulled"] < 500
