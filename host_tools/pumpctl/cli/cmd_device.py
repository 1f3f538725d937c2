"""Device commands of `pumpctl`: ports, status, alarms, bolus, suspend/resume, refill, prime, time, calibration, limits, monitor."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from . import output
from pathlib import Path

from ..errors import PortError, PumpError, RefusedError, UsageError

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
    """List the global options in this command's --help too. `pumpctl.cli` takes --port,
    --json, --timeout and --rig out of the command line wherever they stand and sets them on
    the namespace (with $PUMP_PORT, $PUMP_TIMEOUT, $PUMP_RIG as defaults), so one option style
    holds for every command."""
    p.add_argument("--port", default=argparse.SUPPRESS, help="serial port or pty of the rig (default $PUMP_PORT)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="machine-readable output (errors as JSON on stderr)")
    p.add_argument("--rig", default=argparse.SUPPRESS, metavar="RIG_ID",
                   help="refuse to act unless the rig on the port is RIG_ID (default: $PUMP_RIG)")
    p.add_argument("--timeout", default=argparse.SUPPRESS, metavar="S",
                   help="seconds to wait for each answer (default: $PUMP_TIMEOUT, else 2; the emulated "
                        "Pico runs at ~1/20..1/40 real time and needs 30+)")
    return p


def _hex4(v: int | None) -> str | None:
    return None if v is None else "%04X" % v


def rig_ports() -> list[dict[str, Any]]:
    """Running virtual rigs ($PUMPCTL_HOME/rigs) and the emulated Pico, as port entries."""
    out: list[dict[str, Any]] = []
    try:
        from ..rigs.virtualrig import list_rigs
        for r in list_rigs():
            if r["running"]:
                out.append({"device": r["port"], "vid": None, "pid": None, "pico": False, "serial_number": None,
                            "description": "virtual rig %s (pumpctl sim)" % r["name"], "kind": "virtual"})
    except OSError:
        pass
    try:
        import json as _json
        from ..rigs.emu.rigdir import STATE_FILE, default_rig_dir
        from ..rigs.virtualrig import process_alive
        state = _json.loads((default_rig_dir() / STATE_FILE).read_text())
        if isinstance(state.get("pid"), int) and process_alive(state["pid"]) and state.get("port"):
            out.append({"device": state["port"], "vid": None, "pid": None, "pico": False, "serial_number": None,
                        "description": "emulated Pico (pumpctl emu), MicroPython %s" % state.get("version", "?"),
                        "kind": "emulated"})
    except (OSError, ValueError, ImportError):
        pass
    return out


def cmd_ports(args: argparse.Namespace) -> int:
    ports = list_ports()
    doc = {"schema": "pumpctl.ports/1",
           "ports": [{"device": p.device, "vid": _hex4(p.vid), "pid": _hex4(p.pid), "pico": p.is_pico,
                      "serial_number": p.serial_number, "description": p.description, "kind": "serial"}
                     for p in ports] + rig_ports(),
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
    register_device_commands(sub)


# ------------------------------------------------------------------------------ opening the rig
def open_pump(args: argparse.Namespace) -> Any:
    """`Pump.open(port)` on the resolved port (a context manager); with --rig, a different rig
    on that port is refused (AuthError "wrong rig")."""
    from ..pump import DEFAULT_TIMEOUT_S, Pump
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not 0 < timeout <= 600:
        raise UsageError("--timeout = %s: must be above 0 and at most 600 s" % timeout)
    return Pump.open(resolve_port(args.port), rig_id=getattr(args, "rig", None) or None,
                     timeout_s=timeout or DEFAULT_TIMEOUT_S)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def rig_hello(pump: Any) -> dict[str, Any]:
    """The rig's hello as a plain dict (protocol_version, firmware_version, build_hash, rig_id)."""
    h = getattr(pump, "info", None) or pump.hello()
    return {k: _get(h, k) for k in ("protocol_version", "firmware_version", "build_hash", "rig_id", "mechanism")}


ACTION_SCHEMA = "pumpctl.action/1"


def done(args: argparse.Namespace, action: str, message: str, rig_id: Any = None, **details: Any) -> int:
    """The result of an action command: `message` for people, or with --json the document
    {"schema": "pumpctl.action/1", "action", "ok": true, "rig_id", "message", "details": {...}}
    (quantities in base units: ng, nL, ms, pL). Returns 0."""
    doc = {"schema": ACTION_SCHEMA, "action": action, "ok": True, "rig_id": rig_id, "message": message,
           "details": details}
    output.emit(bool(getattr(args, "json", False)), doc, lambda d: d["message"])
    return 0


def _rig_id(pump: Any) -> Any:
    return rig_hello(pump).get("rig_id")


