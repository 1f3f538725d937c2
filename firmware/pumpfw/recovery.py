"""The boot's recovery, loaded for the call (issue 16's RAM budget: this code is in the
RP2040's heap only while the boot runs; `PumpApp.boot` runs `restore` through
`pumpcore.call_once`, then saves, logs EV_HEAP and arms the watchdog).

What it restores, and why, is in docs/persistence.md: the state and program from flash; the
log's records after the last save (a reset falls between saves: hourly totals, boluses
started, alarms raised, operator actions); the write-ahead reservation counted as possibly
delivered (records err on the safe side); the reset logged with its cause and alarmed; a
maintenance window that ended in the reset. The motor stays disabled throughout.
Units: ng, nL, pL per microstep, microsteps, (day, ms of day).
"""
from pumpcore import alarms as al
from pumpcore import calibration, call_once, logrec
from pumpcore import program as programmod
from pumpcore import scheduler as schedmod
from pumpcore import statecodec as sc
from pumpcore.clock import WallClock
from pumpcore.fixed import const
from pumphw.base import RESET_WATCHDOG
from pumpfw import statemap
from pumpfw.ledger import parse_section
from pumpfw.store import LOAD_CORRUPT, LOAD_READ_ERROR

_MS_PER_HOUR = const(3600000)
_MS_PER_DAY = const(86400000)

# fields of the log tail after the last save (log_after_save's scan)
_T_NG = const(0)
_T_STEPS = const(1)
_T_MISSED = const(2)
_T_DAY = const(3)
_T_MS = const(4)
_T_JUMPED = const(5)
_T_STARTED = const(6)
_T_CLOSED = const(7)
_T_BACKLOG = const(8)
_T_RAISED = const(9)
_T_CAL = const(10)
_T_REFILL = const(11)
_T_ACKS = const(12)
_T_SUSP = const(13)


