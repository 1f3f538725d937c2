"""Map the live objects (scheduler, bolus gate, reservoir, alarms) to a PersistentState and back.

statecodec sections are flat tuples of i32; DoseScheduler.snapshot() nests the reservoir and
bolus-gate snapshots, and the gate nests its ledgers. This module is the one place that knows
both shapes. Units as in the snapshots (ng, pL, ms, wall time).
"""
from pumpcore import statecodec as sc

_GATE_LISTS = (0, 2, 3)   # positions of tuple fields in BolusGate.snapshot()


def _flatten_gate(g):
    out = []
    for i in range(len(g)):
        if i in _GATE_LISTS:
            out.append(len(g[i]))
            out.extend(g[i])
        else:
            out.append(g[i])
    return tuple(out)


def _unflatten_gate(flat):
    out = []
    i = 0
    pos = 0
    while i < len(flat):
        if pos in _GATE_LISTS:
            n = flat[i]
            out.append(tuple(flat[i + 1:i + 1 + n]))
            i += 1 + n
        else:
            out.append(flat[i])
            i += 1
        pos += 1
    return tuple(out)


def put_scheduler(state, snap):
    """Store DoseScheduler.snapshot() `snap` into `state` sections."""
    state.sections[sc.SEC_SCHEDULER] = tuple(snap[:-2])
    state.sections[sc.SEC_RESERVOIR] = tuple(snap[-2])
    state.sections[sc.SEC_BOLUS_GATE] = _flatten_gate(snap[-1])


def get_scheduler(state):
    """The DoseScheduler snapshot kept in `state`, or None if the sections are absent."""
    s = state.sections.get(sc.SEC_SCHEDULER)
    r = state.sections.get(sc.SEC_RESERVOIR)
    g = state.sections.get(sc.SEC_BOLUS_GATE)
    if s is None or r is None or g is None:
        return None
    return tuple(s) + (tuple(r), _unflatten_gate(tuple(g)))
