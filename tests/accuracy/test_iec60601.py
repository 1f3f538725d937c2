"""The IEC 60601-2-24 analysis against flows whose answer is known by hand."""
from __future__ import annotations

import math
import random

import pytest

from pumpctl.accuracy.iec60601 import (
    AnalysisError, Sample, analyse, low_rate_profile, profile_for, samples_from_masses,
    standard_profile, water_density_g_ml)

S_MIN = 0.5  # the standard's sample interval, min


def masses_for(flow_ml_h, n_samples: int, density: float = 1.0) -> list[float]:
    """Cumulative balance readings (g) for a per-interval flow function flow_ml_h(i) (mL/h)."""
    out, vol = [0.0], 0.0
    for i in range(1, n_samples):
        vol += flow_ml_h(i) * S_MIN / 60.0
        out.append(vol * density)
    return out


def test_water_density_matches_reference_values():
    assert water_density_g_ml(20.0) == pytest.approx(0.998207, abs=1e-6)
    assert water_density_g_ml(4.0) == pytest.approx(0.999975, abs=1e-6)
    assert water_density_g_ml(25.0) == pytest.approx(0.997047, abs=1e-6)
    with pytest.raises(AnalysisError, match="temperature_c = 45"):
        water_density_g_ml(45)


def test_perfect_constant_flow_gives_zero_everywhere():
    r = 25.0
    d = water_density_g_ml(20.0)
    res = analyse(samples_from_masses(masses_for(lambda i: r, 241, d)), r)
    assert res.profile.name.startswith("standard")
    assert res.mean_error_a_pct == pytest.approx(0.0, abs=1e-9)
    assert [w.p_min for w in res.windows] == [2, 5, 11, 19, 31]
    for w in res.windows:
        assert w.ep_max == pytest.approx(0.0, abs=1e-9)
        assert w.ep_min == pytest.approx(0.0, abs=1e-9)


def test_number_of_windows_is_m_equals_t2_minus_p_over_s_plus_one():
    res = analyse(samples_from_masses(masses_for(lambda i: 10.0, 241)), 10.0, density_g_ml=1.0)
    assert res.analysis_start_s == 3600 and res.analysis_end_s == 7200
    assert {w.p_min: w.n_windows for w in res.windows} == {
        p: int((60 - p) / S_MIN + 1) for p in (2, 5, 11, 19, 31)}


def test_constant_offset_gives_a_and_flat_trumpet():
    r = 10.0
    res = analyse(samples_from_masses(masses_for(lambda i: r * 1.03, 241)), r, density_g_ml=1.0)
    assert res.mean_error_a_pct == pytest.approx(3.0, abs=1e-9)
    assert res.last_hour_error_b_pct == pytest.approx(3.0, abs=1e-9)
    for w in res.windows:
        assert w.ep_max == pytest.approx(3.0, abs=1e-9)
        assert w.ep_min == pytest.approx(3.0, abs=1e-9)


def test_square_ripple_gives_hand_computed_ep_values():
    # 4-min period: 2 min at r(1 + a), 2 min at r(1 - a); 8 samples per period.
    r, a = 10.0, 0.1
    flow = lambda i: r * (1 + a) if ((i - 1) % 8) < 4 else r * (1 - a)  # noqa: E731
    res = analyse(samples_from_masses(masses_for(flow, 241)), r, density_g_ml=1.0)
    # window of n samples = k whole periods + e extra samples; the best e consecutive samples
    # hold min(e, 4) highs and the rest lows: Ep(max) = 100 a (highs - lows) / n
    expected = {2: 100 * a * 4 / 4, 5: 100 * a * 2 / 10, 11: 100 * a * (4 - 2) / 22,
                19: 100 * a * (4 - 2) / 38, 31: 100 * a * (4 - 2) / 62}
    for w in res.windows:
        assert w.ep_max == pytest.approx(expected[w.p_min], abs=1e-9), w.p_min
        assert w.ep_min == pytest.approx(-expected[w.p_min], abs=1e-9), w.p_min
    assert res.mean_error_a_pct == pytest.approx(0.0, abs=1e-9)  # T2 = 15 whole periods


def test_start_up_curve_is_q_i_per_interval():
    flow = lambda i: 0.0 if i <= 10 else 12.0  # noqa: E731  (5 min dead time, then 12 mL/h)
    res = analyse(samples_from_masses(masses_for(flow, 241)), 12.0, density_g_ml=1.0)
    assert len(res.flow) == 240
    assert res.flow[0] == (30.0, pytest.approx(0.0))
    assert res.flow[9][1] == pytest.approx(0.0) and res.flow[10][1] == pytest.approx(12.0)


def test_evaporation_correction_restores_the_mean():
    r, evap = 1.5, 0.002  # 2 mg/h lost from the beaker
    masses = [m - evap * i * 30 / 3600 for i, m in enumerate(masses_for(lambda i: r, 241))]
    raw = analyse(samples_from_masses(masses), r, density_g_ml=1.0)
    assert raw.mean_error_a_pct == pytest.approx(-100 * evap / r, abs=1e-9)
    fixed = analyse(samples_from_masses(masses), r, density_g_ml=1.0, evaporation_g_h=evap)
    assert fixed.mean_error_a_pct == pytest.approx(0.0, abs=1e-9)


