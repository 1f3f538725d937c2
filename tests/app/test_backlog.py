"""Records lost at the boundaries (priority 1): an event record whose append fails on a flash
error waits in the app's backlog and reaches the log later, in order, with its own time; what
cannot wait is counted and said; a patient bolus whose write-ahead save was cut keeps its
lockout and allotment after the reset. On CPython with the fake hardware."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpcore import alarms as al
from pumpcore import logrec, wire
from pumpfw.app import PumpApp
from pumpfw.store import BACKLOG_MAX_MS, BACKLOG_RECORDS, StoreError

from .fakehw import FakeHardware
from .test_app import CONTINUOUS_186, boot, log_records, iteration_now, programmed, run_for
from .test_ledger import Cut, _cut_after

PATIENT = dict(CONTINUOUS_186, patient=(20_000, 60_000, 3 * 3600_000, 4))


class BrokenLog:
    """Make app.log.append fail with a flash error while `broken` (the app runs on); counts the
    tries and keeps the real append for when the flash works again."""

    def __init__(self, app: PumpApp) -> None:
        self.app = app
        self.real = app.log.append
        self.broken = True
        self.tries = 0
        app.log.append = self.append

    def append(self, day: int, ms: int, code: int, *a: int) -> int:
        if self.broken:
            self.tries += 1
            raise StoreError("event log: append failed (test)")
        return self.real(day, ms, code, *a)


def _codes(recs: list[tuple]) -> list[tuple[int, int]]:
    return [(r[3], r[4]) for r in recs]


def _after(app: PumpApp, seq: int) -> list[tuple]:
    return [r for r in log_records(app) if r[0] > seq]


def test_alarm_records_the_flash_refused_reach_the_log_later_in_order_with_their_times(tmp_path: Path) -> None:
    """Was: _log raised storage-fault and returned 0, the alarm's raised and cleared records were
    gone for good (an occlusion that happened, on no record)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 10_000)
    seq0 = app.log.last_seq()
    broken = BrokenLog(app)
    hw.pressure = 3000                            # occlusion: raised while the flash fails
    run_for(app, hw, 10_000)
    assert al.ALARM_OCCLUSION in app.alarm_set.active()
    raised_at = app.clock.day * 86_400_000 + app.clock.ms
    hw.pressure = 0
    run_for(app, hw, 5_000)
    assert app.ack_alarm(al.ALARM_OCCLUSION) is None
    run_for(app, hw, 2_000)
    assert al.ALARM_STORAGE_FAULT in app.alarm_set.active()
    assert app.ack_alarm(al.ALARM_STORAGE_FAULT) is not None, "storage-fault acked while records wait"
    assert _after(app, seq0) == []
    broken.broken = False
    run_for(app, hw, BACKLOG_MAX_MS + 2_000)
    recs = _after(app, seq0)
    got = [c for c in _codes(recs) if c[0] in (logrec.EV_ALARM_RAISED, logrec.EV_ALARM_ACK,
                                                 logrec.EV_ALARM_CLEARED) and c[1] == al.ALARM_OCCLUSION]
    assert got == [(logrec.EV_ALARM_RAISED, al.ALARM_OCCLUSION), (logrec.EV_ALARM_ACK, al.ALARM_OCCLUSION),
                   (logrec.EV_ALARM_CLEARED, al.ALARM_OCCLUSION)]
    raised = [r for r in recs if r[3] == logrec.EV_ALARM_RAISED and r[4] == al.ALARM_OCCLUSION][0]
    assert raised_at - 10_000 <= raised[1] * 86_400_000 + raised[2] <= raised_at, "not its own time"
    report = [r for r in recs if r[3] == logrec.EV_LOG_BACKLOG]
    assert len(report) == 1 and report[0][4] >= 3 and report[0][5:8] == (0, 0, 0)
    late = [r for r in recs if r[0] < report[0][0]]
    assert len(late) == report[0][4]
    assert app.ack_alarm(al.ALARM_STORAGE_FAULT) is None   # nothing waits: the ack is taken
    # the host reads them as the firmware wrote them: late, in seq order, no time running back
    # unexplained (pumpctl.logorder: `logs show` marks them, the exports have a late column)
    from pumpctl import logorder
    assert logorder.late_in(recs) == {r[0] for r in late}
    # their times are their own, older than the append (the report's time) by up to the fault,
    # yet never before a record ahead of them: new records queue behind the waiting ones
    rep_ms = report[0][1] * 86_400_000 + report[0][2]
    assert rep_ms - (late[0][1] * 86_400_000 + late[0][2]) >= 10_000
    assert logorder.time_runs_back(recs) == []


