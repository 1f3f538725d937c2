"""The application on CPython with a fake hardware layer: boot, delivery, boluses, resets, faults,
and the host's Pump API through the real protocol server (in-process loopback)."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

from pumpcore import alarms as al
from pumpcore import logrec, wire
from pumpcore.program import MODE_CONTINUOUS, Program
from pumpfw.app import PumpApp
from pumphw.base import RESET_WATCHDOG
from pumpctl.pump import Pump
from pumpctl.transport import LoopbackTransport
from pumpctl.errors import RefusedError

from .fakehw import FakeHardware, FakeStepper

KEY = bytes(range(32))
DAY0 = 9000            # 2024-08-23 (days since 2000-01-01)
CONTINUOUS_186 = dict(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186000)


def boot(flash: Path, cause: int = 0) -> tuple[PumpApp, FakeHardware]:
    hw = FakeHardware(flash, reset_cause=cause)
    app = PumpApp(hw)
    app.boot()
    return app, hw


def run_for(app: PumpApp, hw: FakeHardware, ms: int) -> None:
    end = hw.now_us + ms * 1000
    while hw.now_us < end:
        app.step()


def iteration_now(app: PumpApp, hw: FakeHardware) -> None:
    """One loop iteration with no sleep after it, as when host bytes end the sleep: a command
    sent then is read in an iteration whose clock is current (between two run_for calls the
    app's clock stands at its last iteration's start, up to a quiet sleep of 60 s behind)."""
    hw.host_waiting = True       # the fake's idle returns at once, as on waiting host bytes
    app.step()


def programmed(tmp_path: Path, **kw) -> tuple[PumpApp, FakeHardware]:
    app, hw = boot(tmp_path / "flash")
    assert app.set_time(DAY0, 0) is None
    assert app.refill(20_000_000, 2000) is None
    assert app.commit_program(Program(**(kw or CONTINUOUS_186))) is None
    return app, hw


def event_codes(app: PumpApp) -> list[int]:
    out = []
    raw = app.log.read_raw(app.log.first_seq(), 100_000)
    for i in range(0, len(raw), 32):
        out.append(logrec.decode(raw[i:i + 32])[3])
    return out


def log_records(app: PumpApp) -> list[tuple]:
    raw = app.log.read_raw(app.log.first_seq(), 100_000)
    return [logrec.decode(raw[i:i + 32]) for i in range(0, len(raw), 32)]


def test_fresh_rig_boots_with_motor_disabled_and_no_program_alarm(tmp_path):
    app, hw = boot(tmp_path / "flash")
    assert not hw.stepper.enabled()
    assert al.ALARM_NO_PROGRAM in app.alarm_set.active()
    run_for(app, hw, 10_000)
    assert hw.stepper.done == 0 and not hw.stepper.enabled()
    assert hw.fed > 0  # the loop made progress, so the watchdog was fed


def test_basal_24h_within_one_microstep_of_the_ideal(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 24 * 3600 * 1000)
    pl = app.sched.pl
    elapsed_ms = app.clock.ms + (app.clock.day - DAY0) * 86_400_000
    ideal_steps = Fraction(186_000, 86_400_000) * elapsed_ms * Fraction(10**6, 2000) / pl
    assert 0 <= ideal_steps - app.sched.delivered_steps < 1
    # what the motor made lags what is due by at most the steps of one loop iteration
    assert app.sched.delivered_steps - hw.stepper.done <= 1
    hourly = [c for c in event_codes(app) if c == logrec.EV_HOURLY_TOTAL]
    assert len(hourly) >= 23


def test_clinician_bolus_adds_to_basal_and_is_logged(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 3600_000)
    before = app.sched.total_ng
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 3600_000)
    got = app.sched.total_ng - before
    basal = 186_000 / 24
    assert abs(got - (50_000 + basal)) < 2 * 2000 * app.sched.pl / 10**6 + 10
    codes = event_codes(app)
    assert logrec.EV_BOLUS_START in codes and logrec.EV_BOLUS_END in codes


def test_power_cut_during_bolus_does_not_repeat_it(tmp_path):
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 120_000)
    delivered = app.sched.total_ng
    # power cut: a new app on the same flash; the state on flash is the last one saved
    app2, hw2 = boot(tmp_path / "flash")
    assert app2.sched.bolus_active() == 0
    assert al.ALARM_RESET_POWER in app2.alarm_set.active()
    assert al.ALARM_CLOCK_LOST in app2.alarm_set.active()
    codes = event_codes(app2)
    assert logrec.EV_BOLUS_ABORTED in codes and logrec.EV_RESET in codes
    # the ledger errs on the safe side: never below what the plunger made, above it by at
    # most the last save's reservation (2 min of the bolus's flow plus 2 steps)
    made_ng = hw.stepper.done * app.sched.pl * 2000 // 1_000_000
    restored = app2.sched.total_ng
    assert restored >= made_ng, "the restored total under-counts the plunger"
    flow_2min_ng = (186_000 + 50_000 * 86_400_000 // 600_000) * 120_000 // 86_400_000
    step_ng = app.sched.pl * 2000 // 1_000_000 + 1
    assert restored - made_ng <= flow_2min_ng + 3 * step_ng
    rec = [r for r in log_records(app2) if r[3] == logrec.EV_LEDGER_RESTORED][-1]
    certain, possibly = rec[4], rec[5]
    # uncertain: the reservation plus the steps then in flight (counted due, maybe not made)
    assert app2.ledger.uncertain_ng == restored - certain and possibly <= restored - certain
    assert app2.status()["uncertain_ng"] == restored - certain
    assert certain <= made_ng
    run_for(app2, hw2, 3600_000)
    # only basal after the reset: at most one hour of basal plus rounding
    assert app2.sched.total_ng - app2.last_total_ng >= 0
    assert app2.sched.total_ng <= restored + 186_000 / 24 + 50
    assert delivered >= certain


def test_watchdog_reset_is_alarmed_and_logged(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 60_000)
    app2, hw2 = boot(tmp_path / "flash", cause=RESET_WATCHDOG)
    assert al.ALARM_RESET_WATCHDOG in app2.alarm_set.active()
    assert app2.program is not None and app2.program.rate_ng_day == 186_000


def test_corrupt_state_and_program_stop_delivery_with_alarms(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 120_000)
    flash = tmp_path / "flash"
    for name in os.listdir(flash):
        if name.startswith(("state_", "prog_")):
            data = bytearray((flash / name).read_bytes())
            data[len(data) // 2] ^= 0xFF
            (flash / name).write_bytes(bytes(data))
    app2, hw2 = boot(flash)
    active = app2.alarm_set.active()
    assert al.ALARM_STATE_CORRUPT in active and al.ALARM_PROGRAM_CORRUPT in active
    run_for(app2, hw2, 60_000)
    assert hw2.stepper.done == 0 and not hw2.stepper.enabled()


def test_suspend_counts_missed_without_catch_up(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 3600_000)
    assert app.suspend() is None
    steps_at_suspend = hw.stepper.done
    run_for(app, hw, 3600_000)
    assert hw.stepper.done == steps_at_suspend
    assert app.resume() is None
    run_for(app, hw, 60_000)
    # after resume only the basal of one minute, never the missed hour
    assert hw.stepper.done - steps_at_suspend <= 186_000 / 1440 * 500 / app.sched.pl + 2
    assert app.sched.missed_steps > 0


def test_stall_stops_the_motor_and_records_missed_steps(tmp_path):
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 30_000)
    hw.stepper.stalled = True
    run_for(app, hw, 30_000)
    assert al.ALARM_STALL in app.alarm_set.active()
    assert not hw.stepper.enabled()
    assert app.sched.missed_steps > 0


def test_occlusion_pressure_raises_alarm(tmp_path):
    app, hw = programmed(tmp_path)
    run_for(app, hw, 10_000)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    assert al.ALARM_OCCLUSION in app.alarm_set.active()


def test_patient_button_respects_lockout(tmp_path):
    prog = dict(CONTINUOUS_186, patient=(20_000, 60_000, 3 * 3600_000, 4))
    app, hw = programmed(tmp_path, **prog)
    hw.presses = 1          # right after programming: lockout running
    run_for(app, hw, 2_000)
    assert app.sched.bolus_active() == 0
    assert logrec.EV_BOLUS_DENIED in event_codes(app)
    run_for(app, hw, 3 * 3600_000)
    hw.presses = 1
    run_for(app, hw, 2_000)
    assert app.sched.bolus_active() != 0


def test_pump_api_through_the_protocol_server(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    app, hw = boot(flash)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        assert pump.hello().rig_id == "fake-rig"
        pump.refill(20_000_000, 2000)
        review = pump.upload_program(Program(**CONTINUOUS_186).encode(), confirm=lambda r: True)
        assert review is not None
        pump.time_sync(DAY0, 0)
        run_for(app, hw, 3600_000)
        st = pump.status()
        assert st.basal_ng_day == 186_000
        assert abs(st.delivered_total_ng - 186_000 / 24) < 50
        pump.bolus(50_000, 600_000)
        with pytest.raises(RefusedError):
            pump.bolus(50_000, 600_000)          # one bolus at a time
        chunk = pump.read_log(1)
        assert chunk.records


def test_spent_flash_budget_refuses_a_signed_command_with_its_reason(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    app, hw = boot(flash)
    with Pump.open(LoopbackTransport(app), key=KEY, state_dir=tmp_path / "host") as pump:
        pump.time_sync(DAY0, 0)
        app.state_store._tokens = 0          # the burst of urgent saves is spent ...
        app.state_store._since_ms = 0        # ... and a routine save is not due yet
        with pytest.raises(RefusedError, match="flash write budget"):
            pump.refill(20_000_000, 2000)
        assert app.sched.reservoir.volume_nl == 0   # not executed


def test_a_state_saved_during_an_alarm_hold_does_not_keep_the_pump_suspended_after_a_reset(tmp_path):
    """Found by the 7-day soak: an alarm acknowledged just before a power cut left the saved
    scheduler snapshot 'suspended'; after the reboot nothing re-derived it and the basal never
    resumed (an interrupted intrathecal flow)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 600_000)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    assert al.ALARM_OCCLUSION in app.alarm_set.active() and app.sched.suspended
    hw.pressure = 0
    run_for(app, hw, 60_000)
    app.ack_alarm(al.ALARM_OCCLUSION)          # urgent save while the hold is still in force
    app2, hw2 = boot(tmp_path / "flash")
    run_for(app2, hw2, 3_600_000)
    assert not app2.sched.suspended
    assert hw2.stepper.done > 0


