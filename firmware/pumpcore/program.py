"""Infusion Program model: validation (ProgramError names field, value, reason), canonical binary encoding.

Modes:
  MODE_STOPPED       delivery off (procedures); no basal, no boluses.
  MODE_CONTINUOUS    one basal rate `rate_ng_day` all day, every day.
  MODE_FLEX          flexible dosing: `patterns`, each (weekday_mask, steps) with steps a list
                     of (start_ms_of_day, rate_ng_day); up to 24 steps per day; the first step
                     starts at 00:00, starts strictly increase; the weekday masks (bit 0 = Monday
                     .. bit 6 = Sunday) cover every day exactly once (day-specific patterns).
  MODE_SINGLE_BOLUS  one bolus `single_bolus` = (dose_ng, duration_ms) at commit, then stopped.
Every mode but STOPPED may carry:
  periodic           list of (ms_of_day, dose_ng, duration_ms), every day, in time order, not
                     overlapping each other (including across midnight);
  patient            (dose_ng, duration_ms, lockout_ms, per_24h) or None: patient-activated bolus.
Always: concentration_ug_ml (the drug the reservoir holds), catheter_nl (bridge bolus volume),
low_volume_nl and low_days (reservoir-low alarm thresholds).

Validation (`validate(limits)`) checks every field and the worst-case 24 h dose: the largest
basal integral over any 24 h window (exact, across weekday patterns) + every periodic bolus +
all allotted patient boluses (+ the single bolus) must not exceed limits.max_24h_ng.
"""
from pumpcore.fielderror import FieldError
import struct
import binascii

from pumpcore.fixed import const
from pumpcore import units

MODE_STOPPED = const(0)
MODE_CONTINUOUS = const(1)
MODE_FLEX = const(2)
MODE_SINGLE_BOLUS = const(3)
MODE_NAMES = ("stopped", "continuous", "flexible", "single bolus then stop")

FORMAT_VERSION = const(1)
MAGIC = b"IP"
MAX_STEPS = const(24)
MAX_PATTERNS = const(7)
MAX_PERIODIC = const(12)
MAX_PATIENT_PER_24H = const(24)
MAX_CATHETER_NL = const(500000)
MAX_LOW_DAYS = const(90)
MAX_BOLUS_DURATION_MS = const(86400000)
MAX_LOCKOUT_MS = const(86400000)
MS_PER_DAY = const(86400000)
ALL_DAYS = const(0x7F)

_HEAD = "<2sBBIIIIHIIIHIIBB"
_HEAD_SIZE = struct.calcsize(_HEAD)
_PERIODIC = "<III"
_PERIODIC_SIZE = struct.calcsize(_PERIODIC)
_PAT_HEAD = "<BB"
_STEP = "<II"
_STEP_SIZE = struct.calcsize(_STEP)


class ProgramError(FieldError):
    """A program field that is wrong: `field` (path), `value` and `reason`.

    str(err) reads like
    "flex.patterns[0].steps[3].rate_ng_day = 2500000: above the hard limit max_rate_ng_day 1500000".
    """



def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(field, v, lo, hi, why_lo, why_hi):
    if not _is_int(v):
        raise ProgramError(field, repr(v), "must be an integer")
    if v < lo:
        raise ProgramError(field, v, why_lo)
    if v > hi:
        raise ProgramError(field, v, why_hi)


def _mask_days(mask):
    out = []
    for i in range(7):
        if mask & (1 << i):
            out.append(("mon", "tue", "wed", "thu", "fri", "sat", "sun")[i])
    return ",".join(out)


