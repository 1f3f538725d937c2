"""Gravimetric run orchestration, run log, report and CLI plumbing, on a synthetic stepping pump."""
from __future__ import annotations

import argparse
import math
import random

import pytest

from pumpctl.accuracy import iec60601, report
from pumpctl.accuracy.balance import BalanceError, BalanceTimeout, SimBalance
from pumpctl.accuracy.run import (
    RunClock, SampleLog, gravimetric_run, load_samples_csv, set_rate_ml_h)
from pumpctl.accuracy.analysis import program_rate
from pumpctl.cli.cmd_accuracy import register
from pumpctl.errors import UsageError

STEP_ML = 17_964e-9  # the bench mechanism: 17,964 pL per microstep


class VirtualTime(RunClock):
    """A clock that jumps to whatever time is waited for (plus a fixed read latency)."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.t = 0.0
        self.latency_s = latency_s

    def now_s(self) -> float:
        return self.t

    def sleep_until(self, t_s: float) -> None:
        self.t = max(self.t, t_s) + self.latency_s


def stepping_pump(clock: VirtualTime, rate_ml_h: float, sigma_g: float, seed: int = 1):
    """Balance answer of a pump that delivers whole microsteps: floor(ideal / step) steps."""
    rng = random.Random(seed)

    def read():
        steps = math.floor(rate_ml_h * clock.t / 3600.0 / STEP_ML)
        return clock.t, 40.0 + steps * STEP_ML * 0.998207 + rng.gauss(0.0, sigma_g)
    return read


def test_set_rate_conversion():
    assert set_rate_ml_h(186_000, 2000) == pytest.approx(0.093 / 24)
    with pytest.raises(UsageError, match="rate_ng_day = 0"):
        set_rate_ml_h(0, 2000)


def test_run_samples_every_interval_and_logs_every_reading(tmp_path):
    clock = VirtualTime()
    bal = SimBalance(stepping_pump(clock, 1.0, 0.0))
    bal.tare()
    log = SampleLog(tmp_path / "samples.csv", {"rig": "r1", "balance_sigma_g": 0})
    samples = gravimetric_run(bal, clock, 3600.0, log)
    log.close()
    assert len(samples) == 121 and samples[0].t_s == 0.0 and samples[-1].t_s == 3600.0
    meta, back = load_samples_csv(tmp_path / "samples.csv")
    assert meta["rig"] == "r1"
    assert [(s.t_s, s.mass_g) for s in back] == [(s.t_s, s.mass_g) for s in samples]


def test_failed_readings_are_missing_not_invented_and_too_many_abort(tmp_path):
    clock = VirtualTime()
    good = stepping_pump(clock, 1.0, 0.0)
    fail_at = {3, 4}

    def flaky():
        if int(clock.t // 30) in fail_at:
            raise BalanceTimeout("balance on /dev/x did not answer 'SI' within 2 s")
        return good()
    samples = gravimetric_run(SimBalance(flaky), clock, 600.0)
    assert [s.mass_g is None for s in samples].count(True) == 2
    assert samples[3].mass_g is None and samples[3].t_s == 90.0
    fail_at.update(range(10, 30))
    clock.t = 0.0
    log = SampleLog(tmp_path / "s.csv", {})
    with pytest.raises(BalanceError, match=r"run aborted at t = 420 s after 5 failed"):
        gravimetric_run(SimBalance(flaky), clock, 3600.0, log)
    log.close()
    _, kept = load_samples_csv(tmp_path / "s.csv")
    assert len(kept) == 15 and kept[-1].mass_g is None  # everything measured is in the log


def test_bad_run_log_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("# rig: x\nt_s,mass_g,stable\n0,0.0,1\n30,abc,1\n")
    with pytest.raises(UsageError, match="data row 2"):
        load_samples_csv(path)


def test_24h_run_at_186_ug_day_and_report(tmp_path):
    rate = set_rate_ml_h(186_000, 2000)
    sigma = 10e-6  # 0.01 mg, a semi-micro balance
    clock = VirtualTime()
    bal = SimBalance(stepping_pump(clock, rate, sigma))
    bal.tare()
    samples = gravimetric_run(bal, clock, 24 * 3600.0)
    res = iec60601.analyse(samples, rate, balance_sigma_g=sigma, step_volume_ml=STEP_ML)
    assert res.profile.analysis_s is None  # low-rate profile: whole run after T1
    # quantisation to whole steps and 10 ug noise over ~89 uL: A within a few tenths of a %
    assert abs(res.mean_error_a_pct) < 0.5
    w2, w480 = res.window(2), res.window(480)
    assert max(w2.ep_max, -w2.ep_min) > 10 * max(w480.ep_max, -w480.ep_min)
    info = report.RunInfo(rig="synthetic-1", firmware="test build", program_file="p.toml",
                          program_lines=["continuous 186 ug/day"], balance="sim",
                          rate_text="186 ug/day at 2000 ug/mL", temperature_c=20.0,
                          density_note="water at 20 degC", noise_model="gaussian 10 ug")
    paths = report.write_report(res, info, tmp_path / "out", "186 ug/day")
    for key in ("startup", "trumpet"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["report"].read_text()
    for text in ("synthetic-1", "test build", "p.toml", "continuous 186 ug/day", "gaussian 10 ug",
                 "| 2 |", "480 (suppl.)", "trumpet.png"):
        assert text in md


class FakeProgram:
    def __init__(self, **kw):
        self.mode, self.periodic, self.patterns = 1, [], []
        self.__dict__.update(kw)


class Step:
    def __init__(self, rate):
        self.rate_ng_day = rate


class Pattern:
    def __init__(self, *rates):
        self.steps = [Step(r) for r in rates]


def test_program_rate_needs_one_constant_rate():
    assert program_rate(FakeProgram(rate_ng_day=186_000, concentration_ug_ml=2000)) == (186_000, 2000)
    assert program_rate(FakeProgram(mode=2, rate_ng_day=None, concentration_ug_ml=500,
                                    patterns=[Pattern(100_000, 100_000)])) == (100_000, 500)
    with pytest.raises(UsageError, match=r"program rates = \[100000, 200000\]"):
        program_rate(FakeProgram(mode=2, rate_ng_day=None, concentration_ug_ml=500,
                                 patterns=[Pattern(100_000, 200_000)]))
    with pytest.raises(UsageError, match="periodic boluses = 1"):
        program_rate(FakeProgram(rate_ng_day=1, concentration_ug_ml=1, periodic=[object()]))
    with pytest.raises(UsageError, match="mode = 3"):
        program_rate(FakeProgram(mode=3, rate_ng_day=1, concentration_ug_ml=1))


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["accuracy", "--program", "p.toml", "--hours", "24"])
    assert args.balance == "sim" and args.hours == 24.0 and args.time_scale == 1000.0


def test_sim_balance_without_the_virtual_rig_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util
    if importlib.util.find_spec("pumpctl.rigs.virtualrig") is not None:
        pytest.skip("the virtual rig is present")
    from pumpctl.accuracy.simrun import start_virtual_rig
    with pytest.raises(UsageError, match="virtual rig .* is not in this checkout yet"):
        start_virtual_rig(1000.0, tmp_path)


def test_rig_events_compares_the_count_with_the_dose_programmed_over_the_same_rig_time():
    """The count is set against the programmed dose over the stretch of the rig's own clock it
    was counted over, not against `hours`: at `--time-scale max` the host's last status read lags
    the run's end by rig minutes, and comparing with the run's nominal length called a correct
    count 0.17 % high (186.322 of 186.000 ug)."""
    from types import SimpleNamespace
    from pumpctl.accuracy.simrun import rig_events

    def status(day, ms, ng):
        return SimpleNamespace(day=day, ms_of_day=ms, delivered_total_ng=ng, missed_steps=0)

    since = status(9000, 86_000_000, 1_000)                 # 400 s before midnight
    end = status(9001, 86_150_000, 1_000 + 186_482)     # 24 h 150 s later
    pump = SimpleNamespace(status=lambda: end, alarms=lambda: [])
    rig = SimpleNamespace(world=lambda: {"boots": 2})
    text = rig_events(rig, 186_000, since, pump)
    # 24 h + 150 s of rig clock at 186,000 ng/day = 186.323 ug; counted 186.482 ug
    assert text.startswith("counted 186.482 ug of 186.323 ug programmed over the same 24.042 h")
    assert "2 firmware boot(s), alarms: none" in text
