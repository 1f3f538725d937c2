"""Issue 12 at the app's boundaries, on CPython with the fake hardware: a commit cut before its
state save, a damaged newest program slot, alarms that say when they were raised and whether
their condition ended, refused signed requests in the log, and log fields with real values."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpcore import alarms as al
from pumpcore import authhost, logrec, wire
from pumpcore.program import MODE_CONTINUOUS, Program
from pumpfw.app import AUTH_LOG_BURST, AUTH_LOG_REFILL_MS, PumpApp

from .fakehw import FakeHardware
from .test_app import CONTINUOUS_186, KEY, boot, iteration_now, log_records, programmed, run_for

OTHER = dict(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=300_000)


class Cut(BaseException):
    """The power went."""


def _events(app: PumpApp, code: int) -> list[tuple]:
    return [r for r in log_records(app) if r[3] == code]


def test_a_cut_between_program_commit_and_state_save_keeps_the_ledger(tmp_path: Path) -> None:
    """Was: the new program ran and rolling 24 h / total fell from 50,370 to 394 ng, no record."""
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 700_000)
    before = app.sched.total_ng
    assert before > 50_000

    def cut(*_a, **_k):
        raise Cut()
    app.save = cut                               # the program is on flash, the state is not
    with pytest.raises(Cut):
        app.commit_program(Program(**OTHER))
    app2, hw2 = boot(tmp_path / "flash")
    assert app2.program.rate_ng_day == 300_000   # the commit reached flash: the new program runs
    assert app2.sched.total_ng >= before
    assert app2.sched.rolling_24h_ng() >= before
    assert al.ALARM_PROGRAM_UNCONFIRMED in app2.alarm_set.active()
    rec = _events(app2, logrec.EV_PROGRAM_AT_BOOT)[-1]
    run_crc, old_crc = Program(**OTHER).crc32(), Program(**CONTINUOUS_186).crc32()
    assert (rec[4], rec[5]) == (run_crc >> 16, run_crc & 0xFFFF)
    assert (rec[6], rec[7]) == (old_crc >> 16, old_crc & 0xFFFF)
    run_for(app2, hw2, 60_000)
    assert hw2.stepper.enabled(), "the basal must go on (an interrupted flow is the danger)"


def test_a_damaged_newest_program_slot_raises_an_alarm_and_names_the_program(tmp_path: Path) -> None:
    """Was: a silent revert to the previous program, totals reset, no alarm, no event."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 3_600_000)
    assert app.commit_program(Program(**OTHER)) is None
    run_for(app, hw, 600_000)
    before = app.sched.total_ng
    newest = app.program_store.slots.paths[app.program_store.slots.current]
    data = bytearray(Path(newest).read_bytes())
    data[20] ^= 0xFF
    Path(newest).write_bytes(bytes(data))
    app2, _ = boot(tmp_path / "flash")
    assert app2.program.rate_ng_day == 186_000   # the older slot runs ...
    assert al.ALARM_PROGRAM_UNCONFIRMED in app2.alarm_set.active()   # ... and says so
    assert app2.sched.total_ng >= before         # the ledger is not reset
    lost = _events(app2, logrec.EV_PROGRAM_LOST)[-1]
    assert 2 in (lost[4], lost[5])               # a slot reported corrupt (store.LOAD_CORRUPT)
    rec = _events(app2, logrec.EV_PROGRAM_AT_BOOT)[-1]
    crc = Program(**CONTINUOUS_186).crc32()
    assert (rec[4], rec[5]) == (crc >> 16, crc & 0xFFFF)


