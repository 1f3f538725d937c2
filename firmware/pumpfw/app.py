"""The pump application: boot (restore and check state), then the main loop that ties together
the hardware layer, the dose scheduler, the detectors and alarms, the flash store and the
protocol server. PumpApp is also the controller the protocol server calls (the methods of
pumpfw.controller.Controller, defined here without subclassing it: the Pico does not import the
interface).

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
from pumpcore import call_once, forget, logrec, pressure, wire
from pumpcore import program as programmod
from pumpcore import scheduler as schedmod
from pumpcore import statecodec as sc
from pumpcore.clock import WallClock
from pumpcore.detect import OcclusionDetector, ReservoirDetector, StallDetector, occlusion_steps_per_sample
from pumpcore.screwenc import ScrewMonitor
from pumpcore.fixed import const
from pumpcore.limits import HardLimits
from pumphw.base import DIR_INFUSE
from pumpfw import statemap, text
from pumpfw.ledger import Ledger
from pumpfw.server import ProtocolServer
from pumpfw.store import EventLog, LogBacklog, ProgramStore, StateStore, StoreError, SAVE_WRITTEN, lost_kind

FIRMWARE_VERSION = "0.1.0"
WATCHDOG_MS = const(5000)        # RP2040 limit 8388 ms; no hw.idle is longer than _FEED_MS
IDLE_MAX_MS = const(1000)        # longest sleep between loop iterations while anything runs or sounds
_QUIET_MAX_MS = const(60000)     # longest sleep when all is quiet (_sleep_ms; the minute's save bounds it)
_FEED_MS = const(4000)           # a quiet sleep's longest hw.idle, the watchdog fed between: 1 s under it

STATE_EVERY_MS = const(60000)    # routine state save; urgent saves at every delivery event
URGENT_BURST = const(40)         # urgent saves in a burst (two per authenticated command) ...
URGENT_REFILL_MS = const(15000)
REFUSE_FLASH_BUDGET = const(200)  # app refusal code (scheduler codes are below 100)  # ... refilled one per 15 s: at most 7,200 saves/day (wear: docs/persistence.md)
MIN_PERIOD_US = const(500)       # fastest step rate handed to the generator (2 kHz)
MAX_PERIOD_US = const(1000000)
MS_PER_HOUR = const(3600000)
MS_PER_DAY = const(86400000)
AUTH_LOG_BURST = const(10)       # refused signed requests logged in a burst ...
AUTH_LOG_REFILL_MS = const(360000)  # ... then one per 6 min (<= 250 records/day: flash wear)


def _join(root, name):
    if root in ("", "."):
        return name
    return root + name if root.endswith("/") else root + "/" + name


# A keyed rig that keeps failing (an exception at boot or in the loop resets it) waits before
# each new start, doubling from 1 s to 5 min: a crash loop must not fill the event log with reset
# records (overwriting the dose history) nor wear the flash. The count of unexpected exits in a
# row is in CRASH_FILE, with the build it counts for: it is cleared once the loop has run
# CRASH_STABLE_MS, and a new deploy (another build) starts from 0.
CRASH_FILE = "crashes.bin"
CRASH_BACKOFF_MAX_MS = const(300000)
CRASH_STABLE_MS = const(600000)


def crash_backoff_ms(exits_in_a_row):
    """The wait before the next start after `exits_in_a_row` unexpected exits (ms)."""
    if exits_in_a_row <= 0:
        return 0
    ms = 1000 << (exits_in_a_row - 1 if exits_in_a_row < 10 else 9)
    return ms if ms < CRASH_BACKOFF_MAX_MS else CRASH_BACKOFF_MAX_MS


# The deployed build's hello text per flash root, read at boot: pumpcore.buildrec is boot-only
# (boot() lets it go, issue 16's RAM budget), and the crash path must not load code to count.
_BUILDS = {}


def _read_build(root):
    """The build record under `root` as hello reports it (pumpcore.buildrec.read), read now."""
    from pumpcore import buildrec
    text = buildrec.read(_join(root, buildrec.BUILD_FILE))
    _BUILDS[root] = text
    return text


def _build_id(root):
    text = _BUILDS.get(root)
    return (text if text is not None else _read_build(root)).encode()


def _read_crashes(root):
    """Unexpected exits in a row of the deployed build, from CRASH_FILE (0: none, or counted
    for another build). A torn or foreign file counts as one: the rig waits a little rather
    than not at all."""
    raw = _read_bytes(_join(root, CRASH_FILE))
    if raw is None:
        return 0
    if len(raw) < 4 or raw[2] != (raw[0] ^ 0xA5) or raw[3] != (raw[1] ^ 0x5A):
        return 1
    if raw[4:] != _build_id(root):
        return 0
    return raw[0] | (raw[1] << 8)


def _write_crashes(root, n):
    """Record n unexpected exits in a row of the deployed build (closed at once: it must
    outlive the reset)."""
    n = n if n < 0xFFFF else 0xFFFF
    lo, hi = n & 0xFF, n >> 8
    with open(_join(root, CRASH_FILE), "wb") as f:
        f.write(bytes((lo, hi, lo ^ 0xA5, hi ^ 0x5A)) + _build_id(root))


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class PumpApp:
    """One pump: built on a Hardware object (pumphw.base), run with boot() then loop()."""

    build = "unknown: not booted"   # hello's build_hash (buildrec.UNKNOWN); boot() reads the build record

    def __init__(self, hw, fs=None):
        """`fs`: the flash filesystem object for the stores (default: the hardware's `flash_fs`,
        else pumpfw.store.Fs; tests pass tests/support/tornflash.py to cut the power inside a
        write)."""
        self.hw = hw
        if fs is None:
            fs = getattr(hw, "flash_fs", None)
        # pumpcore.calibration is boot-only here: boot() lets it go (a calibration loads it again)
        from pumpcore import calibration
        root = hw.flash_root
        self.root = root
        self.mech = calibration.load_mechanism(_join(root, "mechanism.json"))
        self.derived_pl = calibration.pl_per_step_from_mechanism(self.mech)
        self.measured_pl = 0
        # reservoir, daily volume (counters < 2**30 over 30 days), lowest concentration and
        # fastest flow re-derived for the deployed mechanism (pumpcore.limits.for_mechanism)
        self.hard_limits = HardLimits.for_mechanism(self.mech, self.derived_pl)
        self.mechanism = calibration.mechanism_name(self.mech)
        self.clock = WallClock()
        self.clock_set = False
        self.alarm_set = al.AlarmSet()
        line = self.mech.get("line", {})
        # threshold and fault band from the sensor mechanism.json describes (the BOM's if the
        # deploy predates "pressure_sensor"; a wrong description stops the boot, field named)
        self.pressure_sensor = pressure.sensor_from_mechanism(self.mech)
        # steps per trend sample from the mechanism: a blocked line's rise per sample must clear
        # the detector's minimum (3 on the 20 mL rig's 18 nL steps, 71 on the precision drive's
        # 652 pL: bench/occlusion_time_to_alarm.py)
        self.occlusion = OcclusionDetector.for_sensor(
            self.pressure_sensor, min_sample_ms=line.get("tau_ms", 1000),
            steps_per_sample=occlusion_steps_per_sample(self.derived_pl,
                                                        line.get("compliance_pl_per_kpa", 20000)))
        self.stall = StallDetector(no_progress_ms=2 * IDLE_MAX_MS)
        # screw encoder vs commanded microsteps (alarm 20) and measured vs commanded flow
        self.screw = ScrewMonitor(self.mech["full_steps_per_rev"] * self.mech["microsteps"], self.derived_pl)
        # what a calibration needs of mechanism.json from here on (select: the derived pL per
        # microstep it is checked against); its texts are let go
        self.mech = calibration.derivation_fields(self.mech)
        self.reservoir_det = ReservoirDetector()
        self.state_store = StateStore(fs=fs, root=root, min_interval_ms=STATE_EVERY_MS,
                                      burst=URGENT_BURST, refill_ms=URGENT_REFILL_MS)
        self.program_store = ProgramStore(fs=fs, root=root)
        self.log = EventLog(fs=fs, root=root)
        self.backlog = LogBacklog()   # records the flash refused, appended later in order
        self.ledger = Ledger(2 * STATE_EVERY_MS)   # write-ahead reservation (pumpfw/ledger.py)
        self.auth_tokens = AUTH_LOG_BURST
        self.auth_refill_ms = 0
        self.auth_unlogged = 0
        self.state = sc.PersistentState()
        self.sched = schedmod.DoseScheduler(self.derived_pl, self.hard_limits)
        self.program = None
        self.server = ProtocolServer(self, hw.serial_write)
        self.key = _read_bytes(_join(root, "rigkey.bin"))
        self.seen_changes = -1
        self.seen_active = bytearray(al.ALARM_MAX + 1)
        self.crashes = 0           # unexpected exits in a row before this start (run() sets it)
        self.up_ms = 0             # loop time since boot, counted only while crashes is set
        self.restored_alarms = 0   # mask of alarms the boot restored and the log has not shown yet
        self.alarm_hold = False        # delivery held by a motor-stopping alarm
        self.queued_done = 0           # steps_done() at the last look
        self.owed = 0                  # microsteps due but not yet handed to the generator
        self.button_presses = 0        # patient presses latched in a quiet sleep, for the next _sense
        self.woke_quiet = False        # the last sleep was quiet: read the sensors before delivering
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
        self.pending_snap = None       # ledger of a state whose program was unreadable (next commit)
        self.ready = False

    # ------------------------------------------------------------------ boot
    def boot(self):
        """Restore state and program, log the reset, then allow the motor. Never enables the
        motor before the state is restored and checked. The recovery itself (pumpfw.recovery)
        is loaded for the call: it is in the heap only while the boot runs."""
        from pumpfw import recovery
        self.hw.stepper.enable(False)
        # the deployed build (pumpcore.buildrec); missing or corrupt -> "unknown: <reason>"
        self.build = _read_build(self.root)
        forget("pumpcore.buildrec")   # boot-only from here (the crash path uses _BUILDS)
        call_once(recovery, "restore", self)
        del recovery
        forget("pumpcore.calibration")   # the mechanism is derived and checked (PumpApp())
        self.last_total_ng = self.sched.total_ng
        self.last_missed = self.sched.missed_steps
        self.last_steps = self.sched.delivered_steps
        self.hour_mark = self.clock.ms // MS_PER_HOUR
        self.save(urgent=True)
        alloc, free = _heap()      # the boot's working set: the RAM margin a tester can check
        self._log(logrec.EV_HEAP, alloc, free, 0, 0)
        self.queued_done = self.hw.stepper.steps_done()
        self.last_ticks = self.hw.ticks_ms()
        self.hw.watchdog_start(WATCHDOG_MS)
        self._log(logrec.EV_WATCHDOG_ARMED, WATCHDOG_MS, 0, 0, 0)
        self.ready = True

    # ------------------------------------------------------------------ helpers
    def _log(self, code, a0=0, a1=0, a2=0, a3=0, keep=True):
        """Append one record now; returns its seq, or 0 if it is not on the log yet. A flash
        error (StoreError) raises the storage-fault alarm and, with `keep`, puts the record in
        the backlog (appended later in order with this time, or counted lost if the backlog is
        full); while records wait, new ones join the queue behind them. keep=False: the caller
        carries what the record says (the hourly totals) and writes it again itself."""
        q = self.backlog
        if not q.count:
            try:
                return self.log.append(self.clock.day, self.clock.ms, code, a0, a1, a2, a3)
            except OSError:
                pass
            except ValueError:      # a field the codec refuses: a firmware bug, never retried
                self.alarm_set.raise_(al.ALARM_STORAGE_FAULT)
                return 0
        self.alarm_set.raise_(al.ALARM_STORAGE_FAULT)
        if keep:
            q.put(self.clock.day, self.clock.ms, code, a0, a1, a2, a3)
        return 0

    def _retry_backlog(self):
        """The backlog's retry is due: append the waiting records; once they are all on the log
        (and the fault's losses counted), EV_LOG_BACKLOG says how many came late and how many
        were lost. The storage-fault alarm stays up until then (ack_alarm refuses it)."""
        q = self.backlog
        if q.retry(self.log):
            late, l_alarm, l_bolus, l_other = q.report()
            self._log(logrec.EV_LOG_BACKLOG, late, l_alarm, l_bolus, l_other)

    def _backlog_by_kind(self):
        """(alarm, bolus, other) records waiting or lost: what a reset now would lose (saved)."""
        q = self.backlog
        n = [q.lost[0], q.lost[1], q.lost[2]]
        for k in range(q.count):
            n[lost_kind(q.recs[((q.head + k) % q.size) * 7 + 2])] += 1
        return n

    def _raise(self, code):
        """Raise an alarm now; the log record is written by _log_alarm_changes()."""
        self.alarm_set.raise_(code)

    def _log_alarm_changes(self):
        """Log every alarm that appeared or went away since the last look (one place for all
        sources: detectors, commands, boot). An alarm that went away and was raised again in
        between (a command acknowledged it, then another raised it) gets its cleared and raised
        records too: every occurrence is on the log (pumpcore.alarms.AlarmSet.gone_count).
        Allocates nothing when nothing changed."""
        aset = self.alarm_set
        if aset.changes == self.seen_changes:
            return
        self.seen_changes = aset.changes
        seen = self.seen_active
        for code in range(1, al.ALARM_MAX + 1):
            gone = aset.gone_count(code)
            if gone:
                aset.looked(code)
                for i in range(gone):
                    if not seen[code]:
                        self._log_raised(code)     # raised after it went away, gone again
                    self._log(logrec.EV_ALARM_CLEARED, code, aset.priority(code), aset.gone_ms(code, i == 0), 0)
                    seen[code] = 0
            now = 1 if aset.is_active(code) else 0
            if now != seen[code]:
                seen[code] = now
                if now:
                    self._log_raised(code)
                else:
                    self._log(logrec.EV_ALARM_CLEARED, code, aset.priority(code), aset.active_ms(code), 0)

    def _log_raised(self, code):
        bit = 1 << code
        restored = 1 if self.restored_alarms & bit else 0
        self.restored_alarms &= ~bit   # a later raise of the same code is a new one
        # a2: the detector that fired for missed-steps / flow (pumpcore.screwenc.BY_*)
        by = self.screw.by if code == al.ALARM_MISSED_STEPS or code == al.ALARM_FLOW_LOW else 0
        # a3: 1 for an alarm active before the reset, carried over (its raise is logged before
        # the reset; this record says it is still there after it)
        self._log(logrec.EV_ALARM_RAISED, code, self.alarm_set.priority(code), by, restored)

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
        s = self.sched
        if self.program is not None:
            st.set_program_crc(self.program.crc32())
        if st.bolus_in_progress():
            st.set(sc.F_BOLUS_DELIVERED_NG, s.bolus_delivered_ng())
        statemap.put_scheduler(st, s.snapshot())   # also with no program: the reservoir
        # records waiting in the backlog (or lost) by kind: a reset now loses them, the boot says so
        if self.backlog.waiting():
            w = self._backlog_by_kind()
            st.sections[sc.SEC_APP] = (self.measured_pl, w[0], w[1], w[2])
        else:
            st.sections[sc.SEC_APP] = (self.measured_pl,)
        # write-ahead: the steps the motor may make before the next save (pumpfw/ledger.py)
        reserve = self.ledger.reservation(s) if self.program is not None else 0
        st.sections[sc.SEC_LEDGER] = self.ledger.section(
            s, reserve, self.hour_mark, self.hour_ng + s.total_ng - self.last_total_ng,
            self.hour_steps + s.delivered_steps - self.last_steps,
            self.hour_missed + s.missed_steps - self.last_missed,
            self.hw.stepper.pending() + self.owed)   # counted due, maybe never made
        st.sections[sc.SEC_ALARM_AGE] = self.alarm_set.ages()
        screw = self.screw.persist()
        st.sections[sc.SEC_SCREW] = (screw,)
        try:
            ok = self.state_store.save(st, urgent) == SAVE_WRITTEN
        except StoreError:
            # the flash failed: delivery goes on (storage-fault alarm) without a ledger bound
            self.ledger.unbounded = True
            self._raise(al.ALARM_STORAGE_FAULT)
            self._log(logrec.EV_STORAGE_FAULT, 0, 0, 0, 0)
            return False
        finally:
            # every save makes its sections again from the live objects (above), and nothing
            # reads them between two saves: not kept (the bolus gate's alone is 150 ints)
            st.sections.clear()
        if ok:
            self.save_due_ms = 0
            self.ledger.unbounded = False
            self.ledger.saved(s, reserve)
            self.screw.mark_saved(screw)
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
        # alarm timers first: one raised in this iteration is raised now, at this wake, and its
        # age (active_ms, INFO show time) starts from here, not from the sleep before it
        self.alarm_set.tick(dt)
        if self.woke_quiet:
            # after a quiet sleep nothing was owed or queued: the clock moves on, then the
            # sensors are read before the due step is handed out, so the pressure floor, DIAG
            # and the end stop are the line's before any step this wake queues, and an alarm
            # they raise holds it (the wake a tick before the step that the quiet sleep used to
            # end on, at the step's own time)
            self._advance(dt)
            self._sense(dt)
            progressed = self._deliver(dt, False)
        else:
            progressed = self._deliver(dt)
            self._sense(dt)
        self._bookkeeping(dt)
        data = hw.serial_read()
        if data and self.server.feed(data):
            raise KeyboardInterrupt      # only on a keyless rig (server.break_enabled)
        if self.maint_window:
            self._start_hold()           # answered: the hold takes over, the loop ends here
        if progressed:
            hw.watchdog_feed()
        self._sleep()

    def _sleep(self):
        """The loop's sleep: _sleep_ms() ms. One hw.idle up to _FEED_MS; a longer (quiet) sleep
        as hw.idle calls of at most _FEED_MS, the watchdog fed between them, ended early when one
        wakes before its time (host bytes) or a patient button press is latched (kept in
        button_presses for _sense), so neither waits longer than in a _FEED_MS sleep."""
        hw = self.hw
        quiet = self._quiet()
        self.woke_quiet = quiet
        ms = self._sleep_ms(quiet)
        if ms <= _FEED_MS:
            hw.idle(ms)
            return
        start = hw.ticks_ms()
        left = ms
        while True:
            chunk = left if left < _FEED_MS else _FEED_MS
            t0 = hw.ticks_ms()
            hw.idle(chunk)
            now = hw.ticks_ms()
            if hw.ticks_diff(now, t0) < chunk:
                return                   # woken: host bytes wait
            left = ms - hw.ticks_diff(now, start)
            if left <= 0:
                return
            n = hw.bolus_button_presses()
            if n:
                self.button_presses += n
                return
            hw.watchdog_feed()

    def _sleep_ms(self, quiet):
        """How long the loop may sleep now (ms; host bytes end it early), `quiet` being
        _quiet() now. IDLE_MAX_MS (1 s) at most while anything runs, sounds or counts down; when
        all is quiet, up to _QUIET_MAX_MS
        (60 s) but never past the next hour edge, the minute's save, nor the next microstep or
        schedule boundary (docs/virtual-time.md "The wake policy")."""
        if not quiet:
            if self.program is None or self.sched.suspended:
                return IDLE_MAX_MS
            return self.sched.ms_to_next_due_within(IDLE_MAX_MS)   # 1..IDLE_MAX_MS
        cap = STATE_EVERY_MS - self.save_due_ms
        if cap > _QUIET_MAX_MS:
            cap = _QUIET_MAX_MS
        t = MS_PER_HOUR - self.clock.ms % MS_PER_HOUR
        if t < cap:
            cap = t
        if self.program is not None:
            # to the next step, whose wake reads the sensors before it queues the step (step())
            t = self.sched.ms_to_next_due_within(cap)
            if t < cap:
                cap = t
        return cap if cap > 0 else 1

    def _quiet(self):
        """True when a sleep past IDLE_MAX_MS delays nothing: booted, no motor-stopping alarm,
        no unacknowledged alarm (bursts, reminders, INFO show times are timed in ticks), no
        step owed or queued (the stall timer, DIAG and the screw's unwrap run while steps go),
        no bolus, no backlog retry, no occlusion, sensor-fault or end-stop confirmation running."""
        return (self.ready and not self.alarm_hold and not self.owed and self.alarm_set.quiet()
                and not self.sched.bolus_active() and not self.backlog.waiting()
                and not self.occlusion.timing() and not self.reservoir_det.confirming()
                and not self.hw.stepper.pending())

    def _advance(self, dt):
        """Move the schedule (or with no program the clock) on by dt ms; what fell due is owed."""
        if self.program is not None:
            self.owed += self.sched.advance(dt)
        else:
            self.clock.advance(dt)

    def _deliver(self, dt, advance=True):
        """Advance the scheduler by dt ms (unless `advance` is False: step() did), hand due
        microsteps to the step generator, account what the generator made. Returns True (the
        delivery task made progress)."""
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
        if dt and advance:
            self._advance(dt)
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
            n = self.owed
            room = self.ledger.room(self.sched, n)
            if room < n and self.state_store.allowed(True):
                # the flow rose past the last save's reservation: save first, then step
                self.save(urgent=True)
                room = self.ledger.room(self.sched, n)
            if room < n:
                n = room          # the rest waits, owed, for the next save (never unrecorded)
            if n <= 0:
                return True
            span = dt if dt > 0 else self.sched.ms_to_next_due()
            if span > IDLE_MAX_MS:
                span = IDLE_MAX_MS
            period = span * 1000 // n
            if period < MIN_PERIOD_US:
                period = MIN_PERIOD_US
            elif period > MAX_PERIOD_US:
                period = MAX_PERIOD_US
            if st.queue(n, period, DIR_INFUSE):
                self.owed -= n
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
            self.screw.hold()
        self.screw.update(dt, made, hw.screw_angle())
        self.screw.report(self.alarm_set)
        if self.screw.save_wanted() and self.state_store.allowed(True):
            self.save(urgent=True)   # steps are going missing: a reset now must not forget them
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
        presses = hw.bolus_button_presses() + self.button_presses
        self.button_presses = 0
        while presses > 0:
            presses -= 1
            self.bolus(wire.BOLUS_PATIENT, 0, 0)
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
                delivered = s.last_bolus_delivered_ng()[2]
                self.state.end_bolus(delivered)
                # the schedule has issued the bolus; the generator paces its last steps over the
                # iteration they fell due in (up to IDLE_MAX_MS), so some may still be on their
                # way to the pin: counted in the total, said here (queued or owed, an upper bound)
                self._log(logrec.EV_BOLUS_END, self.last_bolus, delivered,
                          self.state.get(sc.F_BOLUS_SERIAL), self.hw.stepper.pending() + self.owed)
                self.save(urgent=True)
            if kind and kind == schedmod.BOLUS_PERIODIC:
                serial = self.state.begin_bolus(kind, s.b_dose)
                self._log(logrec.EV_BOLUS_START, kind, s.b_dose, s.b_duration, serial)
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
            logged = self._log(logrec.EV_HOURLY_TOTAL, self.hour_mark if self.hour_mark >= 0 else hour,
                               self.hour_ng, self.hour_steps, self.hour_missed, False)
            alloc, free = _heap()
            self._log(logrec.EV_HEAP, alloc, free, 0, 0)
            self.hour_mark = hour
            if logged:
                self.hour_ng = 0
                self.hour_steps = 0
                self.hour_missed = 0
            # else the flash failed (storage-fault alarm): the hour's delivery stays in the
            # accumulators and the next hour's record carries it, so the hourly records still
            # sum to the delivered total
        if self.backlog.waiting() and self.backlog.due(dt):
            self._retry_backlog()
        self.state_store.tick(dt)
        self._auth_tick(dt)
        self.save_due_ms += dt
        if self.save_due_ms >= STATE_EVERY_MS:
            self.save()
            if self.crashes:
                self._stable_tick()

    def _stable_tick(self):
        """Once the loop has run CRASH_STABLE_MS after a crash back-off, the crash count ends."""
        self.up_ms += STATE_EVERY_MS
        if self.up_ms >= CRASH_STABLE_MS:
            try:
                _write_crashes(self.root, 0)
                self.crashes = 0
            except OSError:
                self.alarm_set.raise_(al.ALARM_STORAGE_FAULT)

    # ------------------------------------------------------------------ Controller: reads
    def hello_info(self):
        return (FIRMWARE_VERSION, self.build)

    def mechanism_name(self):
        return self.mechanism

    def rig_id(self):
        return self.hw.rig_id()

    def rig_key(self):
        if self.key is None:   # provisioned by a deploy while the app runs
            self.key = _read_bytes(_join(self.root, "rigkey.bin"))
            if self.key is not None:
                self.lock_link(True)
        return self.key

    def auth_counter(self):
        return self.state.get(sc.F_AUTH_COUNTER)

    def accept_counter(self, counter):
        self.state.set(sc.F_AUTH_COUNTER, counter)
        if not self.save(urgent=True):
            return (REFUSE_FLASH_BUDGET, text("budget", URGENT_BURST, URGENT_REFILL_MS // 1000,
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
        # in STATUS_RESP's order: its names are the dict's keys (wire.fields), not copies here
        return wire.fields(wire.STATUS_RESP, (
            prog.crc32() if prog is not None else 0,                        # program_crc
            prog.mode if prog is not None else 0,                           # mode
            (prog.basal_step_at(self.clock.weekday(), self.clock.ms)        # flex_step
             if prog is not None and prog.mode == programmod.MODE_FLEX else 255),
            flags,                                                          # flags
            len(active),                                                    # alarm_count
            active[0] if active else 0,                                     # top_alarm
            s.flow_rate_ng_day(),                                           # rate_ng_day
            basal,                                                          # basal_ng_day
            s.delivered_ng_today(),                                         # delivered_today_ng
            s.total_ng,                                                     # delivered_total_ng
            s.rolling_24h_ng(),                                             # rolling_24h_ng
            res.volume_nl,                                                  # reservoir_nl
            low_in if low_in < 0xFFFFFFFF else 0xFFFFFFFF,                  # low_in_min
            empty_in,                                                       # empty_in_min
            self.clock.day,                                                 # day
            self.clock.ms,                                                  # ms_of_day
            s.missed_steps,                                                 # missed_steps
            self.ledger.uncertain_ng & 0x3FFFFFFF,                          # uncertain_ng
            s.bridge_left_nl(),                                             # bridge_left_nl
            s.line_conc_ug_ml(),                                            # line_conc_ug_ml
            self.trapped_nl(),                                              # trapped_nl
            (self.hw.stepper.pending() + self.owed) & 0x3FFFFFFF,          # queued_steps
        ))

    def trapped_nl(self):
        """During an occlusion, the volume pushed against the block since the line was last at
        rest (pumpcore.detect.OcclusionDetector.trapped_steps), nL rounded up; 0 otherwise."""
        occ = self.occlusion
        if not occ.active:
            return 0
        nl = -(-occ.trapped_steps() * self.sched.pl // 1000)
        return nl if nl < 0x3FFFFFFF else 0x3FFFFFFF

    def running_program(self):
        return self.program

    def alarms(self):
        """Active alarms with the wall time each was raised (now less its age; the age survives a
        reset) and ALARM_FLAG_ACTIVE only while its condition is still present: a latched
        alarm whose condition ended shows without it until acknowledged."""
        out = []
        aset = self.alarm_set
        now = self.clock.day * MS_PER_DAY + self.clock.ms   # a big int on the RP2040: not hot
        for code in aset.active():
            flags = wire.ALARM_FLAG_ACTIVE if aset.condition_present(code) else 0
            if aset.latches(code):
                flags |= wire.ALARM_FLAG_LATCHED
            if aset.is_acked(code):
                flags |= wire.ALARM_FLAG_ACKED
            day, ms = divmod(now - aset.active_ms(code), MS_PER_DAY)
            out.append({"alarm_id": code, "code": code, "priority": aset.priority(code), "flags": flags,
                        "day": day, "ms_of_day": ms})
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
        return wire.fields(wire.LIMITS_RESP, (   # in LIMITS_RESP's order
            lim.max_rate_ng_day, lim.max_24h_ng, lim.max_bolus_ng, lim.max_flow_ng_day,
            lim.min_conc_ug_ml, lim.max_conc_ug_ml, lim.reservoir_capacity_nl))

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
            return text("conc_other", program.concentration_ug_ml, res.conc_ug_ml)
        return None

    # the commands that configure the pump run in pumpfw.configure, loaded for the call
    def commit_program(self, program):
        from pumpfw import configure
        return call_once(configure, "commit_program", self, program)

    def set_time(self, day, ms_of_day):
        from pumpfw import configure
        return call_once(configure, "set_time", self, day, ms_of_day)

    def bolus(self, kind, dose_ng, duration_ms):
        if self.program is None:
            return (schedmod.REFUSE_NO_PROGRAM, schedmod.refusal_text(schedmod.REFUSE_NO_PROGRAM))
        if not self.alarm_set.bolus_allowed():
            top = self.alarm_set.active()
            why = text("bolus_held", al.alarm_name(top[0]) if top else "?")
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
        from pumpfw import configure
        return call_once(configure, "refill", self, volume_nl, conc_ug_ml)

    def prime(self, volume_nl):
        from pumpfw import configure
        return call_once(configure, "prime", self, volume_nl)

    def ack_alarm(self, alarm_id):
        if alarm_id < 1 or alarm_id > al.ALARM_MAX:
            return (1, text("no_alarm", alarm_id))
        if alarm_id == al.ALARM_STORAGE_FAULT and self.backlog.waiting():
            return (3, text("ack_queued", alarm_id, al.alarm_name(alarm_id), self.backlog.count,
                            self.backlog.backoff_ms // 1000))
        # the raises not yet on the log go first (the boot's, a command's earlier in this
        # iteration): the log reads raised, then acknowledged, never the other way round
        self._log_alarm_changes()
        if self.alarm_set.ack(alarm_id):
            self._log(logrec.EV_ALARM_ACK, alarm_id, self.alarm_set.priority(alarm_id), 0, 0)
            self.save(urgent=True)
            return None
        return (2, text("ack_none", alarm_id, al.alarm_name(alarm_id)))

    def set_calibration(self, pl_per_step):
        from pumpfw import configure
        return call_once(configure, "set_calibration", self, pl_per_step)

    def refusal_text(self, code):
        return schedmod.refusal_text(code)

    def auth_refused(self, cmd, status):
        """A signed request was refused (wrong rig, no key, bad MAC, replay): logged, at most
        AUTH_LOG_BURST in a burst and then one per AUTH_LOG_REFILL_MS, so a flood cannot wear the
        flash; the next record says how many went unlogged."""
        if self.auth_tokens <= 0:
            self.auth_unlogged += 1
            return
        self.auth_tokens -= 1
        self._log(logrec.EV_AUTH_REFUSED, cmd, status, self.auth_unlogged, 0)
        self.auth_unlogged = 0

    def _auth_tick(self, dt):
        if self.auth_tokens >= AUTH_LOG_BURST:
            self.auth_refill_ms = 0
            return
        self.auth_refill_ms += dt
        if self.auth_refill_ms >= AUTH_LOG_REFILL_MS:
            self.auth_refill_ms -= AUTH_LOG_REFILL_MS
            self.auth_tokens += 1

    # ------------------------------------------------------------------ maintenance
    # A keyed rig's app owns the link: Ctrl-C is data (hw.link_interrupt(False)) and noise to the
    # server, so the REPL (which can read rigkey.bin) is reached only through the signed
    # maintenance command. docs/ARCHITECTURE.md "Maintenance".
    maint_window = 0        # ms: a signed maintenance answered in this loop iteration
    maint_logged_ms = 0     # maintenance ms logged at boot (EV_MAINT_END): not missed again at sync
    maint_pending = False   # back from a maintenance whose length only the next time sync tells

    def lock_link(self, locked):
        """locked: no byte from the host stops the app (keyed rig); else Ctrl-C drops to the
        REPL as on a keyless rig."""
        self.hw.link_interrupt(not locked)
        self.server.break_enabled = not locked

    def maintenance(self, window_ms):
        """Controller: signed maintenance (window checked by the server). Refused only when
        the state cannot be saved now (the alarm must reach the flash before the REPL)."""
        if not self.state_store.allowed(True):
            return (REFUSE_FLASH_BUDGET, text("mt_budget", URGENT_REFILL_MS // 1000))
        self.enter_maintenance(window_ms)
        return None

    def enter_maintenance(self, window_ms):
        """Suspend delivery (queued and owed steps counted missed, motor released), raise the
        maintenance alarm, log the entry, save urgently. The loop leaves for the REPL once
        the answer is sent (step -> _start_hold)."""
        dropped = _drop_queue(self)
        self._raise(al.ALARM_MAINTENANCE)
        self._log_alarm_changes()
        self._log(logrec.EV_MAINT_START, window_ms, self.auth_counter(), self._due_rate(), dropped)
        if self.program is not None:
            # nothing flows until the app is back: the state saved now reserves no steps
            # (pumpfw/ledger.py), so the boot after it counts nothing as possibly delivered
            self.sched.suspend()
        self.save(urgent=True)
        self.maint_window = window_ms

    def _start_hold(self):
        """Hand the watchdog and the alarm output to the hardware's hold, then leave the loop."""
        pat = self.alarm_set.pattern()
        self.last_pattern = pat
        self.hw.maintenance_hold(self.maint_window, self.auth_counter(), pat)
        raise MaintenanceExit(self.maint_window)

    def _due_rate(self):
        """The basal due now (ng/day; 0 without a program), held or suspended or not: the
        scheduler counts a held or suspended basal as missed, so a maintenance window, which
        suspends it too, misses this rate (the same rule as EV_MISSED_VOLUME's downtime).
        EV_MAINT_START and EV_MAINT_END both carry it, so the two records agree."""
        if self.program is None:
            return 0
        return self.sched.basal_rate_ng_day()


def loop_gc_threshold():
    """The collection threshold for the main loop, once the boot is done (main.py's 8 KB
    served the imports and the boot's buffers): 8 KB or 1/64 of the heap if that is more. The
    RP2040 (234 KB heap) stays at 8 KB; the virtual rig's 4 MB heap (the unix port) gets 64 KB:
    each collection marks the whole live heap (about 0.5 MB of 64-bit objects there), and at
    8 KB one every few loop iterations was most of the firmware's CPU (a state save's encode
    took 455 us against 112 us without them). Not rarer: at 1/32 garbage lingered long enough
    for stale C-stack words to keep some of it through a collection (tests/rig/test_soak.py)."""
    try:
        gc.threshold(max(8192, (gc.mem_free() + gc.mem_alloc()) // 64))
    except AttributeError:                  # CPython
        pass


def _heap():
    """(bytes allocated after a collection, bytes free) on MicroPython; (0, 0) elsewhere."""
    gc.collect()
    try:
        return gc.mem_alloc(), gc.mem_free()
    except AttributeError:
        return 0, 0


class MaintenanceExit(Exception):
    """step() after a signed maintenance command was answered: the app leaves for the REPL."""


def run(hw):
    """Boot and run. Leaves only (1) for the REPL after a signed maintenance command (returns
    the app: main.py ends, the hold keeps the watchdog fed and the alarm sounding), or (2) on
    a keyless rig on Ctrl-C (motor off, saved, watchdog off: deploy to a fresh rig). Any
    other way out (an unexpected exception, or Ctrl-C on a keyed rig) stops the motor, saves,
    logs and resets the rig: never an open REPL on a rig that holds a key."""
    keyed = _read_bytes(_join(hw.flash_root, "rigkey.bin")) is not None
    _BUILDS.clear()    # this boot's build, read again below
    crashes = _read_crashes(hw.flash_root) if keyed else 0
    app = None
    try:
        hw.link_interrupt(not keyed)
        if crashes:
            _back_off(hw, crashes)
        app = PumpApp(hw)
        app.crashes = crashes
        app.lock_link(keyed)
        app.boot()
        loop_gc_threshold()
        app.loop()
    except MaintenanceExit:
        hw.link_interrupt(True)      # kbd_intr(3): the REPL and mpremote work again
        return app
    except KeyboardInterrupt as exc:
        if keyed or (app is not None and app.key is not None):
            _reset_after(hw, app, exc)
        if app is not None:
            _safe_stop(app)
            app._log(logrec.EV_MAINTENANCE, 0, 0, 0, 0)
        hw.watchdog_stop()
        hw.link_interrupt(True)
        raise
    except Exception as exc:
        if keyed or (app is not None and app.key is not None):
            _reset_after(hw, app, exc)
        if app is not None:
            _safe_stop(app)
        raise


def _back_off(hw, crashes):
    """Motor off and wait crash_backoff_ms(crashes) before the application starts again."""
    wait = crash_backoff_ms(crashes)
    try:
        hw.stepper.enable(False)
    except Exception:
        pass
    print("pump: %d unexpected exits in a row: waiting %d s before starting again"
          % (crashes, wait // 1000))
    # fed in 1 s slices: the watchdog is armed here (boot() arms it again), so a hang during
    # the wait still resets, and a watchdog left running by the reset cannot cut the wait short
    hw.watchdog_start(WATCHDOG_MS)
    while wait > 0:
        step = wait if wait < 1000 else 1000
        hw.sleep_ms(step)
        hw.watchdog_feed()
        wait -= step


def _reset_after(hw, app, exc):
    """Keyed rig, unexpected way out: report, motor off, state saved, log, reset. Never returns."""
    try:
        if hasattr(sys, "print_exception"):
            sys.print_exception(exc)
        else:
            import traceback
            traceback.print_exception(type(exc), exc, exc.__traceback__)
    except Exception:
        pass
    exits = 1
    try:
        exits = _read_crashes(hw.flash_root) + 1
        _write_crashes(hw.flash_root, exits)
    except Exception:
        pass
    try:
        if app is not None:
            _safe_stop(app)
            app._log(logrec.EV_MAINTENANCE, 1, exits, crash_backoff_ms(exits), 0)
        else:
            hw.stepper.enable(False)
    except Exception:
        pass
    try:
        hw.reset()
    except Exception:
        pass
    while True:   # a reset that did not happen: wait for the watchdog, never return to the REPL
        try:
            hw.sleep_ms(1000)
        except Exception:
            pass


def _drop_queue(app):
    """Motor disabled, the generator's queue and the owed steps dropped and counted missed;
    returns how many."""
    hw = app.hw
    dropped = hw.stepper.abort() + app.owed
    app.owed = 0
    hw.stepper.enable(False)
    if dropped and app.program is not None:
        app.sched.record_missed(dropped)
    return dropped


def _safe_stop(app):
    """Motor disabled, queue dropped (counted missed), state saved: the safe state."""
    _drop_queue(app)
    try:
        app.save(urgent=True)
    except Exception as exc:  # the state store reports its own alarm; never mask the exit
        sys.stderr.write("pump: state not saved at stop: %s\n" % exc) if hasattr(sys, "stderr") else None
