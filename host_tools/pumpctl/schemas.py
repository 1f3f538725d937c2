"""The published JSON Schemas of every `pumpctl --json` document; `pumpctl schema [NAME]` prints them.

Each document carries its schema id in "schema" (e.g. "pumpctl.status/1"). Keys are never
renamed within a schema version; new keys may be added (additionalProperties is allowed).
Quantities are integers in base units (ng, ng/day, nL, ms, pL) as the key's suffix says.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NINT = {"type": ["integer", "null"]}
_NSTR = {"type": ["string", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None, schema_id: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "object", "properties": dict(props),
                         "required": list(props) if required is None else required}
    if schema_id:
        d["properties"]["schema"] = {"const": schema_id}
        d["required"] = ["schema"] + d["required"]
        d["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        d["$id"] = schema_id
    return d


SCHEMAS: dict[str, dict[str, Any]] = {
    "pumpctl.status/1": _obj({
        "rig_id": _STR, "firmware_version": _STR, "build": _NSTR, "mechanism": _NSTR,
        "time": _obj({"day": _INT, "ms_of_day": _INT, "clock_set": _BOOL}),
        "program": _obj({"crc32": _INT, "mode": _STR, "flex_step": _NINT, "staged": _BOOL}),
        "delivery": _obj({k: _INT for k in ("rate_ng_day", "basal_ng_day", "delivered_today_ng",
                                            "delivered_total_ng", "rolling_24h_ng", "missed_steps")}
                         | {k: _BOOL for k in ("suspended", "bolus_active", "motor_on")}
                         | {k: _INT for k in ("uncertain_ng", "certain_total_ng", "line_conc_ug_ml",
                                              "bridge_left_nl", "trapped_nl", "queued_steps")},
                         required=["rate_ng_day", "basal_ng_day", "delivered_today_ng", "delivered_total_ng",
                                   "rolling_24h_ng", "missed_steps", "suspended", "bolus_active", "motor_on"]),
        "reservoir": _obj({"volume_nl": _INT, "low_in_min": _NINT, "empty_in_min": _NINT}),
        "alarms": _obj({"count": _INT, "top_code": _INT, "top_name": _NSTR}),
        "calibration": _obj({"pl_per_step": _INT, "source": {"enum": ["derived", "measured"]}}),
    }, required=["rig_id", "firmware_version", "build", "time", "program", "delivery", "reservoir", "alarms"],
        schema_id="pumpctl.status/1"),
    "pumpctl.alarms/1": _obj({"alarms": {"type": "array", "items": _obj({
        "id": _INT, "code": _INT, "name": _STR, "priority": _STR, "active": _BOOL, "latched": _BOOL,
        "acknowledged": _BOOL, "day": _INT, "ms_of_day": _INT})}}, schema_id="pumpctl.alarms/1"),
    "pumpctl.action/1": _obj({"action": _STR, "ok": {"const": True}, "rig_id": _NSTR, "message": _STR,
                              "details": {"type": "object"}}, schema_id="pumpctl.action/1"),
    "pumpctl.calibration/1": _obj({"pl_per_step": _INT, "source": {"enum": ["derived", "measured"]}},
                                  schema_id="pumpctl.calibration/1"),
    "pumpctl.limits/1": _obj({k: _INT for k in ("max_rate_ng_day", "max_24h_ng", "max_bolus_ng",
                                                "max_flow_ng_day", "min_conc_ug_ml", "max_conc_ug_ml",
                                                "max_reservoir_nl")}, schema_id="pumpctl.limits/1"),
    "pumpctl.ports/1": _obj({"ports": {"type": "array", "items": _obj({
        "device": _STR, "vid": _NSTR, "pid": _NSTR, "pico": _BOOL, "serial_number": _NSTR,
        "description": _STR, "kind": {"enum": ["serial", "virtual", "emulated"]}})},
        "env_port": _NSTR}, schema_id="pumpctl.ports/1"),
    "pumpctl.program/1": _obj({"file": _STR, "valid": _BOOL, "encoded_bytes": _INT, "crc32": _STR,
                               "describe": {"type": "array", "items": _STR}}, schema_id="pumpctl.program/1"),
    "pumpctl.program-show/1": _obj({"rig_id": _STR, "crc32": _STR, "describe": {"type": "array", "items": _STR}},
                                   schema_id="pumpctl.program-show/1"),
    "pumpctl.logs/1": _obj({"rig_id": _STR, "next_seq": _INT, "records": {"type": "array", "items": _obj({
        "seq": _INT, "time": _NSTR, "day": _INT, "ms_of_day": _INT, "event": _STR, "crc_ok": _BOOL,
        "fields": {"type": "object"}, "text": _STR, "late": _BOOL})}}, schema_id="pumpctl.logs/1"),
    "pumpctl.logs-pull/1": _obj({"rig_id": _STR, "store": _STR, "pulled": _INT, "undecodable": _INT,
                                 "gaps": {"type": "array"}, "last_seq": _NINT, "stored": _INT},
                                schema_id="pumpctl.logs-pull/1"),
    "pumpctl.sim-list/1": _obj({"rigs": {"type": "array", "items": _obj({
        "name": _STR, "port": _NSTR, "pid": _NINT, "running": _BOOL, "dir": _STR})}},
        schema_id="pumpctl.sim-list/1"),
    "pumpctl.sim-status/1": _obj({"port": _STR, "firmware": _STR, "boots": _INT, "sim_us": _INT},
                                 schema_id="pumpctl.sim-status/1"),
    "pumpctl.accuracy/1": _obj({
        "verdict": {"enum": ["PASS", "FAIL", "INTERRUPTED"]}, "exit": _INT, "reason": _STR, "spec": _STR,
        "checks": {"type": "array"}, "events": {"type": "array"}, "mean_error_a_pct": {"type": "number"},
        "last_hour_error_b_pct": {"type": ["number", "null"]}, "density_g_ml": {"type": "number"},
        "density_note": _STR, "evaporation_g_h": {"type": "number"}, "evaporation_note": _STR,
        "windows": {"type": "array"}, "report": _STR, "samples": _STR}, schema_id="pumpctl.accuracy/1"),
    "pumpctl.error/1": _obj({"error": _STR, "kind": {"enum": ["usage", "port", "timeout", "protocol", "refused",
                                                              "auth", "version", "balance", "error", "interrupted"]}},
                            schema_id="pumpctl.error/1"),
}


_status_inline = {k: v for k, v in SCHEMAS["pumpctl.status/1"].items() if k not in ("$schema", "$id")}
SCHEMAS["pumpctl.monitor/1"] = _obj({"status": _status_inline, "alarms": {"type": "array"}, "stale": _BOOL,
                                     "error": _STR}, required=["status", "alarms", "stale"],
                                    schema_id="pumpctl.monitor/1")


def validator(name: str) -> Any:
    """A jsonschema validator for `name` (tests)."""
    import jsonschema
    return jsonschema.Draft202012Validator(SCHEMAS[name])


def cmd_schema(args: argparse.Namespace) -> int:
    from .errors import UsageError
    if args.name is None:
        print(json.dumps(SCHEMAS, indent=2, sort_keys=True) if args.json else "\n".join(sorted(SCHEMAS)))
        return 0
    name = args.name if "/" in args.name else args.name + "/1"
    name = name if name.startswith("pumpctl.") else "pumpctl." + name
    if name not in SCHEMAS:
        raise UsageError("schema %r: unknown (one of %s)" % (args.name, ", ".join(sorted(SCHEMAS))))
    print(json.dumps(SCHEMAS[name], indent=2, sort_keys=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="the JSON Schema of each --json document (list, or one by name)")
    p.add_argument("name", nargs="?", help="e.g. status or pumpctl.status/1 (default: list them)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="all schemas as one JSON object")
    p.set_defaults(func=cmd_schema)
