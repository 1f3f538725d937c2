"""The loop's wake policy (pumpfw.app._sleep_ms): it sleeps past the 1 s tick only when all is
quiet, never near the watchdog, and no detector sees a fault later in delivered volume than with
the 1 s tick (each case is run both ways over a grid of start offsets), nor later in time than
its stated bound (docs/virtual-time.md "The wake policy")."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpcore import alarms as al
from pumpcore.program import MODE_CONTINUOUS, Program
from pumpfw import app as appmod
from pumpfw.app import PumpApp

from .fakehw import FakeHardware
from .test_app import CONTINUOUS_186, DAY0

TICK_MS = appmod.IDLE_MAX_MS
QUIET_MS = appmod._QUIET_MAX_MS
CONFIRM_MS = 2000                 # OcclusionDetector's confirm_ms as the app builds it
OCCLUDED_KPA_X10 = 3000           # above the BOM sensor's 879 threshold
STEP_KPA_X10 = 9                  # a blocked 20 mL line rises 0.9 kPa a microstep


class LineHardware(FakeHardware):
    """FakeHardware whose line reads 0 while patent and rises STEP_KPA_X10 a pulse once blocked;
    every sleep and every pressure read is recorded (device us)."""

    def __init__(self, flash: Path) -> None:
        super().__init__(flash)
        self.sleeps: list[int] = []
        self.reads: list[int] = []
        self.blocked_at = -1          # stepper.done when the line was blocked (-1: patent)
        self.forced = None            # a pressure forced by the test (None: the line's)
        self.fault: tuple[int, str] | None = None   # (device us, kind): applied inside a sleep
        self.fault_done = -1          # stepper.done when the fault was applied

    def advance_ms(self, ms: int) -> None:
        end = self.now_us + int(ms) * 1000
        if self.fault is not None and self.now_us < self.fault[0] <= end:
            t, kind = self.fault
            self.now_us = t
            self.stepper.run_until(t)
            self.fault = None
            self.fault_done = self.stepper.done
            self.apply(kind)
        self.now_us = end
        self.stepper.run_until(end)

    def apply(self, kind: str) -> None:
        if kind == "pressure":
            self.forced = OCCLUDED_KPA_X10
        elif kind == "diag":
            self.stepper.stalled = True
        elif kind == "end stop":
            self.end = True
        elif kind == "block":
            self.blocked_at = self.stepper.done
        else:
            self.slipping = True

    def idle(self, ms):
        self.sleeps.append(ms)
        super().idle(ms)

    def pressure_kpa_x10(self):
        self.reads.append(self.now_us)
        if self.forced is not None:
            return self.forced
        if self.blocked_at < 0:
            return 0
        return STEP_KPA_X10 * (self.stepper.done - self.blocked_at)


def quiet_app(tmp_path: Path, quiet_ms: int, monkeypatch, **prog) -> tuple[PumpApp, LineHardware]:
    """A programmed app (186 ug/day unless `prog`), every boot alarm acknowledged, with the quiet
    sleep set to quiet_ms (IDLE_MAX_MS: the former 1 s policy)."""
    monkeypatch.setattr(appmod, "_QUIET_MAX_MS", quiet_ms)
    hw = LineHardware(tmp_path / "flash")
    app = PumpApp(hw)
    app.boot()
    assert app.set_time(DAY0, 0) is None
    assert app.refill(20_000_000, 2000) is None
    assert app.commit_program(Program(**(prog or CONTINUOUS_186))) is None
    for code in app.alarm_set.active():
        app.ack_alarm(code)
    app.step()
    assert app._quiet(), app.alarm_set.active()
    return app, hw


def run_ms(app: PumpApp, hw: LineHardware, ms: int) -> None:
    end = hw.now_us + ms * 1000
    while hw.now_us < end:
        app.step()


def test_quiet_sleeps_are_longer_never_near_the_watchdog_and_deliver_the_same(tmp_path, monkeypatch):
    new, hw_new = quiet_app(tmp_path / "new", QUIET_MS, monkeypatch)
    run_ms(new, hw_new, 2 * 3600_000)
    old, hw_old = quiet_app(tmp_path / "old", TICK_MS, monkeypatch)
    run_ms(old, hw_old, 2 * 3600_000)
    assert max(hw_new.sleeps) == QUIET_MS <= appmod.WATCHDOG_MS - TICK_MS
    assert max(hw_old.sleeps) == TICK_MS
    # at 186 ug/day (a microstep every 16.7 s) the loop wakes under half as often
    assert len(hw_new.sleeps) * 2 < len(hw_old.sleeps)
    # the same schedule: the same pulses, the same delivered total
    assert new.sched.delivered_steps == old.sched.delivered_steps > 400
    assert new.sched.total_ng == old.sched.total_ng
    assert [e // 1000 for e in hw_new.stepper.edges] == [e // 1000 for e in hw_old.stepper.edges]
    # the minute's save and the hour edge are not delayed: woken at them
    assert new.save_due_ms < 60_000 and new.hour_mark == 2


def test_every_pulse_has_a_pressure_read_within_a_tick_before_it(tmp_path, monkeypatch):
    """The occlusion floor and the end stop's confirmation need a reading shortly before each
    step, as the 1 s tick gave: the quiet sleep ends a tick before the next step."""
    app, hw = quiet_app(tmp_path, QUIET_MS, monkeypatch)
    run_ms(app, hw, 1800_000)
    assert len(hw.stepper.edges) > 100
    reads = hw.reads
    j = 0
    for edge in hw.stepper.edges:
        while j + 1 < len(reads) and reads[j + 1] < edge:
            j += 1
        assert edge - TICK_MS * 1000 <= reads[j] < edge, (edge, reads[j])


@pytest.mark.parametrize("state", ["unacked medium alarm", "info alarm showing", "bolus",
                                   "pressure over threshold", "stalled"])
def test_anything_running_or_sounding_keeps_the_1s_tick(tmp_path, monkeypatch, state):
    app, hw = quiet_app(tmp_path, QUIET_MS, monkeypatch)
    run_ms(app, hw, 60_000)
    if state == "unacked medium alarm":
        app._raise(al.ALARM_RESET_POWER)        # its burst and reminders are timed in ticks
    elif state == "info alarm showing":
        app._raise(al.ALARM_BOLUS_DENIED)       # shown for INFO_SHOW_MS, timed in ticks
    elif state == "bolus":
        assert app.bolus(1, 20_000, 600_000) is None
    elif state == "pressure over threshold":
        hw.forced = 900
    else:
        hw.stepper.stalled = True
    run_ms(app, hw, 2 * TICK_MS)      # the state is seen (a quiet sleep may be running)
    first = len(hw.sleeps)
    run_ms(app, hw, 50_000)                 # within the INFO alarm's show time
    assert max(hw.sleeps[first:]) <= TICK_MS
    assert not app._quiet()


def _first_alarm(app: PumpApp, hw: LineHardware, code: int, limit_ms: int) -> int:
    end = hw.now_us + limit_ms * 1000
    while hw.now_us < end:
        t = hw.now_us                 # the iteration's time (FakeHardware moves only in idle)
        app.step()
        if app.alarm_set.is_active(code):
            return t
    raise AssertionError("%s not raised in %d ms" % (al.alarm_name(code), limit_ms))


FAULTS = {
    # fault: (alarm, stated ms to alarm from the fault's start with a quiet tick before it)
    "pressure": (al.ALARM_OCCLUSION, max(CONFIRM_MS, QUIET_MS) + TICK_MS),
    "diag": (al.ALARM_STALL, 50 + QUIET_MS),
    "end stop": (al.ALARM_RESERVOIR_EMPTY, QUIET_MS + TICK_MS),
}


def _fault_run(tmp_path: Path, monkeypatch, quiet_ms: int, kind: str, offset_ms: int) -> tuple[int, int]:
    """(ms from the fault to its alarm, pulses made in between) for a fault `offset_ms` into a
    quiet 186 ug/day run."""
    app, hw = quiet_app(tmp_path, quiet_ms, monkeypatch)
    run_ms(app, hw, 60_000)
    # the fault starts inside whatever sleep runs then (applied at a wake it would be read at
    # once and flatter the long sleep)
    t0 = hw.now_us + offset_ms * 1000 + 1
    hw.fault = (t0, kind)
    code = {"block": al.ALARM_OCCLUSION, "slip": al.ALARM_MISSED_STEPS}.get(kind) or FAULTS[kind][0]
    t = _first_alarm(app, hw, code, 3600_000)
    assert hw.fault is None and t >= t0
    return (t - t0) // 1000, hw.stepper.done - hw.fault_done


class _Grid:
    """Fault start offsets across one step period and the quiet sleeps inside it (ms)."""
    OFFSETS = list(range(0, 10_000, 370))


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fault_seen_no_later_in_volume_and_within_its_stated_time(tmp_path, monkeypatch, kind):
    code, stated = FAULTS[kind]
    new = [_fault_run(tmp_path / ("n%d" % o), monkeypatch, QUIET_MS, kind, o) for o in _Grid.OFFSETS]
    old = [_fault_run(tmp_path / ("o%d" % o), monkeypatch, TICK_MS, kind, o) for o in _Grid.OFFSETS]
    # time: within the stated bound, and some fault really was read later (the grid meets the
    # long sleeps, else this test could not fail)
    assert max(ms for ms, _ in new) <= stated
    assert max(ms for ms, _ in new) > max(ms for ms, _ in old)
    # volume: never more pulses before the alarm than the 1 s tick let through at its worst
    assert max(p for _, p in new) <= max(p for _, p in old)


@pytest.mark.parametrize("kind", ["block", "slip"])
def test_volume_detectors_fire_after_the_same_microsteps(tmp_path, monkeypatch, kind):
    """The decay criterion (a blocked line) and the screw encoder (a slipping coupling) count
    microsteps, not ticks: the pulses made before the alarm are within the same bound."""
    offsets = _Grid.OFFSETS[::4]
    new = [_fault_run(tmp_path / ("n%d" % o), monkeypatch, QUIET_MS, kind, o)[1] for o in offsets]
    old = [_fault_run(tmp_path / ("o%d" % o), monkeypatch, TICK_MS, kind, o)[1] for o in offsets]
    app, _ = quiet_app(tmp_path / "bound", QUIET_MS, monkeypatch)
    bound = app.occlusion.missed_steps_bound() if kind == "block" else app.screw.missed_bound_steps
    assert max(new) <= max(old) <= bound
