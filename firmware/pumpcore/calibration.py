"""Mechanism calibration: pL per microstep, derived from hw/mechanism.json or a measured override.

Derivation (integer arithmetic only): one motor revolution advances the plunger by `lead_um`
and displaces pi * (syringe_id_um / 2)**2 * lead_um cubic micrometres; 1 um**3 = 1e-3 pL. A
revolution is full_steps_per_rev * microsteps microsteps, so

    pl_per_step = pi * id_um**2 * lead_um / (4 * 1000 * full_steps * microsteps)

with pi taken as the convergent 245850922 / 78256779 (relative error below 1e-16, far below
the 1 pL resolution) and the result rounded to the NEAREST pL (halves up). For the bench rig
(lead 800 um, 200 x 64 microsteps, ID 19.13 mm) that is 17,963.87 -> 17,964 pL per microstep. Rounding costs
at most 0.5 pL per step (28 ppm): a measured calibration (gravimetric, see hw/) replaces it.

A measured calibration is `from_measurement(volume_nl, steps)`: volume delivered for a number
of microsteps, rounded to the nearest pL per step. It is accepted only within +/-10 % of the
derived value (a larger difference means a wrong mechanism file or a bad measurement).
"""
from pumpcore.fielderror import FieldError
from pumpcore.fixed import const

_PI_NUM = const(245850922)
_PI_DEN = const(78256779)
MIN_PL_PER_STEP = const(100)        # below this a step is too small to be a plausible syringe
MAX_PL_PER_STEP = const(10000000)   # 10 nL per microstep: far beyond any syringe we fit
_MEASURED_TOLERANCE_PERMILLE = const(100)

_MECH_FIELDS = ("lead_um", "full_steps_per_rev", "microsteps", "syringe_id_um")

# The mechanism's name (hw/mechanism*.json "name"; `pumpctl deploy --mechanism NAME`). A file
# without one is the 20 mL bench rig's from before there were two.
DEFAULT_MECHANISM = "20ml"
_NAME_MAX = const(24)
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"


class CalibrationError(FieldError):
    """A mechanism or measured calibration value that is missing or out of range."""



def pl_per_step_from_mechanism(mech):
    """pL per microstep (nearest, halves up) from a mechanism dict as in hw/mechanism.json."""
    for name in _MECH_FIELDS:
        if name not in mech:
            raise CalibrationError("mechanism." + name, "missing", "required to derive pL per microstep")
        v = mech[name]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise CalibrationError("mechanism." + name, repr(v), "must be a positive integer")
    idu = mech["syringe_id_um"]
    num = _PI_NUM * idu * idu * mech["lead_um"]
    den = _PI_DEN * 4 * 1000 * mech["full_steps_per_rev"] * mech["microsteps"]
    pl = (2 * num + den) // (2 * den)
    if pl < MIN_PL_PER_STEP or pl > MAX_PL_PER_STEP:
        raise CalibrationError("mechanism", "%d pL/step" % pl,
                               "outside %d..%d pL per microstep" % (MIN_PL_PER_STEP, MAX_PL_PER_STEP))
    return pl


def derivation_fields(mech):
    """The fields of a mechanism dict that pl_per_step_from_mechanism reads, alone: what the
    device keeps of mechanism.json after its boot has read it (the rest, its descriptive texts
    included, would sit in the RP2040's heap for nothing: issue 16's budget)."""
    return {name: mech[name] for name in _MECH_FIELDS if name in mech}


def from_measurement(volume_nl, steps, derived_pl_per_step=0):
    """pL per microstep (nearest) from volume_nl delivered over `steps` microsteps.

    If derived_pl_per_step is given, the measurement must lie within +/-10 % of it.
    """
    if not isinstance(steps, int) or steps <= 0:
        raise CalibrationError("calibration.steps", repr(steps), "must be a positive number of microsteps")
    if not isinstance(volume_nl, int) or volume_nl <= 0:
        raise CalibrationError("calibration.volume_nl", repr(volume_nl), "must be a positive volume in nL")
    pl = (2 * volume_nl * 1000 + steps) // (2 * steps)
    if pl < MIN_PL_PER_STEP or pl > MAX_PL_PER_STEP:
        raise CalibrationError("calibration.pl_per_step", pl,
                               "outside %d..%d pL per microstep" % (MIN_PL_PER_STEP, MAX_PL_PER_STEP))
    if derived_pl_per_step:
        tol = derived_pl_per_step * _MEASURED_TOLERANCE_PERMILLE // 1000
        if pl < derived_pl_per_step - tol or pl > derived_pl_per_step + tol:
            raise CalibrationError("calibration.pl_per_step", pl,
                                   "more than 10 %% from the mechanism's %d pL per microstep" % derived_pl_per_step)
    return pl


def select(mech, measured_pl_per_step=0):
    """The calibration in force: the measured value if given (checked), else the derived one."""
    derived = pl_per_step_from_mechanism(mech)
    if not measured_pl_per_step:
        return derived
    tol = derived * _MEASURED_TOLERANCE_PERMILLE // 1000
    if measured_pl_per_step < derived - tol or measured_pl_per_step > derived + tol:
        raise CalibrationError("calibration.pl_per_step", measured_pl_per_step,
                               "more than 10 %% from the mechanism's %d pL per microstep" % derived)
    return measured_pl_per_step


def mechanism_name(mech):
    """The mechanism's name ("name"; DEFAULT_MECHANISM when absent), checked: 1..24 of a-z 0-9 -."""
    name = mech.get("name", DEFAULT_MECHANISM)
    ok = isinstance(name, str) and 0 < len(name) <= _NAME_MAX
    if ok:
        for ch in name:
            if ch not in _NAME_CHARS:
                ok = False
                break
    if not ok:
        raise CalibrationError("mechanism.name", repr(name), "must be 1..%d of a-z, 0-9 and -" % _NAME_MAX)
    return name


def load_mechanism(path):
    """Read a mechanism JSON file (hw/mechanism.json) into a dict."""
    import json
    with open(path) as f:
        return json.load(f)
