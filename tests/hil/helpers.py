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


def next_seq(pump):
    """The log's next sequence number: records from here on are what the test does next."""
    return pump.read_log(0, 1).next_seq


def assert_info_alarm_shown(pump, code, first_seq):
    """An INFO alarm that the test's last request raised: active now, or, when the rig's clock
    ran past its show time meanwhile (a virtual rig at --time-scale max runs 60 s in a few ms of
    the host's), raised after first_seq and cleared only after showing INFO_SHOW_MS."""
    from pumpcore import alarms as al
    if code in active_alarms(pump):
        return
    log = pull_log(pump, first_seq)
    raised = [r for r in events(log, logrec.EV_ALARM_RAISED) if r[4] == code]
    cleared = [r for r in events(log, logrec.EV_ALARM_CLEARED) if r[4] == code]
    assert raised, "alarm %d neither active nor raised in the log since seq %d" % (code, first_seq)
    assert cleared and cleared[-1][6] >= al.INFO_SHOW_MS, (
        "alarm %d went away before its %d ms show time: %s" % (code, al.INFO_SHOW_MS, cleared))


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