def test_a_broken_flash_is_retried_with_back_off_not_every_iteration(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    broken = BrokenLog(app)
    hw.pressure = 3000
    run_for(app, hw, 5_000)
    assert app.backlog.count > 0
    before, steps = broken.tries, 0
    end = hw.now_us + 1_800_000 * 1000
    while hw.now_us < end:
        app.step()
        steps += 1
    tries = broken.tries - before
    # 1 s, 2 s, ... 64 s, then every 64 s: about 33 tries in 30 min (one per waiting record
    # would be thousands: the loop runs every ~0.4 s at 186 ug/day)
    assert 5 <= tries <= 1_800_000 // BACKLOG_MAX_MS + 10, (tries, steps)
    assert steps > 20 * tries


def test_records_beyond_the_backlog_are_counted_by_kind_and_said(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    seq0 = app.log.last_seq()
    broken = BrokenLog(app)
    for _ in range(BACKLOG_RECORDS + 3):           # bolus starts (and their refusals) while broken
        app.bolus(1, 1_000, 60_000)
        run_for(app, hw, 70_000)
    assert app.backlog.count == BACKLOG_RECORDS
    lost = list(app.backlog.lost)
    assert sum(lost) > 0
    broken.broken = False
    run_for(app, hw, BACKLOG_MAX_MS + 2_000)
    recs = _after(app, seq0)
    report = [r for r in recs if r[3] == logrec.EV_LOG_BACKLOG]
    assert len(report) == 1
    assert report[0][4] == BACKLOG_RECORDS and tuple(report[0][5:8]) == tuple(lost)
    assert lost[1] > 0, "bolus records are counted as such"
    assert not app.backlog.waiting()


def test_a_bolus_end_the_flash_refused_is_logged_later_and_not_aborted_at_a_reset(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 20_000, 60_000) is None
    serial = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_START][-1][7]
    broken = BrokenLog(app)
    run_for(app, hw, 70_000)
    assert app.sched.bolus_active() == 0
    assert not [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_END]
    broken.broken = False
    run_for(app, hw, BACKLOG_MAX_MS + 2_000)
    ends = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_END]
    assert [(e[5], e[6]) for e in ends] == [(20_000, serial)]
    app.save(urgent=True)
    app2, _ = boot(tmp_path / "flash")
    assert not [r for r in log_records(app2) if r[3] == logrec.EV_BOLUS_ABORTED and r[7] == serial]


def test_a_reset_while_records_wait_says_how_many_were_lost(tmp_path: Path) -> None:
    """The backlog is RAM: a reset while records wait loses them. The state (saved while they
    waited) counts them by kind, and the next boot logs that."""
    app, hw = programmed(tmp_path)
    BrokenLog(app)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    assert app.backlog.count >= 1
    app.save(urgent=True)                         # the state flash still works
    waiting = app._backlog_by_kind()
    assert waiting[0] >= 1
    app2, _ = boot(tmp_path / "flash")
    rep = [r for r in log_records(app2) if r[3] == logrec.EV_LOG_BACKLOG]
    assert len(rep) == 1 and rep[0][4] == 0 and list(rep[0][5:8]) == waiting
    app2.save(urgent=True)
    app3, _ = boot(tmp_path / "flash")
    assert len([r for r in log_records(app3) if r[3] == logrec.EV_LOG_BACKLOG]) == 1, "said twice"


