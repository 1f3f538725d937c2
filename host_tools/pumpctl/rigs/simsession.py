"""A virtual rig made ready to deliver, the way an engineer prepares a bench rig.

Used by `pumpctl demo` and `pumpctl accuracy --balance sim`: start a fresh virtual rig, deploy
the firmware with `pumpctl deploy`'s code path (so the key is provisioned like on a Pico),
acknowledge the reset that the deploy's restart raised, sync the clock, refill.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable

from pumpcore import alarms, logtext

from ..deploy import deploy
from ..pump import Pump
from .virtualrig import VirtualRig

REFILL_NL = 20_000_000   # a full 20 mL reservoir


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


def prepare_for_delivery(pump: Pump, conc_ug_ml: int, refill_nl: int = REFILL_NL,
                         log: Callable[[str], None] = print) -> int:
    """Acknowledge the alarms left by the deploy's restart, set the rig's clock to midnight
    today (so hours print as hours of the day), refill. Returns the day number set."""
    for a in pump.alarms():
        log("alarm after deploy: %s (%s): acknowledged" % (alarms.alarm_name(a.code), logtext.alarm_text(a.code)))
        pump.ack_alarm(a.alarm_id)
    day = (datetime.date.today() - datetime.date(2000, 1, 1)).days
    pump.time_sync(day, 0)
    pump.refill(refill_nl, conc_ug_ml)
    return day
