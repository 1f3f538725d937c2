"""The loop's wake policy (pumpfw.app._sleep_ms, _sleep): it sleeps past the 1 s tick only
when all is quiet, as hw.idle calls of at most _FEED_MS with the watchdog fed between them, and
no detector sees a fault later in delivered volume than with the 1 s tick (each case is run both
ways over a grid of start offsets across a step period), nor later in time than its stated bound
(docs/virtual-time.md "The wake policy")."""
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
QUIET_MS = appmod._QUIET_MAX_MS     # the longest quiet sleep (the minute's save bounds it too)
FEED_MS = appmod._FEED_MS           # its longest hw.idle, and the policy before the long sleep
CONFIRM_MS = 2000                 # OcclusionDetector's confirm_ms as the app builds it
OCCLUDED_KPA_X10 = 3000           # above the BOM sensor's 879 threshold
STEP_KPA_X10 = 9                  # a blocked 20 mL line rises 0.9 kPa a microstep
BASAL_PL_DAY = 93_000_000         # 186 ug/day at 2000 ug/mL


class LineHardware(FakeHardware):
    """FakeHardware whose line reads 0 while patent and rises STEP_KPA_X10 a pulse once blocked;
    every sleep and every pressure read is recorded (device us)."""

    def __init__(self, flash: Path) -> None:
        super().__init__(flash)
        self.sleeps: list[int] = []
        self.reads: list[int] = []
        self.read_queued: list[int] = []  # pulses queued (made or pending) at each read
        self.feeds: list[int] = []        # device us of every watchdog feed
        self.wakes: list[int] = []        # device us at the start of every loop iteration
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
        elif kind == "press":
            self.presses += 1             # latched by the pin IRQ (EdgeDebouncer)
        elif kind == "bytes":
            self.inbox += b"\x00"         # a stray byte from the host
        else:
            self.slipping = True

    def idle(self, ms):
        self.sleeps.append(ms)
        super().idle(ms)

    def watchdog_feed(self):
        self.feeds.append(self.now_us)
        super().watchdog_feed()

    def pressure_kpa_x10(self):
        self.reads.append(self.now_us)
        self.read_queued.append(self.stepper.done + self.stepper.pending())
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
        hw.wakes.append(hw.now_us)
        app.step()


def step_period_ms(app: PumpApp) -> int:
    """ms between two basal microsteps at 186 ug/day on the fake rig's mechanism (16.7 s)."""
    return 86_400_000 * app.sched.pl // BASAL_PL_DAY


def _gaps_us(times: list[int]) -> list[int]:
    return [b - a for a, b in zip(times, times[1:])]


