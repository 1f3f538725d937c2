"""`pumpctl logs pull`: incremental copy of the rig's event log into the local SQLite store, with CSV/JSONL export."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from pumpcore import logrec, logtext

from . import output
from .cmd_device import add_common, open_pump, rig_hello
from ..errors import ProtocolError, UsageError
from ..logorder import late_seqs
from ..logstore import LATE_MARK, LogStore, StoredRecord, default_store_path, stored_late_rows

BATCH = 31            # records per log-read request (wire.MAX_LOG_RECORDS)
PROGRESS_FROM = 200   # show a progress bar when at least this many records are to be pulled

# read(first_seq, max_count) -> (oldest_seq, next_seq, [32-byte records])
ReadLog = Callable[[int, int], "tuple[int, int, Sequence[bytes]]"]


def decode_record(raw: bytes) -> StoredRecord:
    """One record as the store keeps it; a record whose CRC or fields do not check is kept
    (crc_ok False, event 'undecodable', the decoder's reason in detail) rather than dropped."""
    raw = bytes(raw)
    try:
        seq, day, ms, code, a0, a1, a2, a3 = logrec.decode(raw)
    except logrec.LogRecordError as exc:
        seq = logrec.peek_seq(raw) if len(raw) >= 4 else 0
        return StoredRecord(seq, 0, 0, 0, "undecodable", {"error": str(exc)}, False, raw)
    names = logtext.EVENT_ARGS[code]
    detail = {name: value for name, value in zip(names, (a0, a1, a2, a3)) if name}
    return StoredRecord(seq, day, ms, code, logtext.event_name(code), detail, True, raw)


def pull(read: ReadLog, store: LogStore, progress: output.Progress | None = None,
         batch: int = BATCH) -> dict[str, Any]:
    """Copy every record newer than the store's last one. Returns counts for the report.

    Each batch is committed before the next request, so an interrupted pull loses nothing
    already fetched. Records the rig's ring overwrote before they were pulled are noted as a
    gap (and reported), never silently skipped.
    """
    last = store.last_seq()
    start = 1 if last is None else last + 1
    oldest, next_seq, _ = read(start, 0)
    gaps: list[tuple[int, int]] = []
    if next_seq < start:
        raise ProtocolError("rig's log ends at seq %d but the store already holds seq %d: is this the same rig "
                            "(was its flash wiped)? use another --store" % (next_seq - 1, start - 1))
    total = max(next_seq - max(start, oldest), 0)
    if progress is not None:
        progress.total = total
    pulled = 0
    bad = 0
    while start < next_seq:
        oldest, next_seq, records = read(start, batch)
        if start < oldest:   # the ring moved on while we pulled
            gaps.append((start, oldest - 1))
            store.note_gap(start, oldest - 1)
            start = oldest
            continue
        if not records:
            break
        decoded = [decode_record(r) for r in records]
        for i, rec in enumerate(decoded):
            if rec.crc_ok and rec.seq != start + i:
                raise ProtocolError("log read from seq %d returned seq %d at position %d (expected %d)"
                                    % (start, rec.seq, i, start + i))
            if not rec.crc_ok:
                bad += 1
                rec.seq = start + i
        store.add(decoded)
        pulled += len(decoded)
        start += len(decoded)
        if progress is not None:
            progress.update(pulled)
    store.flush()
    if progress is not None:
        progress.finish()
    return {"pulled": pulled, "undecodable": bad, "gaps": [list(g) for g in gaps],
            "last_seq": store.last_seq(), "stored": store.count()}


def _read_fn(pump: Any) -> ReadLog:
    def read(first_seq: int, max_count: int) -> tuple[int, int, Sequence[bytes]]:
        res = pump.read_log(first_seq, max_count)
        return int(res.oldest_seq), int(res.next_seq), list(res.records)
    return read


def run_pull(args: argparse.Namespace) -> int:
    with open_pump(args) as pump:
        hello = rig_hello(pump)
        rig_id = str(hello["rig_id"])
        path = args.store or default_store_path(rig_id)
        with LogStore(Path(path), rig_id) as store:
            bar = output.Progress(0, "pulling log", force=False)
            bar.enabled = bar.enabled and not args.json
            read = _read_fn(pump)
            first = store.last_seq()
            _, next_seq, _ = read(1 if first is None else first + 1, 0)
            bar.enabled = bar.enabled and next_seq - (first or 0) >= PROGRESS_FROM
            result = pull(read, store, bar)
            result.update({"schema": "pumpctl.logs-pull/1", "rig_id": rig_id, "store": str(path)})
            try:
                if args.csv:
                    result["csv_rows"] = store.export_csv(args.csv)
                    result["csv"] = str(args.csv)
                if args.jsonl:
                    result["jsonl_rows"] = store.export_jsonl(args.jsonl)
                    result["jsonl"] = str(args.jsonl)
            except OSError as exc:
                raise UsageError("pulled %d record(s) into %s, but cannot write the export %s: %s"
                                 % (result["pulled"], path, exc.filename, exc.strerror)) from None

    def human(d: dict[str, Any]) -> str:
        lines = ["rig %s: pulled %d new record(s) into %s (%d stored, last seq %s)"
                 % (d["rig_id"], d["pulled"], d["store"], d["stored"], d["last_seq"])]
        for a, b in d["gaps"]:
            lines.append("warning: records %d..%d were overwritten on the rig before they were pulled" % (a, b))
        if d["undecodable"]:
            lines.append("warning: %d record(s) failed their CRC check (kept, marked crc_ok=0)" % d["undecodable"])
        if "csv" in d:
            lines.append("wrote %d rows to %s" % (d["csv_rows"], d["csv"]))
        if "jsonl" in d:
            lines.append("wrote %d rows to %s" % (d["jsonl_rows"], d["jsonl"]))
        return "\n".join(lines)
    output.emit(args.json, result, human)
    return 0


LOGS_SCHEMA = "pumpctl.logs/1"


def _name(table: Sequence[str], code: int, what: str) -> str:
    return table[code] if 0 <= code < len(table) else "%s-%d" % (what, code)


def decoded_fields(code: int, detail: dict[str, int]) -> tuple[dict[str, Any], str]:
    """A record's arguments with names for codes and text in units: (fields for JSON, text).

    JSON keeps quantities as integers in their base unit (the key says which: _ng, _nl, _ms);
    codes become names (alarm, kind, reason, reset cause, refusal); the two halves of a program
    CRC become one hex string."""
    from pumpcore import alarms, scheduler
    f: dict[str, Any] = dict(detail)
    if "program_crc_hi16" in f:
        f["program_crc"] = "%04x%04x" % (f.pop("program_crc_hi16") & 0xFFFF, f.pop("program_crc_lo16", 0) & 0xFFFF)
    if "program_crc16" in f:
        f["program_crc16"] = "%04x" % (f["program_crc16"] & 0xFFFF)
    if "alarm" in f:
        try:
            f["alarm"] = alarms.alarm_name(f["alarm"])
        except alarms.AlarmError:
            f["alarm"] = "alarm-%d" % f["alarm"]
    if "priority" in f:
        f["priority"] = logtext.priority_name(f["priority"])
    if "kind" in f and code in (logrec.EV_BOLUS_START, logrec.EV_BOLUS_END, logrec.EV_BOLUS_DENIED,
                                logrec.EV_BOLUS_ABORTED):
        f["kind"] = _name(scheduler.BOLUS_NAMES, f["kind"], "kind")
    if "refusal_code" in f:
        f["refusal"] = scheduler.refusal_text(f.pop("refusal_code"))
    if code == logrec.EV_ALARM_RAISED and "restored" in f:
        f["restored"] = bool(f["restored"])   # True: active before the reset, carried over
    if code == logrec.EV_SUSPEND and "reason" in f:
        f["reason"] = "alarm" if f["reason"] == 1 else "command"
    if code == logrec.EV_LOG_APPLIED and "event" in f:
        f["event"] = logtext.event_name(f["event"])   # the action whose save was cut, applied at boot
    if code == logrec.EV_RESET and "reset_cause" in f:
        f["reset_cause"] = _name(("power-on", "watchdog", "soft", "unknown"), f["reset_cause"], "cause")
    if "mode" in f and code == logrec.EV_PROGRAM_COMMIT:
        from pumpcore import program
        f["mode"] = _name(program.MODE_NAMES, f["mode"], "mode")
    parts = []
    for k, v in f.items():
        if k == "restored" and isinstance(v, bool):
            if v:
                parts.append("carried over the reset (raised before it)")
        elif isinstance(v, int) and k.endswith("_ng"):
            parts.append("%s %s" % (k[:-3], output.ug(v)))
        elif isinstance(v, int) and k.endswith("_ng_day"):
            parts.append("%s %s" % (k[:-7], output.ug_day(v)))
        elif isinstance(v, int) and k.endswith("_nl"):
            parts.append("%s %s" % (k[:-3], "%d.%03d uL" % divmod(v, 1000) if abs(v) < 1_000_000 else output.ml(v)))
        elif isinstance(v, int) and k.endswith("_ms") and k not in ("old_ms", "new_ms"):
            parts.append("%s %s" % (k[:-3], output.duration_ms(v) if v >= 1000 else "%d ms" % v))
        else:
            parts.append("%s %s" % (k, v))
    return f, ", ".join(parts)


def cmd_show(args: argparse.Namespace) -> int:
    """Records from the rig, decoded: names, not codes; values in units."""
    kinds = set()
    for k in args.kind or []:
        for name in k.split(","):
            name = name.strip()
            if name and name not in logtext.EVENT_NAMES[1:]:
                raise UsageError("--kind = %r: not an event name (one of %s)"
                                 % (name, ", ".join(n for n in logtext.EVENT_NAMES[1:])))
            if name:
                kinds.add(name)
    if args.since is not None and not 0 <= args.since < 2**31:
        raise UsageError("--since = %d: must be a sequence number 0..%d" % (args.since, 2**31 - 1))
    records = []
    decoded: list[StoredRecord] = []
    with open_pump(args) as pump:
        rig_id = str(rig_hello(pump)["rig_id"])
        read = _read_fn(pump)
        oldest, next_seq, _ = read(0, 0)
        start = max(oldest, args.since or 0)
        if args.last is not None and args.since is None:
            start = max(oldest, next_seq - args.last)
        while start < next_seq:
            _, next_seq, raws = read(start, BATCH)
            if not raws:
                break
            for raw in raws:
                rec = decode_record(raw)
                start = max(start, rec.seq) + 1 if rec.crc_ok else start + 1
                decoded.append(rec)
    # records appended late from the rig's log backlog (pumpctl.logorder): shown in seq order,
    # their own earlier time kept, marked; the log-backlog record after them says so
    late = late_seqs(stored_late_rows(decoded))
    for rec in decoded:
        if kinds and rec.event not in kinds:
            continue
        fields, text = decoded_fields(rec.code, rec.detail) if rec.crc_ok else (rec.detail, str(rec.detail))
        if rec.seq in late:
            text += " " + LATE_MARK
        records.append({"seq": rec.seq, "time": output.wall_time(rec.day, rec.ms_of_day) if rec.crc_ok else None,
                        "day": rec.day, "ms_of_day": rec.ms_of_day, "event": rec.event, "crc_ok": rec.crc_ok,
                        "fields": fields, "text": text, "late": rec.seq in late})
    doc = {"schema": LOGS_SCHEMA, "rig_id": rig_id, "next_seq": next_seq, "records": records}
    output.emit(args.json, doc, lambda d: output.table(
        ("SEQ", "TIME", "EVENT", "DETAIL"), [(r["seq"], r["time"], r["event"], r["text"]) for r in d["records"]],
        empty="no records" + (" of kind %s" % ", ".join(sorted(kinds)) if kinds else "")))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="event log: pull into the local store, export")
    lsub = p.add_subparsers(dest="logs_command", metavar="SUBCOMMAND", required=True)
    pp = add_common(lsub.add_parser("pull", help="copy records not yet pulled into the local SQLite store"))
    pp.add_argument("--store", type=Path, help="SQLite file (default: $PUMPCTL_HOME/logs/<rig id>.sqlite)")
    pp.add_argument("--csv", type=Path, help="also export every stored record to this CSV file")
    pp.add_argument("--jsonl", type=Path, help="also export every stored record to this JSON Lines file")
    pp.set_defaults(func=run_pull)
    ps = add_common(lsub.add_parser("show", help="the rig's records decoded: event names, values in units"))
    ps.add_argument("--since", type=int, metavar="SEQ", help="from this sequence number on (default: all kept)")
    ps.add_argument("--last", type=int, metavar="N", help="only the last N records (without --since)")
    ps.add_argument("--kind", action="append", metavar="EVENT",
                    help="only these events (repeat or comma-separate): e.g. alarm-raised,suspend")
    ps.set_defaults(func=cmd_show)
