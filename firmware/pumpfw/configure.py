"""The commands that configure the pump, loaded for the call (issue 16's RAM budget: this
code is in the RP2040's heap only while one runs; the PumpApp methods of the same names, the
protocol Controller's, run these through `pumpcore.call_once`): commit a program, set the
clock, refill, prime, set the calibration, and the record of a maintenance's end. Each is a function of the app, with the result convention of pumpfw.controller.Controller
(None when done, (code, reason) when refused).
Units: ng, ng/day, nL, ug/mL, pL per microstep, (day, ms of day), ms.
"""
from pumpcore import alarms as al
from pumpcore import forget, logrec
from pumpcore import scheduler as schedmod
from pumpcore import statecodec as sc
from pumpcore.fixed import const

_MS_PER_HOUR = const(3600000)


def commit_program(app, program):
    blob = program.encode()
    app.program_store.commit(blob)
    # a commit cancels a running bolus (DoseScheduler.load): it ends here, on the log,
    # with what was due of it (else its start stayed open for good and the state said it ran)
    b_kind = app.sched.bolus_active()
    b_done = app.sched.bolus_delivered_ng() if b_kind else 0
    code = app.sched.load(program, app.clock)
    if app.pending_snap is not None:
        # the first commit after a boot whose program was unreadable: the ledger of the
        # state it kept (totals, rolling 24 h, lockout) comes back, never reset
        app.sched.restore(app.pending_snap)
        app.pending_snap = None
    app.program = program
    app.last_bolus = app.sched.bolus_active()
    crc = program.crc32()
    app._log(logrec.EV_PROGRAM_COMMIT, crc >> 16, crc & 0xFFFF, program.mode,
              program.rate_ng_day)
    if b_kind and app.state.bolus_in_progress():
        # logged after the commit that ended it, so the log reads cause then effect
        app.state.end_bolus(b_done)
        app._log(logrec.EV_BOLUS_END, b_kind, b_done, app.state.get(sc.F_BOLUS_SERIAL),
                  app.hw.stepper.pending() + app.owed)
    app.alarm_set.clear(al.ALARM_NO_PROGRAM)
    app.alarm_set.ack(al.ALARM_NO_PROGRAM)
    if app.alarm_set.is_active(al.ALARM_PROGRAM_CORRUPT):
        app.alarm_set.ack(al.ALARM_PROGRAM_CORRUPT)
        app.alarm_set.clear(al.ALARM_PROGRAM_CORRUPT)
    app.save(urgent=True)
    return code or None


