"""The order of a rig's event log: which records were appended late, and where its time runs back.

The log's order is its sequence numbers (the rig appends in seq order, never rewrites). Times
follow it with two exceptions the rig itself explains, neither a gap nor corruption:

- Records appended late from the firmware's log backlog (pumpfw.store.LogBacklog): the flash
  refused them at their time, they waited in RAM and were appended once it worked again, each
  with its own time, older than the append by up to the fault's length. The `log-backlog`
  record (logrec.EV_LOG_BACKLOG) that closes the fault counts them in its first argument
  (`late_records`): they are the records just before it (nothing is appended directly while
  records wait, new ones queue behind: docs/persistence.md, rule 4). So on their own they never
  run back before a record ahead of them; they are marked so a reader knows the span up to the
  log-backlog record was written late, not that nothing happened in it.
- A time set (logrec.EV_TIME_SET) moves the clock, backwards too: the records after it follow
  the new clock (one among the late records is late too).

Host only; the firmware never imports it.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from pumpcore import logrec

MS_PER_DAY = 86_400_000


def late_seqs(records: Iterable[tuple[int, int, int]]) -> set[int]:
    """The sequence numbers of the records appended late, from (seq, code, first argument) of
    each record in seq order (a log-backlog record's first argument is its late count)."""
    late: set[int] = set()
    for seq, code, a0 in records:
        if code == logrec.EV_LOG_BACKLOG and a0 > 0:
            late.update(range(seq - a0, seq))
    return late


def late_in(records: Sequence[tuple[int, ...]]) -> set[int]:
    """late_seqs of decoded records (logrec.decode tuples: seq, day, ms, code, a0, ...)."""
    return late_seqs((r[0], r[3], r[4]) for r in records)


def time_runs_back(records: Sequence[tuple[int, ...]]) -> list[int]:
    """The seqs of decoded records (seq order) whose time is before the record before them,
    leaving out what the rig explains: records appended late (late_in), which also do not
    move the reference, and a time set, which moves it to its new time. An empty list: the
    log's times never run back unexplained."""
    late = late_in(records)
    out: list[int] = []
    last = -1
    for r in records:
        seq, day, ms, code = r[0], r[1], r[2], r[3]
        if seq in late:
            continue
        t = day * MS_PER_DAY + ms
        if code == logrec.EV_TIME_SET:
            last = t
            continue
        if t < last:
            out.append(seq)
        last = t if t > last else last
    return out
