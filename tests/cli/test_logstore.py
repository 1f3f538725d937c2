"""Log store and incremental pull: only new records, gaps noted, interrupted pulls resume, exports match."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import pytest

from pumpcore import logrec
from pumpctl.cli import cmd_logs
from pumpctl.errors import ProtocolError, UsageError
from pumpctl.logstore import LogStore, default_store_path


class Ring:
    """A rig's event-log ring: keeps the newest `capacity` records, answers log reads by rule."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.records: dict[int, bytes] = {}
        self.next_seq = 1
        self.reads = 0
        self.fail_after: int | None = None

    def append(self, n: int, code: int = logrec.EV_HOURLY_TOTAL) -> None:
        for _ in range(n):
            seq = self.next_seq
            self.records[seq] = logrec.encode(seq, 9000 + seq // 24, (seq % 24) * 3_600_000, code,
                                              seq % 24, seq * 7750, seq * 3, 0)
            self.next_seq += 1
            self.records.pop(seq - self.capacity, None)

    @property
    def oldest(self) -> int:
        return min(self.records) if self.records else self.next_seq

    def read(self, first: int, count: int) -> tuple[int, int, Sequence[bytes]]:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise ConnectionError("cable pulled")
        if first < self.oldest or first >= self.next_seq:
            return self.oldest, self.next_seq, []
        last = min(first + count, self.next_seq)
        return self.oldest, self.next_seq, [self.records[s] for s in range(first, last)]


def test_pull_is_incremental(tmp_path: Path) -> None:
    ring = Ring()
    ring.append(100)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        got = cmd_logs.pull(ring.read, store)
        assert got["pulled"] == 100 and store.last_seq() == 100 and got["gaps"] == []
        ring.append(5)
        got = cmd_logs.pull(ring.read, store)
        assert got["pulled"] == 5 and store.count() == 105
        assert cmd_logs.pull(ring.read, store)["pulled"] == 0
        recs = list(store.records())
        assert [r.seq for r in recs] == list(range(1, 106))
        assert recs[0].event == "hourly-total" and recs[0].detail["delivered_ng"] == 7750
        assert recs[0].raw == ring.records[1]


def test_overwritten_records_are_a_gap_not_silence(tmp_path: Path) -> None:
    ring = Ring(capacity=50)
    ring.append(10)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        cmd_logs.pull(ring.read, store)
        ring.append(100)                      # ring now holds 61..110: 11..60 are gone
        got = cmd_logs.pull(ring.read, store)
        assert got["gaps"] == [[11, 60]] and store.gaps() == [(11, 60)]
        assert got["pulled"] == 50 and store.last_seq() == 110


def test_interrupted_pull_keeps_committed_batches_and_resumes(tmp_path: Path) -> None:
    ring = Ring()
    ring.append(200)
    path = tmp_path / "r.sqlite"
    ring.fail_after = 3                        # probe + 2 batches of 31, then the cable goes
    with LogStore(path, "rig-a") as store, pytest.raises(ConnectionError):
        cmd_logs.pull(ring.read, store)
    with LogStore(path, "rig-a") as store:
        assert store.last_seq() == 62
        ring.fail_after = None
        assert cmd_logs.pull(ring.read, store)["pulled"] == 138
        assert [r.seq for r in store.records()] == list(range(1, 201))


def test_corrupt_record_is_kept_and_flagged(tmp_path: Path) -> None:
    ring = Ring()
    ring.append(3)
    bad = bytearray(ring.records[2])
    bad[20] ^= 0xFF
    ring.records[2] = bytes(bad)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        got = cmd_logs.pull(ring.read, store)
        assert got["undecodable"] == 1
        r2 = [r for r in store.records() if r.seq == 2][0]
        assert not r2.crc_ok and r2.event == "undecodable" and "crc" in r2.detail["error"]


def test_wiped_rig_is_refused(tmp_path: Path) -> None:
    ring = Ring()
    ring.append(20)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        cmd_logs.pull(ring.read, store)
        fresh = Ring()
        fresh.append(3)
        with pytest.raises(ProtocolError, match="store already holds seq 20"):
            cmd_logs.pull(fresh.read, store)


def test_store_belongs_to_one_rig(tmp_path: Path) -> None:
    LogStore(tmp_path / "r.sqlite", "rig-a").close()
    with pytest.raises(UsageError, match="belongs to rig rig-a, not rig-b"):
        LogStore(tmp_path / "r.sqlite", "rig-b")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a pumpctl SQLite store"):
        LogStore(tmp_path / "x.sqlite", "rig-a")


def test_default_path_under_home(pumpctl_home: Path) -> None:
    assert default_store_path("rig/../x") == pumpctl_home / "logs" / "rig_.._x.sqlite"


def test_exports_carry_every_record(tmp_path: Path) -> None:
    ring = Ring()
    ring.append(40)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        cmd_logs.pull(ring.read, store)
        assert store.export_csv(tmp_path / "o.csv") == 40
        assert store.export_jsonl(tmp_path / "o.jsonl") == 40
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    lines = [json.loads(s) for s in open(tmp_path / "o.jsonl")]
    assert [int(r["seq"]) for r in rows] == [d["seq"] for d in lines] == list(range(1, 41))
    assert rows[4]["time"] == lines[4]["time"] == "2024-08-22 05:00:00.000"  # day 9000 = 8766 (2024-01-01) + 234
    assert json.loads(rows[4]["detail"]) == lines[4]["detail"] == {
        "hour": 5, "delivered_ng": 5 * 7750, "delivered_steps": 15, "missed_steps": 0}
    assert bytes.fromhex(lines[4]["raw_hex"]) == ring.records[5]


def test_long_pull_drives_the_progress_bar(tmp_path: Path) -> None:
    import io
    from pumpctl.cli import output
    ring = Ring()
    ring.append(500)
    buf = io.StringIO()
    bar = output.Progress(0, "pulling log", stream=buf, force=True, width=10)
    with LogStore(tmp_path / "r.sqlite", "rig-a") as store:
        cmd_logs.pull(ring.read, store, bar)
    text = buf.getvalue()
    assert "31/500" in text and text.rstrip().endswith("[##########] 500/500")


def test_logs_show_says_an_alarm_was_carried_over_a_reset() -> None:
    from pumpcore import alarms, logrec, logtext
    from pumpctl.cli.cmd_logs import decoded_fields
    names = logtext.EVENT_ARGS[logrec.EV_ALARM_RAISED]
    carried = dict(zip(names, (alarms.ALARM_OCCLUSION, alarms.PRIO_HIGH, 0, 1)))
    fields, text = decoded_fields(logrec.EV_ALARM_RAISED, {k: v for k, v in carried.items() if k})
    assert fields["restored"] is True and "carried over the reset" in text
    fresh = dict(zip(names, (alarms.ALARM_OCCLUSION, alarms.PRIO_HIGH, 0, 0)))
    fields, text = decoded_fields(logrec.EV_ALARM_RAISED, {k: v for k, v in fresh.items() if k})
    assert fields["restored"] is False and "carried" not in text and "occlusion" in text