def set_time(app, day, ms_of_day):
    old_day, old_ms = app.clock.day, app.clock.ms
    jump = 0
    if app.downtime_pending:
        jump = app.clock.ms_until(day, ms_of_day, 7 * 86400000)
    if app.program is not None:
        app.sched.set_time(day, ms_of_day)
    else:
        app.clock.set(day, ms_of_day)
    app._log(logrec.EV_TIME_SET, old_day, old_ms, day, ms_of_day)
    jump = maintenance_gap(app, jump)
    if jump > 0 and app.program is not None:
        # the pump was down (or its clock lost) for `jump` ms: missed, never caught up
        rate = app.sched.basal_rate_ng_day()
        conc = app.sched.line_conc_ug_ml() or 1
        missed_ng = rate * (jump // 1000) // 86400
        missed_nl = missed_ng * 1000 // conc
        app._log(logrec.EV_MISSED_VOLUME, missed_nl, missed_nl * 1000 // app.sched.pl, jump, rate)
    app.downtime_pending = False
    app.clock_set = True
    app.alarm_set.clear(al.ALARM_CLOCK_LOST)
    app.alarm_set.ack(al.ALARM_CLOCK_LOST)
    app.hour_mark = app.clock.ms // _MS_PER_HOUR
    app.save(urgent=True)
    return None


def refill(app, volume_nl, conc_ug_ml):
    lim = app.hard_limits
    if conc_ug_ml < lim.min_conc_ug_ml or conc_ug_ml > lim.max_conc_ug_ml:
        return (schedmod.REFUSE_CONCENTRATION,
                "concentration %d ug/mL outside %d..%d" % (conc_ug_ml, lim.min_conc_ug_ml, lim.max_conc_ug_ml))
    if volume_nl <= 0 or volume_nl > lim.reservoir_capacity_nl:
        return (schedmod.REFUSE_VOLUME, "volume %d nL outside 1..%d (reservoir capacity)"
                % (volume_nl, lim.reservoir_capacity_nl))
    code = app.sched.refill(volume_nl, conc_ug_ml)
    if code:
        return (code, schedmod.refusal_text(code))
    # steps counted due before the refill (taken from the old volume) but still queued or
    # owed are made after it: they come out of the new volume (given back if dropped)
    inflight = app.hw.stepper.pending() + app.owed
    if inflight and app.program is not None:
        app.sched.reservoir.take_pl(inflight * app.sched.pl)
    # the refill is the clinician's answer to the reservoir alarms
    for c in (al.ALARM_RESERVOIR_EMPTY, al.ALARM_RESERVOIR_LOW_VOLUME, al.ALARM_RESERVOIR_LOW_DAYS):
        app.alarm_set.ack(c)
    app.reservoir_det.reset()
    app._log(logrec.EV_REFILL, volume_nl, conc_ug_ml, app.sched.bridge_left_nl(), 0)
    app.save(urgent=True)
    return None


def prime(app, volume_nl):
    # prime at 600 uL/h (1 nL per 6 ms): a 180 uL catheter fills in 18 min without a
    # pressure spike
    duration = volume_nl * 6
    if duration < 1000:
        duration = 1000
    code = app.sched.prime(volume_nl, duration)
    if code:
        return (code, schedmod.refusal_text(code))
    # a prime is a bolus of its own kind: its serial and dose go in the state before the motor
    # moves, so a reset during it logs it aborted (and its end carries its own serial)
    dose = app.sched.b_dose
    serial = app.state.begin_bolus(schedmod.BOLUS_PRIME, dose)
    app.last_bolus = schedmod.BOLUS_PRIME
    app._log(logrec.EV_PRIME, volume_nl, duration, dose, serial)
    app.save(urgent=True)
    return None


def set_calibration(app, pl_per_step):
    from pumpcore import calibration   # here, not at the top: every other command of this
    try:                               # module would leave it loaded
        pl = calibration.select(app.mech, pl_per_step)
    except ValueError as exc:
        return (1, str(exc))
    finally:
        forget("pumpcore.calibration")   # in the heap only for the call, as at boot
    old = app.sched.pl
    app.sched.pl = pl
    # the value derived from mechanism.json is no measurement: `pumpctl calibration reset`
    # sends it, and the source reads "derived" again
    app.measured_pl = 0 if pl == app.derived_pl else pl
    app._log(logrec.EV_CALIBRATION, old, pl, 0, 0)
    app.save(urgent=True)
    return None


def log_maint_end(app, maint_ms):
    """EV_MAINT_END: the basal that was due during maint_ms and never delivered."""
    rate = app._due_rate()
    conc = app.sched.line_conc_ug_ml()
    missed_nl = missed_steps = 0
    if rate and conc:
        # ng/day * ms / 86_400_000 = ng; ng * 1000 / conc = nL (a boot-time big-int product)
        missed_nl = rate * maint_ms // (86400 * conc)
        missed_steps = rate * maint_ms * 1000 // (86400 * conc * app.sched.pl)
    app._log(logrec.EV_MAINT_END, missed_nl, missed_steps, maint_ms, rate)


def maintenance_gap(app, jump):
    """set_time: the part of the clock's jump at the first sync not yet logged as missed."""
    if app.maint_pending:
        app.maint_pending = False
        if jump > 0:
            log_maint_end(app, jump)      # the whole gap since the maintenance began
        return 0
    if app.maint_logged_ms:
        jump -= app.maint_logged_ms
        app.maint_logged_ms = 0
        if jump < 0:
            jump = 0
    return jump
