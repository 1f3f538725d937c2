"""The dose ledger's write-ahead reservation: after a reset at any moment the restored delivered
total, rolling 24 h and reservoir estimate are at least what the plunger moved.

The state is saved about once a minute, and the motor keeps stepping between saves. So every
save also writes a *reservation*: the number of microsteps the app may hand to the step generator
before the next save is on flash. The app never hands over more (`room()`); when a flow rises
between saves (a bolus, a flex step, a periodic bolus) it saves first, and the steps wait in the
meantime (milliseconds; they are owed, not lost). After a reset the boot counts the whole
reservation as possibly delivered (`DoseScheduler.count_possibly_delivered`), so

    restored total  >=  total at the save + steps made since  =  what the plunger moved

and the over-count is at most the reservation: RESERVE_MS of the flow at the save plus
_MARGIN_STEPS, a running bolus counted at most to its end. Status and the log state the bracket:
`uncertain_ng` is the part of the delivered total that is only possibly delivered.

Units: microsteps, ng, ms. Pure: no hardware import (runs on CPython and MicroPython).
"""
from pumpcore.fixed import const

_LEDGER_VERSION = const(1)
_MARGIN_STEPS = const(2)   # rounding of the flow into whole steps, and the step being counted


class Ledger:
    """Reservation bookkeeping for one app. `reserve_ms` is how far ahead a save reserves: two
    routine save intervals, so a routine save always renews it before it runs out at a steady
    flow."""

    def __init__(self, reserve_ms):
        self.reserve_ms = reserve_ms
        self.base = 0          # scheduler delivered_steps in the last record on flash
        self.reserved = 0      # microsteps that record allows beyond base
        self.uncertain_ng = 0  # part of the delivered total counted from reservations at resets
        self.unbounded = False  # flash failed: delivery goes on without a ledger (alarmed)

    def reservation(self, sched):
        """Microsteps to reserve at a save now: the flow over reserve_ms (a running bolus only up
        to its end) plus _MARGIN_STEPS. Not the hot path (big ints allowed)."""
        if sched.suspended or not sched.conc:
            return _MARGIN_STEPS
        basal = sched.basal_rate_ng_day()
        flow = sched.flow_rate_ng_day()
        n = sched.steps_for(basal, self.reserve_ms)
        extra = flow - basal
        if extra > 0:
            more = sched.steps_for(extra, self.reserve_ms)
            if sched.bolus_active():
                left = -(-sched.bolus_left_ng() * 1000000 // (sched.conc * sched.pl)) + 1
                if left < more:
                    more = left
            n += more
        return n + _MARGIN_STEPS

    def saved(self, sched, reserved):
        """A record holding delivered_steps and `reserved` is now on flash."""
        self.base = sched.delivered_steps
        self.reserved = reserved

    def room(self, sched, owed):
        """Microsteps the app may still hand to the generator (of the `owed` ones waiting):
        base + reserved - steps already handed over since. Never negative."""
        if self.unbounded:
            return owed
        handed = sched.delivered_steps - owed
        r = self.base + self.reserved - handed
        return r if r > 0 else 0

    def section(self, sched, reserve, hour_mark, hour_ng, hour_steps, hour_missed, inflight):
        """The SEC_LEDGER tuple of a record being written now with reservation `reserve`, the
        app's hour accumulators (the hour a reset cuts gets its partial total) and `inflight`,
        the steps counted due but still queued or owed (maybe never made)."""
        return (_LEDGER_VERSION, reserve, sched.delivered_steps, self.uncertain_ng & 0x3FFFFFFF,
                hour_mark, hour_ng, hour_steps, hour_missed, inflight)


def parse_section(sec):
    """(reserved, base, uncertain_ng, hour_mark, hour_ng, hour_steps, hour_missed, inflight) from
    a SEC_LEDGER tuple (pumpfw.app.save writes it), or None when absent or of another version.
    inflight: steps counted due at the save but then still queued or owed (maybe never made)."""
    if not sec or len(sec) < 9 or sec[0] != _LEDGER_VERSION:
        return None
    return tuple(sec[1:9])
