"""The alarm table: per alarm code its name, priority, kind, latch and delivery reaction.

The one table; pumpcore.alarms holds the rules and the meaning of each column. Its own module for
the RP2040's RAM (issue 16): the AlarmSet copies its columns when it is built at boot
(`fill`), and an alarm's name is read for a text (`row`), each time loaded for the call and let
go after (pumpcore.call_once), so the rows and their names are in the heap only meanwhile.
"""
from pumpcore.alarms import (ALARM_MAX, KIND_CONDITION, KIND_EVENT, PRIO_CRITICAL, PRIO_HIGH, PRIO_INFO,
                             PRIO_LOW, PRIO_MEDIUM, REACT_NO_BOLUS, REACT_NONE, REACT_STOP)

# (name, priority, kind, latch, reaction), indexed by alarm code. The operator texts and the
# priority and reaction names, which only the host renders, are in pumpcore.logtext (the device
# does not import it).
ALARM_TABLE = (
    None,
    ("occlusion", PRIO_HIGH, KIND_CONDITION, True, REACT_STOP),
    ("motor-stall", PRIO_HIGH, KIND_CONDITION, True, REACT_STOP),
    ("reservoir-empty", PRIO_HIGH, KIND_CONDITION, True, REACT_STOP),
    ("reservoir-low-volume", PRIO_MEDIUM, KIND_CONDITION, False, REACT_NONE),
    ("reservoir-low-days", PRIO_LOW, KIND_CONDITION, False, REACT_NONE),
    ("flow-low", PRIO_HIGH, KIND_CONDITION, True, REACT_NONE),
    ("flow-high", PRIO_CRITICAL, KIND_CONDITION, True, REACT_STOP),
    ("reset-power", PRIO_MEDIUM, KIND_EVENT, True, REACT_NONE),
    ("reset-watchdog", PRIO_HIGH, KIND_EVENT, True, REACT_NO_BOLUS),
    ("state-corrupt", PRIO_CRITICAL, KIND_EVENT, True, REACT_STOP),
    ("program-corrupt", PRIO_CRITICAL, KIND_EVENT, True, REACT_STOP),
    ("clock-lost", PRIO_MEDIUM, KIND_CONDITION, True, REACT_NO_BOLUS),
    ("limit-refused", PRIO_INFO, KIND_EVENT, False, REACT_NONE),
    ("bolus-denied", PRIO_INFO, KIND_EVENT, False, REACT_NONE),
    ("storage-fault", PRIO_HIGH, KIND_EVENT, True, REACT_NONE),
    ("no-program", PRIO_HIGH, KIND_CONDITION, False, REACT_STOP),
    # basal continues: an interrupted intrathecal baclofen flow is the greater danger; boluses
    # wait because an occlusion could not be seen (the motor-stall detector still works)
    ("pressure-sensor-fault", PRIO_HIGH, KIND_CONDITION, True, REACT_NO_BOLUS),
    # raised by the signed maintenance command just before the app hands the link to the REPL;
    # it latches so the state saved then carries it across the reset that ends maintenance,
    # where the boot ends it (condition over, logged with the missed volume) and the basal resumes
    ("maintenance", PRIO_HIGH, KIND_CONDITION, True, REACT_STOP),
    # the basal goes on (an interrupted flow is the greater danger); the clinician must check
    # which program runs: the log's program-at-boot record names it and the one last confirmed
    ("program-unconfirmed", PRIO_HIGH, KIND_EVENT, True, REACT_NO_BOLUS),
    # the screw encoder (pumpcore.screwenc): DIAG is blind here (StallGuard off), this is not
    ("missed-steps", PRIO_HIGH, KIND_CONDITION, True, REACT_STOP),
)


def row(code):
    """The table's row of alarm `code` (checked by the caller, pumpcore.alarms)."""
    return ALARM_TABLE[code]


def fill(prio, event, latch, react):
    """Copy the columns an AlarmSet keeps into its bytearrays, indexed by code: the priority,
    1 for an EVENT alarm, 1 for a latching one, the reaction."""
    for c in range(1, ALARM_MAX + 1):
        r = ALARM_TABLE[c]
        prio[c] = r[1]
        event[c] = 1 if r[2] == KIND_EVENT else 0
        latch[c] = 1 if r[3] else 0
        react[c] = r[4]