def test_a_suspend_given_during_an_alarm_hold_survives_a_reset(tmp_path):
    """Found by the stateful test: save() derived the stored 'suspended by command' flag from
    the scheduler and the alarm hold, so a suspend given while a stall held the motor was
    stored as 'not suspended' and the basal restarted after a reset."""
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 10_000)
    hw.stepper.stalled = True
    run_for(app, hw, 30_000)
    assert app.alarm_hold
    assert app.suspend() is None
    app2, hw2 = boot(tmp_path / "flash")
    app2.ack_alarm(al.ALARM_STALL)
    run_for(app2, hw2, 3_600_000)
    assert app2.sched.suspended and hw2.stepper.done == 0


def test_a_driver_that_cannot_be_energised_is_a_stall_alarm_not_a_crash(tmp_path):
    """rp2hw raises when the TMC2209 does not confirm its configuration: the loop must go on,
    with the motor released, the due steps missed and the stall alarm raised."""
    app, hw = programmed(tmp_path)

    def refuse(on):
        if on:
            raise RuntimeError("TMC2209 did not answer on its UART")
        hw.stepper._enabled = False
    hw.stepper.enable = refuse
    run_for(app, hw, 600_000)
    assert al.ALARM_STALL in app.alarm_set.active()
    assert hw.stepper.done == 0 and app.sched.missed_steps > 0


