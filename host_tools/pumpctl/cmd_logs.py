"""`pumpctl logs pull`: incremental copy of the rig's event log into the local SQLite store, with CSV/JSONL export."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from pumpcore import logrec

from . import output
from .cmd_device import add_common, open_pump, rig_hello
from .errors import ProtocolError, UsageError
from .logstore import LogStore, StoredRecord, default_store_path

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
    names = logrec.EVENT_ARGS[code]
    detail = {name: value for name, value in zip(names, (a0, a1, a2, a3)) if name}
    return StoredRecord(seq, day, ms, code, logrec.event_name(code), detail, True, raw)


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
            result.update({"rig_id": rig_id, "store": str(path)})
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="event log: pull into the local store, export")
    lsub = p.add_subparsers(dest="logs_command", metavar="SUBCOMMAND", required=True)
    pp = add_common(lsub.add_parser("pull", help="copy records not yet pulled into the local SQLite store"))
    pp.add_argument("--store", type=Path, help="SQLite file (default: $PUMPCTL_HOME/logs/<rig id>.sqlite)")
    pp.add_argument("--csv", type=Path, help="also export every stored record to this CSV file")
    pp.add_argument("--jsonl", type=Path, help="also export every stored record to this JSON Lines file")
    pp.set_defaults(func=run_pull)
