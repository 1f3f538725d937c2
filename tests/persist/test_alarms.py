"""Alarm state machine: latching, ack, clear, priorities, patterns, reactions, reset survival.

A hypothesis rule-based machine drives AlarmSet and an independent reference model of the rules
written in the pumpcore.alarms docstring, and compares them after every step.
"""
from __future__ import annotations

import pytest
from hypothesis import settings, strategies as hs
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pumpcore import alarms as A, alarmtable, logtext
from pumpcore.alarms import AlarmError, AlarmSet

CODES = list(range(1, A.ALARM_MAX + 1))


def test_table_is_complete_and_consistent():
    assert len(alarmtable.ALARM_TABLE) == A.ALARM_MAX + 1
    names = [A.alarm_name(c) for c in CODES]
    assert len(set(names)) == len(names)
    for c in CODES:
        name, prio, kind, latch, react = alarmtable.ALARM_TABLE[c]
        text = logtext.alarm_text(c)
        assert prio in range(5) and react in range(3) and text.endswith(".")
        if prio == A.PRIO_INFO:
            assert not latch and react == A.REACT_NONE
    # the dangerous conditions stop the motor and latch
    for c in (A.ALARM_OCCLUSION, A.ALARM_STALL, A.ALARM_RESERVOIR_EMPTY, A.ALARM_FLOW_HIGH,
              A.ALARM_STATE_CORRUPT, A.ALARM_PROGRAM_CORRUPT):
        assert A.reaction(c) == A.REACT_STOP and A.latches(c)
    # under-delivery keeps the basal going; a power reset resumes the basal
    assert A.reaction(A.ALARM_FLOW_LOW) == A.REACT_NONE
    assert A.reaction(A.ALARM_RESET_POWER) == A.REACT_NONE
    assert len(logtext.ALARM_TEXTS) == A.ALARM_MAX + 1
    assert len(logtext.PRIORITY_NAMES) == A.PRIO_CRITICAL + 1 and len(logtext.REACTION_NAMES) == A.REACT_STOP + 1
    assert logtext.priority_name(A.PRIO_HIGH) == "high" and logtext.priority_name(9) == "priority-9"
    with pytest.raises(AlarmError, match="alarm code = 0: must be 1"):
        logtext.alarm_text(0)
    assert len(A.PATTERN_SPEC) == A.PATTERN_MAX + 1
    sounds = {A.PATTERN_SPEC[A.PATTERN_SOUND_INFO + p][:4] for p in range(5)}
    assert len(sounds) == 5, "each priority needs a distinct sound pattern"


def test_bad_codes_name_the_value():
    s = AlarmSet()
    for bad in (0, A.ALARM_MAX + 1, "x"):
        with pytest.raises(AlarmError) as e:
            s.raise_(bad)
        assert repr(bad) in str(e.value) and "1..%d" % A.ALARM_MAX in str(e.value)


def test_occlusion_latches_until_ack_and_holds_the_motor():
    s = AlarmSet()
    assert s.raise_(A.ALARM_OCCLUSION)
    assert not s.motor_allowed() and s.pattern() == A.PATTERN_SOUND_HIGH
    assert not s.clear(A.ALARM_OCCLUSION)          # condition gone, not acknowledged: stays
    assert s.is_active(A.ALARM_OCCLUSION) and not s.motor_allowed()
    assert s.ack(A.ALARM_OCCLUSION)
    assert not s.is_active(A.ALARM_OCCLUSION) and s.motor_allowed()
    assert s.pattern() == A.PATTERN_OFF


def test_ack_while_condition_present_silences_but_keeps_motor_stopped():
    s = AlarmSet()
    s.raise_(A.ALARM_STALL)
    s.ack(A.ALARM_STALL)
    assert s.pattern() == A.PATTERN_LED_HIGH and not s.motor_allowed()
    assert not s.raise_(A.ALARM_STALL)              # still there: not a new occurrence
    assert s.pattern() == A.PATTERN_LED_HIGH
    assert s.clear(A.ALARM_STALL) and s.motor_allowed()


def test_reminders_and_info_expiry():
    s = AlarmSet()
    s.raise_(A.ALARM_RESERVOIR_LOW_VOLUME)
    assert s.pattern() == A.PATTERN_SOUND_MEDIUM
    s.tick(A.BURST_MS)
    assert s.pattern() == A.PATTERN_LED_MEDIUM
    s.tick(A.REMIND_MS - A.BURST_MS)
    assert s.pattern() == A.PATTERN_SOUND_MEDIUM     # reminder
    s.ack(A.ALARM_RESERVOIR_LOW_VOLUME)
    s.tick(A.REMIND_MS)
    assert s.pattern() == A.PATTERN_LED_MEDIUM       # acknowledged: no more reminders
    assert s.clear(A.ALARM_RESERVOIR_LOW_VOLUME)
    s.raise_(A.ALARM_BOLUS_DENIED)
    assert s.pattern() == A.PATTERN_SOUND_INFO and s.motor_allowed() and s.bolus_allowed()
    assert s.tick(A.INFO_SHOW_MS) == 1
    assert not s.is_active(A.ALARM_BOLUS_DENIED)


