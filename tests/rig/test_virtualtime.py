"""Virtual time on the virtual rig: the firmware owns the clock; faults land at sim times; a
held, scripted run repeats exactly; `max` runs unpaced; a session's supervisor dies with it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pumpctl.errors import UsageError
from pumpctl.rigs.virtualrig import VirtualRig, process_alive

from .test_virtualrig import Link, make_rig

pytestmark = pytest.mark.rig


def test_scheduled_fault_lands_at_its_sim_time(tmp_path: Path):
    with make_rig(tmp_path, scale="max") as rig:
        Link(rig.port).boot_line()
        # relative to the sim time the request lands at: at max the rig runs tens of sim seconds
        # during one host round trip, so an absolute time read before it could be past already
        w = rig.fault("occlude", after_ms=30_000)
        [entry] = w["scheduled"]
        at = entry["at_us"]
        assert entry == {"at_us": at, "kind": "occlude", "args": {}} and at >= 30_000_000
        assert w["occluded"] is False
        deadline = time.monotonic() + 20
        while not rig.world()["occluded"]:
            assert time.monotonic() < deadline, "the scheduled occlusion never landed"
            time.sleep(0.02)
        w = rig.world()
        assert {"sim_us": at, "kind": "occlude"} in w["fault_log"] and w["scheduled"] == []
        assert w["sim_us"] >= at


def test_bad_schedules_are_refused_with_the_reason(tmp_path: Path):
    with make_rig(tmp_path, scale="max") as rig:
        Link(rig.port).boot_line()
        while rig.sim_us() < 1_000_000:      # the firmware's first hardware call
            time.sleep(0.01)
        with pytest.raises(UsageError, match="already past"):
            rig.fault("occlude", at_us=1000)
        with pytest.raises(UsageError, match="after_ms = -1: must be an int >= 0"):
            rig.fault("occlude", after_ms=-1)
        with pytest.raises(UsageError, match="not both"):
            rig.fault("occlude", at_us=10 ** 12, after_ms=5)


def _wait_held(rig: VirtualRig) -> None:
    """Until the firmware waits in an idle the hold keeps: a host request sent before that
    would meet a firmware still busy booting, and land one loop iteration (4 ms of sim time)
    later or not, as the host's load decides; sent after it, the request lands at the held time."""
    deadline = time.monotonic() + 30
    while not rig.world()["held"]:
        assert time.monotonic() < deadline, "the firmware never reached the held clock"
        time.sleep(0.01)


def _scripted_run(tmp_path: Path, scale: float | str, cache: bool = True) -> dict:
    """One scripted scenario: clock held at 0, a 100-step segment asked at a known time, a stall
    landing mid-segment and cleared later, then run to 3 s and compare the world."""
    rig = make_rig(tmp_path, scale=scale, hold_us=0, cache=cache)
    try:
        link = Link(rig.port)
        link.boot_line()
        _wait_held(rig)
        rig.fault("stall", at_us=1_500_000)
        rig.fault("unstall", at_us=1_650_000)
        rig.fault("occlude", at_us=1_700_000)
        assert link.value("q") == 1          # lands while the clock is held: a defined time
        w = rig.run_until(3_000_000)
        return {k: w[k] for k in ("sim_us", "pulses", "plunger_steps", "line_pl", "out_pl",
                                  "pressure_kpa_x10", "fault_log")}
    finally:
        rig.stop()


def test_held_script_repeats_exactly_at_any_scale(tmp_path: Path):
    a = _scripted_run(tmp_path / "a", "max")
    b = _scripted_run(tmp_path / "b", "max")
    c = _scripted_run(tmp_path / "c", 20)
    assert a == b == c
    # the stall is a driver error (pumpsim.model: the motor does not turn while it lasts): the
    # 150 ms of it at the segment's 5 ms period cost exactly 30 of the 100 steps
    assert a["pulses"] - a["plunger_steps"] == 30
    assert a["plunger_steps"] == 70 and a["pressure_kpa_x10"] > 0 and len(a["fault_log"]) == 3


def test_input_cache_changes_nothing_in_a_held_script(tmp_path: Path):
    # the twin answering its reads (and at max its idles) from the supervisor's promise gives
    # the world the reads one by one give: the cache off is the reference
    assert _scripted_run(tmp_path / "on", "max") == _scripted_run(tmp_path / "off", "max", cache=False)


DAY = 9466          # 2025-12-01: a fixed calendar day, so the run does not depend on today


