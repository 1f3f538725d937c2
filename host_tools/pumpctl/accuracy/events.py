"""What the rig logged during an accuracy run: alarms, suspends, resumes, resets, missed volume.

The rig's event log is read from the first record after the run started; each record's wall
time (the rig's clock: day, ms of day) becomes seconds from the run's start. These are marked on
the plots, written to the samples log (so --from-log gives the same verdict) and decide whether
the run was *interrupted*: an alarm that stops the motor or is of high priority, a suspend, a
firmware reset or missed volume means the figures do not describe an uninterrupted infusion.
"""
from __future__ import annotations

from typing import Any

from pumpcore import alarms, logrec

MS_PER_DAY = 86_400_000


def rig_wall_ms(day: int, ms_of_day: int) -> int:
    return int(day) * MS_PER_DAY + int(ms_of_day)


def classify(code: int, a0: int, a1: int) -> dict[str, Any] | None:
    """An event code and its first arguments -> {kind, what, interrupts} (None: not of interest)."""
    if code == logrec.EV_ALARM_RAISED:
        try:
            name = alarms.alarm_name(a0)
            stops = alarms.reaction(a0) == alarms.REACT_STOP or alarms.priority(a0) >= alarms.PRIO_HIGH
        except alarms.AlarmError:
            name, stops = f"alarm-{a0}", True
        return {"kind": "alarm", "what": f"alarm {name}", "interrupts": bool(stops)}
    if code == logrec.EV_SUSPEND:
        return {"kind": "suspend", "what": "suspend (%s)" % ("alarm" if a0 == 1 else "command"),
                "interrupts": True}
    if code == logrec.EV_RESUME:
        return {"kind": "resume", "what": "resume after %d s" % (a0 // 1000), "interrupts": False}
    if code == logrec.EV_RESET:
        return {"kind": "reset", "what": "firmware reset", "interrupts": True}
    if code == logrec.EV_MISSED_VOLUME:
        return {"kind": "missed", "what": "missed volume %d nL" % a0, "interrupts": True}
    return None


def read_run_events(pump: Any, first_seq: int, t0_wall_ms: int) -> list[dict[str, Any]]:
    """Records from `first_seq` on, as {t_s, kind, what, interrupts} (t_s from the run's start)."""
    out: list[dict[str, Any]] = []
    for _, raw in pump.iter_log(first_seq):
        try:
            _seq, day, ms, code, a0, a1, _a2, _a3 = logrec.decode(bytes(raw))
        except logrec.LogRecordError:
            continue
        ev = classify(code, a0, a1)
        if ev is None:
            continue
        ev["t_s"] = (rig_wall_ms(day, ms) - t0_wall_ms) / 1000.0
        out.append(ev)
    return out


def record_run_end(log: Any, pump: Any, first_seq: int, t0_wall_ms: int, n_samples: int) -> list[dict[str, Any]]:
    """At a run's end: read the rig's events of the run, note each and the end in the samples
    log (so --from-log sees the same interruptions); returns the events."""
    events = read_run_events(pump, first_seq, t0_wall_ms)
    for ev in events:
        log.note("event", to_log_line(ev))
    log.note("ended", "complete, %d readings" % n_samples)
    return events


def to_log_line(ev: dict[str, Any]) -> str:
    """One `# event:` header value of the samples log: t_s|kind|interrupts|what."""
    return "%r|%s|%d|%s" % (ev["t_s"], ev["kind"], int(ev["interrupts"]), ev["what"])


def from_log_line(text: str) -> dict[str, Any]:
    t, kind, stops, what = text.split("|", 3)
    return {"t_s": float(t), "kind": kind, "interrupts": stops == "1", "what": what}


def interruptions(events: list[dict[str, Any]], run_s: float) -> list[dict[str, Any]]:
    """The events up to the run's end that interrupt delivery. The log is read from the record
    after the program's commit, so an alarm a few seconds before the first reading counts too."""
    return [e for e in events if e["interrupts"] and e["t_s"] <= run_s + 1.0]
