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


def _boot_from(saved: int | None) -> screwenc.ScrewMonitor:
    """A new boot's monitor, carrying `saved` (the persist() value on flash) when there is one."""
    m = screwenc.ScrewMonitor(SPR, PL)
    if saved is not None:
        m.restore(saved)
    return m


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4095), st.lists(st.tuples(st.integers(0, 6), st.lists(st.integers(0, 40), min_size=1, max_size=40)),
                                      min_size=1, max_size=12))
def test_a_sound_drive_never_alarms_over_any_number_of_resets(offset, boots):
    """Each boot reads its reference afresh, after the steps made between the last read and the
    reset (`gap`, seen by neither boot); what the last one saved is carried less one count, so
    quantisation never adds up to an alarm however often the rig resets."""
    screw = 0
    saved = None
    for gap, chunks in boots:
        screw += gap
        m = _boot_from(saved)
        m.update(0, 0, angle(screw, offset))
        for c in chunks:
            screw += c
            assert not m.update(100, c, angle(screw, offset))
            assert not m.save_wanted()               # a sound drive never asks for a save
        saved = m.persist()
        m.mark_saved(saved)
        assert saved < SPR


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4095), st.integers(0, 20000), st.integers(1, 3),
       st.lists(st.integers(0, 14), min_size=1, max_size=3), st.booleans())
def test_missing_steps_across_resets_alarm_within_the_stated_bound(offset, before, per_tick, cuts, save_at_cut):
    """A jam across resets (power cuts): the boot carries the deficit saved with the state (an
    urgent save whenever it grew a count), so the alarm fires within
    missed_steps_bound_across(k resets) + the steps after the last read. Before the carry each
    boot started its count afresh: resets every few lost microsteps hid the jam for ever."""
    m = _boot_from(None)
    m.update(0, 0, angle(before, offset))
    missed = 0
    resets = 0
    on_flash = 0
    for n in cuts + [10 ** 6]:
        lost_this_boot = 0
        while not m.missed and lost_this_boot < n:
            missed += per_tick
            lost_this_boot += per_tick
            m.update(100, per_tick, angle(before, offset))   # commanded, the screw stays
            if m.save_wanted():
                on_flash = m.persist()                      # pumpfw.app: an urgent save
                m.mark_saved(on_flash)
            assert missed <= screwenc.missed_steps_bound_across(SPR, 4096, 3, resets) + per_tick
        if m.missed:
            break
        if save_at_cut:                                      # a routine save just before the cut
            on_flash = m.persist()
        resets += 1
        m = _boot_from(on_flash)
        m.update(0, 0, angle(before, offset))
    assert m.missed
    assert missed >= 3 * SPR // 4096   # never on quantisation alone


def test_a_jam_cut_by_resets_is_not_hidden():
    """The hole the carry closes: a reset after every 9 lost microsteps (just under the earliest
    alarm) hid a jam indefinitely; carried, it alarms within 22 microsteps of one reset's bound
    + 9 per further reset."""
    m = _boot_from(None)
    m.update(0, 0, 0)
    missed = 0
    for boot in range(10):
        for _ in range(9):
            if m.missed:
                break
            missed += 1
            m.update(100, 1, 0)
            if m.save_wanted():
                m.mark_saved(m.persist())
        if m.missed:
            break
        m = _boot_from(m._saved)
        m.update(0, 0, 0)
    assert m.missed and missed <= screwenc.missed_steps_bound_across(SPR, 4096, 3, boot), (missed, boot)
    assert screwenc.missed_steps_bound_across(SPR, 4096, 3, 1) == 22
    assert screwenc.missed_steps_bound_across(SPR, 4096, 3, 2) == 29


def test_hold_keeps_the_deficit_unless_the_alarm_fired():
    m = _boot_from(None)
    m.update(0, 0, 0)
    m.update(100, 8, 0)
    d = m.deficit()
    m.hold()                                   # another alarm holds the motor: the count stays
    m.update(100, 0, 0)
    assert m.deficit() == d and not m.missed
    while not m.missed:
        m.update(100, 1, 0)
    m.hold()                                   # missed-steps itself: reported, start over
    assert m.deficit() == 0 and not m.missed