def restore(app):
    """The boot's recovery (PumpApp.boot, before the motor may run): the state and program
    from flash, the log's records after the last save, the ledger's reservation counted as
    possibly delivered, the reset logged and alarmed, a maintenance ended. Boot only."""
    hw = app.hw
    app.log.mount()
    state = app.state_store.load()
    blob = app.program_store.load()
    # what the log holds from after the state's last save (a reset falls between saves)
    tail = log_after_save(app, state) if state is not None else None
    cause = hw.reset_cause()
    if state is not None:
        app.state = state
        app.clock.set(state.get(sc.F_SAVE_DAY), state.get(sc.F_SAVE_MS))
        app.downtime_pending = True
        app_sec = state.sections.get(sc.SEC_APP)
        if app_sec and app_sec[0]:
            app.measured_pl = app_sec[0]
    app.state.set(sc.F_BOOT_COUNT, app.state.get(sc.F_BOOT_COUNT) + 1)
    if app.measured_pl:
        try:
            app.sched.pl = calibration.select(app.mech, app.measured_pl)
        except ValueError:
            app.measured_pl = 0
    pl_at_save = app.sched.pl
    if tail is not None and tail[_T_CAL]:
        # a calibration the log shows after the last save (its save was cut): the operator
        # set it and was answered, so it holds (a revert would dose by the old pL per step)
        try:
            pl = calibration.select(app.mech, tail[_T_CAL])
            app.measured_pl = 0 if pl == app.derived_pl else pl
            app.sched.pl = pl
        except ValueError:
            pass
    restored = False
    unconfirmed = False
    applied = ()
    snap = statemap.get_scheduler(state) if state is not None else None
    led = parse_section(state.sections.get(sc.SEC_LEDGER)) if state is not None else None
    if blob is not None:
        try:
            prog = programmod.Program.decode(blob, app.hard_limits)
            # load on an empty reservoir, then restore everything the snapshot holds: after a
            # refill with a new drug the reservoir's concentration differs from the running
            # program's until the clinician commits the new one, exactly as before the reset.
            # The ledger (totals, rolling 24 h, lockout, reservoir, missed) is restored
            # whatever program runs: a commit cut before its state save, or a damaged newest
            # program slot, never resets or lowers a total (docs/persistence.md).
            app.sched.load(prog, app.clock)
            if snap is not None:
                app.sched.restore(snap)
                app.sched.forfeit_carry()   # no early microstep at each reset
                restored = True
                unconfirmed = state.program_crc() != prog.crc32()
            app.program = prog
        except ValueError:
            app._log(logrec.EV_PROGRAM_LOST, 2, 0, 0, 0)
            app._raise(al.ALARM_PROGRAM_CORRUPT)
            app.program = None
    if snap is not None and not restored:
        # no program to run: the drug in the pump is physical. If a program ran (its slots are
        # unreadable now) the rest of the ledger waits for the next commit (commit_program)
        app.sched.reservoir.restore(snap[-2])
        if state.program_crc() and snap[3]:
            app.pending_snap = snap
    if tail is not None and not tail[_T_JUMPED]:
        # the device ran on after the save until its last record: the clock restarts there,
        # so the log's times never run backwards and that span is not counted as downtime
        if app.program is not None:
            app.sched.run_on(tail[_T_DAY], tail[_T_MS])
        elif app.clock.ms_until(tail[_T_DAY], tail[_T_MS], 7 * _MS_PER_DAY) > 0:
            app.clock.set(tail[_T_DAY], tail[_T_MS])
    if state is not None:
        app.alarm_set.restore(state.get(sc.F_ALARM_ACTIVE), state.get(sc.F_ALARM_ACKED))
        app.restored_alarms = state.get(sc.F_ALARM_ACTIVE)   # logged as carried over, not raised
        if tail is not None and tail[_T_RAISED]:
            restore_logged_alarms(app, tail[_T_RAISED])
        ages = state.sections.get(sc.SEC_ALARM_AGE)
        if ages is not None:
            app.alarm_set.restore_ages(tuple(ages))
        if tail is not None:
            applied = apply_logged_actions(app, tail)
        screw = state.sections.get(sc.SEC_SCREW)
        if screw and not app.alarm_set.is_active(al.ALARM_MISSED_STEPS):
            # the encoder's deficit outlives the reset (a jam across a power cut is not
            # forgotten); one that raised the alarm carried over is reported already
            app.screw.restore(screw[0])
    for code in (app.state_store.alarm(), app.program_store.alarm()):
        if code:
            app._raise(code)
    if app.state_store.alarm():
        app._log(logrec.EV_STATE_LOST, app.state_store.status()[0], app.state_store.status()[1], 0, 0)
    if app.program_store.alarm() and app.program is None:
        app._log(logrec.EV_PROGRAM_LOST, app.program_store.status()[0],
                  app.program_store.status()[1], 0, 0)
    if app.program is None and not app.alarm_set.is_active(al.ALARM_PROGRAM_CORRUPT):
        app._raise(al.ALARM_NO_PROGRAM)
    aborted = app.state.abort_bolus()
    if aborted is not None and tail is not None and aborted[3] in tail[_T_CLOSED]:
        aborted = None     # its end is on the log: the reset cut the save that followed it
    # down_ms -1: the Pico has no battery clock, so the time it was off is known only at the
    # next time sync (logged then as missed-volume with its down_ms)
    app._log(logrec.EV_RESET, cause, app.state.get(sc.F_BOOT_COUNT), -1 if state is not None else 0,
              app.state_store.status()[0])
    if state is not None:
        # records that waited in the last run's backlog when the state was saved: gone with
        # the reset unless that run appended them (its EV_LOG_BACKLOG is after the save)
        app_sec = state.sections.get(sc.SEC_APP)
        if app_sec and len(app_sec) >= 4 and (app_sec[1] or app_sec[2] or app_sec[3]) and not (
                tail is not None and tail[_T_BACKLOG]):
            app._log(logrec.EV_LOG_BACKLOG, 0, app_sec[1], app_sec[2], app_sec[3])
    for code, seq in applied:
        app._log(logrec.EV_LOG_APPLIED, code, seq, 0, 0)
    if aborted is not None:
        app._log(logrec.EV_BOLUS_ABORTED, aborted[0], aborted[1], aborted[2], aborted[3])
    if tail is not None:
        close_boluses_after_save(app, tail[_T_STARTED], tail[_T_CLOSED])
    if state is not None:
        if cause == RESET_WATCHDOG:
            app._raise(al.ALARM_RESET_WATCHDOG)
        else:
            app._raise(al.ALARM_RESET_POWER)
        app._raise(al.ALARM_CLOCK_LOST)
        if restored:
            app._log(logrec.EV_STATE_RESTORED, state.seq, app.state_store.slots.current,
                      app.sched.delivered_steps, app.program.crc32() & 0xFFFF)
            # the steps the reservation counts were made at either calibration: the larger
            pl = app.sched.pl
            if pl_at_save > pl:
                app.sched.pl = pl_at_save
            restore_ledger(app, led, tail)
            app.sched.pl = pl
    if app.program is not None:
        pa, pb = app.program_store.status()
        if pa in (LOAD_CORRUPT, LOAD_READ_ERROR) or pb in (LOAD_CORRUPT, LOAD_READ_ERROR):
            app._log(logrec.EV_PROGRAM_LOST, pa, pb, 0, 0)   # a slot damaged or cut short
        if unconfirmed:
            run, conf = app.program.crc32(), state.program_crc()
            app._raise(al.ALARM_PROGRAM_UNCONFIRMED)
            app._log(logrec.EV_PROGRAM_AT_BOOT, run >> 16, run & 0xFFFF, conf >> 16, conf & 0xFFFF)
    if app.program is not None:
        # only a suspend by command survives a reset; a hold by an alarm is re-derived from
        # the restored alarms by the loop (a snapshot taken mid-hold must not keep the pump
        # suspended after the alarm is gone: that would be an interrupted flow)
        user_suspended = bool(app.state.get(sc.F_SUSPENDED))
        if app.sched.suspended and not user_suspended:
            app.sched.resume()
        elif user_suspended and not app.sched.suspended:
            app.sched.suspend()
    return_from_maintenance(app)