def test_calibration_back_to_the_derived_value_reads_derived(tmp_path):
    """`pumpctl calibration reset` writes the derived value: the source is derived again."""
    from pumpcore import wire
    app, hw = programmed(tmp_path)
    derived = app.derived_pl
    assert app.set_calibration(derived + 20) is None
    assert app.calibration() == (derived + 20, wire.CAL_SOURCE_MEASURED)
    assert app.set_calibration(derived) is None
    assert app.calibration() == (derived, wire.CAL_SOURCE_DERIVED)
    app.save(urgent=True)
    app2, _ = boot(tmp_path / "flash")
    assert app2.calibration() == (derived, wire.CAL_SOURCE_DERIVED)


def test_an_alarm_active_across_a_reset_is_logged_as_carried_over_not_raised_anew(tmp_path):
    """The boot restores the alarms that were active; the log says they are still there after
    the reset (restored=1) instead of a second 'raised' that reads as a new occurrence. A later
    raise of the same code, after it cleared, is a new one again (restored=0)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 600_000)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    assert al.ALARM_OCCLUSION in app.alarm_set.active()
    app.save(urgent=True)
    raised = [r for r in log_records(app) if r[3] == logrec.EV_ALARM_RAISED and r[4] == al.ALARM_OCCLUSION]
    assert [r[7] for r in raised] == [0]
    app2, hw2 = boot(tmp_path / "flash")
    hw2.pressure = 3000
    run_for(app2, hw2, 5_000)
    after = [r for r in log_records(app2) if r[3] == logrec.EV_ALARM_RAISED and r[4] == al.ALARM_OCCLUSION]
    assert [r[7] for r in after] == [0, 1]          # the raise before the reset, then carried over
    hw2.pressure = 0
    run_for(app2, hw2, 120_000)
    app2.ack_alarm(al.ALARM_OCCLUSION)
    run_for(app2, hw2, 60_000)
    assert al.ALARM_OCCLUSION not in app2.alarm_set.active()
    hw2.pressure = 3000
    run_for(app2, hw2, 10_000)
    again = [r for r in log_records(app2) if r[3] == logrec.EV_ALARM_RAISED and r[4] == al.ALARM_OCCLUSION]
    assert [r[7] for r in again] == [0, 1, 0]


def test_bolus_end_says_how_many_of_the_counted_steps_are_still_on_their_way_to_the_pin(
        tmp_path: Path) -> None:
    """The emulated Pico's 200 ng bolus (tests/emu/test_app.py): answering the signed command
    took 0.9 s of the chip's 1 s bolus (two urgent saves), so the steps of that time fell due in
    one loop iteration and the generator paced them over it. The schedule ended the bolus (and
    the rig counted all of it) while some were still queued: the count must be the pins plus the
    queue, and EV_BOLUS_END says how many were queued. Then every one reaches the pin."""
    from pumpcore import wire

    app, hw = programmed(tmp_path)
    run_for(app, hw, 20_000)
    st = hw.stepper
    counted0, pins0, queued0 = app.sched.delivered_steps, st.done, st.pending() + app.owed
    assert app.bolus(wire.BOLUS_CLINICIAN, 200, 1000) is None
    hw.advance_ms(900)                  # the chip answering the command: the loop does not run
    seen = len(records_of(app, logrec.EV_BOLUS_END))
    at_idle: list[tuple[int, int, int]] = []
    idle = hw.idle

    def snapshot_then_idle(ms: int) -> None:     # the iteration's end, before time moves on
        at_idle[:] = [app.sched.delivered_steps, st.done, st.pending() + app.owed]
        idle(ms)

    hw.idle = snapshot_then_idle                 # type: ignore[method-assign]
    for _ in range(100):
        app.step()
        ends = records_of(app, logrec.EV_BOLUS_END)
        if len(ends) > seen:
            break
    else:
        raise AssertionError("the bolus never ended")
    hw.idle = idle                               # type: ignore[method-assign]
    queued = ends[-1][3]
    counted, pins = at_idle[0] - counted0, at_idle[1] - pins0
    assert queued == at_idle[2], (ends[-1], at_idle)
    assert queued >= 1, "the scenario should end the bolus with steps still paced out"
    assert counted >= 100_000 // app.sched.pl                 # 200 ng at 2000 ug/mL: 5.57 steps
    assert counted == pins + queued - queued0, (counted, pins, queued, queued0)
    run_for(app, hw, 2_000)             # at most IDLE_MAX_MS of pacing, then nothing is queued
    assert st.pending() + app.owed == 0
    assert app.sched.delivered_steps - counted0 == st.done - pins0 - queued0


def records_of(app: PumpApp, code: int) -> list[tuple[int, int, int, int]]:
    raw = app.log.read_raw(app.log.first_seq(), 100_000)
    recs = [logrec.decode(raw[i:i + 32]) for i in range(0, len(raw), 32)]
    return [tuple(r[4:8]) for r in recs if r[3] == code]


class _PioReportingStepper(FakeStepper):
    """Reports steps as rp2hw's PIO generator does (pumphw/steppio.py): a segment's steps count
    as done only after its last pulse's full low time, and pending() holds them until then."""

    def __init__(self, hw: FakeHardware) -> None:
        super().__init__(hw)
        self.meta: list[tuple[int, int]] = []    # (steps, period_us) of every queued segment
        self.queued = 0

    def queue(self, steps, period_us, direction):
        self.meta.append((steps, period_us))
        self.queued += steps
        return super().queue(steps, period_us, direction)

    def _reported(self) -> int:
        now, i, got = self.hw.now_us, 0, 0
        for steps, period in self.meta:
            if i + steps > len(self.edges) or self.edges[i + steps - 1] + period > now:
                break
            got += steps
            i += steps
        return got

    def steps_done(self):
        return self._reported() & 0x3FFFFFFF

    def pending(self):
        return self.queued - self._reported()


