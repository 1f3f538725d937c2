"""`pumpctl sim ...`: start, stop, inspect the virtual rig and inject faults into it."""
from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from ..rigs.virtualrig import FAULT_KINDS, VirtualRig, list_rigs, rig_dir_for, time_scale_arg

DEFAULT_NAME = "sim"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = subparsers.add_parser("sim", help="virtual rig: start / stop / status / fault")
    sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    start = sub.add_parser("start", help="start the firmware in micropython on a pty; prints the port")
    start.add_argument("--name", default=DEFAULT_NAME, help="rig name (dir under $PUMPCTL_HOME/rigs)")
    start.add_argument("--fresh", action="store_true", help="wipe the rig's flash and world (factory state)")
    start.add_argument("--mechanism", default=None,
                       help="mechanism the rig's physics and fresh flash are made for: 20ml (default) or "
                            "NAME for hw/mechanism-NAME.json; an existing world keeps its own")
    start.add_argument("--time-scale", type=time_scale_arg, default=1.0,
                       help="ceiling of sim seconds per real second (1000: 24 h in >= 86 s), or 'max': "
                            "as fast as the firmware runs (the firmware owns the clock either way)")
    start.set_defaults(func=cmd_start)

    stop = sub.add_parser("stop", help="stop the rig (flash and world kept)")
    stop.add_argument("--name", default=DEFAULT_NAME)
    stop.set_defaults(func=cmd_stop)

    status = sub.add_parser("status", help="the rig's physical world, port and firmware state")
    status.add_argument("--name", default=DEFAULT_NAME)
    status.set_defaults(func=cmd_status)

    lst = sub.add_parser("list", help="the virtual rigs under $PUMPCTL_HOME/rigs: name, port, running or not")
    lst.set_defaults(func=cmd_list)

    fault = sub.add_parser("fault", help="inject a fault: " + ", ".join(FAULT_KINDS))
    fault.add_argument("kind", choices=FAULT_KINDS)
    fault.add_argument("--name", default=DEFAULT_NAME)
    fault.add_argument("--nl", type=int, help="reservoir: nL left in the syringe (default: full, the mechanism file's syringe_capacity_nl)")
    fault.add_argument("--count", type=int, help="button: presses (default 1)")
    fault.add_argument("--gap-ms", type=int, help="button: sim ms between presses (default 1000)")
    fault.add_argument("--off-ms", type=int, help="power-cut: sim ms the power stays off (default 0)")
    when = fault.add_mutually_exclusive_group()
    when.add_argument("--at", dest="at_time", default=None, metavar="SIM_TIME",
                      help="land the fault at this sim time since the rig's world began "
                           "(e.g. '3600 s', '90 min', '2 h'; a plain number is seconds)")
    when.add_argument("--after", default=None, metavar="DURATION",
                      help="land the fault this much sim time from now (e.g. '30 s', '1.5 min')")
    fault.set_defaults(func=cmd_fault)


def cmd_list(args: argparse.Namespace) -> int:
    from . import output
    doc = {"schema": "pumpctl.sim-list/1", "rigs": list_rigs()}
    output.emit(args.json, doc, lambda d: output.table(
        ("NAME", "PORT", "STATE", "DIR"),
        [(r["name"], r["port"] or "-", "running (pid %s)" % r["pid"] if r["running"] else "stopped", r["dir"])
         for r in d["rigs"]], empty="no virtual rigs (start one: pumpctl sim start)"))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    rig = VirtualRig.start(rig_dir_for(args.name), time_scale=args.time_scale, fresh=args.fresh,
                           name=args.name, detach=True, mechanism=args.mechanism)
    if args.json:
        print(json.dumps({"schema": "pumpctl.action/1", "action": "sim start", "ok": True, "rig_id": None,
                          "message": "virtual rig %s started on %s" % (rig.name, rig.port),
                          "name": rig.name, "port": rig.port, "pid": rig.pid,
                          "details": {"name": rig.name, "port": rig.port, "pid": rig.pid}}, sort_keys=True))
    else:
        print(rig.port)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from .cmd_device import done
    VirtualRig(rig_dir_for(args.name)).stop()
    return done(args, "sim stop", "virtual rig %s stopped (flash and world kept)" % args.name, None, name=args.name)


