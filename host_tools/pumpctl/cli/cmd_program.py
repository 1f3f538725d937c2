"""`pumpctl program validate|upload|show`: TOML program files checked offline, staged, reviewed side by side, committed by CRC."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import output
from .cmd_device import add_common, open_pump, rig_hello
from ..errors import PumpError, UsageError


def load_program(path: Path) -> Any:
    """Parse and validate a TOML program file against the hard limits; UsageError naming the
    field, the value and why (before anything touches the rig)."""
    if path.is_dir():
        raise UsageError("program file %s: is a directory, not a program file" % path)
    if not path.is_file():
        raise UsageError("program file %s: no such file" % path)
    from .. import programfile
    try:
        return programfile.load(path)
    except PumpError:
        raise
    except (ValueError, OSError) as exc:  # ProgramError is a ValueError; so is a TOML syntax error
        raise UsageError("invalid program file %s: %s" % (path, exc)) from None


def program_doc(program: Any, path: Path) -> dict[str, Any]:
    encoded = bytes(program.encode())
    return {"schema": "pumpctl.program/1", "file": str(path), "valid": True, "encoded_bytes": len(encoded),
            "crc32": "%08x" % program.crc32(), "describe": list(program.describe())}


def cmd_validate(args: argparse.Namespace) -> int:
    doc = program_doc(load_program(args.file), args.file)
    output.emit(args.json, doc, lambda d: "%s: valid (%d bytes, crc %s)\n%s" % (
        d["file"], d["encoded_bytes"], d["crc32"], "\n".join("  " + s for s in d["describe"])))
    return 0


def _running_lines(pump: Any) -> tuple[list[str], int]:
    from pumpcore import wire
    text, crc = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_DESCRIBE)
    return bytes(text).decode("utf-8", errors="replace").splitlines(), int(crc)


def confirm(prompt: str) -> bool:
    """Ask on the terminal; anything but y/yes is no. No terminal means no."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def review_text(review: Any, rig_id: str) -> str:
    """The review screen: the rig's decoding of the staged program beside the running one."""
    return "rig %s: program staged and verified (%d bytes, crc %08x)\n\n%s\n" % (
        rig_id, review.length, review.crc,
        output.side_by_side("STAGED (as the rig decodes it, crc %08x)" % review.crc, review.staged_lines,
                            "RUNNING (crc %08x)" % review.running_crc if review.running_crc else "RUNNING",
                            review.running_lines or ["(no program running)"]))


def cmd_upload(args: argparse.Namespace) -> int:
    program = load_program(args.file)
    encoded = bytes(program.encode())
    if not args.yes and (args.json or not sys.stdin.isatty()):
        raise UsageError("program upload %s: stdin is not a terminal%s, so nobody can confirm the review: "
                         "give --yes to commit without asking" % (args.file, " (--json)" if args.json else ""))
    with open_pump(args) as pump:
        rig_id = str(rig_hello(pump)["rig_id"])

        def ask(review: Any) -> bool:
            if not args.json:
                print(review_text(review, rig_id))
            if args.yes:
                return True
            return confirm("Commit the staged program %08x to rig %s? [y/N] " % (review.crc, rig_id))

        review = pump.upload_program(encoded, ask)
    details = {"file": str(args.file), "crc32": "%08x" % review.crc, "committed": bool(review.committed),
               "staged_lines": list(review.staged_lines), "running_lines": list(review.running_lines or [])}
    if not review.committed:
        from .cmd_device import done
        done(args, "program upload", "not committed: the running program on rig %s is unchanged" % rig_id,
             rig_id, **details)
        return 1
    from .cmd_device import done
    return done(args, "program upload", "committed program %08x on rig %s" % (review.crc, rig_id), rig_id, **details)


def cmd_show(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        hello = rig_hello(pump)
        lines, crc = _running_lines(pump)
    doc = {"schema": "pumpctl.program-show/1", "rig_id": hello["rig_id"], "crc32": "%08x" % crc,
           "describe": lines if crc else []}
    output.emit(args.json, doc, lambda d: "rig %s: running program crc %s\n%s" % (
        d["rig_id"], d["crc32"], "\n".join("  " + s for s in (d["describe"] or ["(none)"]))))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("program", help="program files: validate offline, upload with review, show running")
    psub = p.add_subparsers(dest="program_command", metavar="SUBCOMMAND", required=True)
    v = add_common(psub.add_parser("validate", help="check a TOML program file offline"))
    v.add_argument("file", type=Path, metavar="FILE")
    v.set_defaults(func=cmd_validate)
    u = add_common(psub.add_parser("upload", help="stage, verify, review side by side, commit by CRC"))
    u.add_argument("file", type=Path, metavar="FILE")
    u.add_argument("--yes", action="store_true", help="commit without asking (scripts)")
    u.set_defaults(func=cmd_upload)
    add_common(psub.add_parser("show", help="the running program as the rig describes it")).set_defaults(func=cmd_show)
