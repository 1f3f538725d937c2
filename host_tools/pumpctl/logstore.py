"""Local SQLite store of event-log records pulled from each rig: incremental, gap-aware, exportable to CSV and JSONL.

One database file per rig, `<home>/logs/<rig id>.sqlite` (home = $PUMPCTL_HOME, default
~/.local/state/pumpctl). A record is kept exactly as the rig sent it (`raw`, 32 bytes) beside
its decoded fields, so a later decoder can re-read old pulls. Records are written in one
transaction per batch: a pull interrupted at any point keeps every batch already committed and
the next pull resumes after the last stored sequence number (see LogStore.__init__ on WAL).
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from pumpcore import logrec

from .deploy import pumpctl_home
from .logorder import late_seqs
from .errors import UsageError

SCHEMA_VERSION = 1
# Columns of an exported record, in order (CSV header and JSONL keys).
# late: appended late from the rig's log backlog, with its own earlier time (pumpctl.logorder).
EXPORT_COLUMNS = ("seq", "day", "ms_of_day", "time", "code", "event", "detail", "crc_ok", "raw_hex", "late")
LATE_MARK = "(appended late: the flash refused it at its time; see the log-backlog record after it)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,          -- the rig's monotonic log sequence number
    day INTEGER NOT NULL,             -- days since 2000-01-01
    ms_of_day INTEGER NOT NULL,       -- ms since midnight, < 86_400_000
    code INTEGER NOT NULL,            -- event code (pumpcore.logrec)
    event TEXT NOT NULL,              -- event name
    detail TEXT NOT NULL,             -- decoded fields, JSON object
    crc_ok INTEGER NOT NULL,          -- 1 if the record's own CRC checked
    raw BLOB NOT NULL,                -- the record as sent by the rig
    pulled_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS gaps (
    first_seq INTEGER NOT NULL,       -- first sequence number lost (overwritten on the rig's ring)
    last_seq INTEGER NOT NULL,        -- last one lost
    noted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
"""

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class StoredRecord:
    """One event-log record as stored: sequence, wall time (day, ms_of_day), event and fields."""

    seq: int
    day: int
    ms_of_day: int
    code: int
    event: str
    detail: dict[str, Any]
    crc_ok: bool
    raw: bytes

    def time_text(self) -> str:
        """Wall time as 'YYYY-MM-DD HH:MM:SS.mmm' (day 0 = 2000-01-01)."""
        import datetime
        date = datetime.date(2000, 1, 1) + datetime.timedelta(days=self.day)
        ms = self.ms_of_day
        return "%s %02d:%02d:%02d.%03d" % (date.isoformat(), ms // 3_600_000, ms // 60_000 % 60,
                                           ms // 1000 % 60, ms % 1000)

    def export_row(self, late: bool = False) -> dict[str, Any]:
        return {"seq": self.seq, "day": self.day, "ms_of_day": self.ms_of_day, "time": self.time_text(),
                "code": self.code, "event": self.event, "detail": self.detail, "crc_ok": self.crc_ok,
                "raw_hex": self.raw.hex(), "late": late}


def stored_late_rows(records: Iterable[StoredRecord]) -> Iterator[tuple[int, int, int]]:
    """(seq, code, late count) per record, for pumpctl.logorder.late_seqs."""
    for r in records:
        yield r.seq, r.code, int(r.detail.get("late_records", 0)) if r.code == logrec.EV_LOG_BACKLOG else 0


def default_store_path(rig_id: str, home: Path | None = None) -> Path:
    """Database path for `rig_id` under `home` (default pumpctl_home())."""
    if not rig_id:
        raise UsageError("rig id is empty: cannot choose a log store")
    return (home or pumpctl_home()) / "logs" / (_SAFE_ID.sub("_", rig_id) + ".sqlite")


class LogStore:
    """The SQLite log store of one rig. Use as a context manager or call close()."""

    def __init__(self, path: Path, rig_id: str) -> None:
        self.path = Path(path)
        self.rig_id = rig_id
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError("cannot create the log store directory %s: %s" % (self.path.parent, exc.strerror)) from None
        try:
            self.db = sqlite3.connect(str(self.path))
            # WAL with synchronous=NORMAL: a batch commit costs no fsync (a pull stays above
            # 2,000 records/s); the database cannot be corrupted by a crash, at worst the last
            # batches roll back, and those are still on the rig and come again with the next
            # pull. flush() (end of every pull) makes everything durable.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            stored = self._meta("rig_id")
        except sqlite3.OperationalError as exc:
            raise UsageError("cannot open log store %s: %s" % (self.path, exc)) from None
        except sqlite3.DatabaseError as exc:
            raise UsageError("log store %s is not a pumpctl SQLite store: %s" % (self.path, exc)) from None
        if stored is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('rig_id', ?), ('schema', ?)", (rig_id, str(SCHEMA_VERSION)))
        elif stored != rig_id:
            raise UsageError("log store %s belongs to rig %s, not %s (wrong rig: use --store)"
                             % (self.path, stored, rig_id))

    @classmethod
    def for_rig(cls, rig_id: str, home: Path | None = None) -> "LogStore":
        return cls(default_store_path(rig_id, home), rig_id)

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Make every committed batch durable (checkpoint the WAL into the database, fsynced)."""
        self.db.execute("PRAGMA wal_checkpoint(FULL)")

    def close(self) -> None:
        self.flush()
        self.db.close()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ reading
    def last_seq(self) -> int | None:
        """Highest sequence number stored, or None for an empty store."""
        row = self.db.execute("SELECT MAX(seq) FROM records").fetchone()
        return None if row[0] is None else int(row[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def gaps(self) -> list[tuple[int, int]]:
        """Ranges (first, last) of sequence numbers the rig overwrote before they were pulled."""
        return [(int(a), int(b)) for a, b in self.db.execute("SELECT first_seq, last_seq FROM gaps ORDER BY first_seq")]

    def records(self, since_seq: int | None = None) -> Iterator[StoredRecord]:
        """Stored records in sequence order, from `since_seq` (inclusive) if given."""
        cur = self.db.execute("SELECT seq, day, ms_of_day, code, event, detail, crc_ok, raw FROM records "
                              "WHERE seq >= ? ORDER BY seq", (since_seq if since_seq is not None else -1,))
        for seq, day, ms, code, event, detail, crc_ok, raw in cur:
            yield StoredRecord(seq, day, ms, code, event, json.loads(detail), bool(crc_ok), bytes(raw))

    def late(self) -> set[int]:
        """Seqs of the stored records appended late from the rig's log backlog (their own,
        earlier times: not a gap, not corruption; pumpctl.logorder)."""
        return late_seqs(stored_late_rows(self.records()))

    # ------------------------------------------------------------------ writing
    def add(self, records: Iterable[StoredRecord]) -> int:
        """Store a batch in one transaction; records already stored are skipped. Returns new count."""
        rows = [(r.seq, r.day, r.ms_of_day, r.code, r.event, json.dumps(r.detail, sort_keys=True),
                 1 if r.crc_ok else 0, bytes(r.raw)) for r in records]
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO records (seq, day, ms_of_day, code, event, detail, crc_ok, raw) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return self.db.total_changes - before

    def note_gap(self, first_seq: int, last_seq: int) -> None:
        """Record that the rig's ring no longer held sequence numbers first_seq..last_seq."""
        if last_seq < first_seq:
            raise ValueError("gap %d..%d: last_seq below first_seq" % (first_seq, last_seq))
        with self.db:
            self.db.execute("INSERT INTO gaps (first_seq, last_seq) VALUES (?, ?)", (first_seq, last_seq))

    # ------------------------------------------------------------------ export
    def export_csv(self, path: Path, since_seq: int | None = None) -> int:
        """Write stored records as CSV (EXPORT_COLUMNS; detail as JSON text). Returns rows written."""
        n = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(EXPORT_COLUMNS))
            w.writeheader()
            late = self.late()
            for rec in self.records(since_seq):
                row = rec.export_row(rec.seq in late)
                row["detail"] = json.dumps(row["detail"], sort_keys=True)
                row["crc_ok"] = int(row["crc_ok"])
                row["late"] = int(row["late"])
                w.writerow(row)
                n += 1
        return n

    def export_jsonl(self, path: Path, since_seq: int | None = None) -> int:
        """Write stored records as JSON Lines (one object per record, keys EXPORT_COLUMNS)."""
        n = 0
        with open(path, "w", encoding="utf-8") as f:
            late = self.late()
            for rec in self.records(since_seq):
                f.write(json.dumps(rec.export_row(rec.seq in late), sort_keys=True) + "\n")
                n += 1
        return n
