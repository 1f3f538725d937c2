"""DoseScheduler: program + wall clock + events -> microsteps due, exactly (one accumulator for all flow).

The exact method. 1 ng/day for 1 ms is the dose quantum (1/86,400,000 ng); at concentration C
(ug/mL = ng/uL) it is 5/(432*C) pL. Everything that flows (basal + the active bolus, all at
the concentration in the line) runs through ONE accumulator: per ms it gains 5*R_total units of
1/(432*C) pL. With q, r = divmod(5*R_total, 432*C) fixed while the rate is constant, a chunk of
c ms adds q*c whole pL plus r*c units to `acc`; whole pL carry into `pool` and a microstep is
due each time `pool` reaches pl_per_step. Since floor(floor(x)/V) == floor(x/V), the steps
issued are floor(ideal_volume / pl_per_step) at every ms: error in [0, 1) microstep, forever.

Small ints (RP2040: |x| < 2**30). R_total <= 2e8 ng/day so 5*R < 2**30; C <= 2000 so
den = 432*C <= 864,000. A chunk is at most chunk_max ms with q*chunk_max below 2**28; when
r*chunk would reach 2**28 (chunks longer than fast_c ms: never for a 10-ms tick) the carry of
r*c into acc is found by an allocation-free long division instead of the product, so every
intermediate stays below 2**29. advance() splits its interval at every boundary (basal
step, midnight, 15-min ledger bucket, periodic bolus, bolus phase end, bridge end) so a rate
change takes effect exactly at its ms. advance() allocates nothing between boundaries.

Boluses are an extra integer rate R_b = ceil(dose * 86.4e6 / duration) ng/day, amount-limited:
at start, divmod(dose * 86.4e6, R_b) = (full_ms, last) gives full_ms ms at R_b and one final ms
at rate `last`, so the bolus delivers exactly `dose` and lasts the requested duration within
1 ms. Kinds: clinician, patient, periodic (from the program), single (single-bolus mode, a
clinician bolus), prime (prime()). One bolus at a time: a second request is refused.

Policies (documented choices):
- No catch-up. suspend() cancels an active bolus and diverts the basal into a second, "missed"
  accumulator: the steps that come due while suspended are counted in missed_steps (and
  missed_ng), never issued. record_missed(steps) moves steps the motor failed to make from
  delivered to missed. restore() after a reset counts the time down (from the snapshot's wall
  time to the clock's) as suspended: missed, not delivered. A bolus in progress is not resumed.
- Periodic boluses that fall while suspended, while another bolus runs, or that a limit
  refuses are skipped (counted in skipped_periodic); the basal goes on.
- Prime: prime(volume_nl, duration_ms) fills the catheter. Allowed only with a stopped program
  (no basal flowing). Its steps are counted in prime_steps and taken from the reservoir but
  not counted as patient dose (not in the 24 h ledger, not in delivered_ng_today).
- Refill with a different concentration starts a bridge: the catheter (program.catheter_nl)
  still holds the old drug, so the line concentration stays the old one until exactly the
  catheter volume (whole pL pushed by the running flow: basal and any bolus, at the program's
  dose rate) has left; from that ms on the new concentration applies. At the switch the
  accumulator's sub-pL fraction is converted to the new units rounded UP (at most one unit of
  1/(432*C) pL, so |steps - ideal| < 1 still holds). A second refill during a bridge restarts
  it with the full catheter volume. The patient-bolus lockout starts after a refill and after
  every load() (programming session).
- load() of a program cancels an active bolus; the new basal starts at once.
- Limits: a bolus is refused (REFUSE_*) when above max_bolus_ng, when basal max + bolus rate
  exceeds max_flow_ng_day, or when the worst-case rolling 24 h would exceed max_24h_ng:
  max over window ends in the next 24 h of (ledger since the window start, conservative to
  one 15-min bucket) + exact program basal until the window end + periodic boluses starting
  before it + the bolus dose. A refusal changes nothing: the basal keeps going.
"""
from pumpcore.fixed import const, mul_divmod, ceil_muldiv_sub
from pumpcore import call_once, text, program as programmod
from pumpcore.bolus import BolusGate, BUCKET_MS, N_BUCKETS
from pumpcore.reservoir import ReservoirTracker

