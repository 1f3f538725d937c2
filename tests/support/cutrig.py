"""Power cuts of the whole application at random moments, in the real micropython binary (and,
for a quick look, in CPython): the dose ledger after every restart against the plunger.

MicroPython-compatible on purpose (no annotations, no dataclasses, own PRNG): tests/persist/
test_ledger_cuts.py runs `run(seed, chains, cuts_per_chain)` inside the unix port over the
firmware's own modules. Pieces:

- CutFs: the store's filesystem interface (pumpfw.store.Fs) in memory, with a cut armed at the
  k-th byte or operation. LITTLEFS semantics (a file's new contents appear only at flush/close,
  renames atomic) or POSIX (a write torn at any byte; "wb" truncates at once).
- CutHardware: pumphw.base names on a manual clock; the stepper makes its queued pulses at their
  period while enabled, and `plunger` counts every pulse made across boots: the truth.
- A chain: a fresh flash, then boot, random delivery (basal, clinician and patient boluses,
  program commits, refills, suspend and resume, time syncs, alarm acknowledgements, catheter
  primes under a stopped program, half of them cut while they run), a cut at a random
  byte/operation of whatever the app writes next or between two loop iterations, reboot, check;
  `cuts_per_chain` times (< 20 h of device time per chain, so the rolling 24 h still holds
  everything the plunger made).
- The hour edge (HOUR_EDGE_PER_MILLE of the run segments): a chain's own time crosses an hour
  only now and then (a segment is at most 245 s, and the clock restarts from the last save), so
  these segments sync the clock to 1 .. 90 s before an hour and cut 0 .. 90 s after that hour's
  record, before or after the next routine save, or (a third) at a byte of a write from the
  hour's record on. The reset between an hour's record and the next save that CI found in the
  stateful test (fd1e37b) is then cut about 200 times per 1,000 restarts.

Checks after each restart (counted, and the first failures described):
- under-count: delivered total and rolling 24 h >= floor(plunger x ng per microstep); the
  reservoir estimate <= filled - plunger volume;
- bracket: total - uncertain_ng (what status calls certain) <= plunger ng;
- over-count: total - plunger ng <= the reset's own stated bound (possibly + unmade ng of the
  ledger-restored record) summed over the chain's resets;
- double dose: no bolus (nor prime) resumes after a restart;
- totals reset: never below the total before the cut less the unsaved part (implied by the
  under-count check, counted separately);
- bolus records: every bolus start and prime has its own serial and exactly one end or aborted
  record (none left open with no bolus running after the restart, none closed twice);
- primes: a prime's pulses are counted in prime_steps, not as dose, so the dose checks above
  hold against the plunger less the most the chain's primes can have made, and total + primed
  steps >= every pulse made;
- acknowledgements: every EV_ALARM_ACK names an alarm the log raised before it;
- patient lockout: the latest patient bolus the log shows started still locks out until its
  start + the lockout by the rig's clock (a start whose save was cut too: 4 of 2,058 restarts at
  seed 45, 100 chains, before the boot restored it);
- hourly totals: hourly-total + hourly-partial records (+ the hour in progress) sum exactly
  to the delivered total, at every restart: the boot logs the cut hour's partial before the
  first check, and the log holds every record of the chain (a chain writes a few hundred; the
  ring keeps the newest 3,968), so the sum can always be exact. (It was checked only at a
  chain's last restart, 41 of 1,024.)
"""
import json
import sys

from pumpcore import logrec
from pumpcore.alarms import ALARM_MAX
from pumpcore.program import MODE_CONTINUOUS, MODE_FLEX, MODE_STOPPED, Program
from pumpcore.scheduler import BOLUS_PRIME
from pumpfw.app import PumpApp
from pumpfw import store as storemod
from pumphw.base import RESET_POWER_ON
from pumphw.interface import Hardware, Stepper

