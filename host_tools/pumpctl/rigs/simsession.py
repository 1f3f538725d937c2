"""A virtual rig made ready to deliver, the way an engineer prepares a bench rig.

Used by `pumpctl demo` and `pumpctl accuracy --balance sim`: start a fresh virtual rig, deploy
the firmware with `pumpctl deploy`'s code path (so the key is provisioned like on a Pico),
acknowledge the reset that the deploy's restart raised, sync the clock, refill.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pumpcore import alarms, logtext

from ..deploy import deploy
from ..pump import Pump
from .virtualrig import VirtualRig

if TYPE_CHECKING:
    from pumpcore.program import Program

REFILL_NL = 20_000_000   # a full reservoir of the default mechanism (20 mL): the scripted scenario's


def start_deployed_rig(rig_dir: Path, time_scale: float | str, name: str,
                       log: Callable[[str], None] = print, cache: bool = True, mechanism: str | None = None,
                       balance: str | None = None) -> VirtualRig:
    """A fresh virtual rig at `time_scale` with the firmware deployed and its key provisioned,
    its physics and its firmware both made for `mechanism` (None: the default; cache: see
    VirtualRig.start)."""
    rig = VirtualRig.start(rig_dir, time_scale=time_scale, fresh=True, name=name, cache=cache,
                           mechanism=mechanism, balance=balance)
    try:
        deploy(rig.port, log=log, mechanism=mechanism)
        rig.wait_firmware(2, timeout_s=30)
    except BaseException:
        rig.stop()
        raise
    return rig


def prepare_for_delivery(pump: Pump, conc_ug_ml: int, refill_nl: int | None = None,
                         log: Callable[[str], None] = print) -> int:
    """Acknowledge the alarms left by the deploy's restart, set the rig's clock to midnight
    today (so hours print as hours of the day), refill `refill_nl` nL (None: the rig's whole
    reservoir, max_reservoir_nl derived from its mechanism file). Returns the day number set."""
    for a in pump.alarms():
        log("alarm after deploy: %s (%s): acknowledged" % (alarms.alarm_name(a.code), logtext.alarm_text(a.code)))
        pump.ack_alarm(a.alarm_id)
    day = (datetime.date.today() - datetime.date(2000, 1, 1)).days
    pump.time_sync(day, 0)
    if refill_nl is None:
        refill_nl = int(pump.limits().max_reservoir_nl)
    pump.refill(refill_nl, conc_ug_ml)
    return day


# ---- the scripted scenario: a run that repeats to the microstep ------------------------------

SCENARIO_DAY = 9466          # 2025-12-01: a fixed calendar day, so the run does not depend on today
SCENARIO_CONC = 2000         # ug/mL
MINUTE_US = 60_000_000


def scenario_program() -> "Program":
    """186 ug/day continuous, with a patient bolus of 20 ug (lockout 1 min, at most 4 in 3 h)."""
    from pumpcore.program import MODE_CONTINUOUS, Program
    return Program(mode=MODE_CONTINUOUS, concentration_ug_ml=SCENARIO_CONC, rate_ng_day=186_000,
                   patient=(20_000, 60_000, 3 * 3_600_000, 4))


def log_digest(pump: Pump) -> tuple[str, int]:
    """SHA-256 over every record of the event log (its seq, little-endian u32, then its 32 raw
    bytes: sequence, time, code, values), and the number of records.

    An EV_HEAP record counts by its sequence, time and code only: on the virtual rig its values
    are the unix port's heap, which holds the twin (pumphw.simhw) beside the firmware, and the
    twin's input cache allocates differently with it on or off (32 bytes apart, seen in CI).
    Every other record counts byte for byte."""
    import hashlib
    from pumpcore import logrec
    digest = hashlib.sha256()
    n = 0
    for seq, rec in pump.iter_log(0):
        r = logrec.decode(rec)
        if r[3] == logrec.EV_HEAP:
            rec = ("%d %d %d %d" % r[:4]).encode()
        digest.update(seq.to_bytes(4, "little") + rec)
        n += 1
    return digest.hexdigest(), n


def scripted_run(rig_dir: Path, faults: list[tuple[int, str, dict[str, int]]], end_us: int,
                 cache: bool = True, timeout_s: float = 600.0) -> tuple[dict[str, object], str]:
    """The real firmware on a fresh rig held from its first instant, so that the deploy, its
    restart and every request land at defined sim times: deploy, then (once the firmware waits
    at the held clock) acknowledge the deploy's alarms, set the calendar to SCENARIO_DAY, refill,
    commit scenario_program(), start a 20 ug clinician bolus over 10 min; schedule `faults`
    ((us after that moment, kind, args) each), run to `end_us` after it and hold there.

    Returns the counts (the world's pulses, plunger steps, skipped, outflow, line volume,
    pressure, button presses and fault log; the firmware's missed steps, delivered total and
    log record count) and the event log's digest (log_digest). The same call gives the same
    result, loaded or quiet, at any time scale, with the input cache on or off
    (docs/virtual-time.md): bench/virtual_time.py and tests/rig/test_virtualtime.py. The
    hourly heap records' values (gc.mem_alloc: the process's heap, the twin's and the flash
    path's text included) are left out of the digest."""
    rig = VirtualRig.start(rig_dir, time_scale="max", fresh=True, name="scenario", hold_us=0,
                           cache=cache)
    try:
        deploy(rig.port, log=lambda s: None)
        rig.wait_firmware(2, timeout_s=30)
        # the first request only once the firmware waits at the held clock (sent while it
        # still boots, it would land a loop iteration later or not, as the load decides)
        rig.wait_held(timeout_s=30)
        t = rig.sim_us()
        with Pump.open(rig.port) as pump:
            for a in pump.alarms():
                pump.ack_alarm(a.alarm_id)
            pump.time_sync(SCENARIO_DAY, 0)
            pump.refill(REFILL_NL, SCENARIO_CONC)
            pump.upload_program(scenario_program().encode(), confirm=lambda r: True)
            pump.bolus(20_000, 600_000)
        for after_us, kind, args in faults:
            rig.fault(kind, at_us=t + after_us, **args)
        w = rig.run_until(t + end_us, timeout_s=timeout_s)
        with Pump.open(rig.port) as pump:
            st = pump.status()
            digest, n = log_digest(pump)
        counts: dict[str, object] = {k: w[k] for k in (
            "sim_us", "pulses", "plunger_steps", "skipped", "out_pl", "line_pl",
            "pressure_kpa_x10", "button_presses", "fault_log")}
        counts.update(missed=st.missed_steps, delivered_ng=st.delivered_total_ng, log_records=n)
        return counts, digest
    finally:
        rig.stop()
