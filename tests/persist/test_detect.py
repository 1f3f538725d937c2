"""Detectors: each raises within its stated time-to-alarm on a simple line model and stays quiet
on a healthy line with sensor noise. The line model here is test-local (pressure rise per step
from compliance, exponential decay through the catheter), independent of the detector code."""
from __future__ import annotations

import math
import random

import pytest

from pumpcore import alarms as A
from pumpcore.detect import (DetectError, FlowDetector, OcclusionDetector, ReservoirDetector,
                             StallDetector)

PL_PER_STEP = 17_962          # bench mechanism: 800 um lead, 12800 usteps/rev, 19.13 mm bore
BASAL_STEPS_PER_DAY = 93_000_000 // PL_PER_STEP  # 186 ug/day at 2000 ug/mL = 93 uL/day


class Line:
    """Pressure in kPa x 10 (float): +dp per step, decays with tau when patent, not when blocked."""

    def __init__(self, compliance_nl_per_unit: float, tau_ms: float, noise: float, seed: int = 1):
        self.dp = PL_PER_STEP / 1000 / compliance_nl_per_unit
        self.tau_ms = tau_ms
        self.noise = noise
        self.p = 0.0
        self.blocked = False
        self.rng = random.Random(seed)

    def step(self, n: int) -> None:
        self.p += n * self.dp

    def wait(self, dt_ms: float) -> None:
        if not self.blocked:
            self.p *= math.exp(-dt_ms / self.tau_ms)

    def read(self) -> int:
        return max(0, int(round(self.p + self.rng.gauss(0, self.noise))))


def params_for(line: Line, rise: int = 80, samples: int = 8) -> dict:
    """Detector set-up for a line, as the docstring says: ~2x the needed rise per interval,
    samples one time constant apart, noise margin 4 sigma."""
    sps = max(1, math.ceil(2 * rise / (line.dp * (samples - 1))))
    return dict(trend_samples=samples, steps_per_sample=sps, trend_rise_kpa_x10=rise,
                noise_kpa_x10=max(5, int(4 * line.noise)), min_sample_ms=int(line.tau_ms))


def run(det: OcclusionDetector, line: Line, step_period_ms: int, tick_ms: int, total_ms: int,
        block_at_ms: int | None = None) -> tuple[int | None, int]:
    """Drive the line and the detector; return (ms of the alarm or None, steps after the block)."""
    t = 0
    next_step = step_period_ms
    steps_after_block = 0
    while t < total_ms:
        t += tick_ms
        line.wait(tick_ms)
        n = 0
        while next_step <= t:
            n += 1
            next_step += step_period_ms
        if block_at_ms is not None and t >= block_at_ms:
            line.blocked = True
            steps_after_block += n
        line.step(n)
        if det.update(tick_ms, line.read(), n):
            return t, steps_after_block
    return None, steps_after_block


BASAL_PERIOD_MS = 86_400_000 // BASAL_STEPS_PER_DAY


@pytest.mark.parametrize("compliance", [2.0, 10.0])
def test_occlusion_at_basal_rate_within_the_stated_missed_volume(compliance):
    line = Line(compliance, tau_ms=3000, noise=1.0)
    det = OcclusionDetector(**params_for(line))
    t, missed = run(det, line, BASAL_PERIOD_MS, 500, 48 * 3_600_000, block_at_ms=3_600_000)
    assert t is not None and det.by_decay
    assert missed <= det.missed_steps_bound()
    # stated figure: the bound as nL, well below one hour of basal (3875 nL)
    assert det.missed_steps_bound() * PL_PER_STEP // 1000 < 93_000 // 24


@pytest.mark.parametrize("period_ms", [400, 60])
def test_occlusion_during_a_fast_bolus(period_ms):
    line = Line(2.0, tau_ms=3000, noise=1.0)
    det = OcclusionDetector(threshold_kpa_x10=1500, confirm_ms=2000, **params_for(line))
    t, missed = run(det, line, period_ms, 20, 600_000, block_at_ms=60_000)
    assert t is not None
    assert missed <= det.missed_steps_bound(period_ms)


@pytest.mark.parametrize("period_ms", [BASAL_PERIOD_MS, 400, 60])
def test_no_false_occlusion_on_a_patent_noisy_line(period_ms):
    line = Line(2.0, tau_ms=3000, noise=1.5, seed=period_ms)
    det = OcclusionDetector(**params_for(line))
    t, _ = run(det, line, period_ms, 100 if period_ms < 1000 else 500, 2 * 3_600_000)
    assert t is None, f"false occlusion at {t} ms (pressure {det.pressure_kpa_x10})"


def test_occlusion_clears_when_line_drains_with_motor_stopped():
    line = Line(2.0, tau_ms=3000, noise=0.5)
    det = OcclusionDetector(**params_for(line))
    run(det, line, BASAL_PERIOD_MS, 500, 48 * 3_600_000, block_at_ms=0)
    assert det.active
    s = A.AlarmSet()
    det.report(s)
    line.blocked = False
    for _ in range(100):
        line.wait(500)
        det.update(500, line.read(), 0)
    assert not det.active
    det.report(s)
    assert s.is_active(A.ALARM_OCCLUSION)  # latched until acknowledged
    s.ack(A.ALARM_OCCLUSION)
    assert s.motor_allowed()


