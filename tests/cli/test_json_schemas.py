"""Every command with --json prints one document valid against its published schema; errors are JSON on stderr;
the global options work before or after any command; usage errors are one line with exit 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from pumpcore import wire
from pumpctl import cli, keys, pump as pump_mod, schemas
from pumpctl.transport import LoopbackTransport
from tests.cli.fakerig import FakeController

KEY = bytes(range(32))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeController]:
    ctrl = FakeController("bench-1", KEY)
    keys.save_key("bench-1", KEY)
    ctrl.add_log(5)
    real = pump_mod.open_transport
    monkeypatch.setattr(pump_mod, "open_transport",
                        lambda port: LoopbackTransport(ctrl, port) if port.startswith("fake:") else real(port))
    yield ctrl


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


COMMANDS: list[tuple[tuple[str, ...], str]] = [
    (("status",), "pumpctl.status/1"),
    (("alarms",), "pumpctl.alarms/1"),
    (("alarms", "ack", "7"), "pumpctl.action/1"),
    (("bolus", "50", "--over", "1.5 min"), "pumpctl.action/1"),
    (("patient-bolus",), "pumpctl.action/1"),
    (("suspend",), "pumpctl.action/1"),
    (("resume",), "pumpctl.action/1"),
    (("refill", "--volume-ml", "20", "--concentration", "2000"), "pumpctl.action/1"),
    (("prime", "--volume-ul", "10"), "pumpctl.action/1"),
    (("time", "sync", "--at", "2026-11-25T08:00:00"), "pumpctl.action/1"),
    (("calibration",), "pumpctl.calibration/1"),
    (("calibration", "set", "17964"), "pumpctl.action/1"),
    (("calibration", "reset"), "pumpctl.action/1"),
    (("limits",), "pumpctl.limits/1"),
    (("program", "validate", str(REPO / "examples/programs/continuous_186.toml")), "pumpctl.program/1"),
    (("program", "upload", str(REPO / "examples/programs/continuous_186.toml"), "--yes"), "pumpctl.action/1"),
    (("program", "show"), "pumpctl.program-show/1"),
    (("logs", "show"), "pumpctl.logs/1"),
    (("monitor", "--count", "1"), "pumpctl.monitor/1"),
    (("ports",), "pumpctl.ports/1"),
    (("sim", "list"), "pumpctl.sim-list/1"),
]


@pytest.mark.parametrize("argv, schema", COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
@pytest.mark.parametrize("where", ["before", "after"])
def test_every_command_json_matches_its_schema(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                               argv: tuple[str, ...], schema: str, where: str) -> None:
    opts = ["--json", "--port", "fake:bench", "--timeout", "5"]
    line = [*opts, *argv] if where == "before" else [*argv, *opts]
    rc, out, err = run(capsys, *line)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["schema"] == schema
    errors = sorted(schemas.validator(schema).iter_errors(doc), key=str)
    assert not errors, errors[0]


def test_logs_show_decodes_names_and_units(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    from pumpcore import logrec
    rig.log.append(logrec.encode(len(rig.log) + 1, 9460, 5000, logrec.EV_ALARM_RAISED, 8, 3, 0, 0))
    rig.log.append(logrec.encode(len(rig.log) + 1, 9460, 6000, logrec.EV_PROGRAM_COMMIT, 0x84a7, 0xbdb2, 1, 186_000))
    rc, out, _ = run(capsys, "--json", "--port", "fake:bench", "logs", "show", "--kind", "alarm-raised,program-commit")
    recs = json.loads(out)["records"]
    assert [r["event"] for r in recs] == ["alarm-raised", "program-commit"]
    assert recs[0]["fields"]["alarm"] == "reset-power" and recs[0]["fields"]["priority"] == "high"
    assert recs[1]["fields"]["program_crc"] == "84a7bdb2" and "program_crc_hi16" not in recs[1]["fields"]
    rc, out, _ = run(capsys, "--port", "fake:bench", "logs", "show", "--since", "6")
    assert "basal_rate 186.000 ug/day" in out and "mode continuous" in out
    rc, _, err = run(capsys, "--port", "fake:bench", "logs", "show", "--kind", "nope")
    assert rc == 1 and "not an event name" in err


def test_errors_are_json_on_stderr_with_json(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "bolus", "¹⁰", "--json", "--port", "fake:bench")
    assert rc == 1 and out == ""
    doc = json.loads(err)
    assert doc["kind"] == "usage" and "digits must be 0-9" in doc["error"]
    assert not list(schemas.validator("pumpctl.error/1").iter_errors(doc))
    rc, _, err = run(capsys, "--json", "status", "--port", "/nonexistent/tty")
    assert rc == 1 and json.loads(err)["kind"] == "port"
    rc, _, err = run(capsys, "--json", "status", "--bogus")
    assert rc == 2 and json.loads(err)["kind"] == "usage"


def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "--bogus"], ["bolus"], ["sim", "nope"], ["--timeout"]):
        rc, out, err = run(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and err.startswith("pumpctl"), (argv, err)
    rc, _, err = run(capsys, "--timeout", "abc", "status")
    assert rc == 1 and "--timeout = abc" in err


def test_refusals_give_the_dose_and_the_limit(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    from pumpcore import scheduler
    rig.refuse_bolus = (scheduler.REFUSE_MAX_BOLUS, scheduler.refusal_text(scheduler.REFUSE_MAX_BOLUS))
    rc, _, err = run(capsys, "--port", "fake:bench", "bolus", "250")
    assert rc == 1 and "250.000 ug asked" in err and "single-bolus limit is 200.000 ug" in err, err


def test_over_accepts_units(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    for text, ms in (("90 s", 90_000), ("1.5 min", 90_000), ("2", 120_000), ("1 h", 3_600_000)):
        rc, _, err = run(capsys, "--port", "fake:bench", "bolus", "5", "--over", text)
        assert rc == 0, err
        assert rig.calls[-1][-1] == ms
    rc, _, err = run(capsys, "--port", "fake:bench", "bolus", "5", "--over", "30 s")
    assert rc == 1 and "--over = 30 s" in err


def test_numbers_in_any_form_are_one_line(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["bolus", "¹⁰"], ["bolus", "9" * 5001], ["refill", "--volume-ml", "²", "--concentration", "2000"]):
        rc, _, err = run(capsys, "--port", "fake:bench", *argv)
        assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err and len(err) < 300, err
    rc, _, err = run(capsys, "--port", "fake:bench", "bolus", "50 µg")
    assert rc == 0, err


def test_schema_command_lists_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "schema")
    assert rc == 0 and "pumpctl.status/1" in out.split()
    rc, out, _ = run(capsys, "schema", "status")
    assert json.loads(out)["$id"] == "pumpctl.status/1"


def test_monitor_marks_stale_at_once_and_reconnects(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pumpctl.errors import PortError
    real = pump_mod.open_transport
    calls = {"n": 0}

    def flaky(port: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:      # the second refresh: the rig is gone (reset, power cut, unplug)
            raise PortError("cannot open %s: no such port" % port)
        return real(port)
    monkeypatch.setattr(pump_mod, "open_transport", flaky)
    rc, out, _ = run(capsys, "--json", "--port", "fake:bench", "monitor", "--count", "3", "--interval", "0.01")
    docs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [d["stale"] for d in docs] == [False, True, False]
    assert "no such port" in docs[1]["error"]
    for d in docs:
        assert not list(schemas.validator("pumpctl.monitor/1").iter_errors(d))
    rc, out, _ = run(capsys, "--port", "fake:bench", "monitor", "--count", "2", "--interval", "0.01")
    assert "STALE" not in out   # the port is opened per refresh: nothing holds it between them


def test_monitor_on_a_terminal_is_a_live_view_that_marks_stale(rig: FakeController,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the view is rich's live display: redrawn in place (cursor moves, no screen
    clear-and-scroll), a red STALE panel at once when the rig stops answering, figures kept."""
    import io
    import sys
    from pumpctl.errors import PortError

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    real = pump_mod.open_transport
    calls = {"n": 0}

    def flaky(port: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise PortError("cannot open %s: no such port" % port)
        return real(port)
    monkeypatch.setattr(pump_mod, "open_transport", flaky)
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.setenv("COLUMNS", "110")
    monkeypatch.delenv("NO_COLOR", raising=False)
    rc = cli.main(["--port", "fake:bench", "monitor", "--count", "3", "--interval", "0.01"])
    out = tty.getvalue()
    assert rc == 0
    assert "\x1b[2J" not in out                   # no clear-screen per frame: the live view redraws in place
    assert "\x1b[" in out                         # styled, cursor-addressed output
    assert "STALE" in out and "no such port" in out
    assert "186.000 ug/day" in out and "rate now" in out
    assert out.count("pumpctl monitor") >= 3          # one per refresh (and the final draw at stop)


def test_monitor_view_dims_the_last_figures_when_stale() -> None:
    from rich.console import Console
    from pumpctl.cli.cmd_device import monitor_view
    doc = {"schema": "pumpctl.status/1", "rig_id": "bench-1", "firmware_version": "0.1.0", "build": "b",
           "time": {"day": 9460, "ms_of_day": 0, "clock_set": True},
           "program": {"crc32": 1, "mode": "continuous", "flex_step": None, "staged": False},
           "delivery": {"rate_ng_day": 186_000, "basal_ng_day": 186_000, "suspended": False,
                        "bolus_active": False, "motor_on": True, "delivered_today_ng": 0,
                        "delivered_total_ng": 0, "rolling_24h_ng": 0, "missed_steps": 0, "uncertain_ng": 0,
                        "certain_total_ng": 0, "line_conc_ug_ml": 2000, "bridge_left_nl": 0, "trapped_nl": 0},
           "reservoir": {"volume_nl": 1000, "low_in_min": None, "empty_in_min": None},
           "alarms": {"count": 1, "top_code": 1, "top_name": "occlusion"}}
    alarms = {"alarms": [{"id": 3, "priority": "HIGH", "name": "occlusion", "active": True, "latched": True,
                          "acknowledged": False, "day": 9460, "ms_of_day": 0}]}
    con = Console(record=True, width=120, force_terminal=True, color_system="standard")
    con.print(monitor_view((doc, alarms), "", 0.0, "12:00:00"))
    fresh = con.export_text(styles=False)
    assert "STALE" not in fresh and "occlusion" in fresh and "186.000 ug/day" in fresh
    con.print(monitor_view((doc, alarms), "no answer", 6.0, "12:00:06"))
    stale = con.export_text(styles=True)
    assert "STALE: no answer from the rig for 6 s" in stale and "\x1b[2m" in stale   # dimmed figures


def test_logs_show_marks_records_appended_late_and_keeps_seq_order(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    """Records the rig's log backlog appended late carry their own, earlier times (by design):
    shown and exported in seq order, marked late, never a gap; the log-backlog record after
    them counts them."""
    from pumpcore import logrec
    from pumpctl import logorder
    from pumpctl.logstore import LogStore
    from pumpctl.cli import cmd_logs
    # a clock set back while records waited: the late time set explains the late times after it
    plan = [(9000, logrec.EV_SUSPEND, 0), (9500, logrec.EV_TIME_SET, 0), (2000, logrec.EV_ALARM_RAISED, 1),
            (3000, logrec.EV_ALARM_CLEARED, 1), (60000, logrec.EV_LOG_BACKLOG, 3), (61000, logrec.EV_RESUME, 0)]
    base = len(rig.log)
    for i, (ms, code, a0) in enumerate(plan):
        rig.log.append(logrec.encode(base + i + 1, 9461, ms, code, a0, 0, 0, 0))
    late = {base + 2, base + 3, base + 4}
    rc, out, _ = run(capsys, "--json", "--port", "fake:bench", "logs", "show", "--since", str(base + 1))
    recs = json.loads(out)["records"]
    assert [r["seq"] for r in recs] == list(range(base + 1, base + 7))
    assert {r["seq"] for r in recs if r["late"]} == late
    rc, out, _ = run(capsys, "--port", "fake:bench", "logs", "show", "--since", str(base + 1))
    marked = [line.split()[0] for line in out.splitlines() if "appended late" in line]
    assert marked == [str(s) for s in sorted(late)]
    decoded = [logrec.decode(raw) for raw in rig.log]
    assert logorder.late_in(decoded) == late and logorder.time_runs_back(decoded[base:]) == []
    odd = decoded[base:] + [logrec.decode(logrec.encode(base + 7, 9461, 30000, logrec.EV_SUSPEND, 0, 0, 0, 0))]
    assert logorder.time_runs_back(odd) == [base + 7], "a time running back unexplained is said"
    with LogStore(tmp_path / "r.sqlite", "bench-1") as store:
        got = cmd_logs.pull(lambda first, n: (1, len(rig.log) + 1, rig.log[first - 1:first - 1 + n]), store)
        assert got["gaps"] == [] and got["undecodable"] == 0
        store.export_jsonl(tmp_path / "r.jsonl")
        store.export_csv(tmp_path / "r.csv")
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert {r["seq"] for r in rows if r["late"]} == late
    import csv
    with open(tmp_path / "r.csv", newline="") as f:
        assert {int(r["seq"]) for r in csv.DictReader(f) if r["late"] == "1"} == late
