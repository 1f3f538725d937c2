"""Every pumpctl command end to end on the virtual rig (micropython on a pty): deploy, program, delivery, alarms, logs, monitor."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from pumpctl import cli

pytestmark = pytest.mark.rig
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs"


class Sim:
    """A virtual rig under a private PUMPCTL_HOME, deployed with `pumpctl deploy`."""

    def __init__(self, home: Path) -> None:
        from pumpctl.rigs.virtualrig import VirtualRig
        self.home = home
        self.rig = VirtualRig.start(home / "rigs" / "cli-rig", time_scale=1.0, fresh=True, name="cli-rig")
        self.port = self.rig.port
        self.deploy_doc: dict[str, Any] = {}

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        rc = cli.main(["--port", self.port, *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    def json(self, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
        rc, out, err = self.cli(capsys, "--json", *argv)
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    pytest.importorskip("pumpctl.rigs.virtualrig")
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("PUMPCTL_HOME")
    os.environ["PUMPCTL_HOME"] = str(home)
    s = Sim(home)
    try:
        yield s
    finally:
        s.rig.stop()
        if old is None:
            os.environ.pop("PUMPCTL_HOME", None)
        else:
            os.environ["PUMPCTL_HOME"] = old


@pytest.fixture(autouse=True)
def _home(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUMPCTL_HOME", str(sim.home))     # overrides the per-test home of conftest


@pytest.fixture(scope="module")
def deployed(sim: Sim) -> Sim:
    proc = subprocess.run([sys.executable, "-m", "pumpctl.cli", "--json", "deploy", "--port", sim.port],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PUMPCTL_HOME=str(sim.home)))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["compiled"] and doc["target"]["mpy"] == "6.3" and doc["rig_id"] == "cli-rig"
    assert doc["verified"] == len(doc["files"]) and "virtual rig restart" in doc["restart"]
    sim.rig.wait_firmware(2, 20)
    sim.deploy_doc = doc
    return sim


def test_status_after_deploy_is_the_documented_schema(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    doc = deployed.json(capsys, "status")
    assert doc["schema"] == "pumpctl.status/1" and doc["rig_id"] == "cli-rig"
    assert set(doc) == {"schema", "rig_id", "firmware_version", "build", "mechanism", "time", "program", "delivery",
                        "reservoir", "alarms", "calibration"}
    assert doc["mechanism"] == "20ml"
    from pumpctl import schemas
    assert not list(schemas.validator("pumpctl.status/1").iter_errors(doc))
    assert doc["calibration"]["source"] == "derived"
    assert set(doc["delivery"]) == {"rate_ng_day", "basal_ng_day", "suspended", "bolus_active", "motor_on",
                                    "delivered_today_ng", "delivered_total_ng", "rolling_24h_ng", "missed_steps",
                                    "uncertain_ng", "certain_total_ng", "line_conc_ug_ml", "bridge_left_nl", "trapped_nl",
                                    "queued_steps"}


def test_time_sync_sets_the_rig_clock(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = deployed.cli(capsys, "time", "sync", "--at", "2026-11-25T08:00:00")
    assert rc == 0, err
    t = deployed.json(capsys, "status")["time"]
    assert t["clock_set"] and t["day"] == 9825 and 8 * 3_600_000 <= t["ms_of_day"] < 8 * 3_600_000 + 120_000


def test_prime_under_a_stopped_program(deployed: Sim, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = deployed.cli(capsys, "prime", "--volume-ul", "10")
    assert rc == 1 and "refused prime" in err and err.count("\n") == 1          # no program yet
    stopped = tmp_path / "stopped.toml"
    stopped.write_text('[program]\nmode = "stopped"\nconcentration = "2000 ug/mL"\ncatheter_volume = "180 uL"\n')
    rc, _, err = deployed.cli(capsys, "program", "upload", str(stopped), "--yes")
    assert rc == 0, err
    rc, _, err = deployed.cli(capsys, "refill", "--volume-ml", "20", "--concentration", "2000")
    assert rc == 0, err
    stat = (deployed.json(capsys, "status"), deployed.json(capsys, "alarms"))
    rc, out, err = deployed.cli(capsys, "prime", "--volume-ul", "10")
    assert rc == 0, (err, stat)
    assert "priming 10 uL started" in out   # in the unit the user typed


def test_refill_upload_and_deliver(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = deployed.cli(capsys, "refill", "--volume-ml", "20", "--concentration", "2000")
    assert rc == 0, err
    rc, out, err = deployed.cli(capsys, "program", "upload", str(EXAMPLES / "continuous_186.toml"), "--yes")
    assert rc == 0, err
    assert "STAGED (as the rig decodes it" in out and "committed program" in out
    doc = deployed.json(capsys, "status")
    assert doc["program"]["mode"] == "continuous" and doc["delivery"]["basal_ng_day"] == 186_000
    shown = deployed.json(capsys, "program", "show")
    assert shown["crc32"] == "%08x" % doc["program"]["crc32"] and "Mode: continuous" in shown["describe"]


def test_bolus_suspend_resume_and_prime_refused_in_therapy(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = deployed.cli(capsys, "bolus", "5", "--over", "10")
    assert rc == 0, err
    assert deployed.json(capsys, "status")["delivery"]["bolus_active"]
    rc, _, err = deployed.cli(capsys, "bolus", "1")
    assert rc == 1 and "refused bolus" in err and err.count("\n") == 1      # one bolus at a time
    assert deployed.cli(capsys, "suspend")[0] == 0
    assert deployed.json(capsys, "status")["delivery"]["suspended"]
    assert deployed.cli(capsys, "resume")[0] == 0
    assert not deployed.json(capsys, "status")["delivery"]["suspended"]
    rc, out, err = deployed.cli(capsys, "prime", "--volume-ul", "10")
    assert rc == 1 and "refused prime" in err and err.count("\n") == 1


def test_refused_bolus_is_one_line_with_the_rigs_reason(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    deployed.rig.wait_firmware(2)
    rc, _, err = deployed.cli(capsys, "bolus", "5000", "--over", "60")
    assert rc == 1 and err.startswith("pumpctl: ") and err.count("\n") == 1 and "Traceback" not in err


def test_alarms_list_and_ack(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    alarms = deployed.json(capsys, "alarms")["alarms"]
    assert alarms, "a freshly deployed rig reports at least its power-on reset"
    for a in alarms:
        assert set(a) >= {"id", "code", "name", "priority", "active", "latched", "acknowledged"}
    unacked = [a for a in alarms if not a["acknowledged"]]
    assert unacked
    rc, out, err = deployed.cli(capsys, "alarms", "ack", str(unacked[0]["id"]))
    assert rc == 0, err
    after = {a["id"]: a for a in deployed.json(capsys, "alarms")["alarms"]}
    assert unacked[0]["id"] not in after or after[unacked[0]["id"]]["acknowledged"]
    rc, out, err = deployed.cli(capsys, "alarms")
    assert rc == 0 and ("PRIORITY" in out or "no alarms" in out)


def test_calibration_and_limits(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    cal = deployed.json(capsys, "calibration")
    assert cal["pl_per_step"] > 0 and cal["source"] in ("derived", "measured")
    lim = deployed.json(capsys, "limits")
    assert lim["min_conc_ug_ml"] <= 2000 <= lim["max_conc_ug_ml"]
    # the limits the rig derives for its mechanism (pumpcore.limits.HardLimits.for_mechanism)
    import json as _json
    from pumpcore import calibration as _cal
    from pumpcore.limits import HardLimits
    from pumpctl import mechanisms
    mech = _json.loads(mechanisms.path(None).read_text())
    want = HardLimits.for_mechanism(mech, _cal.pl_per_step_from_mechanism(mech))
    assert lim["max_flow_ng_day"] == want.max_flow_ng_day >= lim["max_rate_ng_day"]
    assert lim["min_conc_ug_ml"] == want.min_conc_ug_ml


def test_logs_pull_incremental(deployed: Sim, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first = deployed.json(capsys, "logs", "pull", "--jsonl", str(tmp_path / "a.jsonl"))
    assert first["pulled"] > 0 and first["undecodable"] == 0 and first["gaps"] == []
    rows = [json.loads(s) for s in (tmp_path / "a.jsonl").read_text().splitlines()]
    events = {r["event"] for r in rows}
    assert {"program-commit", "bolus-start", "suspend", "resume", "refill"} <= events
    assert deployed.cli(capsys, "suspend")[0] == 0 and deployed.cli(capsys, "resume")[0] == 0
    second = deployed.json(capsys, "logs", "pull")
    assert 2 <= second["pulled"] < first["pulled"] and second["stored"] == first["stored"] + second["pulled"]


def test_monitor_one_frame(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = deployed.cli(capsys, "monitor", "--count", "1")
    assert rc == 0 and "rate now:" in out and "186.000 ug/day" in out


def test_wrong_rig_guard(deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = deployed.cli(capsys, "suspend", "--rig", "other-rig")
    assert rc == 1 and "wrong rig" in err


def test_status_as_a_subprocess(deployed: Sim) -> None:
    proc = subprocess.run([sys.executable, "-m", "pumpctl.cli", "status"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PUMP_PORT=deployed.port, PUMPCTL_HOME=str(deployed.home)))
    assert proc.returncode == 0 and "rig:" in proc.stdout and "cli-rig" in proc.stdout


def _files_digest(files: list[dict[str, Any]]) -> str:
    """The deployed files' digest as the host defines it: sha256 over the sorted
    '<path> <sha256>' lines of what deploy verified (written out here independently)."""
    import hashlib
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(("%s %s\n" % (f["path"], f["sha256"])).encode())
    return h.hexdigest()


def _reboot(sim: Sim) -> None:
    boots = sim.rig.world()["boots"]
    sim.rig.restart()
    sim.rig.wait_firmware(boots + 1, 20)


def test_hello_reports_the_deployed_build_unknown_when_its_record_is_corrupt(
        deployed: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the module: it reboots the rig twice."""
    build = _files_digest(deployed.deploy_doc["files"])[:16]
    assert deployed.deploy_doc["build"]["build"] == build
    assert deployed.json(capsys, "status")["build"] == build
    rc, out, _ = deployed.cli(capsys, "status")
    assert rc == 0 and "build:" in out and build in out
    record = deployed.rig.flash_dir / "build.json"
    good = record.read_bytes()
    try:
        record.write_bytes(good[:len(good) // 2])            # torn write
        _reboot(deployed)
        got = deployed.json(capsys, "status")["build"]
        assert got.startswith("unknown: ") and "build.json is not valid JSON" in got
        record.unlink()
        _reboot(deployed)
        assert deployed.json(capsys, "status")["build"].startswith("unknown: no build.json")
    finally:
        record.write_bytes(good)
        _reboot(deployed)
    assert deployed.json(capsys, "status")["build"] == build