def test_watchdog_reset_holds_boluses_but_not_basal():
    s = AlarmSet()
    s.raise_(A.ALARM_RESET_WATCHDOG)
    assert s.motor_allowed() and not s.bolus_allowed()
    assert not s.clear(A.ALARM_RESET_WATCHDOG)      # an event: only ack ends it
    s.ack(A.ALARM_RESET_WATCHDOG)
    assert s.bolus_allowed()


def test_snapshot_restore_keeps_latched_alarms_across_reset():
    s = AlarmSet()
    s.raise_(A.ALARM_OCCLUSION)
    s.raise_(A.ALARM_STALL)
    s.ack(A.ALARM_STALL)
    s.raise_(A.ALARM_RESERVOIR_LOW_DAYS)            # not latching: re-detected after reset
    s.raise_(A.ALARM_LIMIT_REFUSED)                  # info: not kept
    act, acked = s.snapshot()
    assert act < (1 << 30) and acked < (1 << 30)
    t = AlarmSet()
    t.restore(act, acked)
    assert t.active() == [A.ALARM_OCCLUSION, A.ALARM_STALL]
    assert not t.is_acked(A.ALARM_OCCLUSION) and t.is_acked(A.ALARM_STALL)
    assert not t.motor_allowed()
    t.update(A.ALARM_STALL, False)                   # detector says stall over: it goes
    assert t.active() == [A.ALARM_OCCLUSION]
    with pytest.raises(AlarmError):
        t.restore(0b10, 0b100)


# ---------------------------------------------------------------- reference model
class Model:
    """The rules, written independently of the implementation."""

    def __init__(self) -> None:
        self.state: dict[int, dict] = {}

    def raise_(self, c: int) -> bool:
        ev = A.is_event(c)
        if c in self.state:
            if not ev:
                self.state[c]["cond"] = True
            return False
        self.state[c] = {"acked": False, "cond": not ev, "age": 0, "remind": 0}
        return True

    def clear(self, c: int) -> bool:
        a = self.state.get(c)
        if a is None or A.is_event(c):
            return False
        if a["acked"] or not A.latches(c):
            del self.state[c]
            return True
        a["cond"] = False
        return False

    def ack(self, c: int) -> bool:
        a = self.state.get(c)
        if a is None or a["acked"]:
            return False
        if A.is_event(c) or not a["cond"]:
            del self.state[c]
        else:
            a["acked"] = True
        return True

    def tick(self, dt: int) -> None:
        for c in list(self.state):
            a = self.state[c]
            a["age"] = min(a["age"] + dt, 1 << 29)
            a["remind"] = (a["remind"] + dt) % A.REMIND_MS
            if A.priority(c) == A.PRIO_INFO and a["age"] >= A.INFO_SHOW_MS:
                del self.state[c]

    def reset(self) -> None:
        kept = {}
        for c, a in self.state.items():
            if A.priority(c) == A.PRIO_INFO or not (A.latches(c) or A.is_event(c)):
                continue
            if a["acked"]:
                kept[c] = {"acked": True, "cond": True, "age": 0, "remind": 0}
            else:
                kept[c] = {"acked": False, "cond": False, "age": 0, "remind": 0}
        self.state = kept

    def pattern(self) -> int:
        sound = [A.priority(c) for c, a in self.state.items() if not a["acked"] and (
            A.priority(c) >= A.PRIO_HIGH
            or (A.priority(c) == A.PRIO_INFO and a["age"] < A.BURST_MS)
            or (A.PRIO_LOW <= A.priority(c) <= A.PRIO_MEDIUM and a["remind"] < A.BURST_MS))]
        if sound:
            return A.PATTERN_SOUND_INFO + max(sound)
        if self.state:
            return A.PATTERN_LED_INFO + max(A.priority(c) for c in self.state)
        return A.PATTERN_OFF


class AlarmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = AlarmSet()
        self.m = Model()

    @rule(c=hs.sampled_from(CODES))
    def raise_(self, c):
        assert self.s.raise_(c) == self.m.raise_(c)

    @rule(c=hs.sampled_from(CODES))
    def clear(self, c):
        latched_unacked = c in self.m.state and A.latches(c) and not self.m.state[c]["acked"]
        assert self.s.clear(c) == self.m.clear(c)
        if latched_unacked:  # a dangerous alarm never disappears without an acknowledgement
            assert self.s.is_active(c)

    @rule(c=hs.sampled_from(CODES), present=hs.booleans())
    def update(self, c, present):
        want = 1 if (present and self.m.raise_(c)) else (-1 if (not present and self.m.clear(c)) else 0)
        assert self.s.update(c, present) == want

    @rule(c=hs.sampled_from(CODES))
    def ack(self, c):
        assert self.s.ack(c) == self.m.ack(c)

    @rule()
    def ack_all(self):
        want = sorted(c for c, a in self.m.state.items() if not a["acked"])
        for c in want:
            self.m.ack(c)
        assert sorted(self.s.ack_all()) == want

    @rule(dt=hs.one_of(hs.integers(0, 2000), hs.sampled_from([A.BURST_MS, A.REMIND_MS, A.INFO_SHOW_MS]),
                       hs.integers(0, 10 * A.REMIND_MS)))
    def tick(self, dt):
        self.s.tick(dt)
        self.m.tick(dt)

    @rule()
    def power_cut_and_restore(self):
        act, acked = self.s.snapshot()
        self.s = AlarmSet()
        self.s.restore(act, acked)
        self.m.reset()

    @invariant()
    def same_as_model(self):
        assert set(self.s.active()) == set(self.m.state)
        for c, a in self.m.state.items():
            assert self.s.is_acked(c) == a["acked"], c
            assert self.s.condition_present(c) == a["cond"], c

    @invariant()
    def ordered_by_priority(self):
        prios = [A.priority(c) for c in self.s.active()]
        assert prios == sorted(prios, reverse=True)

    @invariant()
    def reactions(self):
        stops = any(A.reaction(c) == A.REACT_STOP for c in self.m.state)
        holds = any(A.reaction(c) != A.REACT_NONE for c in self.m.state)
        assert self.s.motor_allowed() == (not stops)
        assert self.s.bolus_allowed() == (not holds)

    @invariant()
    def pattern(self):
        assert self.s.pattern() == self.m.pattern()
        assert self.s.highest_priority() == max((A.priority(c) for c in self.m.state), default=-1)


AlarmMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestAlarmMachine = AlarmMachine.TestCase


def test_going_away_is_remembered_until_the_app_looks():
    """An INFO alarm acknowledged (it goes away) and raised again before the app logs the
    changes is two occurrences: gone_count says so, with the first one's age, until looked()."""
    s = AlarmSet()
    s.raise_(A.ALARM_BOLUS_DENIED)
    s.tick(7_000)
    assert s.gone_count(A.ALARM_BOLUS_DENIED) == 0
    assert s.ack(A.ALARM_BOLUS_DENIED)
    assert s.raise_(A.ALARM_BOLUS_DENIED)
    assert s.is_active(A.ALARM_BOLUS_DENIED) and s.active_ms(A.ALARM_BOLUS_DENIED) == 0
    assert s.gone_count(A.ALARM_BOLUS_DENIED) == 1
    assert s.gone_ms(A.ALARM_BOLUS_DENIED) == 7_000
    s.tick(A.INFO_SHOW_MS)                       # the second one expires
    assert s.gone_count(A.ALARM_BOLUS_DENIED) == 2
    assert s.gone_ms(A.ALARM_BOLUS_DENIED) == 7_000
    assert s.gone_ms(A.ALARM_BOLUS_DENIED, first=False) == A.INFO_SHOW_MS
    s.looked(A.ALARM_BOLUS_DENIED)
    assert s.gone_count(A.ALARM_BOLUS_DENIED) == 0
    # a latched alarm goes away only when acknowledged after its condition ended
    s.raise_(A.ALARM_OCCLUSION)
    s.clear(A.ALARM_OCCLUSION)
    assert s.gone_count(A.ALARM_OCCLUSION) == 0
    s.ack(A.ALARM_OCCLUSION)
    assert s.gone_count(A.ALARM_OCCLUSION) == 1
    s.restore(0, 0)
    assert s.gone_count(A.ALARM_OCCLUSION) == 0


def test_the_alarm_sets_copy_of_the_table_is_the_table():
    s = AlarmSet()
    for c in CODES:
        name, prio, kind, latch, react = alarmtable.ALARM_TABLE[c]
        assert s.priority(c) == prio == A.priority(c) and s.latches(c) == latch == A.latches(c)
        assert A.is_event(c) == (kind == A.KIND_EVENT) and A.reaction(c) == react
    with pytest.raises(AlarmError, match="alarm code = 0: must be 1"):
        s.priority(0)


def test_an_alarm_name_that_cannot_be_loaded_is_its_code(monkeypatch: pytest.MonkeyPatch):
    def no_heap(code: int) -> tuple:
        raise MemoryError("memory allocation failed")
    monkeypatch.setattr(A, "_row", no_heap)
    assert A.alarm_name(A.ALARM_CLOCK_LOST) == "alarm 12"
    with pytest.raises(AlarmError):
        A.alarm_name(99)