LITTLEFS = "littlefs"
POSIX = "posix"
DAY0 = 9000
CONC = 2000          # ug/mL
FILL_NL = 20000000   # 20 mL
HOUR_EDGE_PER_MILLE = 200   # run segments aimed at the minute after an hour's record
PATIENT = (5000, 30000, 60000, 24)   # every program's patient bolus: 5 ug in 30 s, 1 min lockout
PATIENT_PER_MILLE = 400     # of the boluses the host asks for, patient ones (wire.BOLUS_PATIENT)
PRIME_MIN_NL = 200          # a prime fills 200 .. 3,100 nL: 1.2 .. 18.6 s at configure.prime's 1 nL / 6 ms
PRIME_DRAWS = 30
PRIME_CUT_PER_MILLE = 500   # primes with a cut armed at a random moment of their run


class Cut(BaseException):
    """The power went: nothing after this point of the app ran."""


class Rng:
    """xorshift32: the same draws on CPython and MicroPython for a seed."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n

    def chance(self, per_mille):
        return self.below(1000) < per_mille


class _File:
    def __init__(self, fs, path, mode):
        self.fs = fs
        self.path = path
        self.mode = mode
        self.pos = 0
        if mode == "rb":
            if path not in fs.files:
                raise OSError(2, "no such file: %s" % path)
            self.buf = bytearray(fs.files[path])
        elif mode == "wb":
            self.buf = bytearray()
            if fs.semantics == POSIX:
                fs.files[path] = b""
            elif path not in fs.files:
                fs.files[path] = b""          # littlefs commits the new empty entry at once
        elif mode == "ab":
            self.buf = bytearray(fs.files.get(path, b""))
            if path not in fs.files:
                fs.files[path] = b""
            self.pos = len(self.buf)
        else:
            raise ValueError("mode %r" % mode)

    def read(self, n=-1):
        if n is None or n < 0:
            out = bytes(self.buf[self.pos:])
        else:
            out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else (self.pos + off if whence == 1 else len(self.buf) + off)
        return self.pos

    def write(self, data):
        data = bytes(data)
        n = self.fs.bytes_allowed(len(data))
        self.buf[self.pos:self.pos + n] = data[:n]
        self.pos += n
        if self.fs.semantics == POSIX:
            self.fs.files[self.path] = bytes(self.buf)
        if n < len(data):
            self.fs.die()
        return n

    def flush(self):
        self.fs.op()
        if self.mode != "rb":
            self.fs.files[self.path] = bytes(self.buf)

    def close(self):
        if self.mode != "rb":
            self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CutFs:
    """pumpfw.store's fs interface in memory, with a cut armed at a byte or an operation."""

    def __init__(self, semantics):
        self.semantics = semantics
        self.files = {}
        self.byte_budget = -1   # bytes still allowed before the cut (-1: no cut armed)
        self.op_budget = -1
        self.cut = False
        self.last_path = ""

    def arm(self, byte=-1, op=-1):
        self.byte_budget = byte
        self.op_budget = op

    def disarm(self):
        self.byte_budget = -1
        self.op_budget = -1

    def die(self):
        self.cut = True
        self.disarm()
        raise Cut()

    def op(self):
        if self.op_budget == 0:
            self.die()
        if self.op_budget > 0:
            self.op_budget -= 1

    def bytes_allowed(self, n):
        if self.byte_budget < 0:
            return n
        if self.byte_budget >= n:
            self.byte_budget -= n
            return n
        k = self.byte_budget
        self.byte_budget = 0
        return k

    def open(self, path, mode):
        if mode != "rb":
            self.last_path = path
        self.op()
        return _File(self, path, mode)

    def remove(self, path):
        self.op()
        if path not in self.files:
            raise OSError(2, "no such file: %s" % path)
        del self.files[path]

    def rename(self, old, new):
        self.op()
        self.files[new] = self.files.pop(old)

    def listdir(self, path):
        pre = path.rstrip("/") + "/"
        return [p[len(pre):] for p in self.files if p.startswith(pre) and "/" not in p[len(pre):]]

    def size(self, path):
        return len(self.files[path])

    def exists(self, path):
        return path in self.files

    def mkdir(self, path):
        pass

    def sync(self, f):
        f.flush()


