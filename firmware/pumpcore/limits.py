"""HardLimits: the limits no program, bolus or combination may exceed (checked by program and scheduler).

Units: rates ng/day, doses ng, concentration ug/mL, volume nL. The absolute ceilings below keep
the scheduler's arithmetic inside RP2040 small ints (see scheduler.py): at most 100 mL of
drug per 24 h (max_24h_ng at min_conc_ug_ml), any flow at most
2e8 ng/day (so 5 * rate < 2**30), concentration at most 2000 ug/mL (so 432 * C <= 864,000),
a single bolus at most 1,000,000 ng (1 mg), 24 h total at most 20 mg, reservoir at most 100 mL.
"""
from pumpcore.fielderror import FieldError
from pumpcore.fixed import const

ABS_MAX_FLOW_NG_DAY = const(200000000)
ABS_MAX_CONC_UG_ML = const(2000)
ABS_MIN_CONC_UG_ML = const(1)
ABS_MAX_BOLUS_NG = const(1000000)
ABS_MAX_RESERVOIR_NL = const(100000000)
ABS_MAX_24H_NG = const(20000000)
# Most drug volume the limits may let through in 24 h (nL): max_24h_ng at min_conc_ug_ml.
# Keeps 30-day step counters small: 30 days x 100 mL / 3,000 pL per step < 2**30.
ABS_MAX_DAILY_NL = const(100000000)

# (name, absolute minimum, absolute maximum)
_FIELDS = (
    ("max_rate_ng_day", 1, ABS_MAX_FLOW_NG_DAY),
    ("max_24h_ng", 1, ABS_MAX_24H_NG),
    ("max_bolus_ng", 1, ABS_MAX_BOLUS_NG),
    ("max_flow_ng_day", 1, ABS_MAX_FLOW_NG_DAY),
    ("min_conc_ug_ml", ABS_MIN_CONC_UG_ML, ABS_MAX_CONC_UG_ML),
    ("max_conc_ug_ml", ABS_MIN_CONC_UG_ML, ABS_MAX_CONC_UG_ML),
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
    """

    def __init__(self, max_rate_ng_day=1500000, max_24h_ng=2000000, max_bolus_ng=500000,
                 max_flow_ng_day=ABS_MAX_FLOW_NG_DAY, min_conc_ug_ml=50, max_conc_ug_ml=2000,
                 reservoir_capacity_nl=20000000):
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
                raise LimitsError("limits." + name, repr(v), "must be an integer")
            if v < lo or v > hi:
                raise LimitsError("limits." + name, v, "outside the absolute range %d..%d" % (lo, hi))
        if self.min_conc_ug_ml > self.max_conc_ug_ml:
            raise LimitsError("limits.min_conc_ug_ml", self.min_conc_ug_ml,
                              "above limits.max_conc_ug_ml %d" % self.max_conc_ug_ml)
        daily_nl = self.max_24h_ng * 1000 // self.min_conc_ug_ml
        if daily_nl > ABS_MAX_DAILY_NL:
            raise LimitsError("limits.max_24h_ng", self.max_24h_ng,
                              "at min_conc_ug_ml %d that is %d nL/day, above the absolute %d nL/day"
                              % (self.min_conc_ug_ml, daily_nl, ABS_MAX_DAILY_NL))
        if self.max_rate_ng_day > self.max_flow_ng_day:
            raise LimitsError("limits.max_rate_ng_day", self.max_rate_ng_day,
                              "above limits.max_flow_ng_day %d" % self.max_flow_ng_day)

    def as_tuple(self):
        """The limits as a tuple of ints in _FIELDS order (for persistence and the wire)."""
        return tuple(getattr(self, name) for name, _, _ in _FIELDS)

    @staticmethod
    def from_tuple(values):
        """Inverse of as_tuple (validates)."""
        if len(values) != len(_FIELDS):
            raise LimitsError("limits", len(values), "expected %d values" % len(_FIELDS))
        return HardLimits(*values)