def _app_scenario(home: Path, cache: bool) -> tuple[dict, str]:
    """The real firmware, deployed with the clock held: program at 186 ug/day with a patient
    bolus, a clinician bolus, button presses, an occlusion, a driver error, each at a set sim
    time, run to 2 sim hours; the world's step counts, the rig's and the event log's digest."""
    import hashlib
    from pumpcore.program import MODE_CONTINUOUS, Program
    from pumpctl.deploy import deploy
    from pumpctl.pump import Pump
    from pumpctl.rigs.simsession import REFILL_NL
    rig = VirtualRig.start(home / f"rig-{int(cache)}", time_scale="max", fresh=True, name="scenario",
                           hold_us=0, cache=cache)
    try:
        deploy(rig.port, log=lambda s: None)
        rig.wait_firmware(2, timeout_s=30)
        _wait_held(rig)
        t = rig.sim_us()
        prog = Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186_000,
                       patient=(20_000, 60_000, 3 * 3_600_000, 4))
        with Pump.open(rig.port) as pump:
            for a in pump.alarms():
                pump.ack_alarm(a.alarm_id)
            pump.time_sync(DAY, 0)
            pump.refill(REFILL_NL, 2000)
            pump.upload_program(prog.encode(), confirm=lambda r: True)
            pump.bolus(20_000, 600_000)
        m = 60_000_000
        rig.fault("button", at_us=t + 15 * m, count=2, gap_ms=500)
        rig.fault("occlude", at_us=t + 40 * m)
        rig.fault("unocclude", at_us=t + 70 * m)
        rig.fault("stall", at_us=t + 80 * m)
        rig.fault("unstall", at_us=t + 90 * m)
        w = rig.run_until(t + 120 * m, timeout_s=300)
        with Pump.open(rig.port) as pump:
            st = pump.status()
            digest = hashlib.sha256()
            n = 0
            for seq, rec in pump.iter_log(0):
                digest.update(seq.to_bytes(4, "little") + rec)
                n += 1
        counts = {k: w[k] for k in ("sim_us", "pulses", "plunger_steps", "skipped", "out_pl",
                                    "line_pl", "pressure_kpa_x10", "button_presses", "fault_log")}
        counts.update(missed=st.missed_steps, delivered_ng=st.delivered_total_ng, log_records=n)
        return counts, digest.hexdigest()
    finally:
        rig.stop()


def test_input_cache_changes_nothing_in_the_apps_scripted_run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    on = _app_scenario(tmp_path, cache=True)
    off = _app_scenario(tmp_path, cache=False)
    assert on == off
    counts = on[0]
    # the scenario did what it says: the presses landed, the alarms stopped delivery (steps
    # missed), every fault at its own time
    assert counts["button_presses"] == 2 and counts["missed"] > 0 and counts["log_records"] > 20
    assert [f["sim_us"] - counts["fault_log"][0]["sim_us"] for f in counts["fault_log"]] == \
        [0, 25 * 60_000_000, 55 * 60_000_000, 65 * 60_000_000, 75 * 60_000_000]


def test_max_runs_ahead_of_any_ceiling(tmp_path: Path):
    with make_rig(tmp_path, scale="max") as rig:
        link = Link(rig.port)
        link.boot_line()
        t0, r0 = link.value("t"), time.monotonic()
        time.sleep(0.5)
        t1, r1 = link.value("t"), time.monotonic()
        # the echo loop sleeps 5 ms a pass: unpaced, sim time runs far ahead of the wall clock
        assert t1 - t0 > 5 * (r1 - r0) * 1000
        w = rig.world()
        assert w["time_scale"] == "max" and w["calendar_us"] - w["sim_us"] > 1.6e15   # after 2020


def test_hang_is_reset_by_watchdog_at_max(tmp_path: Path):
    with make_rig(tmp_path, scale="max", wdt_ms=2000) as rig:
        link = Link(rig.port)
        link.boot_line()
        rig.fault("hang")
        rig.wait_firmware(2, timeout_s=10)
        assert link.boot_line() == "boot cause=1 rig=bench-7"


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pumpctl.rigs.virtualrig import VirtualRig
    rig = VirtualRig.start(Path(sys.argv[1]), time_scale=1.0, detach=False)
    w = rig.world()
    print(rig.pid, flush=True)
    time.sleep(600)