def test_a_step_reported_only_after_its_low_time_is_not_a_stall(tmp_path):
    """Seen on the emulated Pico: motor-stall 1 s after a healthy basal step (DIAG low). A slow
    iteration (a state save: 0.9 s on the emulated chip) makes the next tick's dt > 1 s, the
    step due then goes out as a 1-step segment of period 1 s, and the PIO reports it only after
    its full low time. A host request waking the loop just before that report saw more than 2 s
    of 'no progress' (the queueing tick's own dt counted too): a false stall, delivery stopped."""
    app, hw = boot(tmp_path / "flash")
    st = _PioReportingStepper(hw)
    hw.stepper = st
    real_save = app.state_store.save

    def slow_save(state, urgent=False):
        hw.advance_ms(900)
        return real_save(state, urgent)
    app.state_store.save = slow_save
    real_idle = hw.idle

    def idle(ms):
        if st.pending() and st.meta[-1][0] == 1:
            # a 1-step segment whose report is still to come: a host request lands 1 ms before it
            first = st.queue_segments[0][2] if st.queue_segments else st.edges[-1]
            wake = (first + st.meta[-1][1] - hw.now_us) // 1000 - 1
            if 0 < wake < ms:
                ms = wake
        real_idle(ms)
    hw.idle = idle
    assert app.set_time(DAY0, 0) is None
    assert app.refill(20_000_000, 2000) is None
    assert app.commit_program(Program(**CONTINUOUS_186)) is None
    run_for(app, hw, 3_600_000)
    assert al.ALARM_STALL not in app.alarm_set.active(), "a false motor-stall stopped delivery"
    assert st.done >= 200


