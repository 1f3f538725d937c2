"""A clock correction (host time sync) never frees a patient lockout, the allotment or the 24 h cap.

The device has no battery clock: after every reset the host sets the time, often jumping it
by days. Lockout, patient-bolus history and the rolling-24 h ledger are about elapsed time,
so they move with the jump; the flex schedule and periodic boluses follow the new clock.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from pumpcore import scheduler as S
from pumpcore.clock import WallClock
from pumpcore.limits import HardLimits
from pumpcore.program import MODE_CONTINUOUS, Program

H = 3_600_000
DAY = 86_400_000
PL = 17_964


def patient_sched(day: int = 100, ms: int = 0) -> S.DoseScheduler:
    prog = Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186_000,
                   patient=(10_000, 600_000, 3 * H, 2))
    s = S.DoseScheduler(PL, HardLimits())
    s.load(prog, WallClock(day, ms))
    return s


@given(jump_days=st.integers(-50, 9000), jump_ms=st.integers(0, DAY - 1))
@settings(max_examples=200, deadline=None)
def test_lockout_survives_any_clock_correction(jump_days: int, jump_ms: int) -> None:
    s = patient_sched()
    s.advance(H)                       # 2 h of the 3 h lockout still to run
    s.set_time(max(0, 100 + jump_days), jump_ms)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_LOCKOUT
    s.advance(2 * H - 1)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_LOCKOUT
    s.advance(1)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0


@pytest.mark.parametrize("jump_days", [1, 3, 400])
def test_allotment_and_ledger_survive_a_forward_jump(jump_days: int) -> None:
    s = patient_sched()
    s.advance(3 * H)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0
    s.advance(3 * H)
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0     # 2 of 2 allotted
    s.advance(3 * H)
    before = s.rolling_24h_ng()
    assert before >= 20_000
    s.set_time(100 + jump_days, 9 * H)
    assert s.rolling_24h_ng() >= before                    # nothing forgotten by the jump
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == S.REFUSE_DAILY_CAP
    s.advance(DAY - 6 * H)                                 # the first is 24 h old now
    assert s.request_bolus(S.BOLUS_PATIENT, 0, 0) == 0
