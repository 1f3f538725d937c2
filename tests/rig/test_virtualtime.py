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


def _scripted_run(tmp_path: Path, scale: float | str, cache: bool = True) -> dict:
    """One scripted scenario: clock held at 0, a 100-step segment asked at a known time, a stall
    landing mid-segment and cleared later, then run to 3 s and compare the world."""
    rig = make_rig(tmp_path, scale=scale, hold_us=0, cache=cache)
    try:
        link = Link(rig.port)
        link.boot_line()
        rig.wait_held()
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


M = 60_000_000
# the app's scripted run (pumpctl.rigs.simsession.scripted_run): button presses, an occlusion
# and a driver error, each at a set sim time, over 2 sim hours
APP_FAULTS = [(15 * M, "button", {"count": 2, "gap_ms": 500}), (40 * M, "occlude", {}),
              (70 * M, "unocclude", {}), (80 * M, "stall", {}), (90 * M, "unstall", {})]


def test_input_cache_changes_nothing_in_the_apps_scripted_run(tmp_path: Path, monkeypatch):
    from pumpctl.rigs.simsession import scripted_run
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    on = scripted_run(tmp_path / "rig-1", APP_FAULTS, 120 * M, cache=True, timeout_s=300)
    off = scripted_run(tmp_path / "rig-0", APP_FAULTS, 120 * M, cache=False, timeout_s=300)
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


FEEDER_MAIN = """
from pumphw.simhw import make_sim_hardware
hw = make_sim_hardware()
if hw.reset_cause() == 0:
    hw.watchdog_start(2000)
    for i in range(40):          # 40 s of feeds 1 s apart: on one promise, no round trip needed
        hw.watchdog_feed()
        hw.idle(1000)
    hw.watchdog_feed()
    with open("last_feed", "w") as f:
        f.write(str(hw._clock.t_us))
    for i in range(3000):        # a busy loop that no longer feeds, 1 ms a pass: 3 s
        hw.sleep_ms(1)
        hw.ticks_ms()
while True:                      # after the watchdog's reset: idle
    hw.idle(1000)
"""


def _feeder_run(tmp_path: Path, cache: bool) -> tuple[int, dict]:
    from pumpctl.rigs.virtualrig_supervisor import seed_flash
    rig_dir = tmp_path / "rig"
    seed_flash(rig_dir / "flash")
    (rig_dir / "flash" / "main.py").write_text(FEEDER_MAIN)
    with VirtualRig.start(rig_dir, time_scale="max", name="feeder", cache=cache) as rig:
        w = rig.wait_firmware(2, timeout_s=60)
        return int((rig_dir / "flash" / "last_feed").read_text()), w["reset_log"][-1]


def test_watchdog_bites_at_its_deadline_after_feeds_on_one_promise(tmp_path: Path):
    # feeds posted on a promise are not written one by one: the one written stands for the run
    # (each within the timeout of the one before), so no bite during the 40 s of feeds; once
    # they stop, the watchdog resets the rig at the last feed + its timeout, cache on or off
    for cache in (True, False):
        last, reset = _feeder_run(tmp_path / str(cache), cache)
        assert reset["boot"] == 2 and reset["cause"] == 1, reset
        assert reset["sim_us"] == last + 2_000_001, (cache, last, reset)
