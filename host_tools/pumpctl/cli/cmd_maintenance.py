"""`pumpctl maintenance`: the signed maintenance command (the REPL for a window), and `maintenance end`."""
from __future__ import annotations

import argparse

from pumpcore import logrec, unittext, wire

from .. import deploy as deploy_mod
from . import output
from .. import quantity
from .cmd_device import add_common, open_pump, resolve_port
from ..errors import PumpError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_common(sub.add_parser(
        "maintenance", description=__doc__,
        help="signed maintenance: stop delivery, alarm on, hand the port to the REPL for a window; "
             "'maintenance end' resets the rig back into the application"))
    p.add_argument("action", nargs="?", choices=("end",), help="end: leave maintenance now (reset the rig)")
    p.add_argument("--window", default="10 min", metavar="DURATION",
                   help="how long the REPL keeps the port before the watchdog brings the application back "
                        "(1 min .. 30 min of rig time; default 10 min)")
    p.add_argument("--wait", type=float, default=deploy_mod.WAIT_APP_S, metavar="S",
                   help="maintenance end: seconds to wait for the application to answer hello")
    p.set_defaults(func=run)


def parse_window(text: str) -> int:
    """'10 min', '90 s', '1800000 ms' -> ms within wire.MAINT_MIN_MS..MAINT_MAX_MS."""
    try:
        ms = quantity.parse_duration_ms(text, "--window")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not wire.MAINT_MIN_MS <= ms <= wire.MAINT_MAX_MS:
        raise UsageError("--window = %s: outside 1 min .. 30 min" % text)
    return ms


def run(args: argparse.Namespace) -> int:
    if args.action == "end":
        return end(args)
    window = parse_window(args.window)
    with open_pump(args) as pump:
        pump.maintenance(window)
        rig = pump.rig_id
        port = pump.link.name
    back = window + 5000   # + the watchdog's timeout (pumpfw.app.WATCHDOG_MS)
    doc = {"rig_id": rig, "port": port, "window_ms": window, "back_within_ms": back}
    output.emit(getattr(args, "json", False), doc, lambda d: (
        "rig %s in maintenance: delivery stopped, alarm 'maintenance' sounding; the REPL has %s "
        "(mpremote connect %s resume ...). The rig returns to the application by itself within %s of "
        "rig time, or now with: pumpctl maintenance end" % (
            d["rig_id"], d["port"], d["port"], unittext.fmt_duration(d["back_within_ms"]))))
    return 0


def end(args: argparse.Namespace) -> int:
    port = resolve_port(args.port)
    from ..pump import Pump
    try:
        Pump.open(port, timeout_s=2.0, retries=0, check_table=False, probe=True).close()
    except PumpError:
        pass
    else:
        raise UsageError("the rig on %s is not in maintenance: its application answers hello" % port)
    mp = deploy_mod.Mpremote(port, timeout_s=args.timeout or 30.0)
    deploy_mod.reset_without_follow(mp, "import pumphw\npumphw.reset()")
    info, waited = deploy_mod.wait_for_app(port, args.wait, log=(lambda m: None) if args.json else print)
    doc = {"rig_id": info.rig_id, "port": port, "hello_after_s": round(waited, 1)}
    with open_pump(args) as pump:
        chunk = pump.read_log(0, 0)
        start = max(chunk.oldest_seq, chunk.next_seq - 31)
        for rec in pump.read_log(start, 31).records:
            r = logrec.decode(rec)
            if r[3] == logrec.EV_MAINT_END:
                doc["maintenance_ms"] = r[6]
                doc["missed_nl"] = r[4]
                doc["missed_steps"] = r[5]
                doc["rate_ng_day"] = r[7]
    output.emit(getattr(args, "json", False), doc, lambda d: (
        "rig %s back in the application after %.1f s%s" % (
            d["rig_id"], d["hello_after_s"],
            "; maintenance lasted %s, %s nL (%s microsteps) of basal missed" % (
                unittext.fmt_duration(d["maintenance_ms"]), d["missed_nl"], d["missed_steps"])
            if "maintenance_ms" in d else "")))
    return 0
