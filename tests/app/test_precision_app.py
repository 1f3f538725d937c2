"""The app on the precision drive (hw/mechanism-precision.json, FakeHardware with that file):
its dose step, limits, name in hello, and the missed-step alarm within 16 microsteps (10 nL)."""
from __future__ import annotations

from pathlib import Path

from pumpcore import alarms as al
from pumpcore.program import MODE_CONTINUOUS, Program
from pumpfw.app import PumpApp

from .fakehw import FakeHardware

DAY0 = 9000


def _programmed(tmp_path: Path) -> tuple[PumpApp, FakeHardware]:
    hw = FakeHardware(tmp_path / "flash", mechanism="precision")
    app = PumpApp(hw)
    app.boot()
    assert app.set_time(DAY0, 0) is None
    assert app.refill(1_000_000, 2000) is None
    assert app.commit_program(Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186000,
                                      catheter_nl=20_000, low_volume_nl=200_000, low_days=2)) is None
    return app, hw


def _run(app: PumpApp, hw: FakeHardware, ms: int) -> None:
    end = hw.now_us + ms * 1000
    while hw.now_us < end:
        app.step()


def test_precision_drive_doses_by_its_own_step_and_limits(tmp_path):
    app, hw = _programmed(tmp_path)
    assert app.mechanism_name() == "precision"
    assert app.sched.pl == 652
    assert app.hard_limits.reservoir_capacity_nl == 1_000_000 and app.hard_limits.min_conc_ug_ml == 86
    assert app.refill(2_000_000, 2000) is not None            # beyond the 1 mL syringe: refused
    _run(app, hw, 600_000)
    # 10 min at 186 ug/day: 93 uL/day x 10 / 1440 = 645.8 nL = 990.5 microsteps of 652 pL
    assert 985 <= hw.stepper.done <= 992


def test_slip_on_the_precision_drive_raises_missed_steps_within_16_microsteps(tmp_path):
    app, hw = _programmed(tmp_path)
    _run(app, hw, 60_000)
    assert not app.alarm_set.is_active(al.ALARM_MISSED_STEPS)
    assert app.screw.missed_bound_steps == 16 and app.screw.missed_bound_nl == 10
    hw.slipping = True
    start = hw.stepper.done
    while not app.alarm_set.is_active(al.ALARM_MISSED_STEPS):
        _run(app, hw, 100)
        assert hw.stepper.done - start <= 16, "missed-steps not raised within 16 microsteps"
    lost = hw.stepper.done - start
    assert 0 < lost <= 16                                       # 10 nL, 0.021 ug at 2000 ug/mL
    assert not app.alarm_set.motor_allowed()


def test_status_queued_steps_is_the_count_less_the_pins(tmp_path):
    """STATUS_RESP's queued_steps: microsteps the rig counts delivered that have not reached the
    STEP pin (the generator's queue plus those owed), so a host checks count - queued against the
    pins without the log. Checked at every iteration of a basal and a 10 s clinician bolus."""
    from pumpcore import wire, wirehost
    app, hw = _programmed(tmp_path)
    s0 = app.sched.delivered_steps - hw.stepper.done
    assert app.bolus(wire.BOLUS_CLINICIAN, 1_000, 10_000) is None        # 1 ug over 10 s: 767 steps
    seen = set()

    def check() -> None:
        q = app.status()["queued_steps"]
        seen.add(q > 0)
        assert app.sched.delivered_steps - s0 - q == hw.stepper.done, (q, app.sched.delivered_steps, hw.stepper.done)

    idle = hw.idle

    def idle_checked(ms: int) -> None:
        check()                                  # before the loop sleeps: the queue is full here
        idle(ms)
        check()                                  # after: the generator has run on

    hw.idle = idle_checked
    end = hw.now_us + 30_000_000
    while hw.now_us < end:
        app.step()
    assert seen == {True, False}                 # the check saw a queue, and an empty one
    # and the host reads it off the wire as the firmware packed it
    st = wirehost.unpack_fields(wire.STATUS_RESP, bytes(wire.pack_fields(wire.STATUS_RESP, app.status())))
    assert st["queued_steps"] == app.status()["queued_steps"]
