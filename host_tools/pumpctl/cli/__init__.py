"""`pumpctl` entry point: one table of command groups, one option style, one error boundary, no tracebacks.

The global options --port, --json, --timeout and --rig may stand before or after any command
(`pumpctl --json sim status`, `pumpctl sim status --json`, `pumpctl status --timeout 30`).

Exit status: 0 success; 1 an error (one line `pumpctl: ...` on stderr, or with --json one JSON
object `{"error": ..., "kind": ...}`); 2 a command-line usage error (one line, same forms);
3 / 4 an accuracy run whose verdict is FAIL / INTERRUPTED; 130 interrupted by Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Callable, NoReturn

from ..errors import PumpError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Each module listed here defines `register(subparsers) -> None`, adding its subcommands; each
# subcommand sets `func(args) -> int`. Order is the order shown in `pumpctl --help`.
COMMAND_MODULES: list[str] = [
    "pumpctl.cli.cmd_device",      # ports, status, alarms, bolus, suspend, resume, refill, prime, ...
    "pumpctl.cli.cmd_program",     # program validate / upload / show
    "pumpctl.cli.cmd_logs",        # logs pull / show
    "pumpctl.cli.cmd_deploy",      # deploy firmware (mpy-cross + mpremote), provision the key
    "pumpctl.cli.cmd_maintenance",  # signed maintenance (the REPL for a window) / maintenance end
    "pumpctl.cli.cmd_sim",         # virtual rig: sim start / stop / list / status / fault
    "pumpctl.cli.cmd_emu",         # emulated Pico: emu start / stop
    "pumpctl.cli.cmd_accuracy",    # IEC 60601-2-24 gravimetric accuracy run
    "pumpctl.cli.cmd_demo",        # the README's main job
    "pumpctl.schemas",         # pumpctl schema: the published --json schemas
]

# Options every command takes, wherever they stand on the line: name -> takes a value.
GLOBAL_OPTIONS: dict[str, bool] = {"--port": True, "--json": False, "--timeout": True, "--rig": True}


class CliUsageError(Exception):
    """A command-line usage error (unknown option, missing argument): exit 2, one line."""


class Parser(argparse.ArgumentParser):
    """argparse without the 3-line usage dump: an error is one line naming the command."""

    def error(self, message: str) -> NoReturn:
        raise CliUsageError("%s: %s (see %s --help)" % (self.prog, message, self.prog))


def split_global_options(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Take --port/--json/--timeout/--rig (also `--opt=value`) out of `argv` wherever they stand;
    everything after a bare `--` is left alone. Returns (given options, the rest)."""
    given: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = tok.partition("=")
        if name in GLOBAL_OPTIONS:
            if not GLOBAL_OPTIONS[name]:
                if eq:
                    raise CliUsageError("pumpctl: %s takes no value (got %r)" % (name, tok))
                given[name] = True
            elif eq:
                given[name] = value
            else:
                if i + 1 >= len(argv):
                    raise CliUsageError("pumpctl: %s needs a value" % name)
                given[name] = argv[i + 1]
                i += 1
        else:
            rest.append(tok)
        i += 1
    return given, rest


def parse_timeout(text: str) -> float:
    """--timeout / $PUMP_TIMEOUT: seconds, above 0 and at most 600 (one-line error otherwise)."""
    from ..errors import UsageError
    try:
        value = float(text) if text.isascii() and len(text) < 30 else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 < value <= 600:
        raise UsageError("--timeout = %s: must be a number of seconds above 0 and at most 600" % text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pumpctl", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", default=None,
                        help="serial port or pty of the rig (default: $PUMP_PORT, else auto-detect one Pico)")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output: one JSON document on stdout, errors as JSON on stderr")
    parser.add_argument("--timeout", default=None, metavar="S",
                        help="seconds to wait for each answer (default: $PUMP_TIMEOUT, else 2)")
    parser.add_argument("--rig", default=None, metavar="RIG_ID",
                        help="refuse to act unless the rig on the port is RIG_ID (default: $PUMP_RIG)")
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The namespace every command sees: the global options applied wherever they were given,
    else from the environment ($PUMP_PORT, $PUMP_TIMEOUT, $PUMP_RIG)."""
    given, rest = split_global_options(argv)
    args = build_parser().parse_args(rest)
    args.json = bool(given.get("--json")) or bool(getattr(args, "json", False))
    args.port = given.get("--port") or getattr(args, "port", None) or os.environ.get("PUMP_PORT") or None
    timeout = given.get("--timeout")
    if timeout is None and os.environ.get("PUMP_TIMEOUT"):
        timeout = os.environ["PUMP_TIMEOUT"]
    args.timeout = None if timeout is None else parse_timeout(str(timeout))
    rig = given.get("--rig") or os.environ.get("PUMP_RIG") or None
    args.rig = rig
    return args


def error_kind(exc: BaseException) -> str:
    """The `kind` of a JSON error: usage, port, timeout, protocol, refused, auth, version, balance, error."""
    from .. import errors
    for cls, kind in ((CliUsageError, "usage"), (errors.UsageError, "usage"), (errors.PortError, "port"),
                      (errors.RigTimeout, "timeout"), (errors.RefusedError, "refused"),
                      (errors.AuthError, "auth"), (errors.VersionError, "version"),
                      (errors.ProtocolError, "protocol")):
        if isinstance(exc, cls):
            return kind
    if type(exc).__name__.startswith("Balance"):
        return "balance"
    return "error"


def report_error(message: str, kind: str, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """One line on stderr: `pumpctl: message`, or with --json `{"error": ..., "kind": ...}`."""
    if as_json:
        doc = {"schema": "pumpctl.error/1", "error": message, "kind": kind, **(extra or {})}
        print(json.dumps(doc, sort_keys=True), file=sys.stderr)
    else:
        text = message if message.startswith("pumpctl") else "pumpctl: " + message
        print(" ".join(text.split("\n")), file=sys.stderr)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in (argv[:argv.index("--")] if "--" in argv else argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)
    try:
        args = parse_args(argv)
    except CliUsageError as exc:
        report_error(str(exc), "usage", as_json)
        return EXIT_USAGE
    except PumpError as exc:           # a bad value of a global option (--timeout 0)
        report_error(str(exc), error_kind(exc), as_json)
        return EXIT_ERROR
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        if as_json:
            report_error("pumpctl: no command given (see pumpctl --help)", "usage", True)
        else:
            build_parser().print_help()
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except PumpError as exc:
        extra = {"status": exc.status} if hasattr(exc, "status") else None
        report_error(str(exc), error_kind(exc), args.json, extra)
        return EXIT_ERROR
    except IsADirectoryError as exc:
        report_error("%s: is a directory, not a file or a port" % exc.filename, "usage", args.json)
        return EXIT_ERROR
    except KeyboardInterrupt:
        report_error("interrupted", "interrupted", args.json)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