def test_quiet_sleeps_span_the_step_period_feed_the_watchdog_and_deliver_the_same(tmp_path, monkeypatch):
    runs = {}
    for name, quiet in (("span", QUIET_MS), ("4 s", FEED_MS), ("1 s", TICK_MS)):
        app, hw = quiet_app(tmp_path / name.replace(" ", ""), quiet, monkeypatch)
        run_ms(app, hw, 2 * 3600_000)
        runs[name] = (app, hw)
    app, hw = runs["span"]
    period = step_period_ms(app)
    # no hw.idle is longer than a feed chunk, and the watchdog is fed at least that often, 1 s
    # under its timeout, through every sleep however long
    assert max(hw.sleeps) == FEED_MS <= appmod.WATCHDOG_MS - TICK_MS
    assert max(_gaps_us(hw.feeds)) <= FEED_MS * 1000
    # a quiet sleep spans feeds: from the wake after a step to the next step (16.7 s at
    # 186 ug/day on the 20 mL rig), never past it, so the loop wakes about twice a step (at the
    # step, and a tick later once it is made), not 5 times
    spans = _gaps_us(hw.wakes)
    assert max(spans) <= period * 1000
    assert max(spans) > 3 * FEED_MS * 1000
    assert len(hw.wakes) * 2 < len(runs["4 s"][1].wakes)
    assert len(runs["4 s"][1].wakes) * 2 < len(runs["1 s"][1].wakes)
    # the same schedule on all three: the same pulses at the same ms over the 2 h (a run ends at
    # its first wake past them, up to a span later), each one counted delivered
    end_us = runs["1 s"][1].wakes[0] + 2 * 3600_000_000
    pulses = [e // 1000 for e in hw.stepper.edges if e < end_us]
    assert len(pulses) > 400
    for name in ("4 s", "1 s"):
        other, other_hw = runs[name]
        assert [e // 1000 for e in other_hw.stepper.edges if e < end_us] == pulses
    for other, other_hw in runs.values():
        assert other.sched.delivered_steps == len(other_hw.stepper.edges)
    # the minute's save and the hour edge are not delayed: woken at them
    assert app.save_due_ms < 60_000 and app.hour_mark == 2


@pytest.mark.parametrize("event", ["press", "bytes"])
def test_a_quiet_sleep_ends_on_a_button_press_or_host_bytes(tmp_path, monkeypatch, event):
    """A patient press latched inside a quiet sleep ends it at the next feed, and its bolus
    starts at that wake; host bytes end it at once (the fake's idle, unlike select.poll, runs
    its chunk out, then the next returns at once): neither waits for the span."""
    app, hw = quiet_app(tmp_path, QUIET_MS, monkeypatch)
    run_ms(app, hw, 60_000)
    for _ in range(100):
        # the event half a second into the second chunk of whatever sleep comes: the first
        # sleep long enough to reach it takes it (shorter ones end first and it is set again)
        t0 = hw.now_us
        hw.fault = (t0 + FEED_MS * 1000 + 500_000, event)
        app.step()
        if hw.fault is None:
            break
    else:
        raise AssertionError("no quiet sleep past 2 feed chunks in 100 wakes")
    assert hw.now_us - t0 == 2 * FEED_MS * 1000   # ended after that chunk, not at the span
    if event == "press":
        assert app.button_presses == 1
        assert not app.alarm_set.is_active(al.ALARM_BOLUS_DENIED)
        app.step()                                # the next wake answers the press: this
        assert app.button_presses == 0            # program has no patient bolus, so denied
        assert app.alarm_set.is_active(al.ALARM_BOLUS_DENIED)
    else:
        assert hw.inbox
        app.step()                                # read at the next wake (a stray byte: no frame)
        assert not hw.inbox and app._quiet()
def test_every_pulse_has_a_pressure_read_within_a_tick_before_it(tmp_path, monkeypatch):
    """The occlusion floor and the end stop's confirmation need a reading shortly before each
    step, as the 1 s tick gave: the quiet sleep ends at the step, whose wake reads the sensors
    before it queues it."""
    app, hw = quiet_app(tmp_path, QUIET_MS, monkeypatch)
    run_ms(app, hw, 1800_000)
    assert len(hw.stepper.edges) > 100
    # pulse k's last read before it was queued (the fake, like the PIO, makes a segment's first
    # pulse at the us it is queued: order, not time, tells a read before it from one after)
    last_before = {}
    for t, queued in zip(hw.reads, hw.read_queued):
        last_before[queued] = t
    for k, edge in enumerate(hw.stepper.edges):
        t = max(v for q, v in last_before.items() if q <= k)
        assert edge - TICK_MS * 1000 <= t <= edge, (k, edge, t)


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
    # within the INFO alarm's show time (60 s) less the quiet sleep that ran when the test
    # raised it between two iterations (the next iteration's tick counts it, up to 15.7 s)
    run_ms(app, hw, 40_000)
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


def _stated_ms(kind: str, period_ms: int) -> int:
    """Stated ms from a fault's start to its alarm at 186 ug/day: the longest quiet sleep ends at
    the next step (a period), whose wake reads the fault before it steps; then confirm_ms at the
    1 s tick (a first reading counts less than confirm_ms), or DIAG at once (the sleep is longer
    than its 50 ms), or the end stop's second reading a tick later."""
    span = period_ms
    return {"pressure": max(CONFIRM_MS, span) + TICK_MS, "diag": span,
            "end stop": span + TICK_MS}[kind]


FAULTS = {"pressure": al.ALARM_OCCLUSION, "diag": al.ALARM_STALL, "end stop": al.ALARM_RESERVOIR_EMPTY}


def _fault_run(tmp_path: Path, monkeypatch, quiet_ms: int, kind: str, offset_ms: int) -> tuple[int, int]:
    """(ms from the fault to its alarm, pulses made in between) for a fault `offset_ms` into a
    quiet 186 ug/day run."""
    app, hw = quiet_app(tmp_path, quiet_ms, monkeypatch)
    run_ms(app, hw, 60_000)
    # the fault starts inside whatever sleep runs then (applied at a wake it would be read at
    # once and flatter the long sleep)
    t0 = hw.now_us + offset_ms * 1000 + 1
    hw.fault = (t0, kind)
    code = {"block": al.ALARM_OCCLUSION, "slip": al.ALARM_MISSED_STEPS}.get(kind) or FAULTS[kind]
    t = _first_alarm(app, hw, code, 3600_000)
    assert hw.fault is None and t >= t0
    return (t - t0) // 1000, hw.stepper.done - hw.fault_done


class _Grid:
    """Fault start offsets across one step period (16.7 s) and the quiet sleep inside it (ms)."""
    OFFSETS = list(range(0, 17_000, 610))


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fault_seen_no_later_in_volume_and_within_its_stated_time(tmp_path, monkeypatch, kind):
    stated = _stated_ms(kind, step_period_ms(quiet_app(tmp_path / "p", QUIET_MS, monkeypatch)[0]))
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