def _primed(tmp_path: Path, volume_nl: int) -> tuple[PumpApp, FakeHardware]:
    """A stopped program (priming needs one), its alarms acknowledged, a prime started."""
    from pumpcore.program import MODE_STOPPED
    app, hw = programmed(tmp_path, mode=MODE_STOPPED, concentration_ug_ml=2000)
    for code in list(app.alarm_set.active()):
        app.ack_alarm(code)
    assert app.prime(volume_nl) is None
    return app, hw


def _prime_record(app: PumpApp) -> tuple:
    (rec,) = [r for r in log_records(app) if r[3] == logrec.EV_PRIME]
    return rec


def test_a_prime_cut_by_a_reset_is_logged_aborted_with_its_serial(tmp_path):
    """A prime is a bolus of its own kind: one running at a reset is logged aborted (kind,
    dose, what the last save counted, serial), never resumed; before primes had serials it
    vanished from the log (EV_PRIME, then the reset, and nothing saying it was cut short)."""
    from pumpcore import scheduler as sched
    app, hw = _primed(tmp_path, 100_000)            # 100 uL over 600 s
    prime = _prime_record(app)
    assert prime[6] == 100_000 * 2000 // 1000 and prime[7] >= 1    # dose ng, serial
    run_for(app, hw, 60_000)
    app.save(urgent=True)
    app2, _ = boot(tmp_path / "flash")
    aborted = [r for r in log_records(app2) if r[3] == logrec.EV_BOLUS_ABORTED]
    assert [(r[4], r[5], r[7]) for r in aborted] == [(sched.BOLUS_PRIME, prime[6], prime[7])], aborted
    assert 0 < aborted[0][6] < prime[6]                 # part of it counted at the last save
    assert app2.sched.bolus_active() == 0


def test_a_prime_whose_save_was_cut_is_logged_aborted_from_the_log(tmp_path):
    """The reset fell between the prime's record and its save: the state does not know it, the
    log does; the boot logs it aborted (delivered 0 at the last save) and moves the serial on."""
    from pumpcore import scheduler as sched
    from pumpcore import statecodec as sc
    from pumpcore.program import MODE_STOPPED
    app, hw = programmed(tmp_path, mode=MODE_STOPPED, concentration_ug_ml=2000)
    for code in list(app.alarm_set.active()):
        app.ack_alarm(code)
    app.save = lambda urgent=False: None              # the cut: the prime's save never lands
    assert app.prime(50_000) is None
    prime = _prime_record(app)
    app2, _ = boot(tmp_path / "flash")                # and the power goes before the loop runs
    aborted = [r for r in log_records(app2) if r[3] == logrec.EV_BOLUS_ABORTED]
    assert [(r[4], r[5], r[6], r[7]) for r in aborted] == [(sched.BOLUS_PRIME, prime[6], 0, prime[7])], aborted
    assert app2.state.get(sc.F_BOLUS_SERIAL) == prime[7]