def test_alarms_report_when_raised_and_whether_the_condition_ended(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    run_for(app, hw, 60_000)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    occl = [a for a in app.alarms() if a["code"] == al.ALARM_OCCLUSION]
    assert occl and occl[0]["flags"] & wire.ALARM_FLAG_ACTIVE
    raised = (occl[0]["day"], occl[0]["ms_of_day"])
    hw.pressure = 0
    run_for(app, hw, 30_000)
    occl = [a for a in app.alarms() if a["code"] == al.ALARM_OCCLUSION][0]
    assert (occl["day"], occl["ms_of_day"]) == raised, "the raised time moved"
    assert occl["flags"] & wire.ALARM_FLAG_LATCHED and not occl["flags"] & wire.ALARM_FLAG_ACTIVE
    # the raised time survives a reset (the age is saved with the state)
    app.save(urgent=True)
    app2, _ = boot(tmp_path / "flash")
    occl = [a for a in app2.alarms() if a["code"] == al.ALARM_OCCLUSION][0]
    assert abs((occl["day"] * 86_400_000 + occl["ms_of_day"]) - (raised[0] * 86_400_000 + raised[1])) <= 1000
    # the cleared record carries how long it was active
    app2.step()
    assert app2.ack_alarm(al.ALARM_OCCLUSION) is None
    app2.step()
    cleared = _events(app2, logrec.EV_ALARM_CLEARED)
    assert cleared and cleared[-1][4] == al.ALARM_OCCLUSION and cleared[-1][6] >= 30_000


def test_refused_signed_requests_are_logged_and_a_flood_is_rate_limited(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "rigkey.bin").write_bytes(KEY)
    app, hw = boot(flash)
    out: list[bytes] = []
    app.server.write = out.append
    bad_key = bytes(32)
    for i in range(50):                          # forged: wrong key
        frame = authhost.sign_request(1000 + i, wire.CMD_SUSPEND, b"", "fake-rig", 5 + i, bad_key)
        app.server.feed(wire.frame_to_line(frame))
    frame = authhost.sign_request(2000, wire.CMD_SUSPEND, b"", "other-rig", 99, KEY)
    app.server.feed(wire.frame_to_line(frame))     # wrong rig
    refused = _events(app, logrec.EV_AUTH_REFUSED)
    assert len(refused) == AUTH_LOG_BURST
    assert all(r[4] == wire.CMD_SUSPEND and r[5] == wire.ERR_BAD_MAC for r in refused)
    assert not app.sched.suspended
    run_for(app, hw, AUTH_LOG_REFILL_MS + 2_000)
    frame = authhost.sign_request(3000, wire.CMD_SUSPEND, b"", "fake-rig", 500, bad_key)
    app.server.feed(wire.frame_to_line(frame))
    last = _events(app, logrec.EV_AUTH_REFUSED)[-1]
    assert last[6] == 50 + 1 - AUTH_LOG_BURST    # the refusals not logged are counted


def test_bolus_end_and_abort_records_carry_the_delivered_dose(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 20_000, 60_000) is None
    run_for(app, hw, 120_000)
    end = _events(app, logrec.EV_BOLUS_END)[-1]
    assert end[5] == 20_000                      # ran to its end: the whole dose
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 200_000)                    # routine saves record the progress
    app.save(urgent=True)
    app2, _ = boot(tmp_path / "flash")
    ab = _events(app2, logrec.EV_BOLUS_ABORTED)[-1]
    assert ab[5] == 50_000 and 15_000 <= ab[6] <= 17_500   # ~200 s of 600 s of 50 ug
    rst = _events(app2, logrec.EV_RESET)[-1]
    assert rst[6] == -1                          # down time unknown until the clock is synced


# ------------------------------------------------ a reset between an hour's record and the next save
def _hourly_sum(app: PumpApp) -> int:
    recs = log_records(app)
    got = sum(r[5] for r in recs if r[3] in (logrec.EV_HOURLY_TOTAL, logrec.EV_HOURLY_PARTIAL))
    return got + app.hour_ng + app.sched.total_ng - app.last_total_ng


