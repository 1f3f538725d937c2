"""Scheduler rules: boundaries, refusals with reasons, lockout, daily cap, no catch-up, bridge, prime, restore."""
from __future__ import annotations

from fractions import Fraction

import pytest

from pumpcore import scheduler as S
from pumpcore.clock import WallClock
from pumpcore.limits import HardLimits
from pumpcore.program import MODE_CONTINUOUS, MODE_FLEX, MODE_SINGLE_BOLUS, MODE_STOPPED, Program, ProgramError

H = 3_600_000
DAY = 86_400_000
PL = 17_964


def cont(rate: int = 186_000, conc: int = 2000, **kw) -> Program:
    return Program(mode=MODE_CONTINUOUS, concentration_ug_ml=conc, rate_ng_day=rate, **kw)


def sched(prog: Program, limits: HardLimits | None = None, day: int = 9000, ms: int = 0) -> S.DoseScheduler:
    s = S.DoseScheduler(PL, limits or HardLimits())
    s.load(prog, WallClock(day, ms))
    return s


def ideal_steps(ng: Fraction, conc: int) -> int:
    return int(ng * 1_000_000 / conc // PL)


def test_one_day_at_186_ug() -> None:
    s = sched(cont())
    assert s.advance(DAY) == ideal_steps(Fraction(186_000), 2000) == 5177
    assert s.delivered_ng_today() == 0          # midnight passed: today restarted
    assert 185_900 < s.total_ng <= 186_000


def test_rate_change_exactly_at_boundary() -> None:
    p = Program(mode=MODE_FLEX, concentration_ug_ml=2000,
                patterns=[(0x7F, [(0, 0), (12 * H + 1, 1_500_000)])])
    s = sched(p)
    assert s.advance(12 * H + 1) == 0 and s.basal_rate_ng_day() == 1_500_000
    # first step exactly when 17,964 pL have flowed at 1.5 mg/day
    per_ms = Fraction(5 * 1_500_000, 432 * 2000)
    first = int(-(-PL // per_ms))
    s2 = sched(p)
    s2.advance(12 * H + 1)
    assert s2.ms_to_next_due() == first
    assert s2.advance(first - 1) == 0 and s2.advance(1) == 1


def test_bolus_refusals_have_reasons_and_leave_basal() -> None:
    s = sched(cont(patient=(10_000, 600_000, 3 * H, 2)))
    rate = s.basal_rate_ng_day()
    assert s.request_bolus(S.BOLUS_CLINICIAN, 600_000, H) == S.REFUSE_MAX_BOLUS
    assert s.request_bolus(S.BOLUS_CLINICIAN, 100_000, 1) == S.REFUSE_MAX_FLOW
    assert s.request_bolus(S.BOLUS_PRIME, 1, 1) == S.REFUSE_KIND
    assert s.request_bolus(S.BOLUS_CLINICIAN, 0, H) == S.REFUSE_BAD_REQUEST
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_LOCKOUT   # lockout after commit
    assert s.request_bolus(S.BOLUS_CLINICIAN, 50_000, H) == 0
    assert s.request_bolus(S.BOLUS_CLINICIAN, 50_000, H) == S.REFUSE_BOLUS_ACTIVE
    assert s.basal_rate_ng_day() == rate and s.refusals == 6
    for code in range(16):
        assert S.refusal_text(code)
    assert "max_24h_ng" in S.refusal_text(S.REFUSE_MAX_24H)


def test_patient_lockout_and_daily_cap() -> None:
    s = sched(cont(patient=(10_000, 600_000, 3 * H, 2)))
    s.advance(3 * H - 1)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_LOCKOUT
    s.advance(1)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0
    s.advance(3 * H)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0
    s.advance(3 * H)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_DAILY_CAP
    s.advance(DAY - 6 * H)     # the first one is now 24 h old
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0
    s.advance(H)
    s.refill(10_000_000, 2000)  # a refill restarts the lockout
    s.advance(3 * H - 1)        # the last patient bolus' own lockout ended an hour ago
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_LOCKOUT
    s.advance(1)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0


def test_rolling_24h_worst_case_refuses() -> None:
    lim = HardLimits(max_24h_ng=400_000)
    s = sched(cont(186_000), lim)
    assert s.request_bolus(S.BOLUS_CLINICIAN, 250_000, H) == S.REFUSE_MAX_24H  # 186 + 250 > 400
    assert s.request_bolus(S.BOLUS_CLINICIAN, 150_000, H) == 0
    s.advance(2 * H)
    assert s.request_bolus(S.BOLUS_CLINICIAN, 100_000, H) == S.REFUSE_MAX_24H
    s.advance(DAY)                 # the first bolus left the 24 h window
    assert s.request_bolus(S.BOLUS_CLINICIAN, 100_000, H) == 0
    assert s.rolling_24h_ng() <= 400_000


def test_bolus_delivers_exact_dose_in_requested_duration() -> None:
    s = sched(Program(mode=MODE_SINGLE_BOLUS, concentration_ug_ml=2000, single_bolus=(50_000, 7 * 60_000)))
    assert s.bolus_active() == S.BOLUS_SINGLE
    n = s.advance(7 * 60_000 - 1)
    assert s.bolus_active()
    n += s.advance(1)
    assert not s.bolus_active()
    assert n == ideal_steps(Fraction(50_000), 2000)
    assert s.advance(DAY) == 0           # then stopped


def test_no_catch_up_after_suspend() -> None:
    a = sched(cont(1_500_000))
    b = sched(cont(1_500_000))
    a.advance(H)
    b.advance(H)
    b.suspend()
    assert b.advance(6 * H) == 0
    b.resume()
    da = a.advance(6 * H)
    # after resume, b delivers at the programmed rate only: same as a over the same span
    assert abs(b.advance(H) - a.advance(H)) <= 1
    assert b.missed_steps in (da - 1, da, da + 1)
    assert b.missed_ng > 0


def test_record_missed_moves_steps() -> None:
    s = sched(cont())
    n = s.advance(DAY)
    s.record_missed(3)
    assert s.delivered_steps == n - 3 and s.missed_steps == 3
    with pytest.raises(ValueError, match="record_missed steps = -1"):
        s.record_missed(-1)


def test_bridge_keeps_old_concentration_for_catheter_volume() -> None:
    s = sched(cont(186_000, 2000, catheter_nl=180_000))
    s.refill(20_000_000, 2000)
    s.advance(H)
    assert s.refill(20_000_000, 1000) == 0
    assert s.line_conc_ug_ml() == 2000 and s.bridge_left_nl() == 180_000
    # 180 uL at 2000 ug/mL is 360 ug: at 186 ug/day that takes 360/186 days
    t = -(-180_000_000 * 432 * 2000 // (5 * 186_000))
    s.advance(t - 1)
    assert s.line_conc_ug_ml() == 2000
    s.advance(1)
    assert s.line_conc_ug_ml() == 1000 and s.bridge_left_nl() == 0
    with pytest.raises(ProgramError, match="does not match the reservoir's 1000 ug/mL"):
        s.load(cont(186_000, 2000), s.clock)
    s.load(cont(186_000, 1000), s.clock)


def test_prime_needs_stopped_program_and_is_not_patient_dose() -> None:
    s = sched(cont())
    assert s.prime(180_000, 10 * 60_000) == S.REFUSE_NOT_STOPPED
    s = sched(Program(mode=MODE_STOPPED, concentration_ug_ml=2000))
    assert s.prime(600_000, 60_000) == S.REFUSE_VOLUME
    assert s.prime(180_000, 10 * 60_000) == 0
    n = s.advance(10 * 60_000)
    assert n == 180_000_000 // PL and s.prime_steps == n
    assert s.rolling_24h_ng() == 0 and s.total_ng == 0


def test_snapshot_restore_counts_downtime_as_missed() -> None:
    s = sched(cont(1_500_000, patient=(10_000, 600_000, 3 * H, 4)))
    s.refill(20_000_000, 2000)
    s.advance(4 * H)
    assert s.request_bolus(S.BOLUS_CLINICIAN, 50_000, H) == 0
    s.advance(H // 2)
    snap = s.snapshot()
    assert all(isinstance(x, (int, tuple)) for x in snap)
    # a reset: a fresh scheduler, the clock 2 h later
    t = S.DoseScheduler(PL, HardLimits())
    clk = WallClock(s.clock.day, s.clock.ms + 2 * H)
    t.load(cont(1_500_000, patient=(10_000, 600_000, 3 * H, 4)), clk)
    down = t.restore(snap)
    assert down == 2 * H
    assert t.bolus_active() == 0                       # not resumed
    assert t.delivered_steps == s.delivered_steps      # nothing delivered while down
    ref = sched(cont(1_500_000))
    expected_missed = ref.advance(2 * H)
    assert abs(t.missed_steps - expected_missed) <= 1
    assert t.rolling_24h_ng() == s.rolling_24h_ng()
    assert t.reservoir.volume_nl == s.reservoir.volume_nl
    with pytest.raises(ValueError, match="snapshot"):
        t.restore((99,))


def test_periodic_bolus_fires_at_its_time() -> None:
    p = cont(0 + 1, periodic=[(8 * H, 20_000, 60_000)])
    s = sched(p)
    s.advance(8 * H - 1)
    assert not s.bolus_active()
    s.advance(1)
    assert s.bolus_active() == S.BOLUS_PERIODIC
    assert s.ms_to_next_due() <= 60_000
    s.advance(60_000)
    assert not s.bolus_active() and s.boluses_done == 1