# ------------------------------------------------------------------------------ names
def mode_name(mode: int) -> str:
    """Program mode code -> the name pumpcore.program gives it."""
    from pumpcore import program
    return program.MODE_NAMES[mode] if 0 <= mode < len(program.MODE_NAMES) else "mode-%d" % mode


def alarm_name(code: int) -> str:
    from pumpcore import alarms
    try:
        return str(alarms.alarm_name(code))
    except (ValueError, KeyError, IndexError):
        return "alarm-%d" % code


def priority_name(prio: int) -> str:
    from pumpcore import logtext
    return str(logtext.priority_name(prio))


def _opt32(v: int) -> int | None:
    from pumpcore import wire
    return None if v is None or v == wire.NONE_U32 else int(v)


# ------------------------------------------------------------------------------ status
STATUS_SCHEMA = "pumpctl.status/1"


def status_doc(st: Any, hello: dict[str, Any]) -> dict[str, Any]:
    """The stable `pumpctl --json status` document (schema "pumpctl.status/1").

    Keys (never renamed within a schema version; new keys may be added):
      schema, rig_id, firmware_version,
      build (hello's build_hash: the deployed build's id, or "unknown: <reason>"),
      mechanism (hello's mechanism: the deployed hw/mechanism*.json "name"),
      time {day, ms_of_day, clock_set},
      program {crc32, mode, flex_step|null, staged},
      delivery {rate_ng_day, basal_ng_day, suspended, bolus_active, motor_on,
                delivered_today_ng, delivered_total_ng, rolling_24h_ng, missed_steps,
                uncertain_ng (part of the total only possibly delivered: reservations counted at
                resets), certain_total_ng, line_conc_ug_ml, bridge_left_nl (old drug still in
                the catheter after a drug change, 0: no bridge), trapped_nl (during an occlusion: volume
                pushed against the block, released at once when it clears; 0: no occlusion),
                queued_steps (microsteps counted delivered but not yet at the STEP pin: the step
                generator's queue plus those owed; the pins have made the count less these)},
      reservoir {volume_nl, low_in_min|null, empty_in_min|null},
      alarms {count, top_code, top_name|null}
    All quantities are integers in ng, ng/day, nL, minutes, ms (docs/ARCHITECTURE.md).
    """
    from pumpcore import wire
    flags = int(_get(st, "flags", 0))
    flex = int(_get(st, "flex_step", wire.NONE_U8))
    top = int(_get(st, "top_alarm", 0))
    return {
        "schema": STATUS_SCHEMA,
        "rig_id": hello.get("rig_id"),
        "firmware_version": hello.get("firmware_version"),
        "build": hello.get("build_hash"),
        "mechanism": hello.get("mechanism"),
        "time": {"day": int(_get(st, "day")), "ms_of_day": int(_get(st, "ms_of_day")),
                 "clock_set": bool(flags & wire.STATUS_FLAG_CLOCK_SET)},
        "program": {"crc32": int(_get(st, "program_crc")), "mode": mode_name(int(_get(st, "mode"))),
                    "flex_step": None if flex == wire.NONE_U8 else flex,
                    "staged": bool(flags & wire.STATUS_FLAG_PROGRAM_STAGED)},
        "delivery": {"rate_ng_day": int(_get(st, "rate_ng_day")), "basal_ng_day": int(_get(st, "basal_ng_day")),
                     "suspended": bool(flags & wire.STATUS_FLAG_SUSPENDED),
                     "bolus_active": bool(flags & wire.STATUS_FLAG_BOLUS_ACTIVE),
                     "motor_on": bool(flags & wire.STATUS_FLAG_MOTOR_ON),
                     "delivered_today_ng": int(_get(st, "delivered_today_ng")),
                     "delivered_total_ng": int(_get(st, "delivered_total_ng")),
                     "rolling_24h_ng": int(_get(st, "rolling_24h_ng")),
                     "missed_steps": int(_get(st, "missed_steps")),
                     # the bracket after resets: certain <= delivered <= delivered_total_ng
                     "uncertain_ng": int(_get(st, "uncertain_ng", 0)),
                     "certain_total_ng": int(_get(st, "delivered_total_ng")) - int(_get(st, "uncertain_ng", 0)),
                     "line_conc_ug_ml": int(_get(st, "line_conc_ug_ml", 0)),
                     "bridge_left_nl": int(_get(st, "bridge_left_nl", 0)),
                     "trapped_nl": int(_get(st, "trapped_nl", 0)),
                     "queued_steps": int(_get(st, "queued_steps", 0))},
        "reservoir": {"volume_nl": int(_get(st, "reservoir_nl")), "low_in_min": _opt32(_get(st, "low_in_min")),
                      "empty_in_min": _opt32(_get(st, "empty_in_min"))},
        "alarms": {"count": int(_get(st, "alarm_count")), "top_code": top,
                   "top_name": alarm_name(top) if top else None},
    }