def log_after_save(app, state):
    """The records the log holds from after the state's last save, up to this boot: a reset
    (or a power cut between a record and its save) falls between saves, and an hour's total
    or an interrupted boot's partial may be among them. Returns (ng, steps, missed) summed
    over their hourly-total and hourly-partial records, (day, ms) of the last record,
    whether a time set is among them, the boluses started among them ((serial, kind, dose,
    day, ms) list), the serials of the boluses ended or aborted among them and whether an
    EV_LOG_BACKLOG is among them, the mask of alarms raised and not cleared among them and
    the pL per microstep of the last calibration among them (0: none), the last refill
    ((volume_nl, conc, seq) or None), the acks ({alarm: seq}) and the last suspend by
    command or resume ((suspended, seq) or None) among them; None if there are none. The time is the latest one (records
    appended late from the backlog carry their own, earlier times). Boot only (allocates)."""
    log = app.log
    seq = state.get(sc.F_LOG_SEQ) + 1
    end = log.next_seq
    ng = steps = missed = 0
    day = ms = -1
    jumped = False
    backlog = False
    raised = 0          # mask of alarms raised and not cleared among them
    cal = 0             # pL per microstep of the last calibration among them
    started = []
    closed = []
    refill = None       # the last refill among them: (volume_nl, conc_ug_ml, seq)
    acks = {}           # alarm code -> seq of its ack among them (not raised again after it)
    susp = None         # the last suspend (by command) or resume among them: (1 or 0, seq)
    while seq < end:
        raw = log.read_raw(seq, 16)
        if not raw:
            break
        for i in range(0, len(raw), logrec.RECORD_SIZE):
            rec = logrec.decode(raw[i:i + logrec.RECORD_SIZE])
            seq = rec[0] + 1
            code = rec[3]
            if code == logrec.EV_HOURLY_TOTAL or code == logrec.EV_HOURLY_PARTIAL:
                ng += rec[5]
                steps += rec[6]
                missed += rec[7]
            elif code == logrec.EV_TIME_SET:
                jumped = True
            elif code == logrec.EV_BOLUS_START:
                started.append((rec[7], rec[4], rec[5], rec[1], rec[2]))
            elif code == logrec.EV_PRIME and rec[7]:
                # a prime is a bolus of its own kind (a record before primes had serials: 0)
                started.append((rec[7], schedmod.BOLUS_PRIME, rec[6], rec[1], rec[2]))
            elif code == logrec.EV_BOLUS_END:
                closed.append(rec[6])
            elif code == logrec.EV_BOLUS_ABORTED:
                closed.append(rec[7])
            elif code == logrec.EV_LOG_BACKLOG:
                backlog = True
            elif code == logrec.EV_CALIBRATION:
                cal = rec[5]
            elif code == logrec.EV_ALARM_RAISED and 0 < rec[4] <= al.ALARM_MAX:
                raised |= 1 << rec[4]
                acks.pop(rec[4], None)
            elif code == logrec.EV_ALARM_ACK:
                acks[rec[4]] = rec[0]
            elif code == logrec.EV_REFILL:
                refill = (rec[4], rec[5], rec[0])
            elif code == logrec.EV_SUSPEND and rec[4] == 0:
                susp = (1, rec[0])
            elif code == logrec.EV_RESUME:
                # an alarm hold's end logs it too, but only while no command suspended
                # the pump (F_SUSPENDED 0): then it changes nothing here
                susp = (0, rec[0])
            elif code == logrec.EV_ALARM_CLEARED and 0 < rec[4] <= al.ALARM_MAX:
                raised &= ~(1 << rec[4])
            if jumped or (rec[1], rec[2]) > (day, ms):
                day, ms = rec[1], rec[2]
    if day < 0:
        return None
    return ng, steps, missed, day, ms, jumped, started, closed, backlog, raised, cal, refill, acks, susp


