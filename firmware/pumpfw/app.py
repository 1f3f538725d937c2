"""The pump application: boot (restore and check state), then the main loop that ties together
the hardware layer, the dose scheduler, the detectors and alarms, the flash store and the
protocol server. Also the protocol `Controller` the host talks to.

Safety policies (the reasons are in docs/ARCHITECTURE.md and docs/persistence.md):
- The motor stays disabled from power-on until the stored state and program have been loaded
  and checked; a corrupt state or program stops delivery with a critical alarm.
- After any reset the basal resumes (an interrupted intrathecal baclofen flow is dangerous);
  a bolus that was running is never resumed or repeated (logged as aborted); the reset is
  logged with its cause and alarmed. The device has no battery clock: the wall clock restarts
  from the last saved time, flagged lost (ALARM_CLOCK_LOST), until the host syncs it; the
  jump at that sync is the time the pump was down and is logged as missed volume.
- No catch-up: steps the motor could not make (stall, occlusion, alarm stop) are recorded as
  missed and never re-issued.
- The watchdog is fed only when every task of the loop made progress in this iteration.
Units: ms of device time (ticks_diff), ng, ng/day, nL, pL, microsteps.
"""
import gc
import sys

from pumpcore import alarms as al
from pumpcore import buildrec, calibration, logrec, pressure, wire
from pumpcore import program as programmod
from pumpcore import scheduler as schedmod
from pumpcore import statecodec as sc
from pumpcore.clock import WallClock
from pumpcore.detect import OcclusionDetector, ReservoirDetector, StallDetector
from pumpcore.screwenc import ScrewMonitor
from pumpcore.fixed import const
from pumpcore.limits import HardLimits
from pumphw.base import DIR_INFUSE, RESET_WATCHDOG
from pumpfw import statemap
from pumpfw.server import Controller, ProtocolServer
from pumpfw.store import EventLog, ProgramStore, StateStore, StoreError, SAVE_WRITTEN

FIRMWARE_VERSION = "0.1.0"
WATCHDOG_MS = const(5000)        # RP2040 limit 8388 ms; the loop never sleeps longer than IDLE_MAX_MS
IDLE_MAX_MS = const(1000)        # longest sleep between loop iterations (sensor and button polling)
STATE_EVERY_MS = const(60000)    # routine state save; urgent saves at every delivery event
URGENT_BURST = const(40)         # urgent saves in a burst (two per authenticated command) ...
URGENT_REFILL_MS = const(15000)
REFUSE_FLASH_BUDGET = const(200)  # app refusal code (scheduler codes are below 100)  # ... refilled one per 15 s: at most 7,200 saves/day (wear: docs/persistence.md)
MIN_PERIOD_US = const(500)       # fastest step rate handed to the generator (2 kHz)
MAX_PERIOD_US = const(1000000)
MS_PER_HOUR = const(3600000)