def test_balance_noise_shows_at_short_windows_and_fades_at_long_ones():
    rng = random.Random(6)
    r, sigma = 1.0, 0.0002  # 0.2 mg reading noise
    masses = [m + rng.gauss(0.0, sigma) for m in masses_for(lambda i: r, 241)]
    res = analyse(samples_from_masses(masses), r, density_g_ml=1.0, balance_sigma_g=sigma)
    w2, w31 = res.window(2), res.window(31)
    assert w2.noise_floor_pct == pytest.approx(100 * math.sqrt(2) * sigma / (r * 2 / 60))
    # the worst of 117 noisy windows lies between one and five noise standard deviations
    assert w2.noise_floor_pct < max(w2.ep_max, -w2.ep_min) < 5 * w2.noise_floor_pct
    assert max(w31.ep_max, -w31.ep_min) < max(w2.ep_max, -w2.ep_min) / 4
    assert abs(res.mean_error_a_pct) < 3 * 100 * math.sqrt(2) * sigma / r


def test_missing_reading_voids_only_windows_ending_on_it():
    masses = masses_for(lambda i: 5.0, 241)
    masses[150] = None  # inside T2 (samples 120..240)
    res = analyse(samples_from_masses(masses), 5.0, density_g_ml=1.0)
    assert res.missing_samples == 1
    assert res.window(2).n_windows == 117 - 2   # windows starting at 150 and at 146
    assert res.window(2).ep_max == pytest.approx(0.0, abs=1e-9)
    assert len(res.flow) == 238


def test_low_rate_profile_uses_the_whole_run_after_stabilisation():
    r = 186_000 / 2000 / 1000 / 24  # 186 ug/day at 2000 ug/mL in mL/h
    prof = profile_for(r, 24 * 3600)
    assert prof.analysis_s is None and prof.stabilisation_s == 3600
    assert profile_for(r, 72 * 3600).stabilisation_s == 86400
    assert profile_for(25.0, 2 * 3600).name == standard_profile().name
    n = 24 * 120 + 1
    res = analyse(samples_from_masses(masses_for(lambda i: r, n)), r, density_g_ml=1.0)
    assert res.analysis_start_s == 3600 and res.analysis_end_s == 24 * 3600
    assert [(w.p_min, w.supplementary) for w in res.windows][-4:] == [
        (60, True), (120, True), (240, True), (480, True)]
    assert res.window(2).n_windows == (23 * 60 - 2) * 2 + 1


def test_quantised_steps_give_the_quantisation_floor():
    # a pump that moves a whole 18 nL step at a time, at 0.1 mL/h
    r, step_ml = 0.1, 18e-6
    masses = []
    for i in range(24 * 120 + 1):
        steps = int((r * i * S_MIN / 60) / step_ml)
        masses.append(steps * step_ml)
    res = analyse(samples_from_masses(masses), r, density_g_ml=1.0, step_volume_ml=step_ml)
    w2 = res.window(2)
    assert w2.quantum_floor_pct == pytest.approx(100 * step_ml / (r * 2 / 60))
    assert max(w2.ep_max, -w2.ep_min) <= w2.quantum_floor_pct + 1e-9
    assert abs(res.mean_error_a_pct) < 0.01


@pytest.mark.parametrize("bad, match", [
    (lambda s: s[:1], "at least 2"),
    (lambda s: s[:100], "run length"),
    (lambda s: s[:5] + [Sample(s[5].t_s + 7, s[5].mass_g)] + s[6:], r"samples\[5\]\.t_s = 157"),
    (lambda s: [Sample(0, None)] + s[1:], r"samples\[0\]\.mass_g = None"),
])
def test_bad_data_is_refused_with_the_field_value_and_limit(bad, match):
    samples = samples_from_masses(masses_for(lambda i: 10.0, 241))
    with pytest.raises(AnalysisError, match=match):
        analyse(bad(samples), 10.0, density_g_ml=1.0)


def test_bad_rate_and_density_are_refused():
    samples = samples_from_masses(masses_for(lambda i: 10.0, 241))
    with pytest.raises(AnalysisError, match="set_rate_ml_h = 0"):
        analyse(samples, 0)
    with pytest.raises(AnalysisError, match="density_g_ml = 5"):
        analyse(samples, 10.0, density_g_ml=5)
    with pytest.raises(AnalysisError, match="observation window 3.25 min"):
        low_rate_profile(3600).__class__("x", 30, 0, None, (3.25,))


@pytest.mark.parametrize("hours", [2, 24])
def test_trumpet_plot_draws_the_curves_with_and_without_supplementary_windows(tmp_path, hours):
    """The standard profile has no supplementary panel: its single panel must still be drawn."""
    from matplotlib.image import imread

    from pumpctl.accuracy.report import plot_trumpet
    rate = 10.0 if hours == 2 else 0.5
    flow = lambda i: rate * (1.05 if i % 2 else 0.95)  # noqa: E731
    res = analyse(samples_from_masses(masses_for(flow, hours * 120 + 1)), rate, density_g_ml=1.0)
    png = imread(str(plot_trumpet(res, tmp_path / "t.png", "test")))
    red = (png[:, :, 0] > 0.7) & (png[:, :, 1] < 0.3) & (png[:, :, 2] < 0.3)   # Ep(max), tab:red
    blue = (png[:, :, 2] > 0.6) & (png[:, :, 0] < 0.3)                         # Ep(min), tab:blue
    assert red.sum() > 100 and blue.sum() > 100
