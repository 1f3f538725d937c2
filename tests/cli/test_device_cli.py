"""Device commands through the real Pump API and protocol server, in process (fake controller behind a loopback link)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from pumpcore import wire
from pumpctl import cli, keys, pump as pump_mod
from pumpctl.transport import LoopbackTransport
from tests.cli.fakerig import FakeController

KEY = bytes(range(32))


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeController]:
    """A fake rig 'bench-1' on port 'fake:bench' whose key the host store holds."""
    ctrl = FakeController("bench-1", KEY)
    keys.save_key("bench-1", KEY)
    real = pump_mod.open_transport

    def open_transport(port: str) -> Any:
        return LoopbackTransport(ctrl, port) if port.startswith("fake:") else real(port)
    monkeypatch.setattr(pump_mod, "open_transport", open_transport)
    yield ctrl


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["--port", "fake:bench", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_status_json_schema_is_stable(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--json", "status")
    doc = json.loads(out)
    assert rc == 0
    assert doc == {
        "schema": "pumpctl.status/1", "rig_id": "bench-1", "firmware_version": "0.1.0-test", "build": "f00dcafe",
        "mechanism": "20ml",
        "time": {"day": 9460, "ms_of_day": 43_200_000, "clock_set": True},
        "program": {"crc32": 0, "mode": "stopped", "flex_step": None, "staged": False},
        "delivery": {"rate_ng_day": 186_000, "basal_ng_day": 186_000, "suspended": False, "bolus_active": False,
                     "motor_on": False, "delivered_today_ng": 93_000, "delivered_total_ng": 1_302_000,
                     "rolling_24h_ng": 186_000, "missed_steps": 0, "uncertain_ng": 0,
                     "certain_total_ng": 1_302_000, "line_conc_ug_ml": 2000, "bridge_left_nl": 0,
                     "trapped_nl": 0, "queued_steps": 0},
        "reservoir": {"volume_nl": 19_500_000, "low_in_min": 60_000, "empty_in_min": None},
        "alarms": {"count": 1, "top_code": 1, "top_name": doc["alarms"]["top_name"]},
        "calibration": {"pl_per_step": 12_000, "source": "derived"},
    }
    assert isinstance(doc["alarms"]["top_name"], str) and doc["alarms"]["top_name"]


def test_status_human(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rig.st["flags"] |= wire.STATUS_FLAG_SUSPENDED
    rc, out, _ = run(capsys, "status")
    assert rc == 0
    assert "rate now:" in out and "186.000 ug/day" in out and "SUSPENDED" in out
    assert "19.500 mL" in out and "never" in out and "1302.000 ug" in out
    assert "build:" in out and "f00dcafe" in out


def test_alarms_list_and_ack(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--json", "alarms")
    a = json.loads(out)["alarms"][0]
    assert rc == 0 and a["id"] == 7 and a["priority"] == "critical" and a["latched"] and not a["acknowledged"]
    rc, out, _ = run(capsys, "alarms")
    assert "critical" in out and "latched" in out
    rc, out, _ = run(capsys, "alarms", "ack", "7")
    assert rc == 0 and rig.calls[-1] == ("ack", 7)
    rc, _, err = run(capsys, "alarms", "ack", "9")
    assert rc == 1 and err.startswith("pumpctl: ") and "no alarm with id 9" in err and err.count("\n") == 1


def test_delivery_commands_send_exact_integers(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "bolus", "50", "--over", "30")[0] == 0
    assert rig.calls[-1] == ("bolus", wire.BOLUS_CLINICIAN, 50_000, 30 * 60_000)
    # without --over: the fastest the flow limit allows above the highest basal any program may run:
    # 50_000 ng over (200_000_000 - 1_500_000) ng/day = 21_763.2 ms, rounded up
    assert run(capsys, "bolus", "0.05 mg")[0] == 0
    assert rig.calls[-1] == ("bolus", wire.BOLUS_CLINICIAN, 50_000, 21_764)
    assert run(capsys, "bolus", "12.345")[0] == 0
    assert rig.calls[-1] == ("bolus", wire.BOLUS_CLINICIAN, 12_345, 5_374)
    # the flow limit is the one the rig reports, not pumpcore's default:
    # 50_000 ng over (3_000_000 - 1_500_000) ng/day = 2_880_000 ms
    rig.max_flow_ng_day = 3_000_000
    assert run(capsys, "bolus", "50")[0] == 0
    assert rig.calls[-1] == ("bolus", wire.BOLUS_CLINICIAN, 50_000, 2_880_000)
    rig.max_flow_ng_day = 1_500_000
    rc, _, err = run(capsys, "bolus", "50")
    assert rc == 1 and "max flow 1500000 ng/day leaves no room above its max rate" in err
    assert run(capsys, "suspend")[0] == 0 and rig.calls[-1] == ("suspend",)
    assert run(capsys, "resume")[0] == 0 and rig.calls[-1] == ("resume",)
    assert run(capsys, "refill", "--volume-ml", "18.5", "--concentration", "2000")[0] == 0
    assert rig.calls[-1] == ("refill", 18_500_000, 2000)
    assert run(capsys, "refill", "--volume-ml", "500 uL", "--concentration", "0.5 mg/mL")[0] == 0
    assert rig.calls[-1] == ("refill", 500_000, 500)
    assert run(capsys, "prime", "--volume-ul", "180")[0] == 0 and rig.calls[-1] == ("prime", 180_000)
    assert run(capsys, "time", "sync", "--at", "2025-11-25T08:30:00")[0] == 0
    assert rig.calls[-1] == ("time", 9460, (8 * 60 + 30) * 60_000)


@pytest.mark.parametrize("argv, message", [
    (("bolus", "abc"), "bolus dose = 'abc': no number at the start"),
    (("bolus", "0"), "bolus dose = 0: must be above 0 ug"),
    (("bolus", "1.0001"), "bolus dose = '1.0001 ug': more decimals than the base unit can hold"),
    (("bolus", "5 ml"), "bolus dose = '5 ml': unit must be one of ng, ug, mg"),
    (("bolus", "5", "--over", "2000"), "--over = 2000: bolus duration must be 1..1440 min"),
    (("bolus", "5", "--over", "0"), "--over = 0: bolus duration must be 1..1440 min"),
    (("refill", "--volume-ml", "-3", "--concentration", "2000"), "--volume-ml = '-3 mL': no number at the start"),
    (("refill", "--volume-ml", "20", "--concentration", "2 g/mL"), "unit must be ug/mL or mg/mL"),
    (("time", "sync", "--at", "tomorrow"), "--at = 'tomorrow': not an ISO date-time"),
    (("calibration", "set", "0"), "pl_per_step = 0: must be 1..1073741823 pL per microstep"),
    (("status", "--timeout", "0"), "--timeout = 0: must be a number of seconds above 0 and at most 600"),
])
def test_bad_input_names_field_value_and_limit(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                               argv: tuple[str, ...], message: str) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 1 and message in err and err.count("\n") == 1


def test_refused_bolus_shows_the_rigs_reason(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rig.refuse_bolus = (3, "above max single bolus 200 ug")
    rc, _, err = run(capsys, "bolus", "250")
    assert rc == 1 and "above max single bolus 200 ug" in err and "Traceback" not in err


def test_calibration_and_limits(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--json", "calibration")
    assert rc == 0 and json.loads(out) == {"schema": "pumpctl.calibration/1", "pl_per_step": 12_000,
                                     "source": "derived"}
    assert run(capsys, "calibration", "set", "11950")[0] == 0 and rig.calls[-1] == ("cal", 11_950)
    rc, out, _ = run(capsys, "calibration", "show")
    assert "11950 pL" in out and "measured" in out
    rc, out, _ = run(capsys, "--json", "limits")
    doc = json.loads(out)
    assert doc["max_bolus_ng"] == 200_000 and doc["max_flow_ng_day"] == 200_000_000
    assert set(doc) == set(wire.LIMITS_RESP[1]) | {"schema"}
    rc, out, _ = run(capsys, "limits")
    assert "200.000 ug" in out and "50..2000 ug/mL" in out and "20.000 mL" in out
    assert "max flow (basal + bolus)" in out and "200000.000 ug/day" in out


def test_monitor_draws_frames_then_stops(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "monitor", "--count", "2", "--interval", "0")
    assert rc == 0 and out.count("pumpctl monitor") == 2 and out.count("186.000 ug/day") >= 2
    rc, out, _ = run(capsys, "--json", "monitor", "--count", "3", "--interval", "0")
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) == 3 and frames[0]["status"]["schema"] == "pumpctl.status/1"


def test_wrong_rig_is_refused_before_anything_is_sent(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "bolus", "50", "--rig", "bench-2")
    assert rc == 1 and "wrong rig" in err and "bench-2" in err and rig.calls == []


def test_wrong_key_is_refused_by_the_rig(rig: FakeController, capsys: pytest.CaptureFixture[str]) -> None:
    keys.save_key("bench-1", bytes(32))          # host holds a key the rig does not
    rc, _, err = run(capsys, "suspend")
    assert rc == 1 and err.startswith("pumpctl: ") and err.count("\n") == 1 and rig.calls == []


def test_logs_pull_cli_incremental_with_exports(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, pumpctl_home: Path) -> None:
    rig.add_log(100)
    rc, out, _ = run(capsys, "--json", "logs", "pull", "--csv", str(tmp_path / "l.csv"),
                     "--jsonl", str(tmp_path / "l.jsonl"))
    doc = json.loads(out)
    assert rc == 0 and doc["pulled"] == 100 and doc["csv_rows"] == 100 and doc["jsonl_rows"] == 100
    assert doc["store"] == str(pumpctl_home / "logs" / "bench-1.sqlite")
    rig.add_log(7)
    rc, out, _ = run(capsys, "logs", "pull")
    assert rc == 0 and "pulled 7 new record(s)" in out and "107 stored" in out
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 100


def test_unwritable_export_and_store_are_one_line(rig: FakeController, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    rig.add_log(5)
    rc, _, err = run(capsys, "logs", "pull", "--csv", str(tmp_path / "no-dir" / "x.csv"))
    assert rc == 1 and "pulled 5 record(s)" in err and "cannot write the export" in err and err.count("\n") == 1
    (tmp_path / "file").write_text("")
    rc, _, err = run(capsys, "logs", "pull", "--store", str(tmp_path / "file" / "x.sqlite"))
    assert rc == 1 and "cannot create the log store directory" in err and err.count("\n") == 1


def test_status_shows_the_volume_trapped_at_an_occlusion(rig: FakeController,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    rig.st["trapped_nl"] = 287
    rc, out, _ = run(capsys, "status")
    assert rc == 0
    assert "trapped:" in out and "0.287 uL behind the occlusion" in out
    rig.st["trapped_nl"] = 0
    rc, out, _ = run(capsys, "status")
    assert "trapped" not in out
