"""Signed maintenance on the virtual rig, the real app in the real interpreter (issue 12).

A fresh rig is deployed (keyless: mpremote's Ctrl-C still works), which provisions the key;
from then on Ctrl-C and raw-REPL bursts while delivering change nothing and reach no REPL, the
key cannot be read without it; the signed maintenance command opens the REPL (mpremote works,
the maintenance alarm sounds); an expired window brings the app back by itself and the boot
logs the missed volume; deploy works on the keyed rig through the signed command.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import serial

from pumpcore import alarms as al
from pumpcore import logrec, wire
from pumpctl import deploy as deploy_mod
from pumpctl.pump import Pump
from pumpctl.rigs.virtualrig import VirtualRig

pytestmark = pytest.mark.rig
SCALE = 10
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualRig]:
    base = tmp_path_factory.mktemp("maintrig")
    mp = pytest.MonkeyPatch()
    mp.setenv("PUMPCTL_HOME", str(base / "home"))
    r = VirtualRig.start(base / "rig", time_scale=SCALE, fresh=True, name="maint-1")
    try:
        r.wait_firmware(1, timeout_s=20)
        rep = deploy_mod.deploy(r.port, log=lambda m: None)       # fresh rig: keyless app
        assert "keyless" in rep.link and rep.key_created and rep.hello_s is not None
        r.rig_dir_base = base   # type: ignore[attr-defined]
        from pumpctl import programfile
        with Pump.open(r.port) as p:
            p.refill(20_000_000, 2000)
            p.upload_program(programfile.load(EXAMPLES / "continuous_186.toml").encode(), confirm=lambda _r: True)
            for a in p.alarms():
                p.ack_alarm(a.alarm_id)
        yield r
    finally:
        r.stop()
        mp.undo()


def _mpremote(port: str, code: str, timeout_s: float = 20.0) -> tuple[int, str]:
    try:
        out = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume", "exec", code],
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        return -1, (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    return out.returncode, out.stdout + out.stderr


def _events(p: Pump, code: int) -> list[tuple[int, int, int, int]]:
    out = []
    for _seq, rec in p.iter_log(0):
        r = logrec.decode(rec)
        if r[3] == code:
            out.append(tuple(r[4:8]))
    return out


def test_ctrl_c_and_raw_repl_bursts_change_nothing_and_reach_no_repl(rig: VirtualRig) -> None:
    with Pump.open(rig.port) as p:
        before = p.status()
    w0 = rig.world()
    s = serial.Serial(rig.port, timeout=0.2)
    seen = b""
    for burst in (b"\x03" * 20, b"\r\x03\r\x01", b"\x01\x04\x02\x04", b"\r\x03\x03\r\x01import os\r\x04",
                  b"~AAAA\x03\x01\x04\n", b"\x04" * 10):
        s.write(burst)
        time.sleep(0.3)
        seen += s.read(4096)
    s.close()
    assert b">>>" not in seen and b"raw REPL" not in seen, seen
    rc, out = _mpremote(rig.port, "print(len(open('rigkey.bin','rb').read()))", timeout_s=15)
    assert rc != 0 and "32" not in out.split()           # no REPL without the key
    time.sleep(2)
    with Pump.open(rig.port) as p:
        after = p.status()
    w1 = rig.world()
    assert w1["boots"] == w0["boots"] and w1["firmware"] == "running"
    assert after.flags & wire.STATUS_FLAG_MOTOR_ON and after.missed_steps == before.missed_steps
    assert w1["plunger_steps"] > w0["plunger_steps"]       # still delivering


def test_signed_maintenance_opens_the_repl_with_the_alarm_sounding(rig: VirtualRig) -> None:
    boots = rig.world()["boots"]
    with Pump.open(rig.port) as p:
        p.maintenance(wire.MAINT_MAX_MS)
    rc, out = _mpremote(rig.port, "print(len(open('rigkey.bin','rb').read()))")
    assert rc == 0 and out.split()[-1] == "32", out
    w = rig.world()
    assert w["alarm_pattern"] == al.PATTERN_SOUND_HIGH and w["maintenance_hold_ms"] > 0
    assert w["boots"] == boots
    rep = deploy_mod.deploy(rig.port, log=lambda m: None)    # already in maintenance: the REPL has it
    assert rep.hello_s is not None and "no application" in rep.link
    rep = deploy_mod.deploy(rig.port, log=lambda m: None)    # keyed app running: the signed command
    assert rep.link.startswith("signed maintenance") and rep.copied == 0


def test_expired_window_brings_the_app_back_and_logs_the_missed_volume(rig: VirtualRig) -> None:
    boots = rig.world()["boots"]
    with Pump.open(rig.port) as p:
        p.maintenance(wire.MAINT_MIN_MS)
    t0 = time.monotonic()
    w = rig.wait_firmware(boots + 1, timeout_s=(wire.MAINT_MIN_MS + 5000) / 1000 / SCALE + 20)
    waited = time.monotonic() - t0
    assert w["reset_cause"] == 1                             # the watchdog ended it
    assert waited >= wire.MAINT_MIN_MS / 1000 / SCALE - 0.5
    info, _ = deploy_mod.wait_for_app(rig.port, 30, log=lambda m: None)
    with Pump.open(rig.port) as p:
        end = _events(p, logrec.EV_MAINT_END)[-1]
        missed_nl, missed_steps, maint_ms, rate = end
        assert rate == 186_000 and abs(maint_ms - wire.MAINT_MIN_MS) <= 100
        assert missed_nl == rate * maint_ms // (86_400 * 2000)
        assert al.ALARM_MAINTENANCE not in [a.code for a in p.alarms()]
        st = p.status()
        assert st.rate_ng_day == 186_000 and not st.suspended
    plunger = rig.world()["plunger_steps"]
    time.sleep(6)                                            # ~3 microsteps at 186 ug/day x10
    assert rig.world()["plunger_steps"] > plunger            # the basal resumed by itself
    print("\nexpired maintenance window of %d s (rig time): back in the app after %.1f s real "
          "(x%d), logged %d ms of maintenance, %d nL missed" % (wire.MAINT_MIN_MS // 1000, waited, SCALE,
                                                               maint_ms, missed_nl))