class Program:
    """An infusion program (see module docstring). Construct with keywords, then validate(limits)."""

    def __init__(self, mode=MODE_STOPPED, concentration_ug_ml=2000, rate_ng_day=0, patterns=None,
                 periodic=None, patient=None, single_bolus=None, catheter_nl=180000,
                 low_volume_nl=0, low_days=0):
        self.mode = mode
        self.concentration_ug_ml = concentration_ug_ml
        self.rate_ng_day = rate_ng_day
        self.patterns = list(patterns or [])
        self.periodic = list(periodic or [])
        self.patient = patient
        self.single_bolus = single_bolus
        self.catheter_nl = catheter_nl
        self.low_volume_nl = low_volume_nl
        self.low_days = low_days
        self._day_starts = None
        self._day_rates = None

    # ----- validation ---------------------------------------------------------------------
    def validate(self, limits=None):
        """Raise ProgramError for the first wrong field; with limits, also check the hard limits."""
        if not _is_int(self.mode) or self.mode < MODE_STOPPED or self.mode > MODE_SINGLE_BOLUS:
            raise ProgramError("mode", repr(self.mode), "must be 0 stopped, 1 continuous, 2 flexible or 3 single bolus")
        lo_c = limits.min_conc_ug_ml if limits else 1
        hi_c = limits.max_conc_ug_ml if limits else 2000
        _check_int("concentration_ug_ml", self.concentration_ug_ml, lo_c, hi_c,
                   "below the hard limit min_conc_ug_ml %d" % lo_c,
                   "above the hard limit max_conc_ug_ml %d" % hi_c)
        max_rate = limits.max_rate_ng_day if limits else 200000000
        max_bolus = limits.max_bolus_ng if limits else 1000000
        rate_why = "above the hard limit max_rate_ng_day %d" % max_rate
        bolus_why = "above the hard limit max_bolus_ng %d" % max_bolus
        _check_int("catheter_nl", self.catheter_nl, 0, MAX_CATHETER_NL, "must not be negative",
                   "above %d nL (catheter plus pump dead volume)" % MAX_CATHETER_NL)
        cap = limits.reservoir_capacity_nl if limits else 100000000
        _check_int("low_volume_nl", self.low_volume_nl, 0, cap, "must not be negative",
                   "above the reservoir capacity %d nL" % cap)
        _check_int("low_days", self.low_days, 0, MAX_LOW_DAYS, "must not be negative",
                   "above %d days" % MAX_LOW_DAYS)
        if self.mode == MODE_CONTINUOUS:
            _check_int("rate_ng_day", self.rate_ng_day, 1, max_rate,
                       "a continuous program needs a rate of at least 1 ng/day", rate_why)
        elif self.rate_ng_day != 0:
            raise ProgramError("rate_ng_day", repr(self.rate_ng_day), "only a continuous program has a single rate; must be 0")
        if self.mode == MODE_FLEX:
            self._validate_patterns(max_rate, rate_why)
        elif self.patterns:
            raise ProgramError("flex.patterns", "%d patterns" % len(self.patterns), "only a flexible program has patterns")
        if self.mode == MODE_SINGLE_BOLUS:
            sb = self.single_bolus
            if not isinstance(sb, (tuple, list)) or len(sb) != 2:
                raise ProgramError("single_bolus", repr(sb), "must be (dose_ng, duration_ms)")
            _check_int("single_bolus.dose_ng", sb[0], 1, max_bolus, "must be at least 1 ng", bolus_why)
            _check_int("single_bolus.duration_ms", sb[1], 1, MAX_BOLUS_DURATION_MS, "must be at least 1 ms",
                       "above 24 h")
        elif self.single_bolus is not None:
            raise ProgramError("single_bolus", repr(self.single_bolus), "only a single-bolus program has one")
        if self.mode == MODE_STOPPED:
            if self.periodic:
                raise ProgramError("periodic", "%d boluses" % len(self.periodic), "a stopped program delivers nothing")
            if self.patient is not None:
                raise ProgramError("patient", repr(self.patient), "a stopped program delivers nothing")
        self._validate_periodic(max_bolus, bolus_why)
        self._validate_patient(max_bolus, bolus_why)
        self._day_starts = None
        if limits:
            basal_max = self.max_basal_ng_day()
            flow = limits.max_flow_ng_day
            for i in range(len(self.periodic)):
                t, dose, dur = self.periodic[i]
                if basal_max + _bolus_rate(dose, dur) > flow:
                    raise ProgramError("periodic[%d].duration_ms" % i, dur,
                                       "too short: basal + bolus flow above the hard limit max_flow_ng_day %d" % flow)
            if self.patient is not None:
                if basal_max + _bolus_rate(self.patient[0], self.patient[1]) > flow:
                    raise ProgramError("patient.duration_ms", self.patient[1],
                                       "too short: basal + bolus flow above the hard limit max_flow_ng_day %d" % flow)
            if self.mode == MODE_SINGLE_BOLUS:
                if _bolus_rate(self.single_bolus[0], self.single_bolus[1]) > flow:
                    raise ProgramError("single_bolus.duration_ms", self.single_bolus[1],
                                       "too short: flow above the hard limit max_flow_ng_day %d" % flow)
            worst = self.worst_case_24h_ng()
            if worst > limits.max_24h_ng:
                raise ProgramError("worst_case_24h_ng", worst,
                                   "basal + periodic + all allotted patient boluses above the hard limit max_24h_ng %d"
                                   % limits.max_24h_ng)

    def _validate_patterns(self, max_rate, rate_why):
        pats = self.patterns
        if not pats:
            raise ProgramError("flex.patterns", "none", "a flexible program needs at least one pattern")
        if len(pats) > MAX_PATTERNS:
            raise ProgramError("flex.patterns", "%d patterns" % len(pats), "at most %d" % MAX_PATTERNS)
        seen = 0
        for i in range(len(pats)):
            p = pats[i]
            path = "flex.patterns[%d]" % i
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ProgramError(path, repr(p), "must be (weekday_mask, steps)")
            mask, steps = p
            _check_int(path + ".weekdays", mask, 1, ALL_DAYS, "must name at least one day",
                       "must be a 7-bit mask (bit 0 Monday .. bit 6 Sunday)")
            if mask & seen:
                raise ProgramError(path + ".weekdays", _mask_days(mask),
                                   "%s already covered by an earlier pattern" % _mask_days(mask & seen))
            seen |= mask
            if not isinstance(steps, (tuple, list)) or not steps:
                raise ProgramError(path + ".steps", repr(steps), "needs at least one step")
            if len(steps) > MAX_STEPS:
                raise ProgramError(path + ".steps", "%d steps" % len(steps), "at most %d steps per day" % MAX_STEPS)
            prev = -1
            for j in range(len(steps)):
                s = steps[j]
                sp = "%s.steps[%d]" % (path, j)
                if not isinstance(s, (tuple, list)) or len(s) != 2:
                    raise ProgramError(sp, repr(s), "must be (start_ms_of_day, rate_ng_day)")
                start, rate = s
                if j == 0:
                    _check_int(sp + ".start_ms", start, 0, 0, "the first step must start at 00:00",
                               "the first step must start at 00:00")
                else:
                    _check_int(sp + ".start_ms", start, prev + 1, MS_PER_DAY - 1,
                               "must be after the previous step's start %d" % prev,
                               "must be before midnight (86399999)")
                prev = start
                _check_int(sp + ".rate_ng_day", rate, 0, max_rate, "must not be negative", rate_why)
        if seen != ALL_DAYS:
            raise ProgramError("flex.patterns", "days " + _mask_days(seen),
                               "no pattern for %s" % _mask_days(ALL_DAYS & ~seen))

    def _validate_periodic(self, max_bolus, bolus_why):
        per = self.periodic
        if len(per) > MAX_PERIODIC:
            raise ProgramError("periodic", "%d boluses" % len(per), "at most %d per day" % MAX_PERIODIC)
        for i in range(len(per)):
            b = per[i]
            path = "periodic[%d]" % i
            if not isinstance(b, (tuple, list)) or len(b) != 3:
                raise ProgramError(path, repr(b), "must be (ms_of_day, dose_ng, duration_ms)")
            t, dose, dur = b
            if i == 0:
                _check_int(path + ".time_ms", t, 0, MS_PER_DAY - 1, "must not be negative",
                           "must be before midnight (86399999)")
            else:
                pt, pd, pdur = per[i - 1]
                _check_int(path + ".time_ms", t, pt + pdur, MS_PER_DAY - 1,
                           "must be at or after the end of periodic[%d] (%d)" % (i - 1, pt + pdur),
                           "must be before midnight (86399999)")
            _check_int(path + ".dose_ng", dose, 1, max_bolus, "must be at least 1 ng", bolus_why)
            _check_int(path + ".duration_ms", dur, 1, MAX_BOLUS_DURATION_MS - 1, "must be at least 1 ms",
                       "must be shorter than 24 h")
        if len(per) > 1:
            t0 = per[0][0]
            tl, _, dl = per[-1]
            if tl + dl > t0 + MS_PER_DAY:
                raise ProgramError("periodic[%d].duration_ms" % (len(per) - 1), dl,
                                   "overlaps periodic[0] on the next day")

    def _validate_patient(self, max_bolus, bolus_why):
        p = self.patient
        if p is None:
            return
        if not isinstance(p, (tuple, list)) or len(p) != 4:
            raise ProgramError("patient", repr(p), "must be (dose_ng, duration_ms, lockout_ms, per_24h)")
        _check_int("patient.dose_ng", p[0], 1, max_bolus, "must be at least 1 ng", bolus_why)
        _check_int("patient.duration_ms", p[1], 1, MAX_BOLUS_DURATION_MS, "must be at least 1 ms", "above 24 h")
        _check_int("patient.lockout_ms", p[2], 0, MAX_LOCKOUT_MS, "must not be negative", "above 24 h")
        _check_int("patient.per_24h", p[3], 1, MAX_PATIENT_PER_24H, "must allow at least 1 bolus (or omit patient)",
                   "at most %d per 24 h" % MAX_PATIENT_PER_24H)
        if p[2] < p[1]:
            raise ProgramError("patient.lockout_ms", p[2],
                               "shorter than the bolus duration %d ms (boluses would queue)" % p[1])

    # ----- basal lookup (allocation-free after first call) ---------------------------------
    def _tables(self):
        if self._day_starts is None:
            starts = []
            rates = []
            for wd in range(7):
                s = [0]
                r = [0]
                if self.mode == MODE_CONTINUOUS:
                    r = [self.rate_ng_day]
                elif self.mode == MODE_FLEX:
                    for mask, steps in self.patterns:
                        if mask & (1 << wd):
                            s = [st[0] for st in steps]
                            r = [st[1] for st in steps]
                starts.append(s)
                rates.append(r)
            self._day_starts = starts
            self._day_rates = rates

    def basal_rate_at(self, weekday, ms_of_day):
        """Basal rate (ng/day) in force at ms_of_day on weekday (Monday 0)."""
        return self._day_rates[weekday][self.basal_step_at(weekday, ms_of_day)]

    def basal_step_at(self, weekday, ms_of_day):
        """Index of the basal step in force at ms_of_day on weekday (0 for a one-rate day)."""
        self._tables()
        starts = self._day_starts[weekday]
        i = len(starts) - 1
        while starts[i] > ms_of_day:
            i -= 1
        return i

    def basal_next_change_ms(self, weekday, ms_of_day):
        """ms of day of the next basal step start after ms_of_day, or 86,400,000 (midnight)."""
        self._tables()
        starts = self._day_starts[weekday]
        for s in starts:
            if s > ms_of_day:
                return s
        return MS_PER_DAY

    def max_basal_ng_day(self):
        """Highest basal rate anywhere in the program (ng/day)."""
        if self.mode == MODE_CONTINUOUS:
            return self.rate_ng_day
        m = 0
        if self.mode == MODE_FLEX:
            for mask, steps in self.patterns:
                for st in steps:
                    if st[1] > m:
                        m = st[1]
        return m

    def basal_day_ng(self, weekday):
        """Basal dose over the whole of `weekday`, rounded up to whole ng."""
        return -(-self._basal_between_q(weekday, 0, MS_PER_DAY) // units.QUANTA_PER_NG)

    def _basal_between_q(self, weekday, a, b):
        """Basal dose in quanta (1/86.4e6 ng) from ms a to ms b of weekday (set-up time, may be a long int)."""
        self._tables()
        starts = self._day_starts[weekday]
        rates = self._day_rates[weekday]
        total = 0
        n = len(starts)
        for i in range(n):
            s = starts[i]
            e = starts[i + 1] if i + 1 < n else MS_PER_DAY
            lo = s if s > a else a
            hi = e if e < b else b
            if hi > lo:
                total += rates[i] * (hi - lo)
        return total

    def worst_case_24h_ng(self):
        """Largest dose any 24 h window can receive under this program (ng, rounded up).

        Basal: exact maximum of the sliding 24 h integral (its extremes lie where the window's
        start or end meets a step boundary). Plus every periodic bolus, every allotted patient
        bolus and the single bolus. Validation-time arithmetic (long ints allowed).
        """
        best = 0
        if self.mode in (MODE_CONTINUOUS, MODE_FLEX):
            self._tables()
            for wd in range(7):
                nxt = (wd + 1) % 7
                cands = {}
                for s in self._day_starts[wd]:
                    cands[s] = 1
                for s in self._day_starts[nxt]:
                    cands[s] = 1
                for s in cands:
                    q = self._basal_between_q(wd, s, MS_PER_DAY) + self._basal_between_q(nxt, 0, s)
                    if q > best:
                        best = q
        total = -(-best // units.QUANTA_PER_NG)
        for b in self.periodic:
            total += b[1]
        if self.patient is not None:
            total += self.patient[0] * self.patient[3]
        if self.mode == MODE_SINGLE_BOLUS:
            total += self.single_bolus[0]
        return total

    # ----- canonical encoding -------------------------------------------------------------
    def encode(self):
        """Canonical little-endian binary form (version FORMAT_VERSION)."""
        pat = self.patient or (0, 0, 0, 0)
        sb = self.single_bolus or (0, 0)
        parts = [struct.pack(_HEAD, MAGIC, FORMAT_VERSION, self.mode, self.concentration_ug_ml,
                             self.rate_ng_day, self.catheter_nl, self.low_volume_nl, self.low_days,
                             pat[0], pat[1], pat[2], pat[3], sb[0], sb[1],
                             len(self.periodic), len(self.patterns))]
        for t, dose, dur in self.periodic:
            parts.append(struct.pack(_PERIODIC, t, dose, dur))
        for mask, steps in self.patterns:
            parts.append(struct.pack(_PAT_HEAD, mask, len(steps)))
            for start, rate in steps:
                parts.append(struct.pack(_STEP, start, rate))
        return b"".join(parts)

    @staticmethod
    def decode(buf, limits=None):
        """Program from encode() bytes; raises ProgramError on any malformed or invalid input."""
        try:
            buf = bytes(buf)
        except Exception:
            raise ProgramError("program", type(buf).__name__, "not bytes")
        if len(buf) < _HEAD_SIZE:
            raise ProgramError("program", "%d bytes" % len(buf), "shorter than the %d-byte header" % _HEAD_SIZE)
        h = struct.unpack_from(_HEAD, buf, 0)
        if h[0] != MAGIC:
            raise ProgramError("program.magic", repr(h[0]), "not a program (expected b'IP')")
        if h[1] != FORMAT_VERSION:
            raise ProgramError("program.version", h[1], "unsupported format version (this firmware reads %d)" % FORMAT_VERSION)
        n_per = h[14]
        n_pat = h[15]
        if n_per > MAX_PERIODIC:
            raise ProgramError("periodic", "%d boluses" % n_per, "at most %d per day" % MAX_PERIODIC)
        if n_pat > MAX_PATTERNS:
            raise ProgramError("flex.patterns", "%d patterns" % n_pat, "at most %d" % MAX_PATTERNS)
        off = _HEAD_SIZE
        periodic = []
        for i in range(n_per):
            if off + _PERIODIC_SIZE > len(buf):
                raise ProgramError("periodic[%d]" % i, "truncated", "program bytes end inside this bolus")
            periodic.append(struct.unpack_from(_PERIODIC, buf, off))
            off += _PERIODIC_SIZE
        patterns = []
        for i in range(n_pat):
            if off + 2 > len(buf):
                raise ProgramError("flex.patterns[%d]" % i, "truncated", "program bytes end inside this pattern")
            mask, n_steps = struct.unpack_from(_PAT_HEAD, buf, off)
            off += 2
            if n_steps > MAX_STEPS:
                raise ProgramError("flex.patterns[%d].steps" % i, "%d steps" % n_steps, "at most %d steps per day" % MAX_STEPS)
            steps = []
            for j in range(n_steps):
                if off + _STEP_SIZE > len(buf):
                    raise ProgramError("flex.patterns[%d].steps[%d]" % (i, j), "truncated",
                                       "program bytes end inside this step")
                steps.append(struct.unpack_from(_STEP, buf, off))
                off += _STEP_SIZE
            patterns.append((mask, steps))
        if off != len(buf):
            raise ProgramError("program", "%d bytes" % len(buf), "%d bytes after the last field" % (len(buf) - off))
        mode = h[2]
        patient = None
        if h[8] or h[9] or h[10] or h[11]:
            patient = (h[8], h[9], h[10], h[11])
        single = None
        if h[12] or h[13] or mode == MODE_SINGLE_BOLUS:
            single = (h[12], h[13])
        p = Program(mode=mode, concentration_ug_ml=h[3], rate_ng_day=h[4], patterns=patterns,
                    periodic=[tuple(b) for b in periodic], patient=patient, single_bolus=single,
                    catheter_nl=h[5], low_volume_nl=h[6], low_days=h[7])
        p.patterns = [(m, [tuple(s) for s in st]) for m, st in patterns]
        p.validate(limits)
        if p.encode() != buf:
            raise ProgramError("program", "%d bytes" % len(buf), "not in canonical form")
        return p

    def crc32(self):
        """CRC-32 (zlib polynomial) of the canonical encoding, as an unsigned int."""
        return binascii.crc32(self.encode()) & 0xFFFFFFFF

    def __eq__(self, other):
        return isinstance(other, Program) and self.encode() == other.encode()

    # ----- review screen ------------------------------------------------------------------
    def describe(self):
        """Review-screen lines (plain ASCII, identical on device and host)."""
        c = self.concentration_ug_ml
        lines = ["Mode: %s" % MODE_NAMES[self.mode],
                 "Drug concentration: %s" % units.fmt_conc(c)]
        if self.mode == MODE_CONTINUOUS:
            lines.append("Basal: %s (%s/day)" % (units.fmt_rate(self.rate_ng_day),
                                                  units.fmt_volume(self.rate_ng_day * 1000 // c)))
        elif self.mode == MODE_FLEX:
            for mask, steps in self.patterns:
                lines.append("Pattern %s:" % ("every day" if mask == ALL_DAYS else _mask_days(mask)))
                for start, rate in steps:
                    lines.append("  from %s  %s" % (units.fmt_time_of_day(start), units.fmt_rate(rate)))
        elif self.mode == MODE_SINGLE_BOLUS:
            lines.append("Single bolus: %s over %s, then stop" % (units.fmt_dose(self.single_bolus[0]),
                                                                   units.fmt_duration(self.single_bolus[1])))
        for t, dose, dur in self.periodic:
            lines.append("Periodic bolus at %s: %s over %s" % (units.fmt_time_of_day(t), units.fmt_dose(dose),
                                                              units.fmt_duration(dur)))
        if self.patient is not None:
            d, dur, lock, n = self.patient
            lines.append("Patient bolus: %s over %s, lockout %s, up to %d per 24 h" % (
                units.fmt_dose(d), units.fmt_duration(dur), units.fmt_duration(lock), n))
        if self.mode != MODE_STOPPED:
            lines.append("Worst-case 24 h dose: %s" % units.fmt_dose(self.worst_case_24h_ng()))
        lines.append("Catheter volume (bridge): %s" % units.fmt_volume(self.catheter_nl))
        if self.low_volume_nl or self.low_days:
            lines.append("Reservoir low alarm: at %s or %d days left" % (units.fmt_volume(self.low_volume_nl),
                                                                        self.low_days))
        else:
            lines.append("Reservoir low alarm: off")
        lines.append("CRC-32: %08x" % self.crc32())
        return lines


def _bolus_rate(dose_ng, duration_ms):
    """Bolus rate (ng/day) that delivers dose_ng in duration_ms, rounded up."""
    return -(-dose_ng * units.QUANTA_PER_NG // duration_ms)
