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
from pumpcore import units, call_once

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

    # ----- validation (pumpcore.programcheck, loaded for the call) ----------------------------
    def validate(self, limits=None):
        """Raise ProgramError for the first wrong field; with limits, also check the hard limits."""
        _checked("validate", self, limits)

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
        return _checked("decode", buf, limits)

    def crc32(self):
        """CRC-32 (zlib polynomial) of the canonical encoding, as an unsigned int."""
        return binascii.crc32(self.encode()) & 0xFFFFFFFF

    def __eq__(self, other):
        return isinstance(other, Program) and self.encode() == other.encode()

    # ----- review screen ------------------------------------------------------------------
    def describe(self):
        """Review-screen lines (plain ASCII, identical on device and host): pumpcore.programtext,
        loaded for the call (the device shows them only when a host reads a program back)."""
        from pumpcore import programtext
        return call_once(programtext, "describe", self)


def _bolus_rate(dose_ng, duration_ms):
    """Bolus rate (ng/day) that delivers dose_ng in duration_ms, rounded up."""
    return -(-dose_ng * units.QUANTA_PER_NG // duration_ms)


def _checked(name, arg, limits):
    """pumpcore.programcheck's `name`(arg, limits), the module loaded for the call and let go
    after (issue 16: its code and texts are in the RP2040's heap only while a program is checked;
    a no-op forget on CPython)."""
    from pumpcore import programcheck
    return call_once(programcheck, name, arg, limits)
