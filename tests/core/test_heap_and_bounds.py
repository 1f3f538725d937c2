"""advance() allocates nothing in micropython; long-lived integers stay RP2040 small ints for 30 days."""
from __future__ import annotations

import pytest

from pumpcore import scheduler as S
from pumpcore.clock import WallClock
from pumpcore.limits import HardLimits
from pumpcore.program import MODE_CONTINUOUS, MODE_FLEX, Program
from tests.core.test_scheduler_props import small_ints_ok
from tests.support.mpy import run_micropython

HEAP_SCRIPT = """
import micropython, gc
from pumpcore import scheduler as s, program as p, limits as l, clock as c
steps = [(0, 150000), (7 * 3600000, 250000), (7 * 3600000 + 12345, 100000)]
steps += [(h * 3600000, 100000 + h * 7919) for h in range(8, 23)]
prog = p.Program(mode=p.MODE_FLEX, concentration_ug_ml=%(conc)d, patterns=[(0x7F, steps)])
sch = s.DoseScheduler(17964, l.HardLimits())
clk = c.WallClock(9000, 6 * 3600000)
sch.load(prog, clk)
sch.advance(1000)
result = [0, 0]
def run(k, tick):
    n = 0
    for i in range(k):
        n += sch.advance(tick)
        sch.ms_to_next_due()
    return n
gc.collect()
micropython.heap_lock()
try:
    result[0] = run(%(ticks)d, %(tick)d)
    result[1] = 1
finally:
    micropython.heap_unlock()
print("ok", result[0], result[1], sch.delivered_steps)
"""


@pytest.mark.micropython
@pytest.mark.parametrize("conc,tick,ticks", [(2000, 10, 100_000), (50, 7, 50_000), (2000, 1000, 30_000)])
def test_advance_allocates_nothing_in_micropython(conc: int, tick: int, ticks: int) -> None:
    """Steady state over rate steps, 15-min ledger buckets and midnight: heap locked throughout."""
    out = run_micropython(HEAP_SCRIPT % {"conc": conc, "tick": tick, "ticks": ticks})
    words = out.split()
    assert words[0] == "ok" and words[2] == "1"
    assert int(words[1]) > 0


def test_limits_that_would_overflow_step_counters_are_refused() -> None:
    with pytest.raises(ValueError, match="limits.max_24h_ng"):
        HardLimits(max_24h_ng=20_000_000, min_conc_ug_ml=1)
    with pytest.raises(ValueError, match="pl_per_step = 100"):
        S.DoseScheduler(100, HardLimits())


def test_thirty_days_at_max_rates_stay_small_ints() -> None:
    """Max basal at the lowest concentration, patient boluses as often as allowed, 30 days."""
    lim = HardLimits(max_24h_ng=5_000_000, max_bolus_ng=1_000_000, max_rate_ng_day=1_500_000,
                     min_conc_ug_ml=50)
    prog = Program(mode=MODE_CONTINUOUS, concentration_ug_ml=50, rate_ng_day=1_500_000,
                   periodic=[(3_600_000 * h, 100_000, 600_000) for h in range(0, 24, 2)],
                   patient=(300_000, 600_000, 3_600_000, 6))
    prog.validate(lim)
    sch = S.DoseScheduler(17964, lim)
    clk = WallClock(9000, 0)
    sch.load(prog, clk)
    sch.refill(20_000_000, 50)
    for hour in range(30 * 24):
        sch.request_bolus(S.BOLUS_PATIENT, 0, 0)
        if hour % 50 == 7:
            sch.suspend()
        if hour % 50 == 9:
            sch.resume()
        sch.advance(3_600_000)
        small_ints_ok(sch)
    assert clk.day == 9030
    assert sch.delivered_steps > 30 * 4_000_000
    assert sch.missed_steps > 0 and sch.boluses_done > 30 * 12
    prog2 = Program(mode=MODE_FLEX, concentration_ug_ml=50,
                    patterns=[(0x7F, [(0, 1_500_000), (43_200_000, 1_499_999)])])
    sch2 = S.DoseScheduler(3000, lim)
    sch2.load(prog2, WallClock(0, 0))
    for _ in range(30):
        sch2.advance(86_400_000)
        small_ints_ok(sch2)