def cmd_status(args: argparse.Namespace) -> int:
    w = VirtualRig(rig_dir_for(args.name)).world()
    if args.json:
        print(json.dumps(dict(w, schema="pumpctl.sim-status/1"), sort_keys=True))
        return 0
    print(f"rig {w['name']} on {w['port']}: firmware {w['firmware']}, boots {w['boots']}, "
          f"time scale {w['time_scale'] if w['time_scale'] == 'max' else '%d/%d' % tuple(w['time_scale'])}")
    print(f"sim time {w['sim_us'] / 3.6e9:.4f} h; plunger {w['plunger_steps']} steps; "
          f"reservoir {w['reservoir_pl'] / 1e9:.4f} mL; pressure {w['pressure_pa'] / 1000:.1f} kPa")
    print(f"balance {w['balance_ng'] / 1e6:.2f} mg; occluded {w['occluded']}; stall {w['stall']}; "
          f"end stop {w['end_stop']}")
    return 0


_UNITS_US = {"us": 1, "ms": 1000, "s": 1_000_000, "min": 60_000_000, "h": 3_600_000_000,
             "d": 86_400_000_000}


def _sim_duration_us(opt: str, text: str) -> int:
    """'90 s', '1.5 min', '2 h', '250 ms', '3600' (seconds) -> microseconds of sim time."""
    import re
    m = None if len(text) > 40 else re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(us|ms|s|min|h|d)?\s*", text, re.ASCII)
    if not m:
        raise UsageError(f"{opt} = {text!r}: not a sim time such as '90 s', '1.5 min' or '2 h' "
                         f"(units: {', '.join(_UNITS_US)})")
    us = round(float(m.group(1)) * _UNITS_US[m.group(2) or "s"])
    if us > 10 ** 15:
        raise UsageError(f"{opt} = {text!r}: above 30 years of sim time")
    return us


def cmd_fault(args: argparse.Namespace) -> int:
    kw = {}
    for opt, key, kinds in (("nl", "nl", ("reservoir",)), ("count", "count", ("button",)),
                            ("gap_ms", "gap_ms", ("button",)), ("off_ms", "off_ms", ("power-cut",))):
        v = getattr(args, opt)
        if v is not None:
            if args.kind not in kinds:
                raise UsageError(f"--{opt.replace('_', '-')} = {v}: only for fault {' / '.join(kinds)}")
            kw[key] = v
    at_us = None if args.at_time is None else _sim_duration_us("--at", args.at_time)
    after_ms = None if args.after is None else _sim_duration_us("--after", args.after) // 1000
    w = VirtualRig(rig_dir_for(args.name)).fault(args.kind, at_us=at_us, after_ms=after_ms, **kw)
    if args.json:
        print(json.dumps({"schema": "pumpctl.action/1", "action": "sim fault", "ok": True, "rig_id": None,
                          "message": ("fault %s injected" % args.kind) if at_us is None and after_ms is None
                          else "fault %s scheduled" % args.kind,
                          "details": {"kind": args.kind, "args": kw, "world": w}}, sort_keys=True))
    elif at_us is not None or after_ms is not None:
        when = at_us if at_us is not None else w["sim_us"] + after_ms * 1000
        print(f"{args.kind}: scheduled at sim time {when / 1e6:.3f} s (now {w['sim_us'] / 1e6:.3f} s)")
    else:
        print(f"{args.kind}: firmware {w['firmware']}, pressure {w['pressure_pa'] / 1000:.1f} kPa, "
              f"stall {w['stall']}, end stop {w['end_stop']}")
    return 0