def _run_past_the_hour(app: PumpApp, hw: FakeHardware, after_ms: int) -> None:
    """Run until the device clock is `after_ms` past the next hour boundary (the routine saves
    are 60 s apart, so none follows the hour's record within that)."""
    until = (app.clock.ms // 3_600_000 + 1) * 3_600_000 + after_ms
    while app.clock.ms < until:
        app.step()


def test_a_reset_just_after_an_hour_ended_counts_that_hour_once(tmp_path: Path) -> None:
    """Found by the stateful test in CI: the hour's total was logged, then a reset before the
    next routine save. The boot logged a partial of that same hour from the save's
    accumulators, so the hourly records summed to 136,418 ng with 91,400 delivered, and the
    clock restarted 18 s before the hour's record (the log ran backwards)."""
    app, hw = programmed(tmp_path)
    _run_past_the_hour(app, hw, 0)             # the first hour's total is on the log
    _run_past_the_hour(app, hw, 20_000)        # reset 20 s into the third hour
    totals_before = [r for r in log_records(app) if r[3] == logrec.EV_HOURLY_TOTAL]
    assert totals_before[-1][4] == 1, "the second hour's total is logged"
    app2, hw2 = boot(tmp_path / "flash")
    assert _hourly_sum(app2) == app2.sched.total_ng
    recs = log_records(app2)
    partial = [r for r in recs if r[3] == logrec.EV_HOURLY_PARTIAL]
    assert [p[4] for p in partial] == [2], "the partial belongs to the hour the reset cut"
    # the clock restarts at the last record, never before it
    stamps = [r[1] * 86_400_000 + r[2] for r in recs]
    assert stamps == sorted(stamps), "the log's times run backwards after the reset"
    run_for(app2, hw2, 3_600_000)
    hours = [r[4] for r in log_records(app2) if r[3] == logrec.EV_HOURLY_TOTAL]
    assert len(hours) == len(set(hours)), "an hour has two hourly-total records: %s" % hours
    assert _hourly_sum(app2) == app2.sched.total_ng


def _boot_cut_before_its_save(flash: Path) -> PumpApp:
    """A boot on `flash` that the power cuts at its first state save (what it logged stays)."""
    app_cut = PumpApp(FakeHardware(flash))

    def cut(*_a, **_k):
        raise Cut()
    app_cut.save = cut
    with pytest.raises(Cut):
        app_cut.boot()
    return app_cut


def test_a_boot_cut_after_its_partial_is_not_counted_twice(tmp_path: Path) -> None:
    """A power cut during a boot, after the boot logged the hour's partial but before its state
    save: the next boot restores the same state, and must not log that partial again."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 1_800_000)
    app_cut = _boot_cut_before_its_save(tmp_path / "flash")
    assert [r for r in log_records(app_cut) if r[3] == logrec.EV_HOURLY_PARTIAL]
    app2, _ = boot(tmp_path / "flash")
    assert _hourly_sum(app2) == app2.sched.total_ng
    assert app2.sched.total_ng == app_cut.sched.total_ng   # the same bracket, counted once


def test_steps_the_log_shows_beyond_the_reservation_are_counted(tmp_path: Path) -> None:
    """The flash failed for the state only (storage-fault alarm, delivery goes on without a
    ledger bound) while the log kept its hourly records: after a reset the delivered total is
    at least what those records say the motor made, and the hourly records still sum to it."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 600_000)
    app.save(urgent=True)

    def broken(*_a, **_k):
        from pumpfw.store import StoreError
        raise StoreError("state flash: write failed")
    app.state_store.save = broken
    _run_past_the_hour(app, hw, 0)
    _run_past_the_hour(app, hw, 5_000)
    assert al.ALARM_STORAGE_FAULT in app.alarm_set.active()
    made = app.sched.total_ng
    logged = sum(r[5] for r in log_records(app) if r[3] == logrec.EV_HOURLY_TOTAL)
    app2, _ = boot(tmp_path / "flash")
    assert app2.sched.total_ng >= logged, "the total is below what the log says was made"
    assert app2.sched.total_ng >= made - 20, "under-count beyond the last 5 s of delivery"
    assert _hourly_sum(app2) == app2.sched.total_ng


# ------------------------------------------------ every occurrence of an alarm on the log
def test_an_alarm_acknowledged_and_raised_again_between_looks_has_its_own_records(tmp_path: Path) -> None:
    """Was: acknowledged (gone) and raised again by another refused bolus before the loop
    logged the changes, the second occurrence left no record: the log showed one limit-refused
    alarm whose age restarted under the first raised record."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 2_000)
    iteration_now(app, hw)        # each command in its own iteration, whose clock is current
    assert app.bolus(1, 10_000_000, 600_000) is not None          # above max_bolus_ng
    run_for(app, hw, 5_000)
    iteration_now(app, hw)
    assert app.alarm_set.is_active(al.ALARM_LIMIT_REFUSED)
    assert app.ack_alarm(al.ALARM_LIMIT_REFUSED) is None            # gone
    assert app.bolus(1, 10_000_000, 600_000) is not None          # raised again, no look between
    run_for(app, hw, 2_000)
    recs = [r for r in log_records(app) if r[3] in (logrec.EV_ALARM_RAISED, logrec.EV_ALARM_CLEARED)
            and r[4] == al.ALARM_LIMIT_REFUSED]
    assert [r[3] for r in recs] == [logrec.EV_ALARM_RAISED, logrec.EV_ALARM_CLEARED, logrec.EV_ALARM_RAISED]
    assert 5_000 <= recs[1][6] <= 6_000, "the first occurrence's age at its ack"
    run_for(app, hw, al.INFO_SHOW_MS + 2_000)                        # the second expires
    recs = [r for r in log_records(app) if r[3] == logrec.EV_ALARM_CLEARED and r[4] == al.ALARM_LIMIT_REFUSED]
    assert len(recs) == 2 and al.INFO_SHOW_MS <= recs[1][6] <= al.INFO_SHOW_MS + 2_000


def test_an_alarm_carried_over_a_reset_and_gone_before_the_first_look_is_logged_cleared(tmp_path: Path) -> None:
    """Found by the stateful test once the slack was gone: an acknowledged occlusion carried
    over a reset went away (the new detector had not confirmed the pressure yet) before the
    loop's first look, and no record said so: the log's last word on it was its raise before the
    reset. Now the boot's alarm is logged carried over (a3 1) and then cleared."""
    app, hw = programmed(tmp_path)
    hw.pressure = 3000
    run_for(app, hw, 10_000)
    assert app.alarm_set.is_active(al.ALARM_OCCLUSION)
    assert app.ack_alarm(al.ALARM_OCCLUSION) is None        # silent, the condition still there
    run_for(app, hw, 2_000)
    app2, hw2 = boot(tmp_path / "flash")
    hw2.pressure = 3000
    run_for(app2, hw2, 1)
    after = [r for r in log_records(app2) if r[0] > app.log.last_seq() and r[4] == al.ALARM_OCCLUSION
             and r[3] in (logrec.EV_ALARM_RAISED, logrec.EV_ALARM_CLEARED)]
    assert [(r[3], r[7] if r[3] == logrec.EV_ALARM_RAISED else 0) for r in after][:2] == [
        (logrec.EV_ALARM_RAISED, 1), (logrec.EV_ALARM_CLEARED, 0)], after
    assert after[1][6] >= 7_000, "the age at the clear counts from the raise before the reset"


def test_an_hour_whose_record_failed_to_append_is_carried_into_the_next_one(tmp_path: Path) -> None:
    """A flash error (not a power cut: the app runs on, storage-fault alarm) on the hour's
    total: the hour's accumulators were zeroed anyway, so that hour's delivery was on no
    record and the hourly records no longer summed to the delivered total, for good. Now the
    next hour's record carries it."""
    from pumpfw.store import StoreError
    app, hw = programmed(tmp_path)
    run_for(app, hw, 1_800_000)
    real = app.log.append

    def failing(day, ms, code, *a):
        if code == logrec.EV_HOURLY_TOTAL:
            app.log.append = real
            raise StoreError("event log: append failed (test)")
        return real(day, ms, code, *a)
    app.log.append = failing
    _run_past_the_hour(app, hw, 5_000)
    assert app.log.append is real, "the hour's total was attempted"
    assert al.ALARM_STORAGE_FAULT in app.alarm_set.active()
    assert _hourly_sum(app) == app.sched.total_ng
    _run_past_the_hour(app, hw, 5_000)
    totals = [r for r in log_records(app) if r[3] == logrec.EV_HOURLY_TOTAL]
    assert len(totals) == 1
    assert sum(r[5] for r in totals) == app.sched.total_ng - (app.hour_ng + app.sched.total_ng - app.last_total_ng)
    assert _hourly_sum(app) == app.sched.total_ng
    # and across a reset
    app2, _ = boot(tmp_path / "flash")
    assert _hourly_sum(app2) == app2.sched.total_ng


def test_a_boot_partial_that_failed_to_append_is_carried_into_the_hour(tmp_path: Path) -> None:
    """The same at boot: the reset's partial of the hour it cut could not be appended (flash
    error, the boot goes on alarmed); it was lost, now the hour in progress carries it."""
    from pumpfw.store import EventLog, StoreError
    app, hw = programmed(tmp_path)
    run_for(app, hw, 1_800_000)
    app2 = PumpApp(FakeHardware(tmp_path / "flash"))
    real = EventLog.append

    def failing(self, day, ms, code, *a):
        if code == logrec.EV_HOURLY_PARTIAL:
            raise StoreError("event log: append failed (test)")
        return real(self, day, ms, code, *a)
    EventLog.append = failing
    try:
        app2.boot()
    finally:
        EventLog.append = real
    assert not [r for r in log_records(app2) if r[3] == logrec.EV_HOURLY_PARTIAL]
    assert al.ALARM_STORAGE_FAULT in app2.alarm_set.active()
    assert _hourly_sum(app2) == app2.sched.total_ng
    app3, _ = boot(tmp_path / "flash")
    assert _hourly_sum(app3) == app3.sched.total_ng


# ------------------------------------------------ bolus records across a cut between a record and its save
def _bolus_closes(app: PumpApp) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in log_records(app):
        if r[3] == logrec.EV_BOLUS_END:
            out.setdefault(r[6], []).append(r[3])
        elif r[3] == logrec.EV_BOLUS_ABORTED:
            out.setdefault(r[7], []).append(r[3])
    return out


def _cut_after(app: PumpApp, code: int) -> None:
    """The power goes at the first save after a record of `code` is on the log."""
    real = app.save

    def save(urgent: bool = False) -> bool:
        if log_records(app)[-1][3] == code:
            raise Cut()
        return real(urgent)
    app.save = save


def test_a_bolus_started_and_cut_before_its_save_is_logged_aborted_and_its_serial_not_reused(tmp_path: Path) -> None:
    """Found by the cut rig's bolus check: the start was on the log, the state (cut before its
    save) knew nothing of it, so the bolus was never closed on the log and the next bolus got
    the same serial."""
    app, hw = programmed(tmp_path)
    run_for(app, hw, 5_000)
    _cut_after(app, logrec.EV_BOLUS_START)
    with pytest.raises(Cut):
        app.bolus(1, 20_000, 600_000)
    serial = _events(app, logrec.EV_BOLUS_START)[-1][7]
    app2, hw2 = boot(tmp_path / "flash")
    assert _bolus_closes(app2).get(serial) == [logrec.EV_BOLUS_ABORTED]
    ab = _events(app2, logrec.EV_BOLUS_ABORTED)[-1]
    assert ab[4:8] == (1, 20_000, 0, serial)
    assert app2.set_time(app2.clock.day, app2.clock.ms) is None   # clock-lost holds boluses
    for code in app2.alarm_set.active():
        app2.ack_alarm(code)                     # so do the reset's alarms, until seen
    assert app2.bolus(1, 20_000, 600_000) is None
    assert _events(app2, logrec.EV_BOLUS_START)[-1][7] == serial + 1
    app3, _ = boot(tmp_path / "flash")           # and a second reset logs nothing more for it
    assert _bolus_closes(app3).get(serial) == [logrec.EV_BOLUS_ABORTED]


def test_a_bolus_ended_and_cut_before_its_save_is_not_also_logged_aborted(tmp_path: Path) -> None:
    """The bolus's end was on the log, the save after it was cut: the restored state said the
    bolus was running and the boot logged it aborted too (two closing records, one of them
    with a smaller delivered dose)."""
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 20_000, 60_000) is None
    serial = _events(app, logrec.EV_BOLUS_START)[-1][7]
    _cut_after(app, logrec.EV_BOLUS_END)
    with pytest.raises(Cut):
        run_for(app, hw, 120_000)
    app2, _ = boot(tmp_path / "flash")
    assert _bolus_closes(app2).get(serial) == [logrec.EV_BOLUS_END]
    app3, _ = boot(tmp_path / "flash")
    assert _bolus_closes(app3).get(serial) == [logrec.EV_BOLUS_END]