MS_PER_DAY = const(86400000)
QUANTA_PER_NG = const(86400000)
_CHUNK_BOUND = const(0x10000000)     # 2**28: q*chunk and r*chunk stay below this
_TIMER_CAP = const(0x10000000)       # timers (ms) saturate here (~3.1 days); re-armed at 0
_NEVER = const(0x3FFFFFFF)

_BOLUS_NONE = const(0)
BOLUS_CLINICIAN = const(1)
BOLUS_PATIENT = const(2)
BOLUS_PERIODIC = const(3)
BOLUS_PRIME = const(4)
_BOLUS_BRIDGE = const(5)
BOLUS_SINGLE = const(6)
BOLUS_NAMES = ("none", "clinician", "patient", "periodic", "prime", "bridge", "single")

_REFUSE_OK = const(0)
REFUSE_BOLUS_ACTIVE = const(1)
REFUSE_MAX_BOLUS = const(2)
REFUSE_MAX_24H = const(3)
REFUSE_MAX_FLOW = const(4)
REFUSE_LOCKOUT = const(5)
REFUSE_DAILY_CAP = const(6)
REFUSE_PATIENT_DISABLED = const(7)
_REFUSE_SUSPENDED = const(8)
_REFUSE_STOPPED = const(9)
REFUSE_BAD_REQUEST = const(10)
REFUSE_NO_PROGRAM = const(11)
REFUSE_KIND = const(12)
REFUSE_NOT_STOPPED = const(13)
REFUSE_CONCENTRATION = const(14)
REFUSE_VOLUME = const(15)


SNAPSHOT_VERSION = const(1)


def refusal_text(code):
    """Human-readable reason for a REFUSE_* code (pumpcore.refusaltext, loaded for the call and
    let go after: a refusal is rare, and on v1.22.2 the texts would sit in the heap for the
    whole run; issue 16)."""
    from pumpcore import refusaltext
    return call_once(refusaltext, "text", code)