def _clear_alarms(app: PumpApp) -> None:
    assert app.set_time(app.clock.day, app.clock.ms) is None    # clock-lost holds boluses
    for code in app.alarm_set.active():
        app.ack_alarm(code)


def test_a_patient_bolus_whose_start_save_was_cut_keeps_its_lockout(tmp_path: Path) -> None:
    """Was: logged aborted after the reset, but the restored state had neither its lockout nor
    its place in the 24 h allotment: the patient got another bolus at once."""
    app, hw = programmed(tmp_path, **PATIENT)
    run_for(app, hw, 3 * 3600_000 + 10_000)       # the commit's lockout has run out
    _cut_after(app, logrec.EV_BOLUS_START)
    with pytest.raises(Cut):
        app.bolus(wire.BOLUS_PATIENT, 0, 0)
    start = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_START][-1]
    app2, hw2 = boot(tmp_path / "flash")
    rest = [r for r in log_records(app2) if r[3] == logrec.EV_LOCKOUT_RESTORED]
    assert len(rest) == 1 and rest[0][4] == start[7]
    assert 3 * 3600_000 - 60_000 <= rest[0][5] <= 3 * 3600_000 and rest[0][6] == 1
    _clear_alarms(app2)
    assert app2.bolus(wire.BOLUS_PATIENT, 0, 0) is not None, "a second patient bolus at once after the cut"
    assert app2.sched.gate.patients_in_24h(app2.clock) == 1
    run_for(app2, hw2, 3 * 3600_000 + 2_000)
    iteration_now(app2, hw2)      # the command's iteration: its clock is current
    assert app2.bolus(wire.BOLUS_PATIENT, 0, 0) is None            # the lockout ends when it would have


def test_a_clinician_bolus_whose_start_save_was_cut_counts_what_may_have_run(tmp_path: Path) -> None:
    """A check (it held before): the bolus's steps wait for the start save's reservation, so
    after the cut the restored rolling 24 h is at least what the plunger made."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 600_000)
    _cut_after(app, logrec.EV_BOLUS_START)
    with pytest.raises(Cut):
        app.bolus(1, 50_000, 600_000)
    made_ng = hw.stepper.done * app.sched.pl * 2000 // 1_000_000
    app2, _ = boot(tmp_path / "flash")
    assert app2.sched.rolling_24h_ng() >= made_ng
    assert app2.sched.total_ng >= made_ng


# ------------------------------------------------ what the log says after the last save, the boot honours
def test_a_latching_alarm_raised_after_the_last_save_survives_the_cut(tmp_path: Path) -> None:
    """Was: an occlusion raised (and on the log) after the last routine save, the power cut
    before the next one: the restored state had no such alarm, so the latched alarm was gone
    after the reset without an ack, its raised record left open, and the motor ran again."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 30_000)
    assert app.save(urgent=True)
    app.save_due_ms = 0
    hw.pressure = 3000
    run_for(app, hw, 10_000)                       # no routine save in these 10 s
    assert al.ALARM_OCCLUSION in app.alarm_set.active()
    app2, hw2 = boot(tmp_path / "flash")           # the cut: the condition is gone now
    assert al.ALARM_OCCLUSION in app2.alarm_set.active(), "a latched alarm vanished with the cut"
    run_for(app2, hw2, 5_000)
    assert not hw2.stepper.enabled() and hw2.stepper.done == 0, "the motor ran on an unacked occlusion"
    raised = [r for r in log_records(app2) if r[3] == logrec.EV_ALARM_RAISED and r[4] == al.ALARM_OCCLUSION]
    assert raised[-1][7] == 1, "carried over the reset (restored=1)"
    assert app2.ack_alarm(al.ALARM_OCCLUSION) is None
    run_for(app2, hw2, 2_000)
    cleared = [r for r in log_records(app2) if r[3] == logrec.EV_ALARM_CLEARED and r[4] == al.ALARM_OCCLUSION]
    assert len(cleared) == 1