def test_a_boot_cut_after_its_bolus_abort_does_not_log_it_twice(tmp_path: Path) -> None:
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 20_000, 600_000) is None
    serial = _events(app, logrec.EV_BOLUS_START)[-1][7]
    run_for(app, hw, 30_000)
    app_cut = _boot_cut_before_its_save(tmp_path / "flash")
    assert _bolus_closes(app_cut).get(serial) == [logrec.EV_BOLUS_ABORTED]
    app2, _ = boot(tmp_path / "flash")
    assert _bolus_closes(app2).get(serial) == [logrec.EV_BOLUS_ABORTED]


def test_steps_queued_at_a_refill_come_out_of_the_new_volume(tmp_path: Path) -> None:
    """Found by the cut rig (seed 32, 400 chains: 2 of 8,338 restarts): a refill while steps
    were owed or queued set the estimate to the new volume, and those steps, already taken
    from the old volume, were then made from the new one: the estimate stayed 5 microsteps
    (90 nL) above the truth until the next refill."""
    app, hw = programmed(tmp_path)
    assert app.bolus(1, 50_000, 600_000) is None
    run_for(app, hw, 10_000)
    # the refill command arrives as the host's commands do, after this iteration's steps were
    # queued and before the generator made them (PumpApp.step: deliver, then the link, then idle)
    got = []
    real = hw.serial_read

    def serial_read() -> bytes:
        if not got and hw.stepper.pending() + app.owed:
            got.append((hw.stepper.pending() + app.owed, hw.stepper.done))
            assert app.refill(10_000_000, 2000) is None
        return real()
    hw.serial_read = serial_read
    run_for(app, hw, 5_000)
    assert got and got[0][0] > 0
    made0 = got[0][1]
    made = hw.stepper.done - made0
    est_pl = app.sched.reservoir.volume_nl * 1000 + app.sched.reservoir.rem_pl
    assert est_pl <= 10_000_000 * 1000 - made * app.sched.pl, "estimate above the truth"
    assert est_pl >= 10_000_000 * 1000 - (made + app.owed + hw.stepper.pending() + 1) * app.sched.pl
