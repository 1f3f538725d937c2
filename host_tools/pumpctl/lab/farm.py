"""Exporter side of a lab of virtual rigs: start N virtual rigs, serve each pty over RFC 2217 on 127.0.0.1, write the labgrid exporter config.

    python -m pumpctl.lab.farm --rigs 4 --dir /tmp/lab --exporter-config /tmp/lab/exporter.yaml

Runs in the main `.venv` (the virtual rig needs the micropython unix port; the bridge only
pyserial). Prints one JSON line `{"ready": true, "rigs": [...]}` on stdout when every rig
answers, then serves until SIGTERM / SIGINT, and stops every rig it started. The exporter
config has one resource group per rig (`pumprig<N>`) holding a `NetworkSerialPort`
(host, port, protocol rfc2217): labgrid's exporter exports it as it is (no ser2net needed).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bridge import Rfc2217Bridge

GROUP_PREFIX = "pumprig"


@dataclass
class FarmRig:
    """One exported virtual rig: its group name in the exporter, pty, bridge."""

    group: str
    rig_dir: Path
    vr: Any
    bridge: Rfc2217Bridge

    def describe(self) -> dict[str, Any]:
        return {"group": self.group, "pty": self.vr.port, "host": self.bridge.host, "port": self.bridge.port,
                "url": self.bridge.url, "rig_dir": str(self.rig_dir)}


def exporter_config(rigs: list[FarmRig]) -> str:
    """labgrid exporter YAML: one group per rig, a static NetworkSerialPort in each."""
    lines: list[str] = []     # no '#' comment: labgrid reads the file as a Jinja2 template (# starts a statement)
    for r in rigs:
        lines += ["%s:" % r.group,
                  "  NetworkSerialPort:",
                  "    host: %s" % r.bridge.host,
                  "    port: %d" % r.bridge.port,
                  "    speed: 115200",
                  "    protocol: rfc2217"]
    return "\n".join(lines) + "\n"


def start_farm(base: Path, count: int, host: str = "127.0.0.1", time_scale: float = 1.0) -> list[FarmRig]:
    """Start `count` virtual rigs under `base` (factory state, time scale 1 as a Pico runs, so
    `pumpctl deploy` over the link has a Pico's watchdog margin) and a bridge for each."""
    from ..rigs.virtualrig import VirtualRig
    if not 1 <= count <= 64:
        raise ValueError("rigs = %d: must be 1..64" % count)
    rigs: list[FarmRig] = []
    try:
        for i in range(1, count + 1):
            group = "%s%d" % (GROUP_PREFIX, i)
            rig_dir = base / group
            vr = VirtualRig.start(rig_dir, time_scale=time_scale, fresh=True, name="lab-%s" % group)
            rigs.append(FarmRig(group, rig_dir, vr, Rfc2217Bridge(vr.port, host).start()))
        for r in rigs:
            r.vr.wait_firmware(1, timeout_s=60)
    except BaseException:
        stop_farm(rigs)
        raise
    return rigs


def stop_farm(rigs: list[FarmRig]) -> None:
    for r in rigs:
        r.bridge.stop()
        try:
            r.vr.stop()
        except Exception as exc:  # stop the others whatever one does
            print("farm: stopping %s: %s" % (r.group, exc), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pumpctl.lab.farm", description=__doc__.split("\n")[0])
    ap.add_argument("--rigs", type=int, default=4, help="how many virtual rigs (1..64)")
    ap.add_argument("--dir", type=Path, required=True, help="directory for the rigs' flash and worlds")
    ap.add_argument("--host", default="127.0.0.1", help="address the bridges listen on (default loopback)")
    ap.add_argument("--exporter-config", type=Path, help="write the labgrid exporter YAML here")
    ap.add_argument("--time-scale", type=float, default=1.0, help="virtual rig time scale (default 1, as a Pico)")
    args = ap.parse_args(argv)
    try:
        rigs = start_farm(args.dir, args.rigs, args.host, args.time_scale)
    except Exception as exc:
        print("farm: %s" % exc, file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.exporter_config:
            args.exporter_config.write_text(exporter_config(rigs))
        print(json.dumps({"ready": True, "rigs": [r.describe() for r in rigs]}), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stop_farm(rigs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