def restore_logged_alarms(app, mask):
    """Latching alarms the log shows raised (and not cleared) after the last save, which the
    cut kept out of the state: they were active and unacknowledged when the power went, so
    they come back as carried over (a latched alarm ends only by an ack, never by a cut).
    Boot only."""
    aset = app.alarm_set
    for code in range(1, al.ALARM_MAX + 1):
        bit = 1 << code
        if mask & bit and aset.latches(code) and not aset.is_active(code):
            aset.raise_(code)
            app.restored_alarms |= bit


def apply_logged_actions(app, tail):
    """Operator actions the log shows after the last save, which the cut kept out of the
    state (each logs its record, then saves): they happened, so the state follows the log.
    A refill: the syringe was filled before the rig was told, so the old, lower volume would
    soon alarm reservoir-empty with a full syringe (therapy stopped: withdrawal), and a new
    drug's concentration would be dosed as the old one (over- or under-delivery); applied
    before the reservation is counted, which then comes out of the new volume (the estimate
    stays at or below the truth). An alarm ack: the operator saw it; it ends or silences
    the alarm as it did (a stopping reaction still holds while its condition is present).
    A suspend or resume by command: the pump does what it was last told. Returns the
    (event code, record seq) list the boot logs as EV_LOG_APPLIED. Boot only."""
    done = []
    refill = tail[_T_REFILL]
    if refill is not None and not app.sched.refill(refill[0], refill[1]):
        for c in (al.ALARM_RESERVOIR_EMPTY, al.ALARM_RESERVOIR_LOW_VOLUME, al.ALARM_RESERVOIR_LOW_DAYS):
            ack_at_boot(app, c)
        app.reservoir_det.reset()
        done.append((logrec.EV_REFILL, refill[2]))
    for code, seq in tail[_T_ACKS].items():
        if 0 < code <= al.ALARM_MAX and ack_at_boot(app, code):
            done.append((logrec.EV_ALARM_ACK, seq))
    susp = tail[_T_SUSP]
    if susp is not None and susp[0] != app.state.get(sc.F_SUSPENDED):
        app.state.set(sc.F_SUSPENDED, susp[0])
        done.append((logrec.EV_SUSPEND if susp[0] else logrec.EV_RESUME, susp[1]))
    return done


def ack_at_boot(app, code):
    """Acknowledge a restored alarm at boot (an ack the log shows); True if it was
    active and unacknowledged. One that goes away is logged cleared by the first look, not
    raised again (its raise is on the log from before the reset). Boot only."""
    if not app.alarm_set.ack(code):
        return False
    if not app.alarm_set.is_active(code):
        app.seen_active[code] = 1
        app.restored_alarms &= ~(1 << code)
    return True


def close_boluses_after_save(app, started, closed):
    """Boluses the log shows started after the last save (the reset cut the save that
    followed the start, or it was refused): the state does not know them, so each gets its
    aborted record here unless the log has its end (delivered 0 at the last save: what the
    motor made of it is in the reservation counted as possibly delivered), and the serial
    moves past them (a later bolus never reuses one). Boot only."""
    for serial, kind, dose, day, ms in started:
        if serial <= app.state.get(sc.F_BOLUS_SERIAL):
            continue
        if serial not in closed:
            app._log(logrec.EV_BOLUS_ABORTED, kind, dose, 0, serial)
        app.state.set(sc.F_BOLUS_SERIAL, serial)
        if kind == schedmod.BOLUS_PATIENT:
            restore_lockout(app, serial, day, ms)