def _minutes(v: int | None) -> str:
    return "never" if v is None else "%s (%d min)" % (output.duration_ms(v * 60_000), v)


def status_text(d: dict[str, Any]) -> str:
    return output.fields(status_pairs(d))


def status_pairs(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The status document as (label, value) lines, in units, for the text and the live view."""
    dl, rs, pg, al = d["delivery"], d["reservoir"], d["program"], d["alarms"]
    state = "SUSPENDED" if dl["suspended"] else ("bolus running" if dl["bolus_active"] else "delivering")
    if pg["crc32"] == 0:
        state = "no program" + (", SUSPENDED" if dl["suspended"] else "")
    return [
        ("rig", "%s (firmware %s)" % (d["rig_id"], d["firmware_version"])),
        ("build", str(d.get("build") or "-")),
        ("mechanism", str(d.get("mechanism") or "-")),
        ("time", output.wall_time(d["time"]["day"], d["time"]["ms_of_day"])
         + ("" if d["time"]["clock_set"] else "  (clock not set: pumpctl time sync)")),
        ("program", "%s, crc %08x%s%s" % (pg["mode"], pg["crc32"],
                                         "" if pg["flex_step"] is None else ", step %d" % pg["flex_step"],
                                         ", a program is staged" if pg["staged"] else "")),
        ("state", state + (", motor on" if dl["motor_on"] else "")),
        ("rate now", output.ug_day(dl["rate_ng_day"])),
        ("basal", output.ug_day(dl["basal_ng_day"])),
        ("delivered today", output.ug(dl["delivered_today_ng"])),
        ("delivered total", output.ug(dl["delivered_total_ng"])
         + ("" if not dl.get("uncertain_ng") else "  (certain %s; up to %s possibly delivered around resets)"
            % (output.ug(dl["certain_total_ng"]), output.ug(dl["uncertain_ng"])))),
        ("last 24 h", output.ug(dl["rolling_24h_ng"])),
        ("missed", "%d microsteps" % dl["missed_steps"]),
        *([("trapped", "%s behind the occlusion: released at once when it clears"
            % output.ul(dl["trapped_nl"]))] if dl.get("trapped_nl") else []),
        ("line", ("%d ug/mL" % dl["line_conc_ug_ml"] if dl.get("line_conc_ug_ml") else "-")
         + (", bridge: %s of the old drug still in the catheter" % output.ml(dl["bridge_left_nl"])
            if dl.get("bridge_left_nl") else "")),
        *([("calibration", "%d pL per microstep (%s)" % (d["calibration"]["pl_per_step"], d["calibration"]["source"]))]
          if d.get("calibration") else []),
        ("reservoir", output.ml(rs["volume_nl"])),
        ("low in", _minutes(rs["low_in_min"])),
        ("empty in", _minutes(rs["empty_in_min"])),
        ("alarms", "none" if al["count"] == 0 else "%d, top: %s" % (al["count"], al["top_name"])),
    ]


def calibration_doc(cal: Any) -> dict[str, Any]:
    from pumpcore import wire
    return {"pl_per_step": int(_get(cal, "pl_per_step")),
            "source": "measured" if int(_get(cal, "source")) == wire.CAL_SOURCE_MEASURED else "derived"}


def cmd_status(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        doc = status_doc(pump.status(), rig_hello(pump))
        doc["calibration"] = calibration_doc(pump.calibration())
    output.emit(args.json, doc, status_text)
    return 0


# ------------------------------------------------------------------------------ alarms
def alarms_doc(entries: Any) -> dict[str, Any]:
    from pumpcore import wire
    out = []
    for a in entries:
        flags = int(_get(a, "flags", 0))
        code = int(_get(a, "code"))
        out.append({"id": int(_get(a, "alarm_id")), "code": code, "name": alarm_name(code),
                    "priority": priority_name(int(_get(a, "priority"))),
                    "active": bool(flags & wire.ALARM_FLAG_ACTIVE), "latched": bool(flags & wire.ALARM_FLAG_LATCHED),
                    "acknowledged": bool(flags & wire.ALARM_FLAG_ACKED),
                    "day": int(_get(a, "day")), "ms_of_day": int(_get(a, "ms_of_day"))})
    return {"schema": "pumpctl.alarms/1", "alarms": out}


ALARM_COLUMNS = ("ID", "PRIORITY", "ALARM", "CONDITION", "ACK", "RAISED")


def alarm_rows(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The alarms document as table rows under ALARM_COLUMNS."""
    return [(a["id"], a["priority"], a["name"], "active" if a["active"] else "ended",
             "acked" if a["acknowledged"] else ("latched" if a["latched"] else ""),
             output.wall_time(a["day"], a["ms_of_day"])) for a in d["alarms"]]


def alarms_text(d: dict[str, Any]) -> str:
    return output.table(ALARM_COLUMNS, alarm_rows(d), empty="no alarms")


def cmd_alarms(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        if args.action == "ack":
            if args.id is None:
                raise UsageError("alarms ack needs an alarm ID (see pumpctl alarms)")
            pump.ack_alarm(args.id)
            return done(args, "alarms ack", "alarm %d acknowledged" % args.id, _rig_id(pump), alarm_id=args.id)
        doc = alarms_doc(pump.alarms())
    output.emit(args.json, doc, alarms_text)
    return 0


# ------------------------------------------------------------------------------ delivery changes
MAX_BOLUS_MIN = 24 * 60


def parse_amount(text: str, field: str, default_unit: str, parser: Any, limit: int) -> int:
    """Clinician-style quantity ("50", "50 ug", "0.05 mg") -> integer base units via pumpctl.quantity
    (exact; a bare number is in `default_unit`). UsageError naming the field, value and limit."""
    from .. import quantity
    t = text.strip()
    if t and (t[-1].isdigit() or t[-1] == "."):
        t = t + " " + default_unit
    try:
        value = int(parser(t, field))
    except quantity.QuantityError as exc:
        raise UsageError(str(exc)) from None
    if value <= 0:
        raise UsageError("%s = %s: must be above 0 %s" % (field, text, default_unit))
    if value > limit:
        raise UsageError("%s = %s: above the largest value pumpctl sends (%d base units)" % (field, text, limit))
    return value


def fastest_bolus_ms(dose_ng: int, limits: Any) -> int:
    """Shortest duration (ms) for `dose_ng` that keeps basal + bolus within the flow limit for any
    program the rig accepts: dose over (max flow - max basal rate), rounded up. Both limits are
    the rig's own (its limits read: wire.LIMITS_RESP)."""
    flow = int(_get(limits, "max_flow_ng_day"))
    headroom = int(flow) - int(_get(limits, "max_rate_ng_day"))
    if headroom <= 0:
        raise UsageError("the rig's max flow %d ng/day leaves no room above its max rate; give --over" % flow)
    return max(1, -(-dose_ng * 86_400_000 // headroom))


def parse_minutes(text: str, field: str = "--over") -> int:
    """Bolus duration: minutes ("10", "1.5") or with a unit ("90 s", "1.5 min", "2 h") -> ms,
    exactly (pumpctl.quantity), 1 min .. 24 h. UsageError naming the field and the value."""
    from .. import quantity
    t = text.strip()
    if t and (t[-1].isdigit() or t[-1] == "."):
        t = t + " min"
    try:
        ms = int(quantity.parse_duration_ms(t, field))
    except quantity.QuantityError as exc:
        raise UsageError(str(exc)) from None
    if not 60_000 <= ms <= MAX_BOLUS_MIN * 60_000:
        raise UsageError("%s = %s: bolus duration must be 1..%d min (1 min .. 24 h)" % (field, text, MAX_BOLUS_MIN))
    return ms


def _duration_text(ms: int) -> str:
    if ms % 60_000 == 0:
        return "%d min" % (ms // 60_000)
    return "%s min" % ("%.3f" % (ms / 60_000)).rstrip("0").rstrip(".") if ms >= 60_000 else "%d ms" % ms


def refusal_with_figures(exc: RefusedError, pump: Any, what: str, dose_ng: int | None = None,
                         duration_ms: int | None = None) -> RefusedError:
    """The rig's refusal with the figures a user needs: the dose asked, the limit's value, how
    long a lockout still runs (from the rig's own limits, status and log)."""
    from pumpcore import scheduler
    code = getattr(exc, "detail", None)
    extra = ""
    try:
        lim = pump.limits()
        if code == scheduler.REFUSE_MAX_BOLUS and dose_ng is not None:
            extra = "%s asked, the rig's single-bolus limit is %s" % (output.ug(dose_ng), output.ug(_get(lim, "max_bolus_ng")))
        elif code == scheduler.REFUSE_MAX_24H:
            st = pump.status()
            extra = "%s%s delivered in the last 24 h, the rig's 24 h limit is %s" % (
                "" if dose_ng is None else "%s asked, " % output.ug(dose_ng),
                output.ug(_get(st, "rolling_24h_ng")), output.ug(_get(lim, "max_24h_ng")))
        elif code == scheduler.REFUSE_MAX_FLOW and dose_ng is not None and duration_ms:
            need = dose_ng * 86_400_000 // duration_ms
            extra = "%s over %s is %s on top of the basal, the rig's max flow is %s; the shortest allowed is %s" % (
                output.ug(dose_ng), _duration_text(duration_ms), output.ug_day(need),
                output.ug_day(_get(lim, "max_flow_ng_day")),
                _duration_text(-(-fastest_bolus_ms(dose_ng, lim) // 60_000) * 60_000))
        elif code == scheduler.REFUSE_LOCKOUT:
            left = lockout_left_ms(pump)
            if left is not None:
                extra = "lockout ends in %s" % output.duration_ms(left) if left >= 120_000 else \
                    "lockout ends in %d s" % -(-left // 1000)
    except PumpError:
        extra = ""
    if not extra:
        return exc
    new = RefusedError(exc.status, "%s (%s)" % (exc.reason, extra))
    new.detail = code  # type: ignore[attr-defined]
    return new


def lockout_left_ms(pump: Any) -> int | None:
    """ms until the running program's patient-bolus lockout ends: lockout from the program,
    the last granted patient bolus from the rig's log, now from its clock (None if unknown)."""
    from pumpcore import logrec, program as prog_mod, wire
    from ..accuracy.events import rig_wall_ms
    data = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_ENCODED)
    running = prog_mod.Program.decode(bytes(data[0]))
    patient = getattr(running, "patient", None)
    if not patient:
        return None
    lockout_ms = int(patient[2])
    st = pump.status()
    now = rig_wall_ms(_get(st, "day"), _get(st, "ms_of_day"))
    last = None
    chunk = pump.read_log(0, 0)
    first = max(int(chunk.oldest_seq), int(chunk.next_seq) - 500)
    for _, raw in pump.iter_log(first):
        try:
            _s, day, ms, code, a0, _a1, _a2, _a3 = logrec.decode(bytes(raw))
        except logrec.LogRecordError:
            continue
        if code == logrec.EV_BOLUS_START and a0 == _patient_kind():
            last = rig_wall_ms(day, ms)
    if last is None:
        return None
    return max(0, last + lockout_ms - now)


def _patient_kind() -> int:
    from pumpcore import scheduler
    return int(getattr(scheduler, "BOLUS_PATIENT", 2))


def cmd_bolus(args: argparse.Namespace) -> int:
    from .. import quantity
    dose_ng = parse_amount(args.ug, "bolus dose", "ug", quantity.parse_dose_ng, 2**30 - 1)
    over_ms = None if args.over is None else parse_minutes(args.over)
    with open_pump(args) as pump:
        duration_ms = fastest_bolus_ms(dose_ng, pump.limits()) if over_ms is None else over_ms
        try:
            pump.bolus(dose_ng, duration_ms)
        except RefusedError as exc:
            raise refusal_with_figures(exc, pump, "bolus", dose_ng, duration_ms) from None
        rig = _rig_id(pump)
    return done(args, "bolus", "bolus of %s over %s started" % (
        output.ug(dose_ng), output.duration_ms(duration_ms) if duration_ms >= 1000 else "%d ms" % duration_ms),
        rig, dose_ng=dose_ng, duration_ms=duration_ms)


def cmd_patient_bolus(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        try:
            pump.patient_bolus()
        except RefusedError as exc:
            raise refusal_with_figures(exc, pump, "patient bolus") from None
        rig = _rig_id(pump)
    return done(args, "patient-bolus", "patient bolus started (the program's dose, lockout and daily cap apply)", rig)


def cmd_suspend(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        pump.suspend()
        rig = _rig_id(pump)
    return done(args, "suspend", "delivery suspended (missed volume is recorded, never caught up)", rig)


def cmd_resume(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        pump.resume()
        rig = _rig_id(pump)
    return done(args, "resume", "delivery resumed", rig)


def _volume_text(nl: int, typed: str) -> str:
    """A volume in the unit the user typed (mL or uL)."""
    t = typed.strip().lower().replace("\u00b5", "u").replace("\u03bc", "u")
    if t.endswith("ul"):
        whole, frac = divmod(nl, 1000)
        return ("%d.%03d" % (whole, frac)).rstrip("0").rstrip(".") + " uL"
    return output.ml(nl)


def cmd_refill(args: argparse.Namespace) -> int:
    from pumpcore import scheduler
    from .. import quantity
    volume_nl = parse_amount(args.volume_ml, "--volume-ml", "mL", quantity.parse_volume_nl, 2**30 - 1)
    conc = parse_amount(args.concentration, "--concentration", "ug/mL", quantity.parse_conc_ug_ml, 2**30 - 1)
    with open_pump(args) as pump:
        try:
            pump.refill(volume_nl, conc)
        except RefusedError as exc:
            code = getattr(exc, "detail", None)
            lim = pump.limits()
            if code == scheduler.REFUSE_VOLUME:
                raise UsageError("refill refused: --volume-ml = %s is above the rig's reservoir capacity %s"
                                 % (_volume_text(volume_nl, args.volume_ml), output.ml(_get(lim, "max_reservoir_nl")))) from None
            if code == scheduler.REFUSE_CONCENTRATION:
                raise UsageError("refill refused: --concentration = %s is outside the rig's limits %d..%d ug/mL"
                                 % (output.conc(conc), _get(lim, "min_conc_ug_ml"), _get(lim, "max_conc_ug_ml"))) from None
            raise
        rig = _rig_id(pump)
    return done(args, "refill", "refill recorded: %s at %s" % (_volume_text(volume_nl, args.volume_ml), output.conc(conc)),
                rig, volume_nl=volume_nl, conc_ug_ml=conc)


def cmd_prime(args: argparse.Namespace) -> int:
    from .. import quantity
    volume_nl = parse_amount(args.volume_ul, "--volume-ul", "uL", quantity.parse_volume_nl, 2**30 - 1)
    with open_pump(args) as pump:
        pump.prime(volume_nl)
        rig = _rig_id(pump)
    return done(args, "prime", "priming %s started" % _volume_text(volume_nl, args.volume_ul + " uL"
                                                                   if args.volume_ul.strip()[-1:].isdigit() else args.volume_ul),
                rig, volume_nl=volume_nl)


def cmd_time(args: argparse.Namespace) -> int:
    import datetime
    now = _rig_calendar(args) if args.at is None else _parse_at(args.at)
    with open_pump(args) as pump:
        day, ms = pump.sync_time(now)
        rig = _rig_id(pump)
    return done(args, "time sync", "rig clock set to %s" % output.wall_time(day, ms), rig, day=day, ms_of_day=ms)


def _rig_calendar(args: argparse.Namespace) -> Any:
    """The time to set: a virtual rig's own simulated calendar (its clock runs at its time scale,
    so the host's time would throw a 100x rig's clock back by hours), else this computer's."""
    import datetime
    from ..errors import PumpError
    from ..rigs.virtualrig import find_by_port
    try:
        cal_us = int(find_by_port(resolve_port(args.port)).world()["calendar_us"])
    except (PumpError, OSError, KeyError, ValueError):
        return datetime.datetime.now()     # not a virtual rig (or an older one): host time
    return datetime.datetime.fromtimestamp(cal_us / 1e6)


def _parse_at(text: str) -> Any:
    import datetime
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError("--at = %r: not an ISO date-time such as 2026-11-25T08:00:00" % text) from None


# ------------------------------------------------------------------------------ calibration, limits
def derived_pl_per_step(hw_dir: Path | None = None, mechanism: str | None = None) -> int:
    """The volume per microstep derived from the mechanism `mechanism` (pumpctl.mechanisms: the
    one the rig reports in hello; None: hw/mechanism.json) in `hw_dir`, in pL."""
    from pumpcore import calibration
    from .. import mechanisms
    base = hw_dir or Path(__file__).resolve().parents[3] / "hw"
    path = mechanisms.path(mechanism, base) if mechanism else base / "mechanism.json"
    try:
        mech = calibration.load_mechanism(str(path))
    except OSError as exc:
        raise UsageError("calibration reset: cannot read %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise UsageError("calibration reset: %s: %s" % (path, exc)) from None
    return int(calibration.pl_per_step_from_mechanism(mech))


def cmd_calibration(args: argparse.Namespace) -> int:
    from pumpcore import wire
    with open_pump(args) as pump:
        if args.action == "set":
            if args.pl_per_step is None or args.pl_per_step <= 0 or args.pl_per_step >= 2**30:
                raise UsageError("calibration set: pl_per_step = %s: must be 1..%d pL per microstep"
                                 % (args.pl_per_step, 2**30 - 1))
            pump.set_calibration(args.pl_per_step)
            return done(args, "calibration set", "calibration set to %d pL per microstep (measured)" % args.pl_per_step,
                        _rig_id(pump), pl_per_step=args.pl_per_step, source="measured")
        if args.action == "reset":
            if args.pl_per_step is not None:
                raise UsageError("calibration reset takes no value: it sends the value derived from %s"
                                 % ((args.hw_dir or Path("hw")) / "mechanism.json"))
            # the file of the mechanism the rig says it runs (hello), so a precision rig gets 652
            derived = derived_pl_per_step(args.hw_dir, getattr(pump.info, "mechanism", None) or None)
            pump.set_calibration(derived)
            src = int(_get(pump.calibration(), "source"))
            shown = "measured" if src == wire.CAL_SOURCE_MEASURED else "derived"
            note = ("" if shown == "derived" else
                    "; the rig still reports source: measured (its mechanism.json differs from %s?)"
                    % ((args.hw_dir or Path("hw")) / "mechanism.json"))
            return done(args, "calibration reset", "calibration reset to %d pL per microstep, derived from "
                        "mechanism.json%s" % (derived, note), _rig_id(pump), pl_per_step=derived,
                        source="derived", rig_source=shown)
        cal = pump.calibration()
    src = int(_get(cal, "source"))
    doc = {"schema": "pumpctl.calibration/1", "pl_per_step": int(_get(cal, "pl_per_step")),
           "source": "measured" if src == wire.CAL_SOURCE_MEASURED else "derived"}
    output.emit(args.json, doc, lambda d: output.fields([
        ("volume per microstep", "%d pL" % d["pl_per_step"]),
        ("source", d["source"] + (" (from hw/mechanism.json)" if d["source"] == "derived" else ""))]))
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    from pumpcore import wire
    with open_pump(args) as pump:
        lim = pump.limits()
    doc: dict[str, Any] = {name: int(_get(lim, name)) for name in wire.LIMITS_RESP[1]}
    doc["schema"] = "pumpctl.limits/1"
    output.emit(args.json, doc, lambda d: output.fields([
        ("max rate", output.ug_day(d["max_rate_ng_day"])), ("max per 24 h", output.ug(d["max_24h_ng"])),
        ("max single bolus", output.ug(d["max_bolus_ng"])),
        ("max flow (basal + bolus)", output.ug_day(d["max_flow_ng_day"])),
        ("concentration", "%d..%d ug/mL" % (d["min_conc_ug_ml"], d["max_conc_ug_ml"])),
        ("reservoir capacity", output.ml(d["max_reservoir_nl"]))]))
    return 0


# ------------------------------------------------------------------------------ monitor
def monitor_frame(doc: dict[str, Any], alarms: dict[str, Any]) -> str:
    """One screen of the live view: status and the alarm table."""
    return status_text(doc) + "\n\n" + alarms_text(alarms)


def stale_banner(since_s: float, reason: str) -> str:
    """The line that replaces the state when the rig stopped answering: nothing below is current."""
    return ("STALE: no answer from the rig for %.0f s (%s); the figures below are the last ones "
            "read, NOT current. Reconnecting..." % (since_s, reason))


_PRIORITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow",
                   "low": "cyan", "info": "dim"}


def monitor_view(last: tuple[dict[str, Any], dict[str, Any]] | None, stale_reason: str, age_s: float,
                 clock: str) -> Any:
    """The live view as a rich renderable: a header, a red STALE panel when the rig stopped
    answering (the figures then dimmed: they are the last ones read), status, alarm table."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    parts: list[Any] = [Text("pumpctl monitor  %s  (Ctrl-C to quit; the port is free between refreshes)"
                             % clock, style="bold")]
    if stale_reason:
        parts.append(Panel(Text(stale_banner(age_s, stale_reason), style="bold red"), border_style="red"))
    if last is not None:
        dim = "dim" if stale_reason else ""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold " + dim if dim else "bold", justify="right")
        grid.add_column(style=dim)
        for label, value in status_pairs(last[0]):
            grid.add_row(label, value)
        parts.append(Panel(grid, title="status", border_style="dim" if dim else "blue"))
        rows = alarm_rows(last[1])
        table = Table(*ALARM_COLUMNS, title=None if rows else "no alarms", expand=False,
                      border_style="dim" if dim else "blue")
        for row in rows:
            table.add_row(*(str(c) for c in row), style=dim or _PRIORITY_STYLE.get(str(row[1]).lower(), ""))
        parts.append(table)
    return Group(*parts)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Live view. The port is opened for each refresh and closed again, so other commands
    (pumpctl status, bolus ...) can use it between refreshes, and a reset or unplug is followed
    by reconnecting: the first refresh without an answer marks the view STALE at once.
    On a terminal the view is a rich live display redrawn in place; to a pipe or file, plain
    text frames; with --json, one document per refresh."""
    import sys
    import time
    live = None
    if sys.stdout.isatty() and not args.json:
        from rich.console import Console
        from rich.live import Live
        live = Live(console=Console(), auto_refresh=False, screen=False, transient=False)
        live.start()
    try:
        return _monitor_loop(args, live)
    finally:
        if live is not None:
            live.stop()


def _monitor_loop(args: argparse.Namespace, live: Any) -> int:
    import sys
    import time
    n = 0
    last: tuple[dict[str, Any], dict[str, Any]] | None = None
    last_ok = time.monotonic()
    try:
        while args.count is None or n < args.count:
            stale_reason = ""
            try:
                with open_pump(args) as pump:
                    doc = status_doc(pump.status(), rig_hello(pump))
                    al = alarms_doc(pump.alarms())
                last, last_ok = (doc, al), time.monotonic()
            except (PortError, PumpError) as exc:
                if isinstance(exc, UsageError) and not isinstance(exc, PortError):
                    raise
                stale_reason = str(exc)
            age = time.monotonic() - last_ok
            if args.json:
                if last is None:
                    print(json.dumps({"schema": "pumpctl.error/1", "error": stale_reason, "kind": "port"}),
                          file=sys.stderr, flush=True)
                else:
                    print(json.dumps(output.to_jsonable({"schema": "pumpctl.monitor/1", "status": last[0],
                                                         "alarms": last[1]["alarms"], "stale": bool(stale_reason),
                                                         **({"error": stale_reason} if stale_reason else {})}),
                                     sort_keys=True), flush=True)
            elif live is not None:
                live.update(monitor_view(last, stale_reason, age, time.strftime("%H:%M:%S")), refresh=True)
            else:
                head = "pumpctl monitor  %s  (Ctrl-C to quit; the port is free between refreshes)\n\n" \
                    % time.strftime("%H:%M:%S")
                if stale_reason:
                    body = stale_banner(age, stale_reason) + ("\n\n" + monitor_frame(*last) if last else "")
                else:
                    body = monitor_frame(*last)  # type: ignore[misc]
                sys.stdout.write(head + body + "\n")
                sys.stdout.flush()
            n += 1
            if args.count is None or n < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    return 0 if last is not None else 1


def register_device_commands(sub: argparse._SubParsersAction) -> None:
    add_common(sub.add_parser("status", help="rate, delivered, reservoir, alarms, time",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="--json output, schema \"%s\":\n" % STATUS_SCHEMA + (status_doc.__doc__ or "").split("\n", 2)[2])
               ).set_defaults(func=cmd_status)
    p = add_common(sub.add_parser("alarms", help="list alarms; `alarms ack ID` acknowledges one"))
    p.add_argument("action", nargs="?", choices=["list", "ack"], default="list")
    p.add_argument("id", nargs="?", type=int, help="alarm ID (for ack)")
    p.set_defaults(func=cmd_alarms)
    p = add_common(sub.add_parser("bolus", help="clinician bolus of UG micrograms"))
    p.add_argument("ug", metavar="UG", help="dose: ug by default (50, 12.5) or with a unit (0.05 mg)")
    p.add_argument("--over", metavar="DURATION",
                   help="deliver over DURATION: minutes (10, 1.5) or with a unit (90 s, 1.5 min, 2 h); "
                        "default: the fastest the rig's flow limit allows")
    p.set_defaults(func=cmd_bolus)
    add_common(sub.add_parser("patient-bolus", help="the program's patient bolus, as the button gives it "
                              "(lockout and daily cap apply)")).set_defaults(func=cmd_patient_bolus)
    add_common(sub.add_parser("suspend", help="stop delivery (no catch-up on resume)")).set_defaults(func=cmd_suspend)
    add_common(sub.add_parser("resume", help="resume delivery")).set_defaults(func=cmd_resume)
    p = add_common(sub.add_parser("refill", help="record a refill (starts a bridge bolus where needed)"))
    p.add_argument("--volume-ml", required=True, metavar="V", help="volume filled, mL")
    p.add_argument("--concentration", required=True, metavar="UG_PER_ML", help="drug concentration, ug/mL")
    p.set_defaults(func=cmd_refill)
    p = add_common(sub.add_parser("prime", help="priming bolus: fill the catheter"))
    p.add_argument("--volume-ul", default="100", metavar="UL", help="volume to prime, uL (default 100)")
    p.set_defaults(func=cmd_prime)
    p = add_common(sub.add_parser("time", help="`time sync`: set the rig's clock from the host"))
    p.add_argument("action", choices=["sync"])
    p.add_argument("--at", help="ISO date-time to set instead of the host's local time")
    p.set_defaults(func=cmd_time)
    p = add_common(sub.add_parser("calibration", help="show, set or reset the volume per microstep"))
    p.add_argument("action", nargs="?", choices=["show", "set", "reset"], default="show",
                   help="reset: back to the value derived from mechanism.json")
    p.add_argument("pl_per_step", nargs="?", type=int, help="measured pL per microstep (for set)")
    p.add_argument("--hw-dir", type=Path, default=None,
                   help="directory of the rig's mechanism.json for reset (default: hw/)")
    p.set_defaults(func=cmd_calibration)
    add_common(sub.add_parser("limits", help="the rig's hard limits")).set_defaults(func=cmd_limits)
    p = add_common(sub.add_parser("monitor", help="live view of rate, delivered, reservoir, alarms (Ctrl-C quits)"))
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--count", type=int, help="stop after COUNT refreshes")
    p.set_defaults(func=cmd_monitor)
