"""`pumpctl accuracy`: IEC 60601-2-24 gravimetric run (virtual rig or bench rig + balance) and report."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..accuracy.analysis import check_run_length, program_rate, reanalyse
from ..errors import UsageError
from ..rigs.virtualrig import time_scale_arg

DEFAULT_OUT = Path("out/accuracy")
DEFAULT_TIME_SCALE = 1000.0


def _load_program(path: str) -> Any:
    from .cmd_program import load_program
    try:
        return load_program(Path(path))
    except ImportError as exc:  # the TOML program-file reader is another module's job
        raise UsageError(f"--program {path}: cannot read program files in this checkout "
                         f"({exc})") from None


def cmd_accuracy(args: argparse.Namespace) -> int:
    from ..accuracy import verdict
    program = _load_program(args.program)
    rate_ng_day, conc_ug_ml = program_rate(program)
    verdict.parse_spec(args.spec)           # a bad --spec is refused before the run, not after it
    if args.from_log:
        return reanalyse(args, program, rate_ng_day, conc_ug_ml)
    if args.hours is None:
        raise UsageError("--hours is needed: the run length in hours of rig time (or --from-log samples.csv)")
    check_run_length(rate_ng_day, conc_ug_ml, args.hours)
    from ..accuracy import balances
    from .. import mechanisms
    mechanisms.path(args.mechanism)            # a wrong name is refused before the run
    if args.balance == "sim" or args.balance in balances.BALANCES:
        from ..accuracy import simrun
        return simrun.run_on_virtual_rig(args, program, rate_ng_day, conc_ug_ml)
    from ..accuracy import benchrun
    from .cmd_device import open_pump, rig_hello
    return benchrun.run_on_bench(args, program, rate_ng_day, conc_ug_ml, lambda: open_pump(args), rig_hello)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="IEC 60601-2-24 gravimetric accuracy run: trumpet curves and report",
                       description="Run the program for H hours of rig time, read the balance every 30 s, "
                                   "and write start-up and trumpet curves (PNG) and a Markdown report.")
    p.add_argument("--program", required=True, help="program file (TOML) with one constant rate")
    p.add_argument("--hours", type=float, default=None,
                   help="run length in hours of rig time (needed unless --from-log)")
    p.add_argument("--spec", default=None, metavar="LIMITS",
                   help="pass/fail limits in %%: 'A=2' (the default), 'A=2,B=3,Ep31=5'; exit 3 when "
                        "outside, 4 when an alarm, suspend or reset interrupted the run")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--balance", default="sim",
                   help="'sim' (virtual rig and its mechanism's simulated balance, the default), a "
                        "simulated balance by name (analytical-5digit, xpr2u: pumpctl.accuracy.balances), "
                        "or the serial port of an MT-SICS balance (then --port is the bench rig)")
    p.add_argument("--mechanism", default=None,
                   help="mechanism of the virtual rig and the deploy: 20ml (default) or NAME for "
                        "hw/mechanism-NAME.json (precision: the 93 uL/day drive)")
    p.add_argument("--port", default=argparse.SUPPRESS, help="serial port of the bench rig")
    p.add_argument("--time-scale", type=time_scale_arg, default=DEFAULT_TIME_SCALE,
                   help=f"virtual rig time scale, a ceiling (default {DEFAULT_TIME_SCALE:g}x), or 'max'")
    p.add_argument("--temperature", type=float, default=20.0,
                   help="fluid temperature in degC for the water density (default 20)")
    p.add_argument("--density", type=float, default=None, help="fluid density in g/mL (overrides water)")
    p.add_argument("--evaporation-mg-h", type=float, default=None,
                   help="evaporation from the beaker in mg/h, measured beforehand, added back (0: not "
                        "corrected). Default: measured on the virtual rig before the run (see "
                        "--evaporation-min); on a bench rig, not corrected unless given")
    p.add_argument("--evaporation-min", type=float, default=None,
                   help="minutes of rig time to weigh the beaker before the program starts, to measure "
                        "evaporation (default 240 on the virtual rig; 0 = do not measure)")
    p.add_argument("--from-log", default=None,
                   help="re-analyse a saved run log (samples.csv) instead of running: same density, "
                        "evaporation, spec and events as the run; the program's CRC must match the log's")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the verdict and figures as one JSON document (schema pumpctl.accuracy/1)")
    p.set_defaults(func=cmd_accuracy)
