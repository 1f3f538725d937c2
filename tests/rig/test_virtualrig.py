"""Virtual rig end to end: faults seen through the twin, time scale, power cut, watchdog, mpremote, CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import serial

from pumpctl.rigs.virtualrig import VirtualRig
from pumpctl.rigs.virtualrig_supervisor import seed_flash

pytestmark = pytest.mark.rig
HERE = Path(__file__).resolve().parent


class KeepInputSerial(serial.Serial):
    """A serial port whose opening keeps what already waits on it. pyserial's open() flushes the
    port's input (tcflush), and the rig's firmware may have written its boot line before the
    test opened the port: its first iteration follows VirtualRig.start within milliseconds at
    `max`, and under load the test can come later (then "no boot line", as seen once). The
    rig's supervisor holds the pty open, so what the firmware wrote waits there until read."""

    _opened = False

    def open(self) -> None:
        super().open()
        self._opened = True

    def _reset_input_buffer(self) -> None:
        if self._opened:                  # an explicit reset_input_buffer() still flushes
            super()._reset_input_buffer()


class Link:
    """The test firmware (echo_main.py) over the rig's port: one letter in, one line out."""

    def __init__(self, port: str) -> None:
        self.s = KeepInputSerial(port, timeout=5)

    def boot_line(self) -> str:
        # a liveness bound, not a speed target: a fresh-clone install beside it once took 10 s
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.s.readline().decode(errors="replace")
            if line.startswith("boot "):
                return line.strip()
        raise AssertionError("no boot line")

    def ask(self, letter: str) -> str:
        self.s.reset_input_buffer()
        self.s.write(letter.encode())
        line = self.s.readline().decode().strip()
        assert line.startswith(letter + "="), line
        return line

    def value(self, letter: str) -> int:
        return int(self.ask(letter).split()[0].split("=")[1])


def make_rig(tmp_path: Path, scale: float | str = 1.0, wdt_ms: int = 0,
             hold_us: int | None = None, cache: bool = True) -> VirtualRig:
    rig_dir = tmp_path / "rig"
    seed_flash(rig_dir / "flash")
    shutil.copy(HERE / "echo_main.py", rig_dir / "flash" / "main.py")
    if wdt_ms:
        (rig_dir / "flash" / "wdt_ms").write_text(str(wdt_ms))
    return VirtualRig.start(rig_dir, time_scale=scale, name="bench-7", hold_us=hold_us, cache=cache)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[VirtualRig]:
    r = make_rig(tmp_path)
    yield r
    r.stop()


def test_boot_line_sent_before_the_port_is_opened_is_read(tmp_path: Path):
    # the firmware's first hardware call comes after its boot line: once the world has seen
    # it (and the relay had a moment), the line waits on the port before the test opens it
    with make_rig(tmp_path, scale="max") as rig:
        deadline = time.monotonic() + 30
        while rig.world()["twin_calls"] < 1:
            assert time.monotonic() < deadline, "the firmware never made its first call"
            time.sleep(0.01)
        time.sleep(0.3)
        link = Link(rig.port)
        link.s.timeout = 2
        assert link.s.readline() == b"boot cause=0 rig=bench-7\n"


def test_boot_reports_power_on_and_rig_id(rig: VirtualRig):
    link = Link(rig.port)
    assert link.boot_line() == "boot cause=0 rig=bench-7"
    assert rig.world()["firmware"] == "running"


