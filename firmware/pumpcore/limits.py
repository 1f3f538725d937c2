"""HardLimits: the limits no program, bolus or combination may exceed (checked by program and scheduler).

Units: rates ng/day, doses ng, concentration ug/mL, volume nL. The absolute ceilings below keep
the scheduler's arithmetic inside RP2040 small ints (see scheduler.py): at most 100 mL of
drug per 24 h (max_24h_ng at min_conc_ug_ml), any flow at most
2e8 ng/day (so 5 * rate < 2**30), concentration at most 2000 ug/mL (so 432 * C <= 864,000),
a single bolus at most 1,000,000 ng (1 mg), 24 h total at most 20 mg, reservoir at most 100 mL.

Per mechanism (`HardLimits.for_mechanism`, hw/mechanism.md "Hard limits per mechanism"): the
reservoir is the syringe; the most drug volume per day (`max_daily_nl`) is what keeps every
step counter below 2**30 over COUNTER_DAYS days at that mechanism's pL per microstep (30 days
x 100 mL at the 20 mL rig's 17,964 pL; 23.3 mL/day at the precision drive's 652 pL); the
lowest concentration is raised until max_24h_ng fits in it; the fastest flow is what the motor
makes at the firmware's fastest step rate (MAX_STEP_HZ) at the lowest concentration.
"""
from pumpcore.fielderror import FieldError
from pumpcore.fixed import const
from pumpcore import text

ABS_MAX_FLOW_NG_DAY = const(200000000)
_ABS_MAX_CONC_UG_ML = const(2000)
_ABS_MIN_CONC_UG_ML = const(1)
ABS_MAX_BOLUS_NG = const(1000000)
ABS_MAX_RESERVOIR_NL = const(100000000)
_ABS_MAX_24H_NG = const(20000000)
# Most drug volume the limits may let through in 24 h (nL): max_24h_ng at min_conc_ug_ml.
# Keeps 30-day step counters small: 30 days x 100 mL / 3,000 pL per step < 2**30.
_ABS_MAX_DAILY_NL = const(100000000)
COUNTER_DAYS = const(30)          # step counters stay < 2**30 for this many days at the limits
_COUNTER_MAX = const(0x3FFFFFFF)   # 2**30 - 1, the RP2040's largest small int
MAX_STEP_HZ = const(2000)         # pumpfw.app MIN_PERIOD_US = 500 us: the fastest step rate
MS_PER_DAY = const(86400000)