def restore_lockout(app, serial, day, ms):
    """A patient bolus started at (day, ms) whose write-ahead save was cut: the restored
    state has neither its lockout nor its place in the 24 h allotment, so the patient could
    have another at once. On the safe side it counts as run: both are restored from the
    start record's time (the running program's lockout), and the log says so. What the
    motor may have made of it is in the reservation counted as possibly delivered (the
    rolling 24 h). Boot only."""
    prog = app.program
    if prog is None or prog.patient is None:
        return
    at = WallClock()
    at.set(day, ms)
    gate = app.sched.gate
    gate.record_patient(at)
    gate.start_lockout(at, prog.patient[2])
    app._log(logrec.EV_LOCKOUT_RESTORED, serial, gate.lockout_left_ms(app.clock),
              gate.patients_in_24h(app.clock), 0)


def restore_ledger(app, led, tail):
    """After a reset: count the last record's write-ahead reservation as possibly delivered
    (total, today, rolling 24 h, reservoir) and log the bracket, then the partial total of
    the hour the reset cut, so hourly totals sum exactly to the delivered total.

    `tail` (see log_after_save) holds the hourly records written after the save: an hour
    that ended then is already in the log, so the partial holds only the rest, and steps
    the log shows beyond the reservation (a flash that failed between saves) are counted
    too: the total is never below what the log says was made."""
    if led is None:
        return
    reserved, _base, uncertain, h_mark, h_ng, h_steps, h_missed, inflight = led
    l_ng, l_steps, l_missed = (tail[_T_NG], tail[_T_STEPS], tail[_T_MISSED]) if tail is not None else (0, 0, 0)
    s = app.sched
    # counted at the save but maybe never made: the steps then queued or owed
    unmade_ng = inflight * s.pl * s.conc // 1000000 + (1 if inflight else 0)
    certain = s.total_ng - unmade_ng
    logged_ng = s.total_ng - h_ng        # what the hourly records up to the save sum to
    count = l_steps - h_steps            # steps the log's later hourly records show
    if count < reserved:
        count = reserved
    possibly = s.count_possibly_delivered(count)
    # the bracket rounds outwards: the counted steps' dose rounded up (the total grew by
    # its floor-based count, which can be 1 ng less)
    possibly_up = -(-count * s.pl * s.conc // 1000000)
    app.ledger.uncertain_ng = uncertain + possibly_up + unmade_ng
    app._log(logrec.EV_LEDGER_RESTORED, certain if certain > 0 else 0, possibly, reserved,
              app.ledger.uncertain_ng)
    part_ng = s.total_ng - logged_ng - l_ng
    part_steps = h_steps + count - l_steps
    part_missed = h_missed - l_missed
    if part_ng or part_steps or part_missed > 0:
        hour = h_mark if h_mark >= 0 and tail is None else app.clock.ms // _MS_PER_HOUR
        part_ng = part_ng if part_ng > 0 else 0
        part_missed = part_missed if part_missed > 0 else 0
        if not app._log(logrec.EV_HOURLY_PARTIAL, hour, part_ng, part_steps, part_missed, False):
            # the flash failed (storage-fault alarm): the hour in progress carries the
            # partial, and its total (or the next reset's partial) puts it on the log
            app.hour_ng += part_ng
            app.hour_steps += part_steps
            app.hour_missed += part_missed


def return_from_maintenance(app):
    """At boot: a restored maintenance alarm means the last boot ended in maintenance. Its
    length comes from the hold's scratch record when the reset kept it (watchdog at the
    window's end, machine.reset, soft reset); after a power-on it is only known at the
    next time sync. The alarm ends here (the basal resumes), logged."""
    rec = app.hw.maintenance_record()       # read and cleared at every boot
    code = al.ALARM_MAINTENANCE
    if not app.alarm_set.is_active(code):
        return
    app.alarm_set.ack(code)
    app.alarm_set.clear(code)
    maint_ms = 0
    if rec is not None and rec[0] == app.auth_counter():
        maint_ms = rec[1]
        from pumpfw import configure
        call_once(configure, "log_maint_end", app, maint_ms)
        app.maint_logged_ms = maint_ms
    else:
        app.maint_pending = True
    app._log(logrec.EV_ALARM_CLEARED, code, app.alarm_set.priority(code), maint_ms, 0)