def test_occlusion_raises_pressure_seen_by_twin(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    rig.fault("occlude")
    assert link.value("q") == 1               # 100 steps at 200 Hz
    time.sleep(0.8)
    kpa_x10 = link.value("p")
    w = rig.world()
    # nothing leaves an occluded outlet; 100 x 17.964 nL into 20 nL/kPa = 89.8 kPa
    assert w["out_pl"] == 0 and w["plunger_steps"] == 100
    assert kpa_x10 == w["pressure_kpa_x10"] and abs(kpa_x10 - 898) <= 5
    rig.fault("unocclude")
    assert rig.world()["occluded"] is False


def test_driver_error_is_diag_and_the_plunger_stays(rig: VirtualRig):
    # a TMC2209 driver error: DIAG high, outputs off; the PIO still emits its pulses
    link = Link(rig.port)
    link.boot_line()
    rig.fault("stall")
    link.value("q")
    time.sleep(0.3)
    line = link.ask("s")
    assert line.startswith("s=1 "), line
    rig.fault("unstall")
    time.sleep(0.8)
    assert link.ask("s").startswith("s=0 done=100 pending=0")
    w = rig.world()
    assert w["plunger_steps"] + w["skipped"] == 100 and w["skipped"] > 0


def test_jam_and_slip_leave_diag_low(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    for kind in ("jam", "slip"):
        before = rig.world()["plunger_steps"]
        rig.fault(kind)
        link.value("q")
        time.sleep(0.8)
        assert link.ask("s").startswith("s=0 ")
        w = rig.world()
        assert w["plunger_steps"] == before and w["stall"] is False, (kind, w)
        # the segment's last steps go on into the next fault's window if cleared early (a
        # loaded host): wait until the generator is empty
        deadline = time.monotonic() + 30
        while "pending=0" not in link.ask("s"):
            assert time.monotonic() < deadline, "the 100-step segment never finished"
            time.sleep(0.05)
        assert rig.world()["plunger_steps"] == before, kind
        rig.fault("clear")


def test_empty_reservoir_closes_end_stop(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    assert link.value("e") == 0
    rig.fault("empty")
    assert link.value("e") == 1
    rig.fault("reservoir", nl=1000)
    assert link.value("e") == 0


def test_button_presses_with_bounce_are_counted_once_each(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    w = rig.fault("button", count=3, gap_ms=400)
    # 2 s of the rig's own time (the presses end by 1.2 s + bounce), not of the wall clock: a
    # loaded host slows the 1x rig and would leave a wall-time wait short of the last press
    deadline = time.monotonic() + 30
    while rig.sim_us() < w["sim_us"] + 2_000_000:
        assert time.monotonic() < deadline, "the rig's clock stopped"
        time.sleep(0.05)
    assert link.value("b") == 3


def test_time_scale_is_a_ceiling_on_ticks(tmp_path: Path):
    # the firmware owns the clock: it moves as the code sleeps (5 ms a pass here), never faster
    # than 200x wall time, and only as fast as the loop runs (slower on a busy host)
    with make_rig(tmp_path, scale=200) as rig:
        link = Link(rig.port)
        link.boot_line()
        r0 = time.monotonic()
        t0 = link.value("t")
        time.sleep(0.5)
        t1 = link.value("t")
        real_ms = (time.monotonic() - r0) * 1000
        assert 1000 < t1 - t0 <= 200 * real_ms + 50       # + one pacing slack (PACE_SLACK_S)
        sim_ms, grams = rig.balance()
        assert sim_ms >= t1 and abs(grams) < 0.001


def test_power_cut_keeps_flash_and_world(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    link.value("q")
    time.sleep(0.8)
    (rig.flash_dir / "note.txt").write_text("written before the cut")
    before = rig.world()
    assert before["plunger_steps"] == 100
    rig.power_cut()
    w = rig.wait_firmware(before["boots"] + 1)
    assert link.boot_line() == "boot cause=0 rig=bench-7"
    assert w["plunger_steps"] == 100 and w["out_pl"] >= before["out_pl"]
    assert (rig.flash_dir / "note.txt").read_text() == "written before the cut"
    assert link.ask("s").startswith("s=0 done=0 pending=0")   # steps_done counts from boot


def test_power_cut_mid_segment_keeps_only_pulses_made(rig: VirtualRig):
    link = Link(rig.port)
    link.boot_line()
    link.value("q")
    time.sleep(0.25)
    rig.power_cut(off_ms=300)
    w = rig.world()
    assert w["firmware"] == "down" and 0 < w["plunger_steps"] < 100 and w["pending"] == 0
    sim_ms, _g = rig.balance()                   # the balance answers while the firmware is down
    assert sim_ms > 0
    w2 = rig.wait_firmware(w["boots"] + 1)
    assert w2["plunger_steps"] == w["plunger_steps"]


def test_hang_is_reset_by_watchdog(tmp_path: Path):
    with make_rig(tmp_path, scale=10, wdt_ms=2000) as rig:
        link = Link(rig.port)
        assert link.boot_line() == "boot cause=0 rig=bench-7"
        rig.fault("hang")
        assert rig.world()["firmware"] == "hung"
        rig.wait_firmware(2, timeout_s=10)
        assert link.boot_line() == "boot cause=1 rig=bench-7"
        assert rig.world()["reset_cause"] == 1


def test_mpremote_resume_exec_and_fs_cp(rig: VirtualRig, tmp_path: Path):
    Link(rig.port).boot_line()
    mpremote = [sys.executable, "-m", "mpremote"]
    out = subprocess.run(mpremote + ["connect", rig.port, "resume", "exec",
                                     "import os; print('cwd', os.getcwd())"],
                         capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"cwd {rig.flash_dir.resolve()}"
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'deployed'\n")
    out = subprocess.run(mpremote + ["connect", rig.port, "resume", "fs", "cp", str(src), ":hello.py"],
                         capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    assert (rig.flash_dir / "hello.py").read_text() == "GREETING = 'deployed'\n"
    out = subprocess.run(mpremote + ["connect", rig.port, "resume", "exec",
                                     "import hello; print(hello.GREETING)"],
                         capture_output=True, timeout=30, text=True)
    assert out.stdout.strip() == "deployed"
    assert rig.world()["boots"] == 1               # nothing soft-reset the unix port


HEAP = r"""
import micropython
from pumphw.simhw import make_sim_hardware
hw = make_sim_hardware()
st = hw.stepper
def hot():
    t = hw.ticks_ms()
    d = hw.ticks_diff(hw.ticks_ms(), t)
    st.steps_done(); st.pending(); st.stall(); st.enabled()
    hw.pressure_kpa_x10(); hw.end_stop(); hw.bolus_button_presses(); hw.screw_angle()
    st.queue(1, 1000, 1)
    hw.watchdog_feed(); hw.alarm_output(0)       # posted: the cached feed, the alarm written
    hw.serial_read()                             # no host bytes: nothing read, nothing made
    hw.idle(1); hw.sleep_ms(1)
    return d
hot()
ok = 0
micropython.heap_lock()
try:
    for i in range(200):
        hot()
    ok = 1
except MemoryError:
    ok = 0
micropython.heap_unlock()
print("heap ok=%d" % ok)
"""


def test_twin_hot_calls_do_not_allocate(rig: VirtualRig, tmp_path: Path):
    Link(rig.port).boot_line()
    src = tmp_path / "heap.py"
    src.write_text(HEAP)
    out = subprocess.run([sys.executable, "-m", "mpremote", "connect", rig.port, "resume", "run", str(src)],
                         capture_output=True, timeout=30, text=True)
    assert "heap ok=1" in out.stdout, out.stdout + out.stderr


def test_cli_sim_start_status_fault_stop(tmp_path: Path):
    env = dict(os.environ, PUMPCTL_HOME=str(tmp_path / "home"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pumpctl.cli", *a], capture_output=True,
                                    text=True, env=env, timeout=60)
    r = run("sim", "start", "--name", "clirig", "--fresh", "--time-scale", "5")
    assert r.returncode == 0, r.stderr
    port = r.stdout.strip()
    try:
        assert port.startswith("/dev/pts/") and os.path.exists(port)
        flash = tmp_path / "home" / "rigs" / "clirig" / "flash"
        assert (flash / "main.py").exists() and (flash / "mechanism.json").exists()
        assert (flash / "pumpsim" / "model.py").exists()
        r = run("sim", "fault", "occlude", "--name", "clirig")
        assert r.returncode == 0 and "occlude" in r.stdout, r.stderr
        r = run("sim", "fault", "reservoir", "--name", "clirig", "--nl", "-5")
        assert r.returncode == 1 and "reservoir_nl = -5: must be in 0..20000000" in r.stderr
        r = run("--json", "sim", "status", "--name", "clirig")
        assert r.returncode == 0 and '"occluded": true' in r.stdout
    finally:
        r = run("sim", "stop", "--name", "clirig")
    assert r.returncode == 0, r.stderr
    r = run("sim", "status", "--name", "clirig")
    assert r.returncode == 1 and "no virtual rig running" in r.stderr
