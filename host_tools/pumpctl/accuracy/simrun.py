"""Accuracy run on the virtual rig: time-scaled firmware, program uploaded, simulated balance read.

Needs `pumpctl.virtualrig.VirtualRig` (issue 3). What this module uses of a started rig is
small and duck-typed, so it can follow that class as it lands: ``rig.port`` (the pty the
firmware serves the protocol on), ``rig.balance()`` (side channel: rig time and balance
reading, see `balance.SimBalance`), ``rig.stop()``, and optionally ``rig.noise_model()`` /
``rig.time_scale``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .balance import SimBalance
from .run import RigClock, SampleLog, gravimetric_run


def start_virtual_rig(time_scale: float, out_dir: Path) -> Any:
    """Start a fresh virtual rig at `time_scale`; UsageError when the rig is not available."""
    try:
        from ..virtualrig import VirtualRig  # type: ignore[import-not-found]
    except ImportError as exc:
        if exc.name and exc.name.endswith("virtualrig"):
            raise UsageError("--balance sim: the virtual rig (pumpctl.virtualrig) is not in this "
                             "checkout yet; use --balance PORT with a bench rig, or --from-log") from None
        raise
    starter = getattr(VirtualRig, "start", None)
    if callable(starter):
        return starter(time_scale=time_scale, fresh=True, rig_dir=out_dir / "rig")
    rig = VirtualRig(time_scale=time_scale, fresh=True, rig_dir=out_dir / "rig")
    rig.start()
    return rig


def run_with_rig(rig: Any, args: argparse.Namespace, program: Any, rate_ng_day: int,
                 conc_ug_ml: int) -> int:
    """Upload and commit the program on a started rig, weigh for args.hours of rig time, report."""
    from ..cmd_accuracy import _program_lines, analyse_and_report
    from ..pump import Pump
    out = Path(args.out)
    balance = SimBalance.from_rig(rig)
    with Pump.open(rig.port) as pump:
        hello = pump.hello()
        balance.tare()
        review = pump.upload_program(bytes(program.encode()), confirm=lambda review: True)
        if not getattr(review, "committed", True):
            raise UsageError(f"virtual rig {hello.rig_id}: program not committed")
    noise_fn = getattr(rig, "noise_model", None)
    noise = noise_fn() if callable(noise_fn) else {}
    noise_text = noise.get("text", "") if isinstance(noise, dict) else str(noise)
    sigma = noise.get("sigma_g") if isinstance(noise, dict) else None
    firmware = f"{hello.firmware_version} build {hello.build_hash}"
    meta = {"rig": hello.rig_id, "firmware": firmware, "balance": balance.identify(),
            "program": args.program, "rate_ng_day": rate_ng_day, "conc_ug_ml": conc_ug_ml,
            "time_scale": args.time_scale, "noise_model": noise_text,
            "balance_sigma_g": "" if sigma is None else sigma}
    log = SampleLog(out / "samples.csv", meta)
    wall0 = time.monotonic()
    try:
        clock = RigClock(lambda: balance.read().t_s, args.time_scale)
        samples = gravimetric_run(balance, clock, args.hours * 3600.0, log)
    finally:
        log.close()
    fields = dict(rig=f"virtual rig {hello.rig_id}", firmware=firmware, program_file=args.program,
                  program_lines=_program_lines(program), balance=balance.identify(),
                  noise_model=noise_text, time_scale=args.time_scale,
                  wall_s=time.monotonic() - wall0)
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields,
                              None if sigma is None else float(sigma))


def run_on_virtual_rig(args: argparse.Namespace, program: Any, rate_ng_day: int,
                       conc_ug_ml: int) -> int:
    """`pumpctl accuracy --balance sim`: start a rig, run, stop it whatever happens."""
    rig = start_virtual_rig(args.time_scale, Path(args.out))
    try:
        return run_with_rig(rig, args, program, rate_ng_day, conc_ug_ml)
    finally:
        rig.stop()
