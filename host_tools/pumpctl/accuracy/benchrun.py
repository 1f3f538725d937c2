"""Accuracy run on a bench rig: the running program must be the file's, an MT-SICS balance weighs."""
from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path
from typing import Any

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


def run_on_bench(args: argparse.Namespace, program: Any, rate_ng_day: int, conc_ug_ml: int) -> int:
    """Check the rig, tare the balance, sample for args.hours of real time, write the report."""
    from ..cmd_accuracy import _program_lines, analyse_and_report
    from ..cmd_device import open_pump, rig_hello
    out = Path(args.out)
    with open_pump(args) as pump:
        hello = rig_hello(pump)
        _check_running_program(pump, program, args.program)
    with MtSicsBalance(args.balance) as balance:
        balance_id = balance.identify()
        balance.tare()
        meta = {"rig": hello["rig_id"], "firmware": f"{hello['firmware_version']} build {hello['build_hash']}",
                "balance": balance_id, "program": args.program, "rate_ng_day": rate_ng_day,
                "conc_ug_ml": conc_ug_ml, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        log = SampleLog(out / "samples.csv", meta)
        wall0 = time.monotonic()
        try:
            samples = gravimetric_run(balance, HostClock(), args.hours * 3600.0, log)
        finally:
            log.close()
    fields = dict(rig=str(hello["rig_id"]), firmware=str(meta["firmware"]), program_file=args.program,
                  program_lines=_program_lines(program), balance=balance_id,
                  wall_s=time.monotonic() - wall0)
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields, None)