def test_a_prime_that_runs_to_its_end_ends_with_its_own_serial(tmp_path):
    from pumpcore import scheduler as sched
    app, hw = _primed(tmp_path, 1_000)                # 1 uL: the 1 s minimum
    prime = _prime_record(app)
    assert prime[7] >= 1, prime                       # the prime's own serial, past the last bolus's
    run_for(app, hw, 20_000)
    ends = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_END]
    assert [(r[4], r[6]) for r in ends] == [(sched.BOLUS_PRIME, prime[7])], ends
    assert not app.state.bolus_in_progress()


def test_a_maintenance_entry_whose_save_was_cut_ends_once_on_the_log(tmp_path):
    """The reset fell between EV_MAINT_START and its save: the alarm raised on the log comes
    back at boot and ends there, and the first time sync logs the one EV_MAINT_END with the
    gap as missed (not zero, not twice)."""
    app, hw = programmed(tmp_path)
    for code in list(app.alarm_set.active()):
        app.ack_alarm(code)
    run_for(app, hw, 30_000)
    app.save = lambda urgent=False: None              # the cut: the entry's save never lands
    app.enter_maintenance(600_000)
    app2, _ = boot(tmp_path / "flash")
    assert al.ALARM_MAINTENANCE not in app2.alarm_set.active()
    assert app2.set_time(DAY0, 3_600_000) is None
    recs = log_records(app2)
    starts = [r for r in recs if r[3] == logrec.EV_MAINT_START]
    ends = [r for r in recs if r[3] == logrec.EV_MAINT_END]
    assert len(starts) == 1 and len(ends) == 1, (starts, ends)
    assert ends[0][4] > 0 and ends[0][6] > 3_000_000, ends    # missed nL, the gap in ms


def test_status_and_limits_name_each_value_as_the_wire_layouts_do(tmp_path):
    """status() and limits() give their values in the layouts' order (wire.fields): each name
    carries the app's own figure, not its neighbour's."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 3600_000)
    st = app.status()
    assert list(st) == list(wire.STATUS_RESP[1])
    s = app.sched
    assert (st["program_crc"], st["mode"], st["flex_step"]) == (app.program.crc32(), MODE_CONTINUOUS, 255)
    assert (st["rate_ng_day"], st["basal_ng_day"]) == (186_000, 186_000)
    assert st["delivered_total_ng"] == s.total_ng and st["reservoir_nl"] == s.reservoir.volume_nl
    assert (st["day"], st["ms_of_day"]) == (app.clock.day, app.clock.ms)
    assert st["missed_steps"] == s.missed_steps and st["line_conc_ug_ml"] == 2000
    lim = app.hard_limits
    assert app.limits() == {"max_rate_ng_day": lim.max_rate_ng_day, "max_24h_ng": lim.max_24h_ng,
                            "max_bolus_ng": lim.max_bolus_ng, "max_flow_ng_day": lim.max_flow_ng_day,
                            "min_conc_ug_ml": lim.min_conc_ug_ml, "max_conc_ug_ml": lim.max_conc_ug_ml,
                            "max_reservoir_nl": lim.reservoir_capacity_nl}


def test_an_alarm_acknowledged_before_the_loop_logged_it_reads_raised_then_acknowledged(tmp_path):
    """The boot raises its alarms (the reset, the lost clock, no program) and the loop logs
    them; an acknowledgement that comes first (a host command right after the boot, or after a
    command that raised an alarm in the same iteration) logs the pending raises before the ack.
    The cut rig found the ack before its raise (seed 11: alarm-ack 12 at seq 15, raised at 17)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 60_000)
    app.save(urgent=True)
    app, hw = boot(tmp_path / "flash")            # a power cut: the reset and the clock alarmed
    pending = sorted(app.alarm_set.active())
    assert al.ALARM_CLOCK_LOST in pending and al.ALARM_RESET_POWER in pending, pending
    for code in pending:
        app.ack_alarm(code)
    run_for(app, hw, 5_000)
    raised = set()
    acked = []
    for r in log_records(app):
        if r[3] == logrec.EV_ALARM_RAISED:
            raised.add(r[4])
        elif r[3] == logrec.EV_ALARM_ACK:
            assert r[4] in raised, "alarm %d acknowledged at seq %d before its raise was logged" % (r[4], r[0])
            acked.append(r[4])
    assert acked, "no acknowledgement was taken"
