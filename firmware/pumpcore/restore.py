"""Saved snapshots back into the core's objects: the inverse of DoseScheduler.snapshot() and
BolusGate.snapshot().

The snapshots are made at every save and stay with their classes. Putting one back happens only
at boot (pumpfw.recovery) and at the first program commit after a boot whose program was
unreadable (pumpfw.configure), so it is its own module for the RP2040's RAM (issue 16):
DoseScheduler.restore loads it for the call and lets it go (pumpcore.call_once). The functions
set the objects' own fields, as the methods they were; units as in pumpcore.scheduler.
"""
from pumpcore import text
from pumpcore.bolus import N_BUCKETS
from pumpcore.program import MAX_PATIENT_PER_24H
from pumpcore.scheduler import MS_PER_DAY, SNAPSHOT_VERSION


def scheduler(sched, snap):
    """DoseScheduler.restore: `snap` of snapshot() into `sched` after load(); returns the downtime
    in ms counted as missed (the clock moved from the snapshot's time to now, at most 7 days)."""
    if not isinstance(snap, tuple) or len(snap) != 26 or snap[0] != SNAPSHOT_VERSION:
        raise ValueError(text("sched_snap", SNAPSHOT_VERSION))
    (_, day, ms, conc, sched.pool, sched.acc, sched.mpool, sched.macc, susp,
     sched.delivered_steps, sched.missed_steps, sched.prime_steps,
     sched.dpl, sched.dmng, sched.total_ng, sched.day_ng, sched.mpl, sched.mmng, sched.missed_ng,
     sched.br_pl, sched.br_conc, sched.skipped_periodic, sched.refusals, sched.boluses_done,
     res, gate) = snap
    sched.conc = conc
    sched.den = 432 * conc
    sched.reservoir.restore(res)
    bolus_gate(sched.gate, gate)
    sched._end_bolus()
    sched.suspended = bool(susp)
    now_day = sched.clock.day
    now_ms = sched.clock.ms
    down = sched.clock.ms_since(day, ms, 7 * MS_PER_DAY)
    if down > 0:
        if now_day != day:
            sched.day_ng = 0
        sched.clock.set(day, ms)
        sched.gate.roll(sched.clock)
        sched._arm_timers()
        was = sched.suspended
        if not was:
            sched.suspend()
        sched.advance(down)
        if not was:
            sched.resume()
    if sched.clock.day != now_day or sched.clock.ms != now_ms:
        sched.clock.set(now_day, now_ms)
    sched.gate.roll(sched.clock)
    sched._arm_timers()
    sched._set_rate()
    return down


def bolus_gate(gate, snap):
    """BolusGate.snapshot() back into `gate`; ValueError naming the lengths if it is not one."""
    b, gate.abs_bucket, rd, rm, gate.ring_used, gate.ring_next, gate.lock_day, gate.lock_ms = snap
    if len(b) != N_BUCKETS or len(rd) != MAX_PATIENT_PER_24H or len(rm) != MAX_PATIENT_PER_24H:
        raise ValueError(text("gate_snap", len(b), len(rd), len(rm)))
    gate.buckets = list(b)
    gate.ring_day = list(rd)
    gate.ring_ms = list(rm)
    gate.cur = gate.abs_bucket % N_BUCKETS if gate.abs_bucket >= 0 else 0