class CutStepper(Stepper):
    def __init__(self, hw):
        self.hw = hw
        self.on = False
        self.done = 0
        self.segs = []          # [steps_left, period_us, next_us]

    def enable(self, on):
        self.on = bool(on)

    def enabled(self):
        return self.on

    def queue(self, steps, period_us, direction):
        self.segs.append([steps, period_us, self.hw.now_us if not self.segs else -1])
        return True

    def run_until(self, t_us):
        while self.segs and self.on:
            seg = self.segs[0]
            if seg[2] > t_us:
                return
            self.done += 1
            self.hw.plunger[0] += 1
            seg[0] -= 1
            if seg[0] == 0:
                self.segs.pop(0)
                if self.segs:
                    self.segs[0][2] = seg[2] + self.segs[0][1]
            else:
                seg[2] += seg[1]

    def steps_done(self):
        return self.done & 0x3FFFFFFF

    def pending(self):
        n = 0
        for s in self.segs:
            n += s[0]
        return n

    def abort(self):
        n = self.pending()
        self.segs = []
        return n

    def stall(self):
        return False


class CutHardware(Hardware):
    def __init__(self, root, plunger):
        self.flash_root = root
        self.now_us = 0
        self.plunger = plunger      # [pulses made across boots]: one list shared by the chain
        self.stepper = CutStepper(self)

    def ticks_ms(self):
        return (self.now_us // 1000) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    def advance_ms(self, ms):
        self.now_us += ms * 1000
        self.stepper.run_until(self.now_us)

    def sleep_ms(self, ms):
        self.advance_ms(ms)

    def idle(self, ms):
        self.advance_ms(ms)

    def pressure_kpa_x10(self):
        return 0

    def end_stop(self):
        return False

    def bolus_button_presses(self):
        return 0

    def alarm_output(self, pattern):
        pass

    def watchdog_start(self, timeout_ms):
        pass

    def watchdog_feed(self):
        pass

    def watchdog_stop(self):
        pass

    def reset_cause(self):
        return RESET_POWER_ON

    def serial_read(self):
        return b""

    def serial_write(self, data):
        pass

    def rig_id(self):
        return "cut-rig"

    # maintenance (a keyless rig here: no maintenance ever starts)
    def link_interrupt(self, enabled):
        pass

    def maintenance_record(self):
        return None

    def maintenance_hold(self, window_ms, tag, pattern):
        pass

    def reset(self):
        raise Cut()


def programs(rng):
    """A continuous or flex program at 186 ug/day .. 1.5 mg/day (2000 ug/mL)."""
    k = rng.below(4)
    if k == 0:
        return Program(mode=MODE_CONTINUOUS, concentration_ug_ml=CONC, rate_ng_day=186000, patient=PATIENT)
    if k == 1:
        return Program(mode=MODE_CONTINUOUS, concentration_ug_ml=CONC, rate_ng_day=1500000, patient=PATIENT)
    if k == 2:
        return Program(mode=MODE_CONTINUOUS, concentration_ug_ml=CONC,
                       rate_ng_day=100000 + 1000 * rng.below(900), patient=PATIENT)
    return Program(mode=MODE_FLEX, concentration_ug_ml=CONC, patient=PATIENT,
                   patterns=[(0x7F, [(0, 150000), (6 * 3600000, 900000), (9 * 3600000, 200000)])])


class Tally:
    def __init__(self):
        self.counts = {}
        self.failures = []

    def add(self, key, n=1):
        self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, key, text):
        self.add("fail " + key)
        if sum(1 for f in self.failures if f.startswith(key)) < 5:
            self.failures.append(key + ": " + text)


