"""`pumpctl emu start|stop|status|fault`: the emulated Pico (official RP2040 image, or a self-built one by opt-in, in rp2040py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import output
from ..rigs.emu.image import DEFAULT_VERSION, ENV_UF2, ENV_UNOFFICIAL
from .. import mechanisms
from ..rigs.emu.rigdir import EMU_HW_DIR, default_rig_dir, emu_mechanism_name, legacy_rig_dir_note
from ..rigs.emu.rig import EmuRig


def _add_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dir", type=Path, default=None,
                   help="rig directory (flash image, state, log; default: $PUMP_RIGS_DIR/emu, else $PUMPCTL_HOME/rigs/emu beside the virtual rigs)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    emu = sub.add_parser("emu", description=__doc__, help="emulated Pico: official MicroPython RP2040 image, pump wired to its pins")
    esub = emu.add_subparsers(dest="emu_command", metavar="ACTION", required=True)

    p = _add_dir(esub.add_parser("start", help="boot the emulated Pico in the background and print its port"))
    p.add_argument("--firmware", metavar="VERSION|UF2", default=None,
                   help=f"official image: a version tag (default ${ENV_UF2}, else the opt-in ${ENV_UNOFFICIAL}, "
                        f"else {DEFAULT_VERSION}) or a .uf2 path")
    p.add_argument("--fresh", action="store_true", help="wipe the flash image first (a new, empty Pico)")
    p.add_argument("--mechanism", default=None,
                   help="mechanism wired to the chip's pins and written to its hw/ for deploy (20ml default, "
                        "or NAME for hw/mechanism-NAME.json; then deploy with --hw-dir <dir>/hw --mechanism NAME). "
                        "Omitted, a kept flash keeps the mechanism it was started with; another one needs --fresh")
    p.set_defaults(func=cmd_start)

    p = _add_dir(esub.add_parser("stop", help="switch the emulated Pico off (its flash image is kept)"))
    p.set_defaults(func=cmd_stop)

    p = _add_dir(esub.add_parser("status", help="port, boots, resets, STEP edges counted at the pins, inputs"))
    p.set_defaults(func=cmd_status)

    p = _add_dir(esub.add_parser("fault", help="inject a fault through the side channel"))
    p.add_argument("kind", choices=["occlude", "clear-occlusion", "pressure", "stall", "clear-stall", "jam",
                                    "clear-jam", "slip", "clear-slip", "empty", "clear-empty", "press",
                                    "hang", "power-cut"],
                   help="occlude/clear-occlusion (line pressure), pressure KPA_X10 (force the sensor), "
                        "stall/clear-stall (driver error: DIAG), jam/clear-jam and slip/clear-slip (screw "
                        "jammed, coupling slipping: DIAG silent), empty/clear-empty (end stop), press (bolus button), "
                        "hang (main loop stops; the watchdog must act), power-cut (flash kept, boot again)")
    p.add_argument("value", nargs="?", type=int, help="pressure: kPa x 10 (omit to release the override)")
    p.add_argument("--count", type=int, default=1, help="press: number of presses (1..20)")
    p.add_argument("--no-bounce", action="store_true", help="press: clean contacts (default: bouncy)")
    p.add_argument("--after-ms", type=int, default=0, help="power-cut: emulated ms from now")
    p.add_argument("--off-s", type=float, default=0.0, help="power-cut: wall seconds without power")
    p.set_defaults(func=cmd_fault)


def _rig_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return args.dir
    rig_dir = default_rig_dir()
    note = legacy_rig_dir_note(rig_dir)
    if note:
        print("pumpctl: " + note, file=sys.stderr)
    return rig_dir


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def cmd_start(args: argparse.Namespace) -> int:
    rig = EmuRig.start(_rig_dir(args), firmware=args.firmware, fresh=args.fresh, detach=True,
                       mechanism=args.mechanism)
    doc = {"port": rig.port, "pid": rig.pid, "version": rig.state["version"], "image": rig.state["image"],
           "official": rig.state["official"], "sha256": rig.state["sha256"],
           "image_label": rig.state["image_label"],
           "dir": str(rig.dir), "boot_wall_s": rig.state.get("boot_wall_s"),
           "hw_dir": str(rig.dir / EMU_HW_DIR), "mechanism": emu_mechanism_name(rig.dir) or mechanisms.DEFAULT}
    output.emit(_json(args), doc, lambda d: (
        f"{d['port']}\n"
        f"emu: MicroPython v{d['version']} on an emulated RP2040 (pid {d['pid']}, booted in "
        f"{d['boot_wall_s']:.2f} s); use: pumpctl --port {d['port']} ... or PUMP_PORT={d['port']}\n"
        f"emu: {d['image_label']}\n"
        f"emu: mechanism {d['mechanism']} wired to the pins; deploy with: pumpctl --port {d['port']} deploy "
        f"--hw-dir {d['hw_dir']}{'' if d['mechanism'] == mechanisms.DEFAULT else ' --mechanism ' + d['mechanism']}  "
        f"(pin map without the driver UART, which the emulator cannot run)"))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    rig = EmuRig.attach(_rig_dir(args))
    rig.stop()
    output.emit(_json(args), {"stopped": rig.pid, "flash": str(rig.dir / "flash.img")},
                lambda d: f"emu: stopped (pid {d['stopped']}); flash kept in {d['flash']}")
    return 0


def _human_status(d: dict[str, Any]) -> str:
    s, i = d["steps"], d["inputs"]
    resets = ", ".join(f"{r['t_ns'] / 1e9:.3f} s" for r in d["chip_resets"]) or "none"
    return "\n".join([
        f"port        {d['port']}  (MicroPython v{d['version']}, {'on' if d['powered'] else 'OFF'}, "
        f"boots {d['boots']})",
        f"time        {d['t_ns'] / 1e9:.3f} s emulated in {d['wall_s']:.1f} s wall",
        f"motor       {'ENABLED' if d['enabled'] else 'disabled'}; STEP edges {s['edges']} "
        f"(infuse {s['infuse']}, retract {s['retract']}, while disabled {s['while_disabled']})",
        f"inputs      pressure {i['pressure_kpa_x10'] / 10:.1f} kPa, DIAG {'STALL' if i['stall'] else 'ok'}, "
        f"end stop {'HIT' if i['end_stop'] else 'open'}, button presses {d['presses']}",
        f"resets      watchdog/soft: {resets}; power cuts: {len(d['power_cuts'])}",
        f"image       {d['image_label']}",
    ])


def cmd_status(args: argparse.Namespace) -> int:
    rig = EmuRig.attach(_rig_dir(args))
    output.emit(_json(args), rig.request("status"), _human_status)
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    rig = EmuRig.attach(_rig_dir(args))
    kind = args.kind
    if kind in ("occlude", "clear-occlusion"):
        reply = rig.request("occlude", on=kind == "occlude")
    elif kind == "pressure":
        reply = rig.request("pressure", kpa_x10=args.value)
    elif kind in ("stall", "clear-stall"):
        reply = rig.request("stall", on=kind == "stall")
    elif kind in ("jam", "clear-jam", "slip", "clear-slip"):
        reply = rig.request(kind.replace("clear-", ""), on=not kind.startswith("clear-"))
    elif kind in ("empty", "clear-empty"):
        reply = rig.request("empty", on=kind == "empty")
    elif kind == "press":
        reply = rig.request("press", count=args.count, bounce=not args.no_bounce)
    elif kind == "hang":
        reply = rig.request("hang")
    else:
        reply = rig.request("power_cut", after_ms=args.after_ms, off_s=args.off_s)
    if _json(args):
        print(json.dumps(reply))
    else:
        print(f"emu: fault {kind} injected")
        print(_human_status(reply))
    return 0
