"""Shared helpers of the HIL suite: example program names, log pull, alarm look-ups."""
from pathlib import Path

from pumpcore import logrec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs"
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.toml"))
PROGRAMS = Path(__file__).resolve().parent / "programs"


def pull_log(pump, first_seq=0):
    """Every record from first_seq: list of (seq, decoded tuple)."""
    return [(seq, logrec.decode(rec)) for seq, rec in pump.iter_log(first_seq)]


def events(log, code):
    return [r for _s, r in log if r[3] == code]


def active_alarms(pump):
    return {a.code for a in pump.alarms()}


def nl_from_ng(ng, conc_ug_ml):
    """Volume (nL) of `ng` of drug at `conc_ug_ml` (ug/mL = ng/uL)."""
    return ng * 1000 / conc_ug_ml


def wall_day_ms(status):
    """The rig's wall clock of a status, in ms since 2000-01-01."""
    return status.day * 86_400_000 + status.ms_of_day


def open_pump(rig):
    """A new Pump on the rig (after a reset), with the plugin's timeout."""
    from pumpctl.hil.fixtures import pump_timeout_s
    from pumpctl.pump import Pump
    return Pump.open(rig.port, timeout_s=pump_timeout_s(rig))