def max_daily_nl_for(pl_per_step):
    """Most nL per day that keeps COUNTER_DAYS days of microsteps below 2**30 (at most
    _ABS_MAX_DAILY_NL): floor((2**30 - 1) / 30) x pl_per_step / 1000, in small ints."""
    per_day = _COUNTER_MAX // COUNTER_DAYS            # 35,791,394 microsteps a day
    q, r = divmod(per_day, 1000)
    if pl_per_step > _ABS_MAX_DAILY_NL // q:
        return _ABS_MAX_DAILY_NL
    return min(_ABS_MAX_DAILY_NL, q * pl_per_step + r * pl_per_step // 1000)


def max_flow_ng_day_for(pl_per_step, conc_ug_ml):
    """Fastest flow (ng/day) the motor makes at MAX_STEP_HZ at `conc_ug_ml` (at most
    ABS_MAX_FLOW_NG_DAY). Set-up arithmetic: intermediates may exceed 2**30 (once, at boot)."""
    nl_day = MAX_STEP_HZ * (MS_PER_DAY // 1000) * pl_per_step // 1000
    return min(ABS_MAX_FLOW_NG_DAY, nl_day * conc_ug_ml // 1000)

# (name, absolute minimum, absolute maximum)
_FIELDS = (
    ("max_rate_ng_day", 1, ABS_MAX_FLOW_NG_DAY),
    ("max_24h_ng", 1, _ABS_MAX_24H_NG),
    ("max_bolus_ng", 1, ABS_MAX_BOLUS_NG),
    ("max_flow_ng_day", 1, ABS_MAX_FLOW_NG_DAY),
    ("min_conc_ug_ml", _ABS_MIN_CONC_UG_ML, _ABS_MAX_CONC_UG_ML),
    ("max_conc_ug_ml", _ABS_MIN_CONC_UG_ML, _ABS_MAX_CONC_UG_ML),
    ("reservoir_capacity_nl", 1, ABS_MAX_RESERVOIR_NL),
)


class LimitsError(FieldError):
    """A hard-limit setting outside its absolute range: names field, value and the bound."""



class HardLimits:
    """Hard limits of the rig (defaults suit intrathecal baclofen on the 20 mL bench syringe).

    max_rate_ng_day: highest basal rate any program step may have (default 1.5 mg/day).
    max_24h_ng: most drug delivered in any rolling 24 h, basal plus all boluses (default 2 mg).
    max_bolus_ng: largest single bolus (default 500 ug).
    max_flow_ng_day: highest instantaneous flow, basal + bolus (default 2e8 ng/day, absolute).
    min_conc_ug_ml, max_conc_ug_ml: drug concentration range (default 50..2000 ug/mL).
    reservoir_capacity_nl: the reservoir (bench syringe) volume (default 20 mL).
    max_daily_nl: most drug volume max_24h_ng may mean at min_conc_ug_ml (not on the wire nor
    in the tuple: it is the mechanism's, see for_mechanism; default _ABS_MAX_DAILY_NL).
    """

    def __init__(self, max_rate_ng_day=1500000, max_24h_ng=2000000, max_bolus_ng=500000,
                 max_flow_ng_day=ABS_MAX_FLOW_NG_DAY, min_conc_ug_ml=50, max_conc_ug_ml=2000,
                 reservoir_capacity_nl=20000000, max_daily_nl=_ABS_MAX_DAILY_NL):
        if not isinstance(max_daily_nl, int) or max_daily_nl < 1 or max_daily_nl > _ABS_MAX_DAILY_NL:
            raise LimitsError("limits.max_daily_nl", repr(max_daily_nl),
                              text("int_in", _ABS_MAX_DAILY_NL))
        self.max_daily_nl = max_daily_nl
        self.max_rate_ng_day = max_rate_ng_day
        self.max_24h_ng = max_24h_ng
        self.max_bolus_ng = max_bolus_ng
        self.max_flow_ng_day = max_flow_ng_day
        self.min_conc_ug_ml = min_conc_ug_ml
        self.max_conc_ug_ml = max_conc_ug_ml
        self.reservoir_capacity_nl = reservoir_capacity_nl
        self.validate()

    def validate(self):
        """Raise LimitsError naming the first setting outside its absolute range."""
        for name, lo, hi in _FIELDS:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise LimitsError("limits." + name, repr(v), text("int"))
            if v < lo or v > hi:
                raise LimitsError("limits." + name, v, text("abs_range", lo, hi))
        if self.min_conc_ug_ml > self.max_conc_ug_ml:
            raise LimitsError("limits.min_conc_ug_ml", self.min_conc_ug_ml,
                              text("conc_order", self.max_conc_ug_ml))
        daily_nl = self.max_24h_ng * 1000 // self.min_conc_ug_ml
        if daily_nl > self.max_daily_nl:
            raise LimitsError("limits.max_24h_ng", self.max_24h_ng,
                              text("daily_vol", self.min_conc_ug_ml, daily_nl, self.max_daily_nl,
                                   COUNTER_DAYS))
        if self.max_rate_ng_day > self.max_flow_ng_day:
            raise LimitsError("limits.max_rate_ng_day", self.max_rate_ng_day,
                              text("rate_order", self.max_flow_ng_day))

    def as_tuple(self):
        """The limits as a tuple of ints in _FIELDS order (for persistence and the wire)."""
        return tuple(getattr(self, name) for name, _, _ in _FIELDS)

    @staticmethod
    def from_tuple(values, max_daily_nl=_ABS_MAX_DAILY_NL):
        """Inverse of as_tuple (validates); max_daily_nl: the mechanism's (not in the tuple)."""
        if len(values) != len(_FIELDS):
            raise LimitsError("limits", len(values), text("n_values", len(_FIELDS)))
        return HardLimits(*values, max_daily_nl=max_daily_nl)

    @staticmethod
    def for_mechanism(mech, pl_per_step):
        """The default limits re-derived for a mechanism (a dict as in hw/mechanism*.json) and
        its pL per microstep: reservoir = the syringe, max_daily_nl = max_daily_nl_for(pl),
        min_conc_ug_ml raised (if needed) until max_24h_ng fits in that volume, max_flow_ng_day
        the motor's fastest at min_conc_ug_ml (and at least the default max rate)."""
        base = HardLimits()
        cap = mech.get("syringe_capacity_nl", base.reservoir_capacity_nl)
        daily = max_daily_nl_for(pl_per_step)
        min_conc = base.min_conc_ug_ml
        need = (base.max_24h_ng * 1000 + daily - 1) // daily
        if need > min_conc:
            min_conc = need
        flow = max_flow_ng_day_for(pl_per_step, min_conc)
        if flow < base.max_rate_ng_day:
            raise LimitsError("mechanism", "%d pL/step" % pl_per_step,
                              text("slow_mech", flow, min_conc, base.max_rate_ng_day))
        return HardLimits(max_rate_ng_day=base.max_rate_ng_day, max_24h_ng=base.max_24h_ng,
                          max_bolus_ng=base.max_bolus_ng, max_flow_ng_day=flow,
                          min_conc_ug_ml=min_conc, max_conc_ug_ml=base.max_conc_ug_ml,
                          reservoir_capacity_nl=cap, max_daily_nl=daily)
