"""`pumpctl` entry point: one table of command groups, one error boundary, no tracebacks."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from .errors import PumpError

# Each module listed here defines `register(subparsers) -> None`, adding its subcommands; each
# subcommand sets `func(args) -> int`. Order is the order shown in `pumpctl --help`.
COMMAND_MODULES: list[str] = [
    "pumpctl.cmd_device",      # ports, status, alarms, bolus, suspend, resume, refill, prime, ...
    "pumpctl.cmd_program",     # program validate / upload / show
    "pumpctl.cmd_logs",        # logs pull / export
    "pumpctl.cmd_deploy",      # deploy firmware (mpy-cross + mpremote), provision the key
    "pumpctl.cmd_maintenance",  # signed maintenance (the REPL for a window) / maintenance end
    "pumpctl.cmd_sim",         # virtual rig: sim start / stop / fault
    "pumpctl.cmd_emu",         # emulated Pico: emu start / stop
    "pumpctl.cmd_accuracy",    # IEC 60601-2-24 gravimetric accuracy run
    "pumpctl.cmd_demo",        # the README's main job
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pumpctl", description=__doc__)
    parser.add_argument("--port", default=os.environ.get("PUMP_PORT"),
                        help="serial port or pty of the rig (default: $PUMP_PORT, else auto-detect one Pico)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on read commands")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except PumpError as exc:
        print(f"pumpctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pumpctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
