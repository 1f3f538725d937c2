"""BolusGate ledger (bounded, conservative), ReservoirTracker arithmetic, WallClock weekdays."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pumpcore.bolus import BUCKET_MS, N_BUCKETS, BolusGate
from pumpcore.clock import WallClock
from pumpcore.program import MAX_PATIENT_PER_24H
from pumpcore.reservoir import ReservoirTracker

DAY = 86_400_000


def test_weekday_of_day_zero_is_saturday() -> None:
    assert WallClock(0, 0).weekday() == 5
    assert WallClock(2, 0).weekday() == 0          # 2000-01-03 was a Monday
    c = WallClock(0, DAY - 1)
    c.advance(1)
    assert (c.day, c.ms) == (1, 0)
    with pytest.raises(ValueError, match="clock.ms_of_day = 86400000"):
        WallClock(0, DAY)


@given(st.lists(st.tuples(st.integers(1, 3 * 3_600_000), st.integers(0, 5000)), min_size=1, max_size=200))
def test_ledger_is_conservative_and_bounded(events: list[tuple[int, int]]) -> None:
    """rolling_24h_ng() >= the exact dose of the last 24 h, and <= that plus one bucket's worth."""
    clk = WallClock(100, 0)
    g = BolusGate()
    g.roll(clk)
    history: list[tuple[int, int]] = []
    t = 100 * DAY
    for dt, ng in events:
        t += dt
        clk.advance(dt)
        g.roll(clk)
        g.add_ng(ng)
        history.append((t, ng))
        exact = sum(n for (tt, n) in history if tt > t - DAY)
        bucket_start = t - t % BUCKET_MS - (N_BUCKETS - 1) * BUCKET_MS
        upper = sum(n for (tt, n) in history if tt >= bucket_start)
        assert exact <= g.rolling_24h_ng() == upper
    assert len(g.buckets) == N_BUCKETS and len(g.ring_day) == MAX_PATIENT_PER_24H


def test_patient_ring_is_bounded() -> None:
    clk = WallClock(10, 0)
    g = BolusGate()
    for _ in range(100):
        g.record_patient(clk)
        clk.advance(60_000)
    assert g.patients_in_24h(clk) == MAX_PATIENT_PER_24H and len(g.ring_ms) == MAX_PATIENT_PER_24H
    clk.advance(DAY)
    assert g.patients_in_24h(clk) == 0


def test_reservoir_tracks_pl_exactly() -> None:
    r = ReservoirTracker(20_000_000)
    r.refill(1_000, 2000)
    for _ in range(55):
        r.take_pl(17_964)
    assert r.volume_nl * 1000 + r.rem_pl == 1_000_000 - 55 * 17_964
    r.give_back_pl(17_964)
    assert r.volume_nl * 1000 + r.rem_pl == 1_000_000 - 54 * 17_964
    for _ in range(100):
        r.take_pl(17_964)
    assert (r.volume_nl, r.rem_pl) == (0, 0)
    r.refill(20_000_000, 2000)
    assert r.days_to_empty(186_000) == 215            # 40 mg at 186 ug/day
    assert r.is_low(2_000_000, 7, 186_000) is False
    assert r.is_low(2_000_000, 300, 186_000) is True


def test_clock_set_back_forgets_nothing() -> None:
    clk = WallClock(50, 12 * 3_600_000)
    g = BolusGate()
    g.roll(clk)
    g.add_ng(1000)
    clk.set(50, 1 * 3_600_000)
    g.roll(clk)
    g.add_ng(5)
    assert g.rolling_24h_ng() == 1005
