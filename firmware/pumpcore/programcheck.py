"""Program validation and decoding: the checks behind `Program.validate` and `Program.decode`,
with every ProgramError text (pumpcore.program's docstring says what is checked).

Its own module for the RP2040's RAM (issue 16): on v1.22.2 a loaded module's bytecode and its
long strings live in the heap, and this code runs only when a program is committed, verified or
loaded at boot. `pumpcore.program` imports it for the call and lets it go after
(`pumpcore.forget`), so the device carries it only while it checks a program. The host calls the
same functions through `Program.validate` / `Program.decode`.
"""
import struct

from pumpcore.program import (ProgramError, Program, _mask_days, _bolus_rate, _HEAD, _HEAD_SIZE,
                              _PERIODIC, _PERIODIC_SIZE, _PAT_HEAD, _STEP, _STEP_SIZE, MAGIC,
                              FORMAT_VERSION, MODE_STOPPED, MODE_CONTINUOUS, MODE_FLEX,
                              MODE_SINGLE_BOLUS, MAX_STEPS, MAX_PATTERNS, MAX_PERIODIC,
                              MAX_PATIENT_PER_24H, MAX_CATHETER_NL, MAX_LOW_DAYS,
                              MAX_BOLUS_DURATION_MS, MAX_LOCKOUT_MS, MS_PER_DAY, ALL_DAYS)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(field, v, lo, hi, why_lo, why_hi):
    if not _is_int(v):
        raise ProgramError(field, repr(v), "must be an integer")
    if v < lo:
        raise ProgramError(field, v, why_lo)
    if v > hi:
        raise ProgramError(field, v, why_hi)


def validate(prog, limits=None):
    """Program.validate: raise ProgramError for the first wrong field; with limits, also check the hard limits."""
    if not _is_int(prog.mode) or prog.mode < MODE_STOPPED or prog.mode > MODE_SINGLE_BOLUS:
        raise ProgramError("mode", repr(prog.mode), "must be 0 stopped, 1 continuous, 2 flexible or 3 single bolus")
    lo_c = limits.min_conc_ug_ml if limits else 1
    hi_c = limits.max_conc_ug_ml if limits else 2000
    _check_int("concentration_ug_ml", prog.concentration_ug_ml, lo_c, hi_c,
               "below the hard limit min_conc_ug_ml %d" % lo_c,
               "above the hard limit max_conc_ug_ml %d" % hi_c)
    max_rate = limits.max_rate_ng_day if limits else 200000000
    max_bolus = limits.max_bolus_ng if limits else 1000000
    rate_why = "above the hard limit max_rate_ng_day %d" % max_rate
    bolus_why = "above the hard limit max_bolus_ng %d" % max_bolus
    _check_int("catheter_nl", prog.catheter_nl, 0, MAX_CATHETER_NL, "must not be negative",
               "above %d nL (catheter plus pump dead volume)" % MAX_CATHETER_NL)
    cap = limits.reservoir_capacity_nl if limits else 100000000
    _check_int("low_volume_nl", prog.low_volume_nl, 0, cap, "must not be negative",
               "above the reservoir capacity %d nL" % cap)
    _check_int("low_days", prog.low_days, 0, MAX_LOW_DAYS, "must not be negative",
               "above %d days" % MAX_LOW_DAYS)
    if prog.mode == MODE_CONTINUOUS:
        _check_int("rate_ng_day", prog.rate_ng_day, 1, max_rate,
                   "a continuous program needs a rate of at least 1 ng/day", rate_why)
    elif prog.rate_ng_day != 0:
        raise ProgramError("rate_ng_day", repr(prog.rate_ng_day), "only a continuous program has a single rate; must be 0")
    if prog.mode == MODE_FLEX:
        _validate_patterns(prog, max_rate, rate_why)
    elif prog.patterns:
        raise ProgramError("flex.patterns", "%d patterns" % len(prog.patterns), "only a flexible program has patterns")
    if prog.mode == MODE_SINGLE_BOLUS:
        sb = prog.single_bolus
        if not isinstance(sb, (tuple, list)) or len(sb) != 2:
            raise ProgramError("single_bolus", repr(sb), "must be (dose_ng, duration_ms)")
        _check_int("single_bolus.dose_ng", sb[0], 1, max_bolus, "must be at least 1 ng", bolus_why)
        _check_int("single_bolus.duration_ms", sb[1], 1, MAX_BOLUS_DURATION_MS, "must be at least 1 ms",
                   "above 24 h")
    elif prog.single_bolus is not None:
        raise ProgramError("single_bolus", repr(prog.single_bolus), "only a single-bolus program has one")
    if prog.mode == MODE_STOPPED:
        if prog.periodic:
            raise ProgramError("periodic", "%d boluses" % len(prog.periodic), "a stopped program delivers nothing")
        if prog.patient is not None:
            raise ProgramError("patient", repr(prog.patient), "a stopped program delivers nothing")
    _validate_periodic(prog, max_bolus, bolus_why)
    _validate_patient(prog, max_bolus, bolus_why)
    prog._day_starts = None
    if limits:
        basal_max = prog.max_basal_ng_day()
        flow = limits.max_flow_ng_day
        for i in range(len(prog.periodic)):
            t, dose, dur = prog.periodic[i]
            if basal_max + _bolus_rate(dose, dur) > flow:
                raise ProgramError("periodic[%d].duration_ms" % i, dur,
                                   "too short: basal + bolus flow above the hard limit max_flow_ng_day %d" % flow)
        if prog.patient is not None:
            if basal_max + _bolus_rate(prog.patient[0], prog.patient[1]) > flow:
                raise ProgramError("patient.duration_ms", prog.patient[1],
                                   "too short: basal + bolus flow above the hard limit max_flow_ng_day %d" % flow)
        if prog.mode == MODE_SINGLE_BOLUS:
            if _bolus_rate(prog.single_bolus[0], prog.single_bolus[1]) > flow:
                raise ProgramError("single_bolus.duration_ms", prog.single_bolus[1],
                                   "too short: flow above the hard limit max_flow_ng_day %d" % flow)
        worst = prog.worst_case_24h_ng()
        if worst > limits.max_24h_ng:
            raise ProgramError("worst_case_24h_ng", worst,
                               "basal + periodic + all allotted patient boluses above the hard limit max_24h_ng %d"
                               % limits.max_24h_ng)

def _validate_patterns(prog, max_rate, rate_why):
    pats = prog.patterns
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

def _validate_periodic(prog, max_bolus, bolus_why):
    per = prog.periodic
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

def _validate_patient(prog, max_bolus, bolus_why):
    p = prog.patient
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

def decode(buf, limits=None):
    """Program.decode: the Program from encode() bytes; raises ProgramError on any malformed or invalid input."""
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
    validate(p, limits)
    if p.encode() != buf:
        raise ProgramError("program", "%d bytes" % len(buf), "not in canonical form")
    return p
