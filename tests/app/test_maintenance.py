"""Maintenance is a signed, alarmed state (issue 12): on CPython with the fake hardware.

A keyed rig's app owns the link (Ctrl-C is data, noise to the protocol server); the REPL is
reached only through the signed maintenance command, which stops delivery, logs, raises the
maintenance alarm, saves, answers and leaves the loop to the hardware's hold; the watchdog
brings the rig back when the window ends and the boot logs the volume missed.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pumpcore import alarms as al
from pumpcore import authhost, logrec, wire, wirehost
from pumpcore.program import Program
from pumpfw import app as appmod
from pumpfw.app import MaintenanceExit, PumpApp
from pumpfw.store import StateStore
from pumphw.base import RESET_POWER_ON, RESET_WATCHDOG
from pumpctl.errors import AuthError, UsageError
from pumpctl.pump import Pump
from pumpctl.transport import LoopbackTransport

from .fakehw import FakeHardware, FakeReset
from .test_app import CONTINUOUS_186, DAY0, KEY, run_for

WATCHDOG_MS = appmod.WATCHDOG_MS


def records(app: PumpApp) -> list[tuple]:
    raw = app.log.read_raw(app.log.first_seq(), 100_000)
    return [logrec.decode(raw[i:i + 32]) for i in range(0, len(raw), 32)]


def events(app: PumpApp, code: int) -> list[tuple[int, int, int, int]]:
    return [tuple(r[4:8]) for r in records(app) if r[3] == code]


def keyed_boot(flash: Path, cause: int = RESET_POWER_ON, scratch: list[int] | None = None,
               key: bytes | None = KEY) -> tuple[PumpApp, FakeHardware]:
    """What run() does before the loop: link locked on a keyed rig, then boot."""
    flash.mkdir(parents=True, exist_ok=True)
    if key is not None:
        (flash / "rigkey.bin").write_bytes(key)
    hw = FakeHardware(flash, reset_cause=cause, scratch=scratch)
    app = PumpApp(hw)
    app.lock_link(app.key is not None)
    app.boot()
    return app, hw


def delivering(tmp_path: Path) -> tuple[PumpApp, FakeHardware]:
    app, hw = keyed_boot(tmp_path / "flash")
    assert app.set_time(DAY0, 0) is None
    assert app.refill(20_000_000, 2000) is None
    assert app.commit_program(Program(**CONTINUOUS_186)) is None
    run_for(app, hw, 3_600_000)
    return app, hw


def test_keyed_app_takes_ctrl_c_as_data_and_keyless_app_gives_it_back(tmp_path: Path) -> None:
    app, hw = keyed_boot(tmp_path / "keyed")
    assert hw.ctrl_c is False and app.server.break_enabled is False
    hw.inbox += b"\r\x03\r\x01\x04\x03\x03"
    app.step()                                   # no KeyboardInterrupt: noise
    app2, hw2 = keyed_boot(tmp_path / "keyless", key=None)
    assert hw2.ctrl_c is True and app2.server.break_enabled is True
    hw2.inbox += b"\r\x03"
    with pytest.raises(KeyboardInterrupt):
        app2.step()


def test_signed_maintenance_stops_alarms_saves_answers_then_leaves(tmp_path: Path) -> None:
    app, hw = delivering(tmp_path)
    hw.stepper.queue(5, 1_000_000, 1)            # pulses still queued at the command: missed
    missed0 = app.sched.missed_steps
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.maintenance(600_000)                # answered OK before the loop leaves
        counter = pump.hello().auth_counter
    assert not hw.stepper.enabled() and hw.stepper.pending() == 0
    assert app.sched.missed_steps >= missed0 + 5
    assert app.alarm_set.is_active(al.ALARM_MAINTENANCE)
    assert (al.ALARM_MAINTENANCE, al.PRIO_HIGH, 0, 0) in events(app, logrec.EV_ALARM_RAISED)
    start = events(app, logrec.EV_MAINT_START)
    assert len(start) == 1 and start[0][:3] == (600_000, counter, 186_000) and start[0][3] >= 5
    # the alarm is on flash before the answer: it survives the reset that ends maintenance
    saved = StateStore(root=str(tmp_path / "flash")).load()
    act, _ = saved.get(appmod.sc.F_ALARM_ACTIVE), saved.get(appmod.sc.F_ALARM_ACKED)
    assert act & (1 << al.ALARM_MAINTENANCE)
    with pytest.raises(MaintenanceExit):
        app.step()
    assert hw.hold == (600_000, counter, al.PATTERN_SOUND_HIGH)   # sounds while at the REPL


def test_expired_window_brings_the_app_back_and_the_boot_logs_the_missed_volume(tmp_path: Path) -> None:
    app, hw = delivering(tmp_path)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.maintenance(wire.MAINT_MIN_MS)
    clock_at_entry = app.clock.ms               # the time saved with the maintenance alarm
    with pytest.raises(MaintenanceExit):
        app.step()
    assert not hw.hold_elapse(wire.MAINT_MIN_MS + WATCHDOG_MS - 1)   # fed until the window ends
    assert hw.hold_elapse(2)                                         # then the watchdog resets it
    app2, hw2 = keyed_boot(tmp_path / "flash", cause=RESET_WATCHDOG, scratch=hw.scratch)
    assert not app2.alarm_set.is_active(al.ALARM_MAINTENANCE)
    end = events(app2, logrec.EV_MAINT_END)
    pl = app2.sched.pl
    want_nl = 186_000 * 60_000 // (86_400 * 2000)                     # 64 nL of 2000 ug/mL
    assert end == [(want_nl, 186_000 * 60_000 * 1000 // (86_400 * 2000 * pl), 60_000, 186_000)]
    assert (al.ALARM_MAINTENANCE, al.PRIO_HIGH, 60_000, 0) in events(app2, logrec.EV_ALARM_CLEARED)
    assert hw2.maintenance_record() is None                          # read once, cleared
    done = hw2.stepper.done
    run_for(app2, hw2, 3_600_000)
    assert hw2.stepper.done - done >= 186_000 * 1000 * 1000 // 24 // 2000 // pl - 1   # basal resumed
    # the first time sync measures the whole gap; the maintenance part is not counted twice
    down_ms = 60_000 + WATCHDOG_MS + 1 + 7_000                       # + 7 s to boot, say
    assert app2.clock.ms > clock_at_entry                              # restarted from the saved time
    app2.set_time(DAY0, app2.clock.ms + down_ms)
    missed = events(app2, logrec.EV_MISSED_VOLUME)
    assert len(missed) == 1 and abs(missed[0][2] - (down_ms - 60_000)) <= 2


def test_maintenance_entered_while_an_alarm_holds_the_motor_logs_one_rate_at_start_and_end(
        tmp_path: Path) -> None:
    """The emulated Pico's story (end stop, then maintenance): an alarm hold suspends the
    scheduler, which counts the basal falling due meanwhile as missed. The maintenance window is
    such a span too, so both records carry the basal that was due (not 0 at the start and the
    basal at the end), and the end's missed volume is that basal over the window."""
    app, hw = delivering(tmp_path)
    hw.end = True                                # reservoir-empty: a motor-stopping alarm
    run_for(app, hw, 5_000)
    hw.end = False
    assert app.alarm_set.is_active(al.ALARM_RESERVOIR_EMPTY) and app.alarm_hold and app.sched.suspended
    missed0 = app.sched.missed_steps
    run_for(app, hw, 120_000)
    assert app.sched.missed_steps > missed0      # the held basal is counted missed, as due
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.maintenance(wire.MAINT_MIN_MS)
    with pytest.raises(MaintenanceExit):
        app.step()
    assert not hw.hold_elapse(wire.MAINT_MIN_MS + WATCHDOG_MS - 1)
    assert hw.hold_elapse(2)
    app2, hw2 = keyed_boot(tmp_path / "flash", cause=RESET_WATCHDOG, scratch=hw.scratch)
    start = events(app2, logrec.EV_MAINT_START)
    end = events(app2, logrec.EV_MAINT_END)
    assert len(start) == 1 and len(end) == 1, (start, end)
    assert start[0][2] == end[0][3] == 186_000, (start, end)
    pl = app2.sched.pl
    assert end[0][:3] == (186_000 * 60_000 // (86_400 * 2000),
                          186_000 * 60_000 * 1000 // (86_400 * 2000 * pl), 60_000), end
    # the alarm still holds the motor back in the app: nothing flows until it is acknowledged
    run_for(app2, hw2, 2_000)
    assert app2.alarm_hold and app2.sched.suspended and not hw2.stepper.enabled()


def test_maintenance_entered_while_suspended_by_command_logs_the_basal_missed(tmp_path: Path) -> None:
    """A suspend by command counts the basal missed too (the scheduler's missed accumulator):
    the maintenance records say the same rate, and the pump stays suspended after it."""
    app, hw = delivering(tmp_path)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.suspend()
        pump.maintenance(wire.MAINT_MIN_MS)
    with pytest.raises(MaintenanceExit):
        app.step()
    hw.hold_elapse(wire.MAINT_MIN_MS + WATCHDOG_MS + 1)
    app2, hw2 = keyed_boot(tmp_path / "flash", cause=RESET_WATCHDOG, scratch=hw.scratch)
    start = events(app2, logrec.EV_MAINT_START)
    end = events(app2, logrec.EV_MAINT_END)
    assert start[0][2] == end[0][3] == 186_000, (start, end)
    assert end[0][0] == 186_000 * 60_000 // (86_400 * 2000), end
    run_for(app2, hw2, 2_000)
    assert app2.sched.suspended and not hw2.stepper.enabled()


def test_power_cut_in_maintenance_logs_the_missed_volume_at_the_next_time_sync(tmp_path: Path) -> None:
    app, hw = delivering(tmp_path)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.maintenance(600_000)
    entry = app.clock.ms
    with pytest.raises(MaintenanceExit):
        app.step()
    hw.hold_elapse(200_000)
    app2, hw2 = keyed_boot(tmp_path / "flash", cause=RESET_POWER_ON)   # power-on: scratch erased
    assert not app2.alarm_set.is_active(al.ALARM_MAINTENANCE)
    assert events(app2, logrec.EV_MAINT_END) == []
    run_for(app2, hw2, 1000)
    assert app2.clock.ms >= entry
    app2.set_time(DAY0, app2.clock.ms + 200_000)
    end = events(app2, logrec.EV_MAINT_END)
    assert len(end) == 1 and abs(end[0][2] - 200_000) < 50 and end[0][3] == 186_000
    assert events(app2, logrec.EV_MISSED_VOLUME) == []            # not counted twice


def test_maintenance_needs_the_key_and_a_window_in_range(tmp_path: Path) -> None:
    app, hw = delivering(tmp_path)
    with Pump.open(LoopbackTransport(app), key=bytes(32), state_dir=tmp_path / "h1") as pump:
        with pytest.raises(AuthError, match="HMAC does not match"):
            pump.maintenance(600_000)
        assert pump.key_required() is True
        with pytest.raises(UsageError, match="window_ms = 59999 ms: outside 60000..1800000"):
            pump.maintenance(59_999)
    link = LoopbackTransport(app)
    counter = app.auth_counter() + 1
    frame = authhost.sign_request(7, wire.CMD_MAINTENANCE, struct.pack("<I", 1_800_001), "fake-rig", counter, KEY)
    link.write(wire.frame_to_line(frame))
    got = wirehost.decode_line(link.read(0.1))
    assert got[4] == wire.ERR_BAD_PAYLOAD and app.auth_counter() == counter - 1
    assert not app.alarm_set.is_active(al.ALARM_MAINTENANCE) and hw.stepper.enabled()
    app.step()                                   # still delivering
    app2, _hw2 = keyed_boot(tmp_path / "fresh", key=None)
    with Pump.open(LoopbackTransport(app2), key=KEY, state_dir=tmp_path / "h2") as pump:
        assert pump.key_required() is False


def test_maintenance_refused_when_the_state_cannot_be_saved(tmp_path: Path) -> None:
    app, hw = delivering(tmp_path)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        app.state_store._tokens = 1            # one urgent save left: the counter takes it
        with pytest.raises(Exception, match="maintenance not entered, delivery continues"):
            pump.maintenance(600_000)
    assert not app.alarm_set.is_active(al.ALARM_MAINTENANCE) and app.maint_window == 0
    app.step()


class ScriptedHardware(FakeHardware):
    """Feeds `script` (bytes per loop iteration) then raises `then` from serial_read."""

    def __init__(self, flash: Path, script: list[bytes], then: BaseException) -> None:
        super().__init__(flash)
        self.script = list(script)
        self.then = then

    def serial_read(self):
        if not self.script:
            raise self.then
        return self.script.pop(0)


def test_run_resets_a_keyed_rig_on_an_unexpected_exception_never_the_repl(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    hw = ScriptedHardware(flash, [b"\x03"] * 3, ZeroDivisionError("bug"))
    with pytest.raises(FakeReset):
        appmod.run(hw)
    assert hw.resets == 1 and not hw.stepper.enabled() and hw.ctrl_c is False
    app = PumpApp(FakeHardware(flash))
    app.log.mount()
    assert (1, 1, 1000, 0) in events(app, logrec.EV_MAINTENANCE)   # 1st exit: the next start waits 1 s
    hw = ScriptedHardware(flash, [], KeyboardInterrupt())   # e.g. an interrupt char left enabled
    with pytest.raises(FakeReset):
        appmod.run(hw)


def test_run_on_a_keyless_rig_keeps_todays_ctrl_c_and_tracebacks(tmp_path: Path) -> None:
    hw = ScriptedHardware(tmp_path / "a", [b"", b"\x03"], AssertionError("not reached"))
    hw.watchdog_stop = lambda: setattr(hw, "wdt", 0)   # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        appmod.run(hw)
    assert hw.ctrl_c is True and hw.resets == 0 and hw.wdt == 0
    hw = ScriptedHardware(tmp_path / "b", [b""], ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        appmod.run(hw)
    assert hw.resets == 0


def test_run_returns_to_the_repl_after_signed_maintenance(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    frame = authhost.sign_request(1, wire.CMD_MAINTENANCE, struct.pack("<I", 600_000), "fake-rig", 1, KEY)
    hw = ScriptedHardware(flash, [b"\x03", wire.frame_to_line(frame)], AssertionError("loop did not leave"))
    app = appmod.run(hw)
    assert isinstance(app, PumpApp) and hw.ctrl_c is True and hw.hold is not None
    assert wirehost.decode_line(bytes(hw.outbox).splitlines(keepends=True)[-1])[4] == wire.OK


def test_a_keyed_rig_that_keeps_failing_backs_off_and_forgets_the_count_once_stable(tmp_path: Path) -> None:
    """A crash loop waits 1 s, 2 s, 4 s ... (at most 5 min) before each new start, motor off and
    watchdog fed, so it cannot fill the event log with reset records or wear the flash; after
    10 min of a healthy loop the count ends. A torn count file still backs off a little."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    waits = []
    for n in range(1, 5):
        hw = ScriptedHardware(flash, [b""] * 3, ZeroDivisionError("bug"))
        t0 = hw.now_us
        with pytest.raises(FakeReset):
            appmod.run(hw)
        waits.append(hw.now_us - t0)
        assert not hw.stepper.enabled()
    app = PumpApp(FakeHardware(flash))
    app.log.mount()
    assert [e[:3] for e in events(app, logrec.EV_MAINTENANCE)] == [(1, 1, 1000), (1, 2, 2000), (1, 3, 4000),
                                                                   (1, 4, 8000)]
    # each start waited its back-off before the app ran (the boot's own time is the same each run)
    assert [(w - waits[0]) // 1_000_000 for w in waits] == [0, 1, 2, 4]
    assert appmod.crash_backoff_ms(9) == 256_000 and appmod.crash_backoff_ms(40) == appmod.CRASH_BACKOFF_MAX_MS
    # a healthy start after the loop: waits 8 s, then clears the count after 10 min of loop
    hw = FakeHardware(flash)
    t0 = hw.now_us
    real_boot = PumpApp.boot
    started = {}

    def boot_and_run(self: PumpApp) -> None:
        real_boot(self)
        started["t"] = self.hw.now_us
        end = self.hw.now_us + 11 * 60_000_000
        while self.hw.now_us < end:
            self.step()
        raise _Stop()
    import pumpfw.app as appmodule
    orig = appmodule.PumpApp.boot
    appmodule.PumpApp.boot = boot_and_run   # type: ignore[method-assign]
    try:
        with pytest.raises(_Stop):
            appmod.run(hw)
    finally:
        appmodule.PumpApp.boot = orig        # type: ignore[method-assign]
    assert started["t"] - t0 >= 8_000_000      # 4 exits in a row: 8 s
    assert appmod._read_crashes(str(flash)) == 0
    (flash / appmod.CRASH_FILE).write_bytes(b"\x07")
    assert appmod._read_crashes(str(flash)) == 1


class _Stop(BaseException):
    """Ends a run() in the test (a BaseException: run's handlers do not take it)."""


def test_a_new_deploy_starts_the_crash_count_again(tmp_path: Path) -> None:
    """The count is of the deployed build: after a fix is deployed the rig starts at once."""
    from pumpcore import buildrec
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    appmod._write_crashes(str(flash), 6)
    assert appmod._read_crashes(str(flash)) == 6
    (flash / buildrec.BUILD_FILE).write_text('{"build_hash": "0123456789abcdef"}')
    appmod._BUILDS.clear()    # a deploy restarts the rig: the next boot reads the new build
    assert appmod._read_crashes(str(flash)) == 0
