"""Accuracy verdicts: spec, exit status, interruptions, run-length check, exact re-analysis from the log."""
from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from pumpctl import cli
from pumpctl.accuracy import events as run_events
from pumpctl.accuracy import iec60601, verdict
from pumpctl.accuracy.run import SampleLog, set_rate_ml_h
from pumpctl.accuracy.analysis import program_crc
from pumpctl.errors import UsageError
from pumpctl.programfile import load

REPO = Path(__file__).resolve().parents[2]
HIGH = REPO / "examples" / "programs" / "high_rate_1500.toml"
LOW = REPO / "examples" / "programs" / "continuous_186.toml"
STEP_ML = 17_964e-9


def test_spec_parsing_and_its_errors():
    s = verdict.parse_spec(None)
    assert s.limits == {"A": 2.0} and not s.stated and "default" in s.describe()
    s = verdict.parse_spec("A=±1.5 %, b=+/-3, Ep31=5")
    assert s.limits == {"A": 1.5, "B": 3.0, "Ep31": 5.0} and s.stated
    assert verdict.parse_spec("0.5").limits == {"A": 0.5}
    for bad, why in (("A=x", "not a percentage"), ("Q=2", "unknown figure"), ("A=0", "above 0"),
                     ("A=2,", "empty term"), ("A=²", "not a percentage"), ("Ep=3", "unknown figure")):
        with pytest.raises(UsageError, match=why):
            verdict.parse_spec(bad)


def write_log(path: Path, program_file: Path, *, rate_scale: float = 1.0, hours: float = 2.0,
              events: list[dict] | None = None, density: float = 0.9982, evap_g_h: float = 5e-5) -> list:
    """A samples log as a run writes it: a whole-microstep pump at `rate_scale` x the set rate,
    seen through a balance that loses `evap_g_h` to evaporation, with noise."""
    import random
    prog = load(program_file)
    rate = set_rate_ml_h(prog.rate_ng_day, prog.concentration_ug_ml) * rate_scale
    rng = random.Random(7)
    meta = {"rig": "synthetic", "firmware": "0.0 build test", "balance": "synthetic",
            "program": str(program_file), "program_crc": "%08x" % program_crc(prog),
            "rate_ng_day": prog.rate_ng_day, "conc_ug_ml": prog.concentration_ug_ml, "hours": hours,
            "balance_sigma_g": 2e-5, "density_g_ml": repr(density), "density_note": "stated in the test",
            "evaporation_g_h": repr(evap_g_h), "evaporation_note": "measured before the run (test)",
            "spec": "", "started": "2026-12-01 12:00 UTC"}
    log = SampleLog(path, meta)
    samples = []
    for k in range(int(hours * 120) + 1):
        t = k * 30.0
        steps = math.floor(rate * t / 3600.0 / STEP_ML)
        s = iec60601.Sample(t, steps * STEP_ML * density - evap_g_h * t / 3600 + rng.gauss(0, 2e-5))
        log.append(s)
        samples.append(s)
    for ev in events or []:
        log.note("event", run_events.to_log_line(ev))
    log.close()
    return samples


