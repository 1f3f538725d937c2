"""The lab's pieces that need no labgrid: --rig labgrid:... parsing, the hold-log checks, pumpctl over an RFC 2217 bridge."""
import json
import subprocess
import sys

import pytest

from pumpctl.errors import UsageError
from pumpctl.lab.farm import exporter_config
from pumpctl.lab.places import HoldLog, hold_intervals, hold_problems, parse_rig_spec


def test_rig_spec_by_name_and_by_tags():
    assert parse_rig_spec("labgrid:rig3") == {"name": "rig3"}
    assert parse_rig_spec("labgrid:mechanism=precision,kind=virtual") == {"mechanism": "precision", "kind": "virtual"}


@pytest.mark.parametrize("spec, says", [
    ("labgrid", "name the place or the tags"),
    ("labgrid:", "name the place or the tags"),
    ("labgrid:Mechanism=precision", "'Mechanism=precision'"),
    ("labgrid:mechanism=Precision", "value [a-z0-9_]+"),
    ("labgrid:mechanism=", "key=value"),
    ("labgrid:rig 3", "a place name is"),
])
def test_rig_spec_errors_name_the_bad_part(spec, says):
    with pytest.raises(UsageError) as e:
        parse_rig_spec(spec)
    assert says in str(e.value) and "\n" not in str(e.value)


def _rec(t, event, place, worker, token, reason=""):
    return {"t": t, "event": event, "place": place, "worker": worker, "token": token, "reason": reason}


def test_hold_log_round_trip_and_clean_holds(tmp_path):
    log = HoldLog(tmp_path / "h.jsonl")
    log.write("acquired", "rig1", token="A")
    log.write("released", "rig1", token="A", reason="session end")
    recs = log.read()
    assert [r["event"] for r in recs] == ["acquired", "released"] and recs[0]["worker"] == "main"
    assert hold_problems(recs) == []
    (place, worker, t0, t1, reason), = hold_intervals(recs)
    assert place == "rig1" and t1 >= t0 and reason == "session end"


def test_hold_problems_finds_double_holds_and_leaks():
    recs = [_rec(1, "acquired", "rig1", "gw0", "A"), _rec(2, "acquired", "rig1", "gw1", "B"),
            _rec(3, "released", "rig1", "gw0", "A"), _rec(4, "released", "rig1", "gw1", "B"),
            _rec(5, "acquired", "rig2", "gw2", "C"), _rec(6, "acquired", "rig3", "gw2", "D"),
            _rec(7, "released", "rig2", "gw2", "C"), _rec(8, "acquired", "rig4", "gw3", "E")]
    problems = hold_problems(recs)
    assert any("place rig1 held twice at once" in p for p in problems), problems
    assert any("worker gw2 held two places at once" in p for p in problems), problems
    assert any("rig4" in p and "never given back" in p for p in problems), problems
    assert any("rig3" in p and "never given back" in p for p in problems), problems
    # one after the other is fine
    ok = [_rec(1, "acquired", "rig1", "gw0", "A"), _rec(2, "released", "rig1", "gw0", "A"),
          _rec(2, "acquired", "rig1", "gw1", "B"), _rec(3, "released", "rig1", "gw1", "B")]
    assert hold_problems(ok) == []


def test_exporter_config_has_a_network_serial_port_per_rig_and_no_jinja_comment():
    class B:
        host, port = "127.0.0.1", 40001

    class R:
        group, bridge = "pumprig1", B()
    text = exporter_config([R()])  # type: ignore[list-item]
    assert "#" not in text    # labgrid reads the exporter file as a Jinja2 template
    assert "pumprig1:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: 40001" in text
    assert "protocol: rfc2217" in text


@pytest.mark.rig
def test_pumpctl_reaches_a_virtual_rig_through_the_rfc2217_bridge(tmp_path, monkeypatch):
    from pumpctl.lab.bridge import Rfc2217Bridge
    from pumpctl.rigs.virtualrig import VirtualRig
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    with VirtualRig.start(tmp_path / "rig", time_scale=1000, fresh=True, name="bridged") as vr:
        vr.wait_firmware(1, timeout_s=20)
        with Rfc2217Bridge(vr.port) as bridge:
            assert bridge.url.startswith("rfc2217://127.0.0.1:")
            done = subprocess.run([sys.executable, "-m", "pumpctl.cli", "--port", bridge.url, "--json", "status"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            doc = json.loads(done.stdout)
            assert "bridged" in json.dumps(doc), doc   # the rig id the firmware reports
            # a second client after the first has gone: the bridge serves one after the other
            done = subprocess.run([sys.executable, "-m", "pumpctl.cli", "--port", bridge.url, "--json", "status"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert bridge.clients_served >= 2


def test_pumpctl_names_an_rfc2217_port_nobody_serves(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "pumpctl.cli", "--port", "rfc2217://127.0.0.1:%d" % port, "status"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "rfc2217://127.0.0.1:%d" % port in err[0], done.stderr


def test_port_of_each_serial_resource_kind():
    from pumpctl.lab.places import port_of

    class NetworkSerialPort:
        host, port, protocol = "10.0.0.5", 4001, "rfc2217"

    class USBSerialPort:
        port, match = "/dev/ttyACM3", {"ID_SERIAL_SHORT": "E6614C311B2A8F2D"}

    assert port_of(NetworkSerialPort()) == "rfc2217://10.0.0.5:4001"
    raw = NetworkSerialPort()
    raw.protocol = "raw"
    assert port_of(raw) == "socket://10.0.0.5:4001"
    assert port_of(USBSerialPort()) == "/dev/ttyACM3"
    gone = USBSerialPort()
    gone.port = None
    with pytest.raises(ValueError, match="E6614C311B2A8F2D"):
        port_of(gone)
    bad = NetworkSerialPort()
    bad.protocol = "telnet"
    with pytest.raises(ValueError, match="must be rfc2217 or raw"):
        port_of(bad)


def test_rig_labgrid_without_labgrid_says_how_to_get_it(tmp_path):
    """In the main .venv (no labgrid) --rig labgrid:... is a usage error naming the lab environment."""
    from pumpctl.lab.loopback import REPO
    try:
        import labgrid  # noqa: F401
        pytest.skip("labgrid is importable here (the lab environment)")
    except ImportError:
        pass
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rig", "labgrid:rig1",
                           "tests/hil/test_deploy_program.py", "-k", "deploy_verified"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert "scripts/bootstrap --lab" in done.stdout + done.stderr, done.stdout[-2000:] + done.stderr[-1000:]
