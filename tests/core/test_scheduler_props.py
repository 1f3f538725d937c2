"""Property tests: the scheduler's microsteps equal floor(ideal volume / pl_per_step) at every checkpoint."""
from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import HealthCheck, given, settings, strategies as st

from pumpcore import scheduler as S
from tests.core import scenario_runner as runner
from tests.core.scenarios import DAY, Reference, gen_scenario

SMALL = 2**30


def small_ints_ok(sch: S.DoseScheduler) -> None:
    """Every long-lived integer of the scheduler is an RP2040 small int."""
    for name, v in vars(sch).items():
        if isinstance(v, int):
            assert -SMALL < v < SMALL, f"{name} = {v} is not a 31-bit small int"
    for lst in (sch.gate.buckets, sch.gate.ring_day, sch.gate.ring_ms):
        assert all(-SMALL < v < SMALL for v in lst)
    for v in vars(sch.reservoir).values():
        assert -SMALL < v < SMALL


def check(sch: S.DoseScheduler, ref: Reference, where: str) -> None:
    stall = ref.stall
    assert sch.delivered_steps + stall == ref.steps(), (where, sch.delivered_steps, stall, ref.steps(), ref.V)
    err = ref.V / ref.pl - (sch.delivered_steps + stall)
    assert Fraction(0) <= err < 1, (where, err)
    assert sch.missed_steps == ref.missed() + stall, (where, sch.missed_steps, ref.missed(), stall)
    assert sch.conc == ref.conc, (where, sch.conc, ref.conc)
    assert (sch.bolus_active() != 0) == (ref.bolus is not None), (where, sch.bolus_active(), ref.bolus)
    assert sch.clock.day * DAY + sch.clock.ms == ref.T


def run_checked(scn: dict) -> None:
    sch, clk, code = runner.make(scn)
    ref = Reference(scn)
    if scn["program"]["mode"] == 3 and code == 0:
        ref.start_bolus(scn["program"]["single"][0] * 86_400_000, scn["program"]["single"][1])
    check(sch, ref, "load")
    for i, ev in enumerate(scn["events"]):
        where = f"event {i} {ev[0]}"
        if ev[0] == "run":
            left, jumps = ev[1], ev[2]
            while left > 0 and jumps > 0:
                due = sch.ms_to_next_due()
                for cap in (1, 2, 1000, 1 + left % 999_999):
                    # the app's capped wake (its shortcut skips the long division)
                    assert sch.ms_to_next_due_within(cap) == min(due, cap), (where, cap, due)
                d = min(due, left)
                before = sch.delivered_steps
                if d > 1:
                    ref.advance(d - 1)
                    # nothing was due before the ms that ms_to_next_due announced
                    assert ref.steps() - ref.stall == before, (where, "step due earlier than announced")
                    n = sch.advance(d - 1) + sch.advance(1)
                    ref.advance(1)
                else:
                    n = sch.advance(d)
                    ref.advance(d)
                assert n == sch.delivered_steps - before
                left -= d
                jumps -= 1
                check(sch, ref, where)
            continue
        before = sch.delivered_steps
        out = runner.do_event(sch, ev)
        if ev[0] == "adv":
            ref.advance(ev[1])
            assert int(out.split()[1]) == sch.delivered_steps - before
        else:
            ref.on_event(ev, out, before)
        check(sch, ref, where)
        small_ints_ok(sch)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_steps_equal_floor_of_ideal_volume(r: random.Random) -> None:
    run_checked(gen_scenario(r))


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False))
def test_refused_bolus_leaves_basal_untouched(r: random.Random) -> None:
    """A refused request changes no accumulator, timer or counter but the refusal count."""
    scn = gen_scenario(r, n_max=5)
    sch, clk, _ = runner.make(scn)
    for ev in scn["events"]:
        runner.do_event(sch, ev)
    kind = r.choice([1, 2, 3, 4, 5])
    dose = r.choice([0, 1, 2_000_000, r.randint(1, 2_000_000)])
    dur = r.choice([0, 1, DAY + 1, r.randint(1, DAY)])
    state = {k: v for k, v in vars(sch).items() if k not in ("refusals", "last_refusal")}
    code = sch.request_bolus(kind, dose, dur)
    if code != 0:
        after = {k: v for k, v in vars(sch).items() if k not in ("refusals", "last_refusal")}
        assert after == state
        assert S.refusal_text(code)
        assert sch.last_refusal == code