def run_cli(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def test_from_log_reproduces_the_run_and_passes_the_default_spec(tmp_path, capsys):
    samples = write_log(tmp_path / "samples.csv", HIGH)
    rc = run_cli("accuracy", "--program", HIGH, "--from-log", tmp_path / "samples.csv", "--out", tmp_path / "o")
    out = capsys.readouterr().out
    assert rc == 0 and "VERDICT PASS" in out and "default: |A| <= 2 %" in out
    got = json.loads((tmp_path / "o" / "result.json").read_text())
    prog = load(HIGH)
    expect = iec60601.analyse(samples, set_rate_ml_h(prog.rate_ng_day, prog.concentration_ug_ml),
                              density_g_ml=0.9982, evaporation_g_h=5e-5)
    assert got["result"]["mean_error_a_pct"] == expect.mean_error_a_pct   # exactly, not approximately
    assert got["verdict"]["verdict"] == "PASS"
    md = (tmp_path / "o" / "report.md").read_text()
    assert "**VERDICT: PASS**" in md and "0.998200 g/mL (stated in the test (from the run log))" in md
    assert "measured before the run (test)" in md


def test_a_pump_that_under_delivers_fails_its_spec_and_exits_3(tmp_path, capsys):
    write_log(tmp_path / "samples.csv", HIGH, rate_scale=0.95)     # 5 % under
    rc = run_cli("accuracy", "--program", HIGH, "--from-log", tmp_path / "samples.csv", "--out", tmp_path / "o")
    out = capsys.readouterr().out
    assert rc == verdict.EXIT_SPEC_FAILED == 3
    assert "VERDICT FAIL: A = -4.99" in out and "outside +/-2 %" in out
    # a stated spec that it meets passes; an unmeasurable figure fails
    assert run_cli("accuracy", "--program", HIGH, "--from-log", tmp_path / "samples.csv", "--out",
                   tmp_path / "o", "--spec", "A=6") == 0
    assert run_cli("accuracy", "--program", HIGH, "--from-log", tmp_path / "samples.csv", "--out",
                   tmp_path / "o", "--spec", "A=6,Ep480=50") == 3
    assert "not measured" in capsys.readouterr().out


def test_an_alarm_during_the_run_is_a_verdict_and_exit_4(tmp_path, capsys):
    ev = {"t_s": 4000.0, "kind": "alarm", "what": "alarm motor-stall", "interrupts": True}
    low = {"t_s": 100.0, "kind": "alarm", "what": "alarm reservoir-low-days", "interrupts": False}
    write_log(tmp_path / "samples.csv", HIGH, events=[low, ev])
    rc = run_cli("accuracy", "--program", HIGH, "--from-log", tmp_path / "samples.csv", "--out", tmp_path / "o")
    out = capsys.readouterr().out
    assert rc == verdict.EXIT_INTERRUPTED == 4
    assert "VERDICT INTERRUPTED: 1 interruption(s) during the run, first: alarm motor-stall at 1.11 h" in out
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| 1.111 | alarm motor-stall | yes |" in md and "| 0.028 | alarm reservoir-low-days | no |" in md


def test_from_log_refuses_another_program_and_an_old_log(tmp_path, capsys):
    write_log(tmp_path / "samples.csv", HIGH)
    assert run_cli("accuracy", "--program", LOW, "--from-log", tmp_path / "samples.csv") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pumpctl: --program ") and "is not the crc" in err and len(err.splitlines()) == 1
    old = tmp_path / "old.csv"
    old.write_text("# rig: x\nt_s,mass_g,stable\n0,0.0,1\n30,0.01,1\n")
    assert run_cli("accuracy", "--program", HIGH, "--from-log", old) == 1
    assert "no program_crc line" in capsys.readouterr().err


def test_run_length_is_checked_before_anything_starts(tmp_path, capsys):
    t0 = time.monotonic()
    assert run_cli("accuracy", "--program", HIGH, "--hours", "0.5", "--out", tmp_path) == 1
    err = capsys.readouterr().err
    assert "--hours = 0.5: the standard (IEC 60601-2-24 intermediate rate) test" in err
    assert "needs at least 120 min" in err and time.monotonic() - t0 < 5
    assert run_cli("accuracy", "--program", LOW, "--hours", "1", "--out", tmp_path) == 1
    assert "needs at least 91 min" in capsys.readouterr().err
    assert run_cli("accuracy", "--program", HIGH, "--hours", "2", "--spec", "Z=1") == 1
    assert "unknown figure" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())   # nothing was started or written


def test_progress_line_text():
    from pumpctl.accuracy.progress import RunProgress
    samples = [iec60601.Sample(30.0 * k, 30.0 * k / 3600 * 3.875e-3) for k in range(25)]
    text = RunProgress.describe(samples, 86400.0, 1.0, {"occlusion"})
    assert text == "0.20 h of 24 h, last 10 min 3.875 uL/h, alarms: occlusion"


@pytest.mark.rig
def test_virtual_rig_run_with_a_stall_exits_4_and_reanalyses_identically(tmp_path, capsys):
    """The whole path on a virtual rig: evaporation measured before the run, a motor stall
    injected 70 min in, the rig's alarm in the log, verdict INTERRUPTED; --from-log of the same
    samples gives the same figures and the same verdict."""
    from pumpctl.accuracy import simrun
    from pumpctl.accuracy.analysis import program_rate
    parser = cli.build_parser()
    out = tmp_path / "run"
    args = parser.parse_args(["accuracy", "--program", str(HIGH), "--hours", "2", "--out", str(out),
                              "--evaporation-min", "30"])
    program = load(HIGH)
    rate, conc = program_rate(program)
    rig = simrun.start_virtual_rig(args.time_scale, out)
    try:
        def stall_later() -> None:   # 70 min into the run: 140 readings in the samples log
            log = out / "samples.csv"
            while not log.exists() or sum(1 for ln in log.read_text().splitlines()
                                          if ln[:1].isdigit()) < 141:
                time.sleep(0.02)
            rig.fault("stall")
        t = threading.Thread(target=stall_later, daemon=True)
        t.start()
        rc = simrun.run_with_rig(rig, args, program, rate, conc)
    finally:
        rig.stop()
    first = capsys.readouterr().out
    assert rc == 4, first
    assert "VERDICT INTERRUPTED" in first and "alarm motor-stall" in first
    log_text = (out / "samples.csv").read_text()
    assert "# event: " in log_text and "motor-stall" in log_text and "# program_crc: " in log_text
    a_run = json.loads((out / "result.json").read_text())["result"]["mean_error_a_pct"]
    assert a_run < -5   # the stall stopped delivery for the last ~50 min of the analysis hour
    rc2 = run_cli("accuracy", "--program", HIGH, "--from-log", out / "samples.csv", "--out", tmp_path / "again")
    assert rc2 == 4
    assert json.loads((tmp_path / "again" / "result.json").read_text())["result"]["mean_error_a_pct"] == a_run
