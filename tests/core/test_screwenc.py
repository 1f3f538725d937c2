"""pumpcore.screwenc: the screw encoder's missed-step detector and its flow feed."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pumpcore import alarms as al
from pumpcore import screwenc

SPR = 200 * 64      # 20 mL rig: 12800 microsteps per screw revolution
PL = 17964


def angle(screw_steps: int, offset: int = 0) -> int:
    return (screw_steps * 4096 // SPR + offset) % 4096


def test_bound_at_186_ug_day_on_the_20_ml_rig():
    m = screwenc.ScrewMonitor(SPR, PL)
    # 3.125 microsteps per count; tol 3 counts: sure to fire by 16 microsteps = 287 nL = 0.575 ug
    assert m.missed_bound_steps == 16 and m.missed_bound_nl == 287


def test_as5600_status_bits():
    assert screwenc.as5600_angle(0x20, 0x0A, 0xBC) == 0xABC
    assert screwenc.as5600_angle(0x00, 0x0A, 0xBC) == -1          # no magnet
    assert screwenc.as5600_angle(0x30, 0x0A, 0xBC) == -1          # too weak
    assert screwenc.as5600_angle(0x28, 0x0A, 0xBC) == -1          # too strong


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4095), st.lists(st.integers(0, 40), min_size=1, max_size=300))
def test_a_sound_drive_never_alarms_across_wraps(offset, chunks):
    m = screwenc.ScrewMonitor(SPR, PL)
    screw = 0
    m.update(0, 0, angle(screw, offset))
    for c in chunks:
        screw += c
        assert not m.update(100, c, angle(screw, offset))
    assert m.deficit_steps <= 4


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4095), st.integers(0, 20000), st.integers(1, 5))
def test_missing_steps_alarm_within_the_bound(offset, before, per_tick):
    m = screwenc.ScrewMonitor(SPR, PL)
    m.update(0, 0, angle(before, offset))
    missed = 0
    while not m.missed:
        missed += per_tick
        m.update(100, per_tick, angle(before, offset))   # commanded, the screw stays
        assert missed <= m.missed_bound_steps + per_tick
    assert missed >= 3 * SPR // 4096   # never on quantisation alone
    aset = al.AlarmSet()
    m.report(aset)
    assert al.ALARM_MISSED_STEPS in aset.active() and m.by == screwenc.BY_ENCODER


def test_no_reading_forgets_and_says_nothing():
    m = screwenc.ScrewMonitor(SPR, PL)
    m.update(0, 0, 100)
    m.update(100, 10, 100)
    assert not m.update(100, 100, -1) and not m.missed
    m.update(100, 0, 100)
    assert not m.update(100, 5, 100)


def test_flow_detector_is_fed_with_the_screw_displacement():
    # slip at 186 ug/day (one microstep each 16.7 s): the encoder stays; flow window 5 min
    m = screwenc.ScrewMonitor(SPR, PL, tol_counts=1000)      # encoder criterion out of the way
    m.update(0, 0, 0)
    t = 0
    step_every = 16_720
    while not m.flow.active and t < 3_600_000:
        t += 1000
        m.update(1000, 1 if t % step_every < 1000 else 0, 0)
    assert m.flow.low and t <= 300_000 + 30_000 + 1000
    aset = al.AlarmSet()
    m.report(aset)
    assert al.ALARM_FLOW_LOW in aset.active() and m.by == screwenc.BY_FLOW