def test_stall_by_diag_and_by_missing_steps():
    d = StallDetector(diag_confirm_ms=50, no_progress_ms=1000)
    assert not d.update(20, True, 0, 0, False)
    assert not d.update(20, True, 0, 0, False)
    assert d.update(20, True, 0, 0, False) and d.by_diag
    d = StallDetector(no_progress_ms=1000)
    t = 0
    while not d.update(100, False, 10, 0, True):
        t += 100
        assert t < 1200
    assert d.by_steps and t + 100 <= 1000 + 100
    d = StallDetector(max_lag_steps=0)
    assert d.update(10, False, 3, 5, False) and d.by_steps   # idle with steps owed
    d = StallDetector()
    for _ in range(100):
        assert not d.update(10, False, 4, 1, True)            # slow but moving: fine


def _flow_run(det: FlowDetector, cmd_nl_min: int, meas_nl_min: int, minutes: int,
              change_at: int, bad_nl_min: int) -> int | None:
    """10 s ticks; the balance reads the cumulative volume with +-20 nL noise per reading, so
    each measured increment is the difference of two noisy readings."""
    rng = random.Random(3)
    true_nl = 0.0
    last_reading = 0
    for m in range(minutes):
        rate = meas_nl_min if m < change_at else bad_nl_min
        for _ in range(6):
            true_nl += rate / 6
            reading = int(true_nl) + rng.randint(-20, 20)
            if det.update(10_000, cmd_nl_min // 6, reading - last_reading, True):
                return m * 60_000
            last_reading = reading
    return None


def test_flow_low_alarm_within_window_plus_bucket():
    det = FlowDetector(window_ms=300_000, n_buckets=10, tolerance_pct=10, abs_tolerance_nl=50)
    basal = 93_000 // 1440   # nL per minute at 186 ug/day, 2000 ug/mL
    t = _flow_run(det, basal, basal, 60, 20, basal // 2)
    assert t is not None and det.low and not det.high
    assert t - 20 * 60_000 <= det.window_ms + det.bucket_ms
    s = A.AlarmSet()
    det.report(s)
    assert s.is_active(A.ALARM_FLOW_LOW) and s.motor_allowed()   # under-delivery: keep going


def test_flow_high_stops_motor_and_healthy_flow_is_quiet():
    det = FlowDetector(window_ms=300_000, n_buckets=10, tolerance_pct=10, abs_tolerance_nl=50)
    basal = 93_000 // 1440
    assert _flow_run(det, basal, basal, 120, 10_000, 0) is None
    t = _flow_run(det, basal, basal, 60, 5, basal * 2)
    assert t is not None and det.high
    s = A.AlarmSet()
    det.report(s)
    assert not s.motor_allowed()
    assert not det.update(1000, 10, 0, False) and not det.active  # no balance: no verdict


def test_reservoir_low_volume_days_and_empty():
    d = ReservoirDetector(low_volume_nl=2_000_000, low_days=7, empty_nl=100_000,
                          hysteresis_nl=100_000, end_stop_confirm=2)
    rate = 93_000
    assert not d.update(5_000_000, rate, False)
    d.update(1_900_000, rate, False)
    assert d.low_volume and not d.low_days_left
    d2 = ReservoirDetector(low_volume_nl=100_000, low_days=7, empty_nl=0)
    assert not d2.update(7 * rate, rate, False)
    d2.update(7 * rate - 1, rate, False)
    assert d2.low_days_left and not d2.low_volume
    d2.update(7 * rate + 50_000, rate, False)
    assert d2.low_days_left                           # hysteresis: no chatter
    d.update(50_000, rate, False)
    assert d.empty
    d.update(19_000_000, rate, False)
    assert not d.active                               # refilled
    d.update(19_000_000, rate, True)
    assert not d.empty                                # one bounce of the end stop
    d.update(19_000_000, rate, True)
    assert d.empty
    s = A.AlarmSet()
    d.report(s)
    assert not s.motor_allowed()


@pytest.mark.parametrize("cls,kwargs,words", [
    (OcclusionDetector, dict(trend_samples=1), "trend_samples = 1: must be an int in 2..64"),
    (StallDetector, dict(no_progress_ms=0), "no_progress_ms = 0: must be an int in 1..600000"),
    (FlowDetector, dict(window_ms=300_001), "window_ms = 300001: must be a multiple of n_buckets 10"),
    (ReservoirDetector, dict(low_days=31), "low_days = 31: must be an int in 0..30"),
])
def test_bad_parameters_name_field_value_limit(cls, kwargs, words):
    with pytest.raises(DetectError) as e:
        cls(**kwargs)
    assert words in str(e.value)


@pytest.mark.parametrize("period_ms", [BASAL_PERIOD_MS, 2000, 400])
def test_defaults_suit_the_virtual_rig_line(period_ms):
    """pumpsim's default line: 20 nL/kPa, 30 s decay, 0.49 kPa ADC quantum (noise ~1.5)."""
    line = Line(2.0, tau_ms=30_000, noise=1.5, seed=11)
    det = OcclusionDetector(threshold_kpa_x10=100_000)   # decay criterion only
    t, _ = run(det, line, period_ms, 500, 6 * 3_600_000)
    assert t is None, f"false occlusion at {t} ms"
    line = Line(2.0, tau_ms=30_000, noise=1.5, seed=12)
    det = OcclusionDetector(threshold_kpa_x10=100_000)
    t, missed = run(det, line, period_ms, 500, 48 * 3_600_000, block_at_ms=3_600_000)
    assert t is not None and det.by_decay
    assert missed <= det.missed_steps_bound(period_ms)


@pytest.mark.parametrize("period_ms,compliance", [(BASAL_PERIOD_MS, 2.0), (BASAL_PERIOD_MS, 10.0),
                                                  (400, 2.0), (60, 2.0)])
def test_trapped_volume_at_an_occlusion_never_below_what_the_block_holds(period_ms, compliance):
    """At the alarm, trapped_steps() covers every step pushed against the block (never
    under), and over-counts by at most three samples of the patent stretch before it."""
    line = Line(compliance, tau_ms=3000, noise=1.0)
    det = OcclusionDetector(threshold_kpa_x10=1500, confirm_ms=2000, **params_for(line))
    tick = 500 if period_ms > 1000 else 20
    t, blocked = run(det, line, period_ms, tick, 48 * 3_600_000, block_at_ms=3_600_000)
    assert t is not None
    trapped = det.trapped_steps()
    assert trapped >= blocked, f"trapped {trapped} < {blocked} steps pushed against the block"
    per_sample = max(det.steps_per_sample, -(-det.min_sample_ms // period_ms))
    assert trapped <= blocked + 3 * per_sample, (trapped, blocked, per_sample)


@pytest.mark.parametrize("period_ms", [BASAL_PERIOD_MS, 400])
def test_trapped_volume_on_a_patent_line_stays_within_a_sample(period_ms):
    line = Line(2.0, tau_ms=3000, noise=1.0, seed=7)
    det = OcclusionDetector(**params_for(line))
    tick = 500 if period_ms > 1000 else 20
    t, _ = run(det, line, period_ms, tick, 3 * 3_600_000)
    assert t is None
    per_sample = max(det.steps_per_sample, -(-det.min_sample_ms // period_ms))
    assert det.trapped_steps() <= 3 * per_sample


def test_trapped_volume_survives_a_dead_reading_and_clears_on_drain():
    """A dead sensor reading restarts the decay trend but is no evidence the line drained:
    the trapped count goes on; a drain with the motor stopped ends it."""
    line = Line(2.0, tau_ms=3000, noise=0.5)
    det = OcclusionDetector(**params_for(line))
    run(det, line, BASAL_PERIOD_MS, 500, 48 * 3_600_000, block_at_ms=0)
    assert det.active
    before = det.trapped_steps()
    assert before > 0
    det.update(500, -2000, 0)            # open wire for one tick
    line.step(det.steps_per_sample)
    det.update(BASAL_PERIOD_MS * det.steps_per_sample, line.read(), det.steps_per_sample)
    assert det.trapped_steps() >= before
    line.blocked = False
    for _ in range(100):
        line.wait(500)
        det.update(500, line.read(), 0)
    assert not det.active and det.trapped_steps() == 0


def test_a_dead_reading_does_not_clear_an_occlusion():
    """One open-wire tick during an occlusion is no drain: the alarm holds (it used to restart
    the trend, so the next good sample cleared the occlusion and the motor pushed on)."""
    line = Line(2.0, tau_ms=3000, noise=0.5)
    det = OcclusionDetector(**params_for(line))
    run(det, line, BASAL_PERIOD_MS, 500, 48 * 3_600_000, block_at_ms=0)
    assert det.active and det.by_decay
    det.update(500, -2000, 0)
    for _ in range(3):
        line.step(det.steps_per_sample)
        det.update(det.min_sample_ms, line.read(), det.steps_per_sample)
        assert det.active


def test_no_progress_counts_from_the_handover_not_the_tick_before_it():
    """Found on the emulated Pico (issue 14's jam check): motor-stall 1 s after a healthy basal
    step. The app queues a 1-step segment spread over the last tick (period ~1 s) and senses in
    the same iteration; the PIO reports the segment only after its full low time, so the next
    tick may still see nothing emitted. Counting the queueing tick's own dt made that 2 s of
    'no progress' against a 2 s limit: a false stall that stops delivery."""
    d = StallDetector(no_progress_ms=2000)
    assert not d.update(1000, False, 1, 0, True)     # queued at the end of a 1 s tick
    assert not d.update(1000, False, 1, 0, True)     # the report is due just after this tick
    assert not d.update(5, False, 0, 1, False)       # ... and here it is
    # a generator that really stopped is still caught within no_progress_ms + one tick
    d = StallDetector(no_progress_ms=2000)
    t = 0
    while not d.update(1000, False, 1, 0, True):
        t += 1000
        assert t <= 3000
    assert d.by_steps