def test_a_calibration_whose_save_was_cut_holds_after_the_reset(tmp_path: Path) -> None:
    """Was: the calibration was answered and on the log, the cut kept it out of the state, and
    the rig came back dosing by the old pL per microstep (8 % more volume than programmed with
    the measured value 8 % above the derived one), the log saying otherwise."""
    from pumpcore import wire as w
    app, hw = programmed(tmp_path)
    run_for(app, hw, 30_000)
    derived = app.derived_pl
    new = derived * 108 // 100
    _cut_after(app, logrec.EV_CALIBRATION)
    with pytest.raises(Cut):
        app.set_calibration(new)
    app2, hw2 = boot(tmp_path / "flash")
    assert app2.sched.pl == new and app2.calibration() == (new, w.CAL_SOURCE_MEASURED)
    app2.save(urgent=True)
    app3, _ = boot(tmp_path / "flash")
    assert app3.sched.pl == new


def test_a_commit_during_a_bolus_ends_it_on_the_log(tmp_path: Path) -> None:
    """Found by the cut rig with patient boluses added (seed 43, 300 chains: 9 of 6,257
    restarts): a program commit cancels a running bolus, and nothing said so: its start had no
    end or aborted record, ever, and the state kept it as running until the next bolus."""
    from pumpcore.program import Program
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 20_000, 600_000) is None
    serial = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_START][-1][7]
    run_for(app, hw, 60_000)
    due = app.sched.bolus_delivered_ng()
    assert app.commit_program(Program(**dict(CONTINUOUS_186, rate_ng_day=200_000))) is None
    assert app.sched.bolus_active() == 0
    ends = [r for r in log_records(app) if r[3] == logrec.EV_BOLUS_END and r[6] == serial]
    assert len(ends) == 1 and ends[0][5] == due and 0 < due < 20_000
    assert not app.state.bolus_in_progress()
    run_for(app, hw, 5_000)
    app2, _ = boot(tmp_path / "flash")
    assert not [r for r in log_records(app2) if r[3] == logrec.EV_BOLUS_ABORTED and r[7] == serial]


# ------------------------------------------ operator actions whose save was cut: the boot applies the log
def _applied(app: PumpApp) -> list[tuple[int, int]]:
    return [(r[4], r[5]) for r in log_records(app) if r[3] == logrec.EV_LOG_APPLIED]