""")


def test_session_rig_dies_with_the_process_that_started_it(tmp_path: Path):
    from pumpctl.rigs.virtualrig_supervisor import seed_flash
    seed_flash(tmp_path / "rig" / "flash")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "rig")],
                             stdout=subprocess.PIPE, text=True)
    try:
        sup_pid = int(child.stdout.readline())
        fw_pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(sup_pid)], capture_output=True,
                                                  text=True).stdout.split()]
        assert process_alive(sup_pid) and fw_pids
        child.send_signal(signal.SIGKILL)       # like a pytest run cut by a timeout
        child.wait()
        deadline = time.monotonic() + 10
        while any(process_alive(p) for p in [sup_pid, *fw_pids]):
            assert time.monotonic() < deadline, "the supervisor or its firmware outlived the parent"
            time.sleep(0.05)
        assert not (tmp_path / "rig" / "rig.json").exists()     # it stopped cleanly
    finally:
        if child.poll() is None:
            child.kill()


def test_emulated_pico_supervisor_watch_ends_it_with_its_owner():
    # the emulated Pico's supervisor (image not on every machine) uses this watch; the owner
    # need not be its parent (tests/emu prepares the chip in a child that exits)
    owner = subprocess.Popen(["sleep", "60"])
    code = ("import time; from pumpctl.rigs.emu.supervisor import watch_owner; "
            f"watch_owner({owner.pid}, every_s=0.05, grace_s=1.0); time.sleep(60)")
    sup = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.0)
        assert sup.poll() is None                # runs while its owner does
        owner.kill()
        owner.wait()
        assert sup.wait(timeout=10) == -signal.SIGTERM
    finally:
        for p in (owner, sup):
            if p.poll() is None:
                p.kill()


def test_sim_time_options_parse_units_and_name_a_bad_value():
    from pumpctl.cli.cmd_sim import _sim_duration_us
    assert _sim_duration_us("--at", "90 s") == 90_000_000
    assert _sim_duration_us("--at", "1.5 min") == 90_000_000
    assert _sim_duration_us("--after", "2h") == 7_200_000_000
    assert _sim_duration_us("--after", "3600") == 3_600_000_000
    for bad in ("soon", "-5 s", "1e3 s", "5 weeks", "9" * 5001):
        with pytest.raises(UsageError, match=r"^--at = .*: not a sim time such as"):
            _sim_duration_us("--at", bad)


def test_cli_fault_after_lands_at_its_time_and_time_scale_max(tmp_path: Path):
    env = dict(os.environ, PUMPCTL_HOME=str(tmp_path / "home"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pumpctl.cli", *a], capture_output=True,
                                    text=True, env=env, timeout=60)
    r = run("sim", "start", "--name", "vt", "--fresh", "--time-scale", "max")
    assert r.returncode == 0, r.stderr
    try:
        r = run("sim", "fault", "occlude", "--name", "vt", "--after", "10 min")
        assert r.returncode == 0 and "occlude: scheduled at sim time" in r.stdout, r.stderr
        r = run("sim", "fault", "occlude", "--name", "vt", "--at", "later")
        assert r.returncode == 1 and "--at = 'later': not a sim time" in r.stderr
        r = run("sim", "start", "--name", "vt2", "--time-scale", "fast")
        assert r.returncode != 0 and "must be a number or 'max'" in r.stderr
        deadline = time.monotonic() + 30
        while True:
            w = VirtualRig(tmp_path / "home" / "rigs" / "vt").world()
            if w["fault_log"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert w["occluded"] and w["time_scale"] == "max" and w["fault_log"][0]["kind"] == "occlude"
        r = run("sim", "status", "--name", "vt")
        assert r.returncode == 0 and "time scale max" in r.stdout
    finally:
        run("sim", "stop", "--name", "vt")


def test_time_sync_on_a_virtual_rig_takes_its_own_calendar(tmp_path: Path, monkeypatch):
    import argparse
    import datetime
    from pumpctl.cli.cmd_device import _rig_calendar
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    with make_rig(tmp_path, scale="max") as rig:
        Link(rig.port).boot_line()
        time.sleep(1.0)
        before = rig.world()
        got = _rig_calendar(argparse.Namespace(port=rig.port))
        after = rig.world()
        lo = datetime.datetime.fromtimestamp(before["calendar_us"] / 1e6)
        hi = datetime.datetime.fromtimestamp(after["calendar_us"] / 1e6)
        assert lo <= got <= hi
        # the rig's days run at its own pace: far ahead of this host's clock by now
        assert (got - datetime.datetime.now()).total_seconds() > 10
