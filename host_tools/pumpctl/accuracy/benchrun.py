"""Accuracy run on a bench rig: the running program must be the file's, an MT-SICS balance weighs."""
from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from .balance import MtSicsBalance
from .run import HostClock, SampleLog, gravimetric_run


def _check_running_program(pump: Any, program: Any, path: str) -> None:
    """Refuse to measure unless the rig runs exactly this program (CRC of the encoding)."""
    from pumpcore import wire
    _, running_crc = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_DESCRIBE)
    file_crc = zlib.crc32(bytes(program.encode())) & 0xFFFFFFFF
    if int(running_crc) != file_crc:
        raise UsageError(f"running program crc = {int(running_crc):08x}: not the crc {file_crc:08x} "
                         f"of {path}; upload it first with `pumpctl program upload {path}`")


def run_on_bench(args: argparse.Namespace, program: Any, rate_ng_day: int, conc_ug_ml: int,
                 open_pump: Callable[[], Any], rig_hello: Callable[[Any], dict[str, Any]]) -> int:
    """Check the rig, tare the balance, sample for args.hours of real time, write the report.

    `open_pump()` opens the bench rig (a `Pump` context manager on the port the caller resolved)
    and `rig_hello(pump)` gives its hello as a dict: the caller (the CLI) owns the port and its
    checks, so this module imports no CLI code.

    Evaporation on a bench rig is what the operator measured beforehand (--evaporation-mg-h,
    e.g. a beaker weighed for hours with the pump stopped); without it the report states that it
    is not corrected. The rig's own log gives the alarms, suspends and resets during the run."""
    from .analysis import (Conditions, analyse_and_report, density_for, evaporation_for, program_crc,
                           program_lines)
    from . import events as run_events
    out = Path(args.out)
    if args.evaporation_min:
        raise UsageError("--evaporation-min: on a bench rig the program already runs; weigh the beaker "
                         "beforehand with the pump stopped and give --evaporation-mg-h")
    density, density_note = density_for(args)
    given = evaporation_for(args)
    evap, evap_note = given if given is not None else (
        0.0, "not corrected (no --evaporation-mg-h given): water lost from the beaker counts as under-delivery")
    with open_pump() as pump:
        hello = rig_hello(pump)
        _check_running_program(pump, program, args.program)
        first_seq = int(pump.read_log(0, 0).next_seq)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cond = Conditions(density_g_ml=density, density_note=density_note, evaporation_g_h=evap,
                      evaporation_note=evap_note, spec_text=args.spec, started=started)
    with MtSicsBalance(args.balance) as balance:
        balance_id = balance.identify()
        balance.tare()
        meta = {"rig": hello["rig_id"], "firmware": f"{hello['firmware_version']} build {hello['build_hash']}",
                "balance": balance_id, "program": args.program, "program_crc": "%08x" % program_crc(program),
                "rate_ng_day": rate_ng_day, "conc_ug_ml": conc_ug_ml, "hours": args.hours,
                **cond.log_meta()}
        log = SampleLog(out / "samples.csv", meta)
        wall0 = time.monotonic()
        with open_pump() as pump:
            st = pump.status()
            t0_wall = run_events.rig_wall_ms(st.day, st.ms_of_day)
        try:
            samples = gravimetric_run(balance, HostClock(), args.hours * 3600.0, log)
            with open_pump() as pump:
                cond.events = run_events.record_run_end(log, pump, first_seq, t0_wall, len(samples))
        finally:
            log.close()
    fields = dict(rig=str(hello["rig_id"]), firmware=str(meta["firmware"]), program_file=args.program,
                  program_lines=program_lines(program), balance=balance_id,
                  wall_s=time.monotonic() - wall0)
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields, None, cond)
