"""Device commands of `pumpctl`: ports, status, alarms, bolus, suspend/resume, refill, prime, time, calibration, limits, monitor."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from . import output
from .errors import PortError, UsageError

PICO_VID = 0x2E8A   # Raspberry Pi
PICO_PID = 0x0005   # MicroPython on RP2040 (USB CDC)


@dataclass
class PortInfo:
    """One serial port seen by the host."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def is_pico(self) -> bool:
        return self.vid == PICO_VID and self.pid == PICO_PID


def list_ports() -> list[PortInfo]:
    """Every serial port pyserial sees, Picos (VID:PID 2E8A:0005) flagged."""
    from serial.tools import list_ports as lp
    return [PortInfo(p.device, p.vid, p.pid, p.serial_number, p.description or "")
            for p in sorted(lp.comports(), key=lambda p: p.device)]


def resolve_port(port: str | None) -> str:
    """The port to use: --port / $PUMP_PORT as given, else the one attached Pico.

    Raises PortError when no Pico or several are attached (naming them).
    """
    if port:
        return port
    picos = [p for p in list_ports() if p.is_pico]
    if not picos:
        raise PortError("no port: no Pico (USB 2E8A:0005) attached; pass --port PORT or set PUMP_PORT "
                        "(pumpctl sim start prints the virtual rig's port)")
    if len(picos) > 1:
        raise PortError("several Picos attached (%s): choose one with --port or PUMP_PORT"
                        % ", ".join(p.device for p in picos))
    return picos[0].device


def add_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Accept --port and --json after the subcommand too (they override the global ones)."""
    p.add_argument("--port", default=argparse.SUPPRESS, help="serial port or pty of the rig")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return p


def _hex4(v: int | None) -> str | None:
    return None if v is None else "%04X" % v


def cmd_ports(args: argparse.Namespace) -> int:
    ports = list_ports()
    doc = {"ports": [{"device": p.device, "vid": _hex4(p.vid), "pid": _hex4(p.pid), "pico": p.is_pico,
                      "serial_number": p.serial_number, "description": p.description} for p in ports],
           "env_port": os.environ.get("PUMP_PORT")}

    def human(d: dict[str, Any]) -> str:
        rows = [(p["device"], "%s:%s" % (p["vid"], p["pid"]) if p["vid"] else "-", "yes" if p["pico"] else "",
                 p["serial_number"], p["description"]) for p in d["ports"]]
        text = output.table(("PORT", "VID:PID", "PICO", "SERIAL", "DESCRIPTION"), rows, empty="no serial ports")
        picos = [p for p in d["ports"] if p["pico"]]
        if len(picos) == 1:
            text += "\nauto-detect: %s" % picos[0]["device"]
        else:
            text += "\nauto-detect: %s" % ("none (no Pico attached)" if not picos else "ambiguous (%d Picos)" % len(picos))
        return text
    output.emit(args.json, doc, human)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_common(sub.add_parser("ports", help="list serial ports; Picos (2E8A:0005) are auto-detected"))
    p.set_defaults(func=cmd_ports)