def test_a_refill_whose_save_was_cut_is_applied_from_the_log(tmp_path: Path) -> None:
    """Was: the refill (a new drug at 1000 ug/mL, 10 mL) was on the log, the cut kept it out of
    the state, and the rig came back with the old drug's concentration and the old volume, the
    log saying otherwise: the new drug dosed as the old one, and with a nearly empty old fill
    a reservoir-empty alarm over a full syringe (therapy stopped)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 600_000)
    _cut_after(app, logrec.EV_REFILL)
    with pytest.raises(Cut):
        app.refill(10_000_000, 1000)
    seq = [r for r in log_records(app) if r[3] == logrec.EV_REFILL][-1][0]
    app2, hw2 = boot(tmp_path / "flash")
    res = app2.sched.reservoir
    assert res.conc_ug_ml == 1000, "the refill's new drug was forgotten"
    # the reservation counted possibly delivered comes out of the new volume: at or below it
    led = [r for r in log_records(app2) if r[3] == logrec.EV_LEDGER_RESTORED][-1]
    assert 10_000_000 - (led[6] + 1) * app2.sched.pl // 1000 - 1 <= res.volume_nl <= 10_000_000
    assert _applied(app2) == [(logrec.EV_REFILL, seq)]
    app2.save(urgent=True)
    app3, _ = boot(tmp_path / "flash")
    assert _applied(app3) == [(logrec.EV_REFILL, seq)], "applied twice"
    assert app3.sched.reservoir.conc_ug_ml == 1000


def test_an_alarm_ack_whose_save_was_cut_holds_after_the_reset(tmp_path: Path) -> None:
    """Was: the operator acknowledged an occlusion whose condition had ended (on the log), the
    cut kept the ack out of the state, and after the reset the occlusion came back
    unacknowledged, logged raised again as carried over, and the motor stayed stopped (an
    interrupted flow) with the log saying it had been acknowledged."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 30_000)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    hw.pressure = 0
    run_for(app, hw, 5_000)
    assert app.save(urgent=True)                  # the occlusion is in the saved state
    _cut_after(app, logrec.EV_ALARM_ACK)
    with pytest.raises(Cut):
        app.ack_alarm(al.ALARM_OCCLUSION)
    seq0 = app.log.last_seq()
    app2, hw2 = boot(tmp_path / "flash")
    assert al.ALARM_OCCLUSION not in app2.alarm_set.active(), "the ack was forgotten"
    assert _applied(app2) == [(logrec.EV_ALARM_ACK, seq0)]
    run_for(app2, hw2, 60_000)                     # several basal microsteps at 186 ug/day
    after = [(r[3], r[4]) for r in _after(app2, seq0) if r[4] == al.ALARM_OCCLUSION and r[3] in (
        logrec.EV_ALARM_RAISED, logrec.EV_ALARM_CLEARED)]
    assert after == [(logrec.EV_ALARM_CLEARED, al.ALARM_OCCLUSION)], "raised again after its ack"
    assert hw2.stepper.done > 0, "the motor stayed stopped on an acknowledged occlusion"


def test_reset_power_acked_then_cut_is_not_logged_carried_over(tmp_path: Path) -> None:
    """Reset-power (8) was logged raised again after its ack, as carried over the reset
    (restored 1), when the ack's save did not reach the flash (a cut, or an urgent save the
    budget deferred). The ack holds now: the old occurrence is logged cleared and the new
    reset's own is a new one (restored 0)."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 10_000)
    app2, hw2 = boot(tmp_path / "flash")
    run_for(app2, hw2, 2_000)
    _cut_after(app2, logrec.EV_ALARM_ACK)
    with pytest.raises(Cut):
        app2.ack_alarm(al.ALARM_RESET_POWER)
    seq0 = app2.log.last_seq()
    app3, hw3 = boot(tmp_path / "flash")
    run_for(app3, hw3, 2_000)
    recs = [r for r in _after(app3, seq0) if r[4] == al.ALARM_RESET_POWER and r[3] in (
        logrec.EV_ALARM_RAISED, logrec.EV_ALARM_CLEARED)]
    assert [(r[3], r[7]) for r in recs] == [(logrec.EV_ALARM_CLEARED, 0), (logrec.EV_ALARM_RAISED, 0)]


@pytest.mark.parametrize("action", ["suspend", "resume"])
def test_a_suspend_or_resume_whose_save_was_cut_holds_after_the_reset(tmp_path: Path, action: str) -> None:
    """Was: the log said suspended (or resumed) by command, the cut kept it out of the state,
    and the pump came back delivering (or suspended) against the operator's last command."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 60_000)
    if action == "resume":
        assert app.suspend() is None
        run_for(app, hw, 60_000)
    code = logrec.EV_SUSPEND if action == "suspend" else logrec.EV_RESUME
    _cut_after(app, code)
    with pytest.raises(Cut):
        getattr(app, action)()
    seq = app.log.last_seq()
    app2, hw2 = boot(tmp_path / "flash")
    assert app2.sched.suspended == (action == "suspend")
    assert _applied(app2) == [(code, seq)]
    run_for(app2, hw2, 600_000)
    assert (hw2.stepper.done == 0) == (action == "suspend")