def _kind(path):
    name = path.rsplit("/", 1)[-1]
    if name.startswith("state"):
        return "state save"
    if name.startswith("prog"):
        return "program commit"
    if name.startswith("ev"):
        return "log append"
    return name


def _records(app):
    raw = app.log.read_raw(app.log.first_seq(), 100000)
    out = []
    for i in range(0, len(raw), 32):
        out.append(logrec.decode(raw[i:i + 32]))
    return out


def _ng(steps, pl):
    return steps * pl * CONC // 1000000


def _check(app, plunger, tally, state, fill, primed):
    """`primed`: the most pulses the chain's primes can have made (a prime's pulses are counted
    in prime_steps, not in the dose: the dose made is at least plunger - primed)."""
    s = app.sched
    pulses_ng = _ng(plunger, s.pl)    # every pulse as dose: what certain can never exceed
    made_ng = _ng(plunger - primed if plunger > primed else 0, s.pl)
    total = s.total_ng
    tally.add("restarts checked")
    if total < made_ng:
        tally.fail("under-count total", "total %d ng < plunger %d steps (%d at most primed) = %d ng"
                   % (total, plunger, primed, made_ng))
    if s.rolling_24h_ng() < made_ng:
        tally.fail("under-count 24h", "rolling %d ng < plunger %d ng" % (s.rolling_24h_ng(), made_ng))
    # every pulse is counted, as dose or as prime
    if total + _ng(s.prime_steps, s.pl) + 1 < pulses_ng:
        tally.fail("under-count pulses", "total %d ng + primed %d steps < plunger %d steps = %d ng"
                   % (total, s.prime_steps, plunger, pulses_ng))
    if s.prime_steps > primed:
        tally.fail("prime over", "prime_steps %d > the primes' %d microsteps" % (s.prime_steps, primed))
    left = s.reservoir.volume_nl
    truth_pl = fill[0] * 1000 - (plunger - fill[1]) * s.pl
    if left * 1000 > truth_pl + 1000:
        tally.fail("reservoir", "estimate %d nL above the truth %d nL" % (left, truth_pl // 1000))
    certain = total - app.ledger.uncertain_ng
    if certain > pulses_ng + 1:
        tally.fail("bracket", "certain %d ng > plunger %d ng" % (certain, pulses_ng))
    if s.bolus_active():
        tally.fail("double dose", "a bolus resumed after the restart")
    recs = [r for r in _records(app) if r[3] == logrec.EV_LEDGER_RESTORED]
    if recs:
        # the stated bound of one reset: RESERVE_MS of the fastest flow the limits admit plus
        # the margin, and the steps in flight at the save (one loop iteration, <= 1 s of flow)
        possibly = recs[-1][5]
        lim = app.hard_limits.max_flow_ng_day
        bound = lim * (app.ledger.reserve_ms + 1000) // 86400000 + 3 * _ng(1, s.pl) + 3
        state["max_reset_ng"] = max(state["max_reset_ng"], possibly)
        if possibly > bound:
            tally.fail("reservation", "%d ng counted possibly delivered, bound %d ng" % (possibly, bound))
    over = total - _ng(plunger - s.prime_steps if plunger > s.prime_steps else 0, s.pl)
    state["max_over"] = max(state["max_over"], over)
    if total < state["total_at_last_check"]:
        tally.fail("totals reset", "total %d ng below %d ng before" % (total, state["total_at_last_check"]))
    state["total_at_last_check"] = total
    state["uncertain_before"] = app.ledger.uncertain_ng


def _bolus_records_ok(app, tally):
    """Bolus records stay true across the cuts: every bolus start and prime has its own serial
    and, with no bolus running after the restart, exactly one end or aborted record after it."""
    if app.log.first_seq() > 1:
        return
    opened = {}
    closed = {}
    for r in _records(app):
        code = r[3]
        if code == logrec.EV_BOLUS_START or code == logrec.EV_PRIME:
            # a prime is a bolus of its own kind, with a serial of the same sequence
            if r[7] in opened:
                tally.fail("bolus serial reused", "bolus serial %d started at seq %d and again at seq %d"
                           % (r[7], opened[r[7]], r[0]))
            opened[r[7]] = r[0]
        elif code == logrec.EV_BOLUS_END or code == logrec.EV_BOLUS_ABORTED:
            serial = r[6] if code == logrec.EV_BOLUS_END else r[7]
            if serial in closed:
                tally.fail("bolus closed twice", "bolus serial %d ended/aborted at seq %d and again at seq %d"
                           % (serial, closed[serial], r[0]))
            closed[serial] = r[0]
    tally.add("bolus records checked")
    if not app.sched.bolus_active():
        for serial in opened:
            if serial not in closed:
                tally.fail("bolus left open", "bolus serial %d started at seq %d has no end or aborted record"
                           % (serial, opened[serial]))


def _ack_records_ok(app, tally):
    """Every acknowledgement on the log names an alarm the log shows raised before it (an ack
    of an alarm whose raise a cut took, or logged before its cause, reads as a lie)."""
    if app.log.first_seq() > 1:
        return
    raised = 0
    for r in _records(app):
        if r[3] == logrec.EV_ALARM_RAISED:
            raised |= 1 << r[4]
        elif r[3] == logrec.EV_ALARM_ACK:
            tally.add("ack records checked")
            if not raised & (1 << r[4]):
                tally.fail("ack before raise", "alarm %d acknowledged at seq %d, never raised before it"
                           % (r[4], r[0]))


def _lockout_ok(app, tally):
    """The patient-bolus lockout survives every cut: the latest patient bolus the log shows
    started (accepted, so its lockout began then) still locks out until start + lockout, by the
    rig's clock (a time sync only moves forward here, which never shortens what is left)."""
    last = None
    for r in _records(app):
        if r[3] == logrec.EV_BOLUS_START and r[4] == 2:
            last = r
    if last is None:
        return
    c = app.clock
    need = PATIENT[2] - c.ms_since(last[1], last[2], 2 * 86400000)
    tally.add("patient lockouts checked")
    left = app.sched.gate.lockout_left_ms(c)
    if need > 0 and left < need:
        tally.fail("lockout lost", "patient bolus serial %d started at seq %d: lockout left %d ms, should be >= %d"
                   % (last[7], last[0], left, need))


def _hourly_sum_ok(app, tally):
    if app.log.first_seq() > 1:
        # the ring dropped the oldest records: their hours are no longer on the log
        tally.add("hourly sums not exact (log wrapped)")
        return
    got = 0
    for r in _records(app):
        if r[3] in (logrec.EV_HOURLY_TOTAL, logrec.EV_HOURLY_PARTIAL):
            got += r[5]
    got += app.hour_ng + app.sched.total_ng - app.last_total_ng
    tally.add("hourly sums checked")
    if got != app.sched.total_ng:
        tally.fail("hourly sum", "hourly records sum to %d ng, total %d ng" % (got, app.sched.total_ng))


def _act(app, hw, rng, counter, tally, where, fill, primed, start_cut=None):
    """One random host action through the Controller, as the protocol server calls it (the auth
    counter is made durable first, and nothing runs if it could not be). `start_cut`: (the
    CutFs, per mille) to arm a cut in the writes of that share of the patient boluses asked for.
    `primed`: [most pulses the chain's primes can have made (each prime's volume in microsteps,
    rounded up, + 1), the duration (ms) of a prime started now], updated here."""
    counter[0] += 1
    if app.accept_counter(counter[0]) is not None:
        return
    k = rng.below(12)
    if k < 4:
        if rng.chance(PATIENT_PER_MILLE):
            if start_cut is not None and rng.chance(start_cut[1]):
                start_cut[0].arm(op=rng.below(3))   # in the start's save or its log append
                tally.add("cuts armed at a patient bolus")
            app.bolus(2, 0, 0)      # the program's patient bolus (refused in its lockout)
            where[0] = "patient bolus"
        else:
            dose = 5000 + 1000 * rng.below(60)
            app.bolus(1, dose, 10000 + 1000 * rng.below(600))
            where[0] = "bolus"
    elif k < 6:
        app.commit_program(programs(rng))
        where[0] = "commit"
    elif k < 7:
        # the syringe is topped up first (physically), then the host tells the rig: a refill
        # cut before its save is applied from its record by the boot (the reservation then
        # comes out of the new volume: the estimate stays at or below the truth)
        vol = FILL_NL
        fill[0], fill[1] = vol, hw.plunger[0]
        app.refill(vol, CONC)
        where[0] = "refill"
    elif k < 8:
        app.suspend() if rng.chance(300) else app.resume()
        where[0] = "suspend/resume"
    elif k < 10:
        app.set_time(app.clock.day, app.clock.ms)
        where[0] = "time sync"
    elif k < 11:
        # the operator acknowledges an alarm that sounds (a reset's, the clock's), else any code
        active = [c for c in range(1, ALARM_MAX + 1) if app.alarm_set.is_active(c)]
        code = active[rng.below(len(active))] if active else 1 + rng.below(ALARM_MAX)
        refused = app.ack_alarm(code)
        tally.add("acks refused" if refused else "acks taken")
        where[0] = "ack"
    else:
        # a catheter prime: only under a stopped program (no basal, no bolus), which stays until
        # the next commit; every pulse of it is counted in prime_steps, never as dose
        app.commit_program(Program(mode=MODE_STOPPED, concentration_ug_ml=CONC))
        where[0] = "commit"
        vol = PRIME_MIN_NL + 100 * rng.below(PRIME_DRAWS)
        if app.prime(vol) is None:
            primed[0] += -(-vol * 1000 // app.sched.pl) + 1
            primed[1] = vol * 6     # its duration (ms): run() may cut inside it
            tally.add("primes started")
            where[0] = "prime"
        else:
            tally.add("primes refused")


def _to_hour_edge(app, rng, counter):
    """A host time sync (signed, as _act's) to 1 .. 90 s before the next whole hour; returns
    the lead (ms). The sync saves, so the next routine save is 60 s after it."""
    counter[0] += 1
    lead = 1000 + rng.below(89000)
    if app.accept_counter(counter[0]) is not None:
        return lead
    at = (app.clock.ms // 3600000 + 1) * 3600000 - lead
    app.set_time(app.clock.day, at if at > app.clock.ms else app.clock.ms)
    return lead


def run(seed, chains, cuts_per_chain, semantics=(LITTLEFS, POSIX), root="/tmp/cutrig",
        patient_start_cuts=0):
    """Run the chains; returns the tally as a dict (counts, failures). `patient_start_cuts`: per
    mille of the patient boluses asked for whose own writes get a cut armed (0: none, and the
    random path is the same as without the option)."""
    tally = Tally()
    rng = Rng(seed)
    for c in range(chains):
        sem = semantics[c % len(semantics)]
        fs = CutFs(sem)
        plunger = [0]
        primed = [0, 0]         # most pulses the chain's primes can have made; a new prime's ms (_act)
        counter = [0]
        fill = [FILL_NL, 0]     # last physical fill (nL) and the plunger count then
        state = {"max_reset_ng": 0, "max_over": 0, "total_at_last_check": 0, "uncertain_before": 0}
        first = True
        edge_cut = False
        for k in range(cuts_per_chain + 1):
            hw = CutHardware(root, plunger)
            app = PumpApp(hw, fs=fs)
            # a cut during the boot itself; more often after a cut at the hour edge (the boot
            # that reads the hour's record from the log and logs the partial without it)
            if not first and rng.chance(300 if edge_cut else 100):
                fs.arm(op=rng.below(12))
                if edge_cut:
                    tally.add("boots cut after an hour-edge cut")
            edge_cut = False
            try:
                app.boot()
                fs.disarm()
            except Cut:
                fs.cut = False      # the next cut's label is its own
                tally.add("cut during boot/" + sem)
                continue
            if not first:
                _check(app, plunger[0], tally, state, fill, primed[0])
                _hourly_sum_ok(app, tally)
                _bolus_records_ok(app, tally)
                _ack_records_ok(app, tally)
                _lockout_ok(app, tally)
            if first:
                app.set_time(DAY0, 0)
                app.refill(FILL_NL, CONC)
                app.commit_program(programs(rng))
                first = False
            if k == cuts_per_chain:
                break
            where = ["basal"]
            # run a while, acting now and then, with a cut armed somewhere in it
            run_ms = 5000 + rng.below(240000)
            after_hour = -1     # ms after the next hour's record to cut at (-1: not this mode)
            edge_byte = -1
            if rng.chance(HOUR_EDGE_PER_MILLE):
                # the hour edge: the clock synced to just before an hour, the cut in the minute
                # after that hour's record, before or after the next routine save (a chain's
                # own time crosses an hour only now and then)
                lead = _to_hour_edge(app, rng, counter)
                after_hour = rng.below(90000)
                # a third of them cut inside a write from the hour's record on instead
                edge_byte = rng.below(200) if rng.chance(333) else -1
                run_ms = lead + after_hour + 2000
                cut_iter = -1
                where[0] = "hour edge"
            elif rng.chance(600):
                fs.arm(byte=rng.below(6000)) if rng.chance(500) else fs.arm(op=rng.below(40))
                cut_iter = -1
            else:
                cut_iter = rng.below(400)
            it = 0
            cut_us = -1
            try:
                while hw.now_us < run_ms * 1000:
                    if after_hour < 0 and rng.chance(8):
                        _act(app, hw, rng, counter, tally, where, fill, primed,
                             (fs, patient_start_cuts) if patient_start_cuts else None)
                        if primed[1]:
                            # half the primes are cut while they run (a prime is short and rare)
                            if cut_us < 0 and rng.chance(PRIME_CUT_PER_MILLE):
                                cut_us = hw.now_us + rng.below(primed[1]) * 1000
                                tally.add("primes cut at a random moment")
                            primed[1] = 0
                    mark = app.hour_mark
                    if after_hour >= 0 and edge_byte >= 0 and app.clock.ms % 3600000 >= 3600000 - 1200:
                        fs.arm(byte=edge_byte)      # the next step writes the hour's record
                        edge_byte = -1
                    app.step()
                    it += 1
                    if it == cut_iter:
                        raise Cut()
                    if after_hour >= 0:
                        if cut_us < 0 and app.hour_mark != mark:
                            cut_us = hw.now_us + after_hour * 1000
                            tally.add("hour records cut after")
                    if 0 <= cut_us <= hw.now_us:
                        raise Cut()
                raise Cut()
            except Cut:
                fs.disarm()
                tally.add("cuts/" + sem)
                if app.sched.bolus_active() == BOLUS_PRIME:
                    tally.add("cuts while a prime ran")
                edge_cut = after_hour >= 0
                tally.add("cut in " + (("writing " + _kind(fs.last_path)) if fs.cut else where[0] + "/between writes"))
                fs.cut = False
        tally.add("chains")
        tally.counts["max log records in a chain"] = max(tally.counts.get("max log records in a chain", 0),
                                                         app.log.next_seq - 1)
        for key, v in (("max over-count ng", state["max_over"]), ("max possibly ng at a reset", state["max_reset_ng"])):
            tally.counts[key] = max(tally.counts.get(key, 0), v)
    return {"counts": tally.counts, "failures": tally.failures}


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]] if len(sys.argv) > 1 else [1, 4, 5]
    print(json.dumps(run(*args)))