def _join(root, name):
    if root in ("", "."):
        return name
    return root + name if root.endswith("/") else root + "/" + name


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class PumpApp(Controller):
    """One pump: built on a Hardware object (pumphw.base), run with boot() then loop()."""

    build = buildrec.UNKNOWN + ": not booted"   # hello's build_hash; boot() reads the build record

    def __init__(self, hw):
        self.hw = hw
        root = hw.flash_root
        self.root = root
        self.mech = calibration.load_mechanism(_join(root, "mechanism.json"))
        self.derived_pl = calibration.pl_per_step_from_mechanism(self.mech)
        self.measured_pl = 0
        self.hard_limits = HardLimits(reservoir_capacity_nl=self.mech.get("syringe_capacity_nl", 20000000))
        self.clock = WallClock()
        self.clock_set = False
        self.alarm_set = al.AlarmSet()
        line = self.mech.get("line", {})
        # threshold and fault band from the sensor mechanism.json describes (the BOM's if the
        # deploy predates "pressure_sensor"; a wrong description stops the boot, field named)
        self.pressure_sensor = pressure.sensor_from_mechanism(self.mech)
        self.occlusion = OcclusionDetector.for_sensor(self.pressure_sensor,
                                                      min_sample_ms=line.get("tau_ms", 1000))
        self.stall = StallDetector(no_progress_ms=2 * IDLE_MAX_MS)
        # screw encoder vs commanded microsteps (alarm 20) and measured vs commanded flow
        self.screw = ScrewMonitor(self.mech["full_steps_per_rev"] * self.mech["microsteps"], self.derived_pl)
        self.reservoir_det = ReservoirDetector()
        self.state_store = StateStore(root=root, min_interval_ms=STATE_EVERY_MS, burst=URGENT_BURST,
                                      refill_ms=URGENT_REFILL_MS)
        self.program_store = ProgramStore(root=root)
        self.log = EventLog(root=root)
        self.state = sc.PersistentState()
        self.sched = schedmod.DoseScheduler(self.derived_pl, self.hard_limits)
        self.program = None
        self.server = ProtocolServer(self, hw.serial_write)
        self.key = _read_bytes(_join(root, "rigkey.bin"))
        self.seen_changes = -1
        self.seen_active = bytearray(al.ALARM_MAX + 1)
        self.alarm_hold = False        # delivery held by a motor-stopping alarm
        self.queued_done = 0           # steps_done() at the last look
        self.owed = 0                  # microsteps due but not yet handed to the generator
        self.last_ticks = 0
        self.save_due_ms = 0
        self.hour_ng = 0
        self.hour_steps = 0
        self.hour_missed = 0
        self.hour_mark = -1
        self.last_total_ng = 0
        self.last_missed = 0
        self.last_steps = 0
        self.last_bolus = 0
        self.last_pattern = -1
        self.downtime_pending = False  # clock restarted from a saved time: first sync measures the gap
        self.ready = False

    # ------------------------------------------------------------------ boot
    def boot(self):
        """Restore state and program, log the reset, then allow the motor. Never enables the
        motor before the state is restored and checked."""
        hw = self.hw
        hw.stepper.enable(False)
        # the deployed build (pumpcore.buildrec); missing or corrupt -> "unknown: <reason>"
        self.build = buildrec.read(_join(self.root, buildrec.BUILD_FILE))
        self.log.mount()
        state = self.state_store.load()
        blob = self.program_store.load()
        cause = hw.reset_cause()
        if state is not None:
            self.state = state
            self.clock.set(state.get(sc.F_SAVE_DAY), state.get(sc.F_SAVE_MS))
            self.downtime_pending = True
            app_sec = state.sections.get(sc.SEC_APP)
            if app_sec and app_sec[0]:
                self.measured_pl = app_sec[0]
        self.state.set(sc.F_BOOT_COUNT, self.state.get(sc.F_BOOT_COUNT) + 1)
        if self.measured_pl:
            try:
                self.sched.pl = calibration.select(self.mech, self.measured_pl)
            except ValueError:
                self.measured_pl = 0
        restored = False
        snap = statemap.get_scheduler(state) if state is not None else None
        if blob is not None:
            try:
                prog = programmod.Program.decode(blob, self.hard_limits)
                # load on an empty reservoir, then restore everything the snapshot holds: after a
                # refill with a new drug the reservoir's concentration differs from the running
                # program's until the clinician commits the new one, exactly as before the reset
                self.sched.load(prog, self.clock)
                if snap is not None and state.program_crc() == prog.crc32():
                    self.sched.restore(snap)
                    restored = True
                elif snap is not None:
                    self.sched.reservoir.restore(snap[-2])   # the drug in the pump is physical
                self.program = prog
            except ValueError:
                self._log(logrec.EV_PROGRAM_LOST, 2, 0, 0, 0)
                self._raise(al.ALARM_PROGRAM_CORRUPT)
                self.program = None
        elif snap is not None:
            self.sched.reservoir.restore(snap[-2])           # a refill before any program
        if state is not None:
            self.alarm_set.restore(state.get(sc.F_ALARM_ACTIVE), state.get(sc.F_ALARM_ACKED))
        for code in (self.state_store.alarm(), self.program_store.alarm()):
            if code:
                self._raise(code)
        if self.state_store.alarm():
            self._log(logrec.EV_STATE_LOST, self.state_store.status()[0], self.state_store.status()[1], 0, 0)
        if self.program_store.alarm() and self.program is None:
            self._log(logrec.EV_PROGRAM_LOST, self.program_store.status()[0],
                      self.program_store.status()[1], 0, 0)
        if self.program is None and not self.alarm_set.is_active(al.ALARM_PROGRAM_CORRUPT):
            self._raise(al.ALARM_NO_PROGRAM)
        aborted = self.state.abort_bolus()
        self._log(logrec.EV_RESET, cause, self.state.get(sc.F_BOOT_COUNT), 0,
                  self.state_store.status()[0])
        if aborted is not None:
            self._log(logrec.EV_BOLUS_ABORTED, aborted[0], aborted[1], aborted[2], aborted[3])
        if state is not None:
            if cause == RESET_WATCHDOG:
                self._raise(al.ALARM_RESET_WATCHDOG)
            else:
                self._raise(al.ALARM_RESET_POWER)
            self._raise(al.ALARM_CLOCK_LOST)
            if restored:
                self._log(logrec.EV_STATE_RESTORED, state.seq, 0, self.sched.delivered_steps,
                          self.program.crc32() & 0xFFFF)
        if self.program is not None:
            # only a suspend by command survives a reset; a hold by an alarm is re-derived from
            # the restored alarms by the loop (a snapshot taken mid-hold must not keep the pump
            # suspended after the alarm is gone: that would be an interrupted flow)
            user_suspended = bool(self.state.get(sc.F_SUSPENDED))
            if self.sched.suspended and not user_suspended:
                self.sched.resume()
            elif user_suspended and not self.sched.suspended:
                self.sched.suspend()
        self.last_total_ng = self.sched.total_ng
        self.last_missed = self.sched.missed_steps
        self.last_steps = self.sched.delivered_steps
        self.hour_mark = self.clock.ms // MS_PER_HOUR
        self.save(urgent=True)
        alloc, free = _heap()      # the boot's working set: the RAM margin a tester can check
        self._log(logrec.EV_HEAP, alloc, free, 0, 0)
        self.queued_done = hw.stepper.steps_done()
        self.last_ticks = hw.ticks_ms()
        hw.watchdog_start(WATCHDOG_MS)
        self._log(logrec.EV_WATCHDOG_ARMED, WATCHDOG_MS, 0, 0, 0)
        self.ready = True

    # ------------------------------------------------------------------ helpers
    def _log(self, code, a0=0, a1=0, a2=0, a3=0):
        try:
            return self.log.append(self.clock.day, self.clock.ms, code, a0, a1, a2, a3)
        except (OSError, ValueError):
            self.alarm_set.raise_(al.ALARM_STORAGE_FAULT)
            return 0

    def _raise(self, code):
        """Raise an alarm now; the log record is written by _log_alarm_changes()."""
        self.alarm_set.raise_(code)

    def _log_alarm_changes(self):
        """Log every alarm that appeared or went away since the last look (one place for all
        sources: detectors, commands, boot). Allocates nothing when nothing changed."""
        aset = self.alarm_set
        if aset.changes == self.seen_changes:
            return
        self.seen_changes = aset.changes
        seen = self.seen_active
        for code in range(1, al.ALARM_MAX + 1):
            now = 1 if aset.is_active(code) else 0
            if now != seen[code]:
                seen[code] = now
                if now:
                    # a2: the detector that fired for missed-steps / flow (pumpcore.screwenc.BY_*)
                    by = self.screw.by if code == al.ALARM_MISSED_STEPS or code == al.ALARM_FLOW_LOW else 0
                    self._log(logrec.EV_ALARM_RAISED, code, al.priority(code), by, 0)
                else:
                    self._log(logrec.EV_ALARM_CLEARED, code, al.priority(code), 0, 0)

    def save(self, urgent=False):
        """Write the persistent state (rate-limited unless urgent). Returns True if on flash."""
        st = self.state
        st.set(sc.F_SAVE_DAY, self.clock.day)
        st.set(sc.F_SAVE_MS, self.clock.ms)
        st.set(sc.F_CLOCK_VALID, 1 if self.clock_set else 0)
        act, acked = self.alarm_set.snapshot()
        st.set(sc.F_ALARM_ACTIVE, act)
        st.set(sc.F_ALARM_ACKED, acked)
        st.set(sc.F_LOG_SEQ, self.log.last_seq() & 0x3FFFFFFF)
        if self.program is not None:
            st.set_program_crc(self.program.crc32())
        statemap.put_scheduler(st, self.sched.snapshot())   # also with no program: the reservoir
        st.sections[sc.SEC_APP] = (self.measured_pl,)
        try:
            ok = self.state_store.save(st, urgent) == SAVE_WRITTEN
        except StoreError:
            self._raise(al.ALARM_STORAGE_FAULT)
            self._log(logrec.EV_STORAGE_FAULT, 0, 0, 0, 0)
            return False
        if ok:
            self.save_due_ms = 0
        return ok

    # ------------------------------------------------------------------ main loop
    def loop(self):
        while True:
            self.step()

    def step(self):
        """One main-loop iteration: time, delivery, sensors, alarms, persistence, host link."""
        hw = self.hw
        now = hw.ticks_ms()
        dt = hw.ticks_diff(now, self.last_ticks)
        if dt < 0:
            dt = 0
        self.last_ticks = now
        progressed = self._deliver(dt)
        self._sense(dt)
        self._bookkeeping(dt)
        data = hw.serial_read()
        if data and self.server.feed(data):
            raise KeyboardInterrupt
        if progressed:
            hw.watchdog_feed()
        hw.idle(self._sleep_ms())

    def _sleep_ms(self):
        if self.program is None or self.sched.suspended:
            return IDLE_MAX_MS
        due = self.sched.ms_to_next_due()
        if due < 1:
            return 1
        return due if due < IDLE_MAX_MS else IDLE_MAX_MS

    def _deliver(self, dt):
        """Advance the scheduler, hand due microsteps to the step generator, account what the
        generator made. Returns True (the delivery task made progress)."""
        hw = self.hw
        st = hw.stepper
        motor_ok = self.alarm_set.motor_allowed() and self.ready
        if not motor_ok:
            if not self.alarm_hold:
                self.alarm_hold = True
                dropped = st.abort() + self.owed
                self.owed = 0
                if dropped and self.program is not None:
                    self.sched.record_missed(dropped)
                st.enable(False)
                self.stall.reset()   # the latched alarm stays until acknowledged; DIAG re-raises
            if self.program is not None and not self.sched.suspended:
                # also a program committed during the hold: nothing flows, time counts missed
                self.sched.suspend()
                self._log(logrec.EV_SUSPEND, 1, 0, 0, 0)
        elif self.alarm_hold:
            self.alarm_hold = False
            if self.program is not None and self.sched.suspended and not self.state.get(sc.F_SUSPENDED):
                self.sched.resume()
                self._log(logrec.EV_RESUME, 0, 0, 0, 0)
        if self.program is not None and dt:
            self.owed += self.sched.advance(dt)
        elif dt:
            self.clock.advance(dt)
        if self.owed and motor_ok:
            if not st.enabled():
                try:
                    st.enable(True)
                except (RuntimeError, OSError):
                    # driver fault (rp2hw: TMC2209 silent or misconfigured): the motor stays
                    # released, the due steps are missed, and the stall alarm stops delivery
                    self.sched.record_missed(self.owed)
                    self.owed = 0
                    self._raise(al.ALARM_STALL)
                    return True
            # spread the steps over the time they took to fall due (this iteration's dt): the
            # generator then runs at the scheduled rate, one iteration behind, never in bursts
            # (a burst is a pressure spike the occlusion detector would rightly see)
            span = dt if dt > 0 else self.sched.ms_to_next_due()
            if span > IDLE_MAX_MS:
                span = IDLE_MAX_MS
            period = span * 1000 // self.owed
            if period < MIN_PERIOD_US:
                period = MIN_PERIOD_US
            elif period > MAX_PERIOD_US:
                period = MAX_PERIOD_US
            if st.queue(self.owed, period, DIR_INFUSE):
                self.owed = 0
        return True

    def _sense(self, dt):
        hw = self.hw
        st = hw.stepper
        done = st.steps_done()
        made = (done - self.queued_done) & 0x3FFFFFFF
        self.queued_done = done
        pending = st.pending() + self.owed if not self.alarm_hold else 0
        self.stall.update(dt, st.stall() and st.enabled(), pending, made, pending > 0)
        self.stall.report(self.alarm_set)
        if self.alarm_hold:
            self.screw.reset()
        self.screw.update(dt, made, hw.screw_angle())
        self.screw.report(self.alarm_set)
        self.occlusion.update(dt, hw.pressure_kpa_x10(), made)
        self.occlusion.report(self.alarm_set)
        prog = self.program
        if prog is not None:
            rd = self.reservoir_det
            rd.low_volume_nl = prog.low_volume_nl
            rd.low_days = prog.low_days
        end_stop = hw.end_stop()
        if prog is not None or end_stop:
            # with no program the reservoir estimate means nothing; the end stop always does
            vol = self.sched.reservoir.volume_nl if prog is not None else 0x3FFFFFFF
            self.reservoir_det.update(vol, self._basal_nl_day(), end_stop)
            self.reservoir_det.report(self.alarm_set)
        presses = hw.bolus_button_presses()
        while presses > 0:
            presses -= 1
            self.bolus(wire.BOLUS_PATIENT, 0, 0)
        self.alarm_set.tick(dt)
        self._log_alarm_changes()
        pat = self.alarm_set.pattern()
        if pat != self.last_pattern:
            self.last_pattern = pat
            hw.alarm_output(pat)

    def _basal_nl_day(self):
        conc = self.sched.line_conc_ug_ml()
        if not conc:
            return 0
        return self.sched.basal_rate_ng_day() * 1000 // conc

    def _bookkeeping(self, dt):
        s = self.sched
        kind = s.bolus_active()
        if kind != self.last_bolus:
            if self.last_bolus:
                self.state.end_bolus(0)
                self._log(logrec.EV_BOLUS_END, self.last_bolus, 0, self.state.get(sc.F_BOLUS_SERIAL), 0)
                self.save(urgent=True)
            if kind and kind == schedmod.BOLUS_PERIODIC:
                serial = self.state.begin_bolus(kind, 0)
                self._log(logrec.EV_BOLUS_START, kind, 0, 0, serial)
                self.save(urgent=True)
            self.last_bolus = kind
        ng = s.total_ng - self.last_total_ng
        self.last_total_ng = s.total_ng
        self.hour_ng += ng
        self.hour_missed += s.missed_steps - self.last_missed
        self.last_missed = s.missed_steps
        self.hour_steps += s.delivered_steps - self.last_steps
        self.last_steps = s.delivered_steps
        hour = self.clock.ms // MS_PER_HOUR
        if hour != self.hour_mark:
            self._log(logrec.EV_HOURLY_TOTAL, self.hour_mark if self.hour_mark >= 0 else hour,
                      self.hour_ng, self.hour_steps, self.hour_missed)
            alloc, free = _heap()
            self._log(logrec.EV_HEAP, alloc, free, 0, 0)
            self.hour_mark = hour
            self.hour_ng = 0
            self.hour_steps = 0
            self.hour_missed = 0
        self.state_store.tick(dt)
        self.save_due_ms += dt
        if self.save_due_ms >= STATE_EVERY_MS:
            self.save()

    # ------------------------------------------------------------------ Controller: reads
    def hello_info(self):
        return (FIRMWARE_VERSION, self.build)

    def rig_id(self):
        return self.hw.rig_id()

    def rig_key(self):
        if self.key is None:   # provisioned by a deploy while the app runs
            self.key = _read_bytes(_join(self.root, "rigkey.bin"))
        return self.key

    def auth_counter(self):
        return self.state.get(sc.F_AUTH_COUNTER)

    def accept_counter(self, counter):
        self.state.set(sc.F_AUTH_COUNTER, counter)
        if not self.save(urgent=True):
            return (REFUSE_FLASH_BUDGET, "flash write budget for urgent saves is spent (%d, one more "
                    "every %d s): not executed, retry in %d s" % (URGENT_BURST, URGENT_REFILL_MS // 1000,
                                                                 URGENT_REFILL_MS // 1000))
        return None

    def status(self):
        s = self.sched
        prog = self.program
        flags = 0
        if s.suspended:
            flags |= wire.STATUS_FLAG_SUSPENDED
        if s.bolus_active():
            flags |= wire.STATUS_FLAG_BOLUS_ACTIVE
        if self.hw.stepper.enabled():
            flags |= wire.STATUS_FLAG_MOTOR_ON
        if self.clock_set:
            flags |= wire.STATUS_FLAG_CLOCK_SET
        active = self.alarm_set.active()
        basal = s.basal_rate_ng_day()
        res = s.reservoir
        low_in = empty_in = 0xFFFFFFFF
        if basal > 0 and res.conc_ug_ml:
            empty_in = res.hours_to_empty(basal) * 60
            if prog is not None and prog.low_volume_nl:
                above = res.volume_nl - prog.low_volume_nl
                low_in = 0 if above <= 0 else (above * res.conc_ug_ml * 24 * 60) // (basal * 1000)
        return {
            "program_crc": prog.crc32() if prog is not None else 0,
            "mode": prog.mode if prog is not None else 0,
            "flex_step": 255,
            "flags": flags,
            "alarm_count": len(active),
            "top_alarm": active[0] if active else 0,
            "rate_ng_day": s.flow_rate_ng_day(),
            "basal_ng_day": basal,
            "delivered_today_ng": s.delivered_ng_today(),
            "delivered_total_ng": s.total_ng,
            "rolling_24h_ng": s.rolling_24h_ng(),
            "reservoir_nl": res.volume_nl,
            "low_in_min": low_in if low_in < 0xFFFFFFFF else 0xFFFFFFFF,
            "empty_in_min": empty_in,
            "day": self.clock.day,
            "ms_of_day": self.clock.ms,
            "missed_steps": s.missed_steps,
        }

    def running_program(self):
        return self.program

    def alarms(self):
        out = []
        for code in self.alarm_set.active():
            flags = wire.ALARM_FLAG_ACTIVE
            if al.latches(code):
                flags |= wire.ALARM_FLAG_LATCHED
            if self.alarm_set.is_acked(code):
                flags |= wire.ALARM_FLAG_ACKED
            out.append({"alarm_id": code, "code": code, "priority": al.priority(code), "flags": flags,
                        "day": self.clock.day, "ms_of_day": self.clock.ms})
        return out

    def log_bounds(self):
        return (self.log.first_seq(), self.log.next_seq)

    def read_log(self, first_seq, max_count):
        raw = self.log.read_raw(first_seq, max_count)
        return [raw[i:i + logrec.RECORD_SIZE] for i in range(0, len(raw), logrec.RECORD_SIZE)]

    def calibration(self):
        if self.measured_pl:
            return (self.measured_pl, wire.CAL_SOURCE_MEASURED)
        return (self.derived_pl, wire.CAL_SOURCE_DERIVED)

    def limits(self):
        lim = self.hard_limits
        return {"max_rate_ng_day": lim.max_rate_ng_day, "max_24h_ng": lim.max_24h_ng,
                "max_bolus_ng": lim.max_bolus_ng, "max_flow_ng_day": lim.max_flow_ng_day,
                "min_conc_ug_ml": lim.min_conc_ug_ml,
                "max_conc_ug_ml": lim.max_conc_ug_ml, "max_reservoir_nl": lim.reservoir_capacity_nl}

    # ------------------------------------------------------------------ Controller: changes
    def decode_program(self, buf):
        return programmod.Program.decode(buf, self.hard_limits)

    def check_program(self, program):
        try:
            program.validate(self.hard_limits)
        except ValueError as exc:
            return str(exc)
        res = self.sched.reservoir
        if res.conc_ug_ml and program.concentration_ug_ml != res.conc_ug_ml:
            return ("concentration_ug_ml = %d: the reservoir holds %d ug/mL (refill with the new "
                    "drug first)" % (program.concentration_ug_ml, res.conc_ug_ml))
        return None

    def commit_program(self, program):
        blob = program.encode()
        self.program_store.commit(blob)
        code = self.sched.load(program, self.clock)
        self.program = program
        self.last_bolus = self.sched.bolus_active()
        crc = program.crc32()
        self._log(logrec.EV_PROGRAM_COMMIT, crc >> 16, crc & 0xFFFF, program.mode,
                  program.rate_ng_day)
        self.alarm_set.clear(al.ALARM_NO_PROGRAM)
        self.alarm_set.ack(al.ALARM_NO_PROGRAM)
        if self.alarm_set.is_active(al.ALARM_PROGRAM_CORRUPT):
            self.alarm_set.ack(al.ALARM_PROGRAM_CORRUPT)
            self.alarm_set.clear(al.ALARM_PROGRAM_CORRUPT)
        self.save(urgent=True)
        return code or None

    def set_time(self, day, ms_of_day):
        old_day, old_ms = self.clock.day, self.clock.ms
        jump = 0
        if self.downtime_pending:
            jump = self.clock.ms_until(day, ms_of_day, 7 * 86400000)
        if self.program is not None:
            self.sched.set_time(day, ms_of_day)
        else:
            self.clock.set(day, ms_of_day)
        self._log(logrec.EV_TIME_SET, old_day, old_ms, day, ms_of_day)
        if jump > 0 and self.program is not None:
            # the pump was down (or its clock lost) for `jump` ms: missed, never caught up
            rate = self.sched.basal_rate_ng_day()
            conc = self.sched.line_conc_ug_ml() or 1
            missed_ng = rate * (jump // 1000) // 86400
            self._log(logrec.EV_MISSED_VOLUME, missed_ng * 1000 // conc, 0, jump, rate)
        self.downtime_pending = False
        self.clock_set = True
        self.alarm_set.clear(al.ALARM_CLOCK_LOST)
        self.alarm_set.ack(al.ALARM_CLOCK_LOST)
        self.hour_mark = self.clock.ms // MS_PER_HOUR
        self.save(urgent=True)
        return None

    def bolus(self, kind, dose_ng, duration_ms):
        if self.program is None:
            return (schedmod.REFUSE_NO_PROGRAM, schedmod.refusal_text(schedmod.REFUSE_NO_PROGRAM))
        if not self.alarm_set.bolus_allowed():
            top = self.alarm_set.active()
            why = "boluses are held while alarm %s is active" % (al.alarm_name(top[0]) if top else "?")
            self._log(logrec.EV_BOLUS_DENIED, kind, dose_ng, 255, 0)
            return (255, why)
        if kind == wire.BOLUS_PATIENT:
            skind = schedmod.BOLUS_PATIENT
            if self.program.patient is None:
                code = schedmod.REFUSE_PATIENT_DISABLED
            else:
                dose_ng, duration_ms = self.program.patient[0], self.program.patient[1]
                code = self.sched.request_bolus(skind, dose_ng, duration_ms)
        else:
            skind = schedmod.BOLUS_CLINICIAN
            code = self.sched.request_bolus(skind, dose_ng, duration_ms)
        if code:
            self._log(logrec.EV_BOLUS_DENIED, skind, dose_ng, code, 0)
            if skind == schedmod.BOLUS_PATIENT:
                self._raise(al.ALARM_BOLUS_DENIED)
            else:
                self._raise(al.ALARM_LIMIT_REFUSED)
            return (code, schedmod.refusal_text(code))
        serial = self.state.begin_bolus(skind, dose_ng)
        self.last_bolus = self.sched.bolus_active()
        self._log(logrec.EV_BOLUS_START, skind, dose_ng, duration_ms, serial)
        self.save(urgent=True)
        return None

    def suspend(self):
        if self.program is None:
            return (schedmod.REFUSE_NO_PROGRAM, schedmod.refusal_text(schedmod.REFUSE_NO_PROGRAM))
        if not self.sched.suspended:
            dropped = self.hw.stepper.abort() + self.owed
            self.owed = 0
            if dropped:
                self.sched.record_missed(dropped)
            self.sched.suspend()
            self.hw.stepper.enable(False)
        self.state.set(sc.F_SUSPENDED, 1)
        self._log(logrec.EV_SUSPEND, 0, 0, 0, 0)
        self.save(urgent=True)
        return None

    def resume(self):
        if self.program is None:
            return (schedmod.REFUSE_NO_PROGRAM, schedmod.refusal_text(schedmod.REFUSE_NO_PROGRAM))
        self.state.set(sc.F_SUSPENDED, 0)
        if self.sched.suspended and not self.alarm_hold:
            self.sched.resume()
        self._log(logrec.EV_RESUME, 0, 0, 0, 0)
        self.save(urgent=True)
        return None

    def refill(self, volume_nl, conc_ug_ml):
        lim = self.hard_limits
        if conc_ug_ml < lim.min_conc_ug_ml or conc_ug_ml > lim.max_conc_ug_ml:
            return (schedmod.REFUSE_CONCENTRATION,
                    "concentration %d ug/mL outside %d..%d" % (conc_ug_ml, lim.min_conc_ug_ml, lim.max_conc_ug_ml))
        if volume_nl <= 0 or volume_nl > lim.reservoir_capacity_nl:
            return (schedmod.REFUSE_VOLUME, "volume %d nL outside 1..%d (reservoir capacity)"
                    % (volume_nl, lim.reservoir_capacity_nl))
        code = self.sched.refill(volume_nl, conc_ug_ml)
        if code:
            return (code, schedmod.refusal_text(code))
        # the refill is the clinician's answer to the reservoir alarms
        for c in (al.ALARM_RESERVOIR_EMPTY, al.ALARM_RESERVOIR_LOW_VOLUME, al.ALARM_RESERVOIR_LOW_DAYS):
            self.alarm_set.ack(c)
        self.reservoir_det.reset()
        self._log(logrec.EV_REFILL, volume_nl, conc_ug_ml, self.sched.bridge_left_nl(), 0)
        self.save(urgent=True)
        return None

    def prime(self, volume_nl):
        # prime at 600 uL/h (1 nL per 6 ms): a 180 uL catheter fills in 18 min without a
        # pressure spike
        duration = volume_nl * 6
        if duration < 1000:
            duration = 1000
        code = self.sched.prime(volume_nl, duration)
        if code:
            return (code, schedmod.refusal_text(code))
        self._log(logrec.EV_PRIME, volume_nl, duration, 0, 0)
        self.save(urgent=True)
        return None

    def ack_alarm(self, alarm_id):
        if alarm_id < 1 or alarm_id > al.ALARM_MAX:
            return (1, "no alarm with id %d" % alarm_id)
        if self.alarm_set.ack(alarm_id):
            self._log(logrec.EV_ALARM_ACK, alarm_id, al.priority(alarm_id), 0, 0)
            self.save(urgent=True)
            return None
        return (2, "alarm %d (%s) is not active and unacknowledged" % (alarm_id, al.alarm_name(alarm_id)))

    def set_calibration(self, pl_per_step):
        try:
            pl = calibration.select(self.mech, pl_per_step)
        except ValueError as exc:
            return (1, str(exc))
        old = self.sched.pl
        self.sched.pl = pl
        self.measured_pl = pl
        self._log(logrec.EV_CALIBRATION, old, pl, 0, 0)
        self.save(urgent=True)
        return None

    def refusal_text(self, code):
        return schedmod.refusal_text(code)


def _heap():
    """(bytes allocated after a collection, bytes free) on MicroPython; (0, 0) elsewhere."""
    gc.collect()
    try:
        return gc.mem_alloc(), gc.mem_free()
    except AttributeError:
        return 0, 0


def run(hw):
    """Boot and run until the host interrupts (Ctrl-C: back to the REPL for mpremote)."""
    app = PumpApp(hw)
    try:
        app.boot()
        app.loop()
    except KeyboardInterrupt:
        # maintenance: the host took the link for the REPL (mpremote). Motor off, state saved,
        # then the watchdog is disarmed so a deploy is not cut short; the next boot re-arms it.
        _safe_stop(app)
        app._log(logrec.EV_MAINTENANCE, 0, 0, 0, 0)
        hw.watchdog_stop()
        raise
    finally:
        _safe_stop(app)


def _safe_stop(app):
    """Motor disabled, queue dropped (counted missed), state saved: the safe state."""
    hw = app.hw
    dropped = hw.stepper.abort() + app.owed
    app.owed = 0
    hw.stepper.enable(False)
    if dropped and app.program is not None:
        app.sched.record_missed(dropped)
    try:
        app.save(urgent=True)
    except Exception as exc:  # the state store reports its own alarm; never mask the exit
        sys.stderr.write("pump: state not saved at stop: %s\n" % exc) if hasattr(sys, "stderr") else None