class DoseScheduler:
    """Turns the program into microsteps due (see module docstring). Units: ng, ng/day, pL, ms."""

    def __init__(self, pl_per_step, limits):
        if not isinstance(pl_per_step, int) or pl_per_step < 100 or pl_per_step > 10000000:
            raise ValueError(text("pl_range", pl_per_step))
        daily_nl = limits.max_24h_ng * 1000 // limits.min_conc_ug_ml
        if 30 * (daily_nl // pl_per_step) * 1000 >= 0x40000000:
            raise ValueError(text("pl_counts", pl_per_step, daily_nl))
        self.pl = pl_per_step
        self.limits = limits
        self.program = None
        self.clock = None
        self.gate = BolusGate()
        self.reservoir = ReservoirTracker(limits.reservoir_capacity_nl)
        self.conc = 0
        self.den = 1
        self.basal = 0
        self.rate = 0
        self.q = 0
        self.r = 0
        self.chunk_max = _CHUNK_BOUND
        self.fast_c = _CHUNK_BOUND
        self.suspended = False
        self.pool = 0
        self.acc = 0
        self.mpool = 0
        self.macc = 0
        self.delivered_steps = 0
        self.missed_steps = 0
        self.prime_steps = 0
        self.dpl = 0
        self.dmng = 0
        self.total_ng = 0
        self.day_ng = 0
        self.mpl = 0
        self.mmng = 0
        self.missed_ng = 0
        self.b_kind = _BOLUS_NONE
        self.b_rate = 0
        self.b_left = _NEVER
        self.b_last = 0
        self.b_dose = 0
        self.b_duration = 0    # ms the running bolus was asked to last (its start record)
        self.seg_left = _NEVER
        self.bucket_left = BUCKET_MS
        self.per_left = _NEVER
        self.br_pl = 0
        self.br_conc = 0
        self.br_left = _NEVER
        self.skipped_periodic = 0
        self.refusals = 0
        self.last_refusal = _REFUSE_OK
        self.boluses_done = 0
        self.ended_kind = _BOLUS_NONE    # the last bolus that ended: kind, dose and ng not given
        self.ended_dose = 0
        self.ended_left_ng = 0

    # ----- program and clock ------------------------------------------------------------
    def load(self, program, clock):
        """Commit a program (validated here, raises ProgramError) on `clock`; returns 0 or REFUSE_*.

        Cancels an active bolus, starts the patient-bolus lockout, starts the single bolus of a
        single-bolus program (its refusal code is returned; the program stays loaded, stopped).
        """
        program.validate(self.limits)
        if self.reservoir.conc_ug_ml and program.concentration_ug_ml != self.reservoir.conc_ug_ml:
            raise programmod.ProgramError("concentration_ug_ml", program.concentration_ug_ml,
                                          text("conc_res", self.reservoir.conc_ug_ml))
        program._tables()
        self.program = program
        self.clock = clock
        if not self.reservoir.conc_ug_ml:
            self.reservoir.conc_ug_ml = program.concentration_ug_ml
        if not self.conc:
            self._set_conc(program.concentration_ug_ml)
        self._end_bolus()
        self.gate.roll(clock)
        self._arm_timers()
        if program.patient is not None:
            self.gate.start_lockout(clock, program.patient[2])
        self._set_rate()
        if program.mode == programmod.MODE_SINGLE_BOLUS:
            return self._start_bolus_checked(BOLUS_SINGLE, program.single_bolus[0], program.single_bolus[1])
        return _REFUSE_OK

    def set_time(self, day, ms_of_day):
        """Time sync: jump the wall clock (no delivery for the jump); boundaries re-armed. The
        lockout, the patient-bolus count and the 24 h ledger keep their elapsed-time meaning
        (BolusGate.shift): correcting the clock never frees a lockout or a cap early."""
        self.gate.shift(self.clock, day, ms_of_day)
        self.clock.set(day, ms_of_day)
        self.gate.roll(self.clock)
        self._arm_timers()
        self._set_rate()

    def run_on(self, day, ms_of_day):
        """After a reset, once the snapshot is restored: the event log shows the device ran on
        after its last save until (day, ms_of_day). Move the clock there (forward only) with no
        delivery and nothing missed: what the motor made then is the ledger's reservation,
        counted by count_possibly_delivered. Unlike set_time the lockout and the 24 h window
        are not shifted: that time really passed. Boot only."""
        c = self.clock
        if c.ms_until(day, ms_of_day, 7 * MS_PER_DAY) <= 0:
            return
        if day != c.day:
            self.day_ng = 0
        c.set(day, ms_of_day)
        self.gate.roll(c)
        self._arm_timers()
        self._set_rate()

    def forfeit_carry(self):
        """After a reset, once the snapshot is restored: drop the fraction of a microstep the
        delivery had accrued at the last save (the pL toward the next step). The device ran on
        after that save and its steps spent (or not) that fraction; the clock restarts behind
        the reset, so keeping it would let every reset issue up to one microstep early, and
        resets in a row add up (found by the stateful test, seed 91: three resets, 1.2
        microsteps above the programmed volume). Dropped, each reset delivers at most a
        fraction of a microstep less (no catch-up, as for the time it was down). Boot only."""
        if self.suspended:
            self.mpool = 0      # suspend() keeps the delivery's accumulator here
            self.macc = 0
        else:
            self.pool = 0
            self.acc = 0

    def _arm_timers(self):
        c = self.clock
        self.bucket_left = BUCKET_MS - c.ms % BUCKET_MS
        self.seg_left = self.program.basal_next_change_ms(c.weekday(), c.ms) - c.ms
        self.per_left = self._periodic_next()

    def _periodic_next(self):
        per = self.program.periodic
        if not per:
            return _NEVER
        now = self.clock.ms
        for i in range(len(per)):
            if per[i][0] > now:
                return per[i][0] - now
        return MS_PER_DAY - now + per[0][0]

    def _set_conc(self, conc):
        """Switch the line concentration, converting accumulator fractions (rounded up)."""
        old = self.conc
        self.conc = conc
        new_den = 432 * conc
        if old:
            self.acc = -(-self.acc * conc // old)
            self.macc = -(-self.macc * conc // old)
            if self.acc >= new_den:
                self.acc -= new_den
                self.pool += 1
            if self.macc >= new_den:
                self.macc -= new_den
                self.mpool += 1
        self.den = new_den

    def _set_rate(self):
        """Recompute the flowing rate and its per-ms increments (at boundaries and events)."""
        p = self.program
        if p is None:
            self.basal = 0
        else:
            self.basal = p.basal_rate_at(self.clock.weekday(), self.clock.ms)
        rate = self.basal + self.b_rate
        self.rate = rate
        s = 5 * rate
        self.q = s // self.den
        self.r = s - self.q * self.den
        self.chunk_max = _CHUNK_BOUND // (self.q + 1)
        self.fast_c = _CHUNK_BOUND // (self.r + 1)
        if self.br_pl > 0 and not self.suspended:
            if rate:
                self.br_left = ceil_muldiv_sub(self.br_pl, self.den, self.acc, s, _TIMER_CAP)
                if self.br_left < 1:
                    self.br_left = 1
            else:
                self.br_left = _NEVER
        else:
            self.br_left = _NEVER

    # ----- time ---------------------------------------------------------------------------
    def advance(self, dt_ms):
        """Move time on by dt_ms (>= 0); return the microsteps that became due. Allocation-free."""
        due = 0
        if self.clock is None:
            return 0
        while dt_ms > 0:
            c = dt_ms
            if self.chunk_max < c:
                c = self.chunk_max
            if self.seg_left < c:
                c = self.seg_left
            if self.bucket_left < c:
                c = self.bucket_left
            if self.per_left < c:
                c = self.per_left
            if self.b_left < c:
                c = self.b_left
            if self.br_left < c:
                c = self.br_left
            if self.rate:
                if c <= self.fast_c:
                    acc = self.acc + self.r * c
                    gain = self.q * c
                    if acc >= self.den:
                        k = acc // self.den
                        gain += k
                        acc -= k * self.den
                    self.acc = acc
                else:
                    gain = self.q * c + self._carry(c)
                pool = self.pool + gain
                n = 0
                if pool >= self.pl:
                    n = pool // self.pl
                    pool -= n * self.pl
                self.pool = pool
                if self.suspended:
                    if n:
                        self._count_missed(n)
                else:
                    if self.br_pl > 0:
                        self.br_pl -= gain
                    if n:
                        due += n
                        self._count_delivered(n)
            dt_ms -= c
            self.clock.ms += c
            self.bucket_left -= c
            self.seg_left -= c
            if self.per_left != _NEVER:
                self.per_left -= c
            if self.b_left != _NEVER:
                self.b_left -= c
            if self.br_left != _NEVER:
                self.br_left -= c
            if (self.seg_left == 0 or self.bucket_left == 0 or self.per_left == 0 or self.b_left == 0
                    or self.br_left == 0):
                self._boundary()
        return due

    def _carry(self, c):
        """Whole pL carried when r*c units join acc, for chunks too long for r*c < 2**28.

        Long division of r*c by den in base-512 digits of c (den <= 864,000 < 2**20, so
        rem*512 + digit*r < 2**30; no big int, no allocation); updates self.acc and returns
        the carry.
        """
        d = self.den
        r = self.r
        q = 0
        rem = 0
        s = 27
        while s >= 0:
            x = rem * 512 + ((c >> s) & 511) * r
            k = x // d
            q = q * 512 + k
            rem = x - k * d
            s -= 9
        acc = self.acc + rem
        if acc >= d:
            acc -= d
            q += 1
        self.acc = acc
        return q

    def _count_delivered(self, n):
        self.delivered_steps += n
        vol = n * self.pl
        self.reservoir.take_pl(vol)
        if self.b_kind == BOLUS_PRIME:
            self.prime_steps += n
            return
        d = self.dpl + vol
        if d >= 1000:
            nl = d // 1000
            d -= nl * 1000
            m = self.dmng + nl * self.conc
            if m >= 1000:
                ng = m // 1000
                m -= ng * 1000
                self.total_ng += ng
                self.day_ng += ng
                self.gate.add_ng(ng)
            self.dmng = m
        self.dpl = d

    def _count_missed(self, n):
        self.missed_steps += n
        d = self.mpl + n * self.pl
        if d >= 1000:
            nl = d // 1000
            d -= nl * 1000
            m = self.mmng + nl * self.conc
            if m >= 1000:
                ng = m // 1000
                m -= ng * 1000
                self.missed_ng += ng
            self.mmng = m
        self.mpl = d

    def _boundary(self):
        """Handle every timer that reached 0, then recompute the rate."""
        c = self.clock
        if c.ms >= MS_PER_DAY:
            c.ms -= MS_PER_DAY
            c.day += 1
            self.day_ng = 0
        if self.bucket_left == 0:
            self.gate.roll(c)
            self.bucket_left = BUCKET_MS
        if self.seg_left == 0:
            self.seg_left = self.program.basal_next_change_ms(c.weekday(), c.ms) - c.ms
        if self.b_left == 0:
            if self.b_last:
                self.b_rate = self.b_last
                self.b_last = 0
                self.b_left = 1
            else:
                self._end_bolus()
                self.boluses_done += 1
        if self.br_left == 0:
            if self.br_pl <= 0:
                self.br_pl = 0
                self._set_conc(self.br_conc)
        if self.per_left == 0:
            self.per_left = self._periodic_next()
            self._start_periodic()
        self._set_rate()

    def _start_periodic(self):
        per = self.program.periodic
        now = self.clock.ms
        for t, dose, dur in per:
            if t == now:
                if self.suspended or self.b_kind != _BOLUS_NONE:
                    self.skipped_periodic += 1
                    return
                if self._start_bolus_checked(BOLUS_PERIODIC, dose, dur) != _REFUSE_OK:
                    self.skipped_periodic += 1
                return

    def ms_to_next_due(self):
        """ms until the next microstep or boundary (basal step, midnight, bolus phase, periodic, bridge)."""
        if self.clock is None:
            return MS_PER_DAY
        return self._with_step(self._boundary_ms())

    def _with_step(self, t):
        """min(t, ms to the next microstep), at least 1."""
        if self.rate and not self.suspended:
            ts = ceil_muldiv_sub(self.pl - self.pool, self.den, self.acc, 5 * self.rate, _TIMER_CAP)
            if ts < t:
                t = ts
        if t < 1:
            t = 1
        return t

    def _boundary_ms(self):
        """ms to the next boundary: segment (midnight), periodic, bolus phase, bridge."""
        t = self.seg_left
        if self.per_left < t:
            t = self.per_left
        if self.b_left < t:
            t = self.b_left
        if self.br_left < t:
            t = self.br_left
        return t

    def ms_to_next_due_within(self, cap):
        """min(ms_to_next_due(), cap) for 1 <= cap < 2**20, cheaper when the next microstep is at
        least cap ms away (the app's idle wake, IDLE_MAX_MS): a ms adds at most q + 1 pL to the
        pool (5 * rate < (q + 1) * den, acc < den), so with pl - pool - 1 >= (q + 1) * (cap - 1)
        the step's ceil(((pl - pool) * den - acc) / (5 * rate)) is > cap - 1 and the long
        division (fixed.ceil_muldiv_sub) is not needed. Allocation-free."""
        if self.clock is None:
            return cap
        t = self._boundary_ms()
        if cap < t:
            t = cap
        if t >= 1 and self.pl - self.pool - 1 >= (self.q + 1) * (t - 1):
            return t          # the next microstep is at least t away (suspended: none counts)
        return self._with_step(t)

    # ----- boluses ------------------------------------------------------------------------
    def request_bolus(self, kind, dose_ng, duration_ms):
        """Start a bolus; return 0 or REFUSE_* (see refusal_text). A refusal changes nothing.

        BOLUS_PATIENT uses the program's patient dose and duration (pass 0, 0 or the same values).
        """
        code = self._request(kind, dose_ng, duration_ms)
        if code != _REFUSE_OK:
            self.refusals += 1
            self.last_refusal = code
        return code

    def _request(self, kind, dose_ng, duration_ms):
        if kind not in (BOLUS_CLINICIAN, BOLUS_PATIENT, BOLUS_PERIODIC):
            return REFUSE_KIND
        p = self.program
        if p is None:
            return REFUSE_NO_PROGRAM
        if p.mode == programmod.MODE_STOPPED or p.mode == programmod.MODE_SINGLE_BOLUS:
            return _REFUSE_STOPPED
        if self.suspended:
            return _REFUSE_SUSPENDED
        if kind == BOLUS_PATIENT:
            if p.patient is None:
                return REFUSE_PATIENT_DISABLED
            pd, pdur, lock, per = p.patient
            if (dose_ng or duration_ms) and (dose_ng != pd or duration_ms != pdur):
                return REFUSE_BAD_REQUEST
            dose_ng = pd
            duration_ms = pdur
        if self.b_kind != _BOLUS_NONE:
            return REFUSE_BOLUS_ACTIVE
        if kind == BOLUS_PATIENT:
            if self.gate.lockout_left_ms(self.clock) > 0:
                return REFUSE_LOCKOUT
            if self.gate.patients_in_24h(self.clock) >= p.patient[3]:
                return REFUSE_DAILY_CAP
        code = self._start_bolus_checked(kind, dose_ng, duration_ms)
        if code == _REFUSE_OK and kind == BOLUS_PATIENT:
            self.gate.record_patient(self.clock)
            self.gate.start_lockout(self.clock, p.patient[2])
        return code

    def _start_bolus_checked(self, kind, dose_ng, duration_ms):
        if not isinstance(dose_ng, int) or not isinstance(duration_ms, int):
            return REFUSE_BAD_REQUEST
        if dose_ng < 1 or duration_ms < 1 or duration_ms > MS_PER_DAY:
            return REFUSE_BAD_REQUEST
        if dose_ng > self.limits.max_bolus_ng:
            return REFUSE_MAX_BOLUS
        qq, rr = mul_divmod(dose_ng, QUANTA_PER_NG, duration_ms)
        rate = qq + (1 if rr else 0)
        if self.program.max_basal_ng_day() + rate > self.limits.max_flow_ng_day:
            return REFUSE_MAX_FLOW
        if self.worst_case_24h_with(dose_ng) > self.limits.max_24h_ng:
            return REFUSE_MAX_24H
        full, last = mul_divmod(dose_ng, QUANTA_PER_NG, rate)
        self._begin(kind, rate, full, last, dose_ng)
        self.b_duration = duration_ms
        return _REFUSE_OK

    def _begin(self, kind, rate, full_ms, last, dose_ng):
        self.b_kind = kind
        self.b_dose = dose_ng
        if full_ms > 0:
            self.b_rate = rate
            self.b_left = full_ms
            self.b_last = last
        else:
            self.b_rate = last
            self.b_left = 1
            self.b_last = 0
        self._set_rate()

    def _end_bolus(self):
        if self.b_kind != _BOLUS_NONE:
            self.ended_kind = self.b_kind
            self.ended_dose = self.b_dose
            self.ended_left_ng = self.bolus_left_ng()
        self.b_kind = _BOLUS_NONE
        self.b_rate = 0
        self.b_left = _NEVER
        self.b_last = 0
        self.b_dose = 0

    def worst_case_24h_with(self, dose_ng):
        """Worst-case rolling 24 h dose (ng) if a bolus of dose_ng started now (request time)."""
        olds = self.gate.oldest_first()
        past = 0
        for v in olds:
            past += v
        best = 0
        first = self.bucket_left
        for k in range(N_BUCKETS):
            f = first + k * BUCKET_MS
            if f > MS_PER_DAY:
                f = MS_PER_DAY
            total = past + self._future_basal_ng(f) + self._future_periodic_ng(f) + dose_ng
            if total > best:
                best = total
            past -= olds[k]
        return best

    def _future_basal_ng(self, f):
        """Program basal dose (ng, rounded up) from now to now + f ms (f <= 24 h)."""
        p = self.program
        c = self.clock
        wd = c.weekday()
        end = c.ms + f
        if end <= MS_PER_DAY:
            q = p._basal_between_q(wd, c.ms, end)
        else:
            q = p._basal_between_q(wd, c.ms, MS_PER_DAY) + p._basal_between_q((wd + 1) % 7, 0, end - MS_PER_DAY)
        return -(-q // QUANTA_PER_NG)

    def _future_periodic_ng(self, f):
        total = 0
        now = self.clock.ms
        for t, dose, dur in self.program.periodic:
            until = t - now
            if until <= 0:
                until += MS_PER_DAY
            if until <= f:
                total += dose
        return total

    def prime(self, volume_nl, duration_ms):
        """Fill the catheter with volume_nl over duration_ms; 0 or REFUSE_*. Needs a stopped program."""
        p = self.program
        if p is None:
            return REFUSE_NO_PROGRAM
        if p.mode != programmod.MODE_STOPPED:
            return REFUSE_NOT_STOPPED
        if self.suspended:
            return _REFUSE_SUSPENDED
        if self.b_kind != _BOLUS_NONE:
            return REFUSE_BOLUS_ACTIVE
        if not isinstance(volume_nl, int) or volume_nl < 1 or volume_nl > 500000:
            return REFUSE_VOLUME
        if not isinstance(duration_ms, int) or duration_ms < 1 or duration_ms > MS_PER_DAY:
            return REFUSE_BAD_REQUEST
        mng = volume_nl * self.conc          # dose in ng/1000 (<= 1e9)
        qq, rr = mul_divmod(mng, 86400, duration_ms)
        rate = qq + (1 if rr else 0)
        if rate > self.limits.max_flow_ng_day:
            return REFUSE_MAX_FLOW
        full, last = mul_divmod(mng, 86400, rate)
        self._begin(BOLUS_PRIME, rate, full, last, mng // 1000)
        return _REFUSE_OK

    # ----- suspend, resume, stalls, refill ------------------------------------------------
    def suspend(self):
        """Stop delivery; the basal that falls due meanwhile is counted missed (no catch-up)."""
        if self.suspended:
            return
        if self.b_kind != _BOLUS_NONE:
            self._end_bolus()
        self.pool, self.mpool = self.mpool, self.pool
        self.acc, self.macc = self.macc, self.acc
        self.suspended = True
        self._set_rate()

    def resume(self):
        """Restart delivery from now; nothing missed is delivered later."""
        if not self.suspended:
            return
        self.pool, self.mpool = self.mpool, self.pool
        self.acc, self.macc = self.macc, self.acc
        self.suspended = False
        self._set_rate()

    def record_missed(self, steps):
        """The motor failed to make `steps` of the steps issued (stall, occlusion): count them missed."""
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(text("steps", "record_missed", steps))
        if steps > self.delivered_steps:
            steps = self.delivered_steps
        self.delivered_steps -= steps
        self.reservoir.give_back_pl(steps * self.pl)
        self._uncount_delivered(steps)
        self._count_missed(steps)

    def _uncount_delivered(self, n):
        """The exact inverse of _count_delivered(n): the dose of steps counted when they fell due
        but never made leaves the total, today and the 24 h ledger again. In units of 1e-6 ng
        the ledger is total_ng*1e6 + dmng*1000 + dpl*conc; this subtracts n*pl*conc with
        borrows, so count then uncount returns to the same state. The rolling 24 h gives back at
        most what its current bucket holds (never below what was delivered)."""
        if self.b_kind == BOLUS_PRIME:
            self.prime_steps -= n if n < self.prime_steps else self.prime_steps
            return
        d = self.dpl - n * self.pl
        if d < 0:
            nl = (999 - d) // 1000
            d += nl * 1000
            m = self.dmng - nl * self.conc
            if m < 0:
                ng = (999 - m) // 1000
                m += ng * 1000
                self.total_ng -= ng
                self.day_ng = self.day_ng - ng if self.day_ng > ng else 0
                self.gate.take_back_ng(ng)
            self.dmng = m
        self.dpl = d

    def refill(self, volume_nl, conc_ug_ml):
        """Reservoir refilled with volume_nl at conc_ug_ml; 0 or REFUSE_*. Bridges a concentration change."""
        lim = self.limits
        if not isinstance(conc_ug_ml, int) or conc_ug_ml < lim.min_conc_ug_ml or conc_ug_ml > lim.max_conc_ug_ml:
            return REFUSE_CONCENTRATION
        if not isinstance(volume_nl, int) or volume_nl < 0 or volume_nl > lim.reservoir_capacity_nl:
            return REFUSE_VOLUME
        old = self.reservoir.conc_ug_ml
        self.reservoir.refill(volume_nl, conc_ug_ml)
        if not self.conc:
            self._set_conc(conc_ug_ml)
        elif old != conc_ug_ml or self.br_pl > 0:
            cath = self.program.catheter_nl if self.program is not None else 0
            if cath > 0:
                self.br_pl = cath * 1000
                self.br_conc = conc_ug_ml
            else:
                self.br_pl = 0
                self._set_conc(conc_ug_ml)
        if self.program is not None and self.program.patient is not None:
            self.gate.start_lockout(self.clock, self.program.patient[2])
        if self.clock is not None:
            self._set_rate()
        return _REFUSE_OK

    # ----- read-outs ----------------------------------------------------------------------
    def basal_rate_ng_day(self):
        """Programmed basal rate in force now (ng/day; 0 when stopped)."""
        return self.basal

    def flow_rate_ng_day(self):
        """Total flow now (basal + bolus, ng/day); 0 while suspended means nothing flows."""
        return 0 if self.suspended else self.rate

    def delivered_ng_today(self):
        """Patient dose delivered since midnight (ng, counted from microsteps made)."""
        return self.day_ng

    def rolling_24h_ng(self):
        """Patient dose in the last 24 h (ng; conservative by at most one 15-min bucket)."""
        return self.gate.rolling_24h_ng()

    def bolus_active(self):
        """Kind of the bolus running (BOLUS_*), 0 if none."""
        return self.b_kind

    def bridge_left_nl(self):
        """Old-drug volume still to push out of the catheter (nL, rounded up); 0 if no bridge."""
        return -(-self.br_pl // 1000) if self.br_pl > 0 else 0

    def bolus_left_ng(self):
        """Dose of the running bolus not yet due (ng, rounded up); 0 if none. Set-up time only
        (mul_divmod): called at saves and when a bolus ends, not per tick."""
        if self.b_kind == _BOLUS_NONE:
            return 0
        # quanta still to come: b_left ms at b_rate, then b_last in the final ms (the phases
        # sum to dose_ng x QUANTA_PER_NG exactly, see _start_bolus_checked)
        left = self.b_left if self.b_left != _NEVER else 0
        q, r = mul_divmod(self.b_rate, left, QUANTA_PER_NG)
        r += self.b_last
        q += r // QUANTA_PER_NG
        if r % QUANTA_PER_NG:
            q += 1
        return q if q < self.b_dose else self.b_dose

    def bolus_delivered_ng(self):
        """Dose of the running bolus already due (ng, rounded down); 0 if none."""
        if self.b_kind == _BOLUS_NONE:
            return 0
        return self.b_dose - self.bolus_left_ng()

    def last_bolus_delivered_ng(self):
        """(kind, dose_ng, delivered_ng) of the last bolus that ended (completed, suspended or
        cut short), for its EV_BOLUS_END record."""
        return (self.ended_kind, self.ended_dose, self.ended_dose - self.ended_left_ng)

    def steps_for(self, rate_ng_day, span_ms):
        """Microsteps (rounded up) that `rate_ng_day` of the drug now leaving the catheter takes
        over `span_ms` (ng/day x ms -> ng -> nL at line_conc_ug_ml -> pL -> microsteps). Used
        for the write-ahead reservation at saves (big ints allowed: not the hot path)."""
        conc = self.conc
        if rate_ng_day <= 0 or span_ms <= 0 or not conc:
            return 0
        # ng = rate * ms / 86_400_000; pL = ng * 1_000_000 / conc
        num = rate_ng_day * span_ms * 10
        den = 864 * conc * self.pl
        return -(-num // den)

    def count_possibly_delivered(self, steps):
        """After a reset: count `steps` that the motor may have made after the last save (the
        write-ahead reservation) as delivered: total, today, rolling 24 h and reservoir, so the
        ledger errs on the safe side. Returns the ng this added to the total."""
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(text("steps", "count_possibly_delivered", steps))
        if not steps or not self.conc:
            return 0
        before = self.total_ng
        self._count_delivered(steps)
        return self.total_ng - before

    def line_conc_ug_ml(self):
        """Concentration of the drug now leaving the catheter (ug/mL)."""
        return self.conc

    # ----- persistence --------------------------------------------------------------------
    def snapshot(self):
        """Everything needed after a reset, as nested tuples of ints (no bolus in progress)."""
        c = self.clock
        return (SNAPSHOT_VERSION, c.day if c else 0, c.ms if c else 0, self.conc,
                self.pool, self.acc, self.mpool, self.macc, 1 if self.suspended else 0,
                self.delivered_steps, self.missed_steps, self.prime_steps,
                self.dpl, self.dmng, self.total_ng, self.day_ng, self.mpl, self.mmng, self.missed_ng,
                self.br_pl, self.br_conc, self.skipped_periodic, self.refusals, self.boluses_done,
                self.reservoir.snapshot(), self.gate.snapshot())

    def restore(self, snap):
        """Restore a snapshot after load(); the time from the snapshot to the clock is missed.

        Returns the downtime in ms counted as missed (0 if the clock is not after the snapshot;
        at most 7 days are accounted). A bolus that was running is not resumed. Done by
        pumpcore.restore.scheduler, loaded for the call (boot-only: issue 16).
        """
        from pumpcore import restore
        return call_once(restore, "scheduler", self, snap)
