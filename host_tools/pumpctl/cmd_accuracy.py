"""`pumpctl accuracy`: IEC 60601-2-24 gravimetric run (virtual rig or bench rig + balance) and report."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import UsageError
from .virtualrig import time_scale_arg

DEFAULT_OUT = Path("out/accuracy")
DEFAULT_TIME_SCALE = 1000.0


def program_rate(program: Any) -> tuple[int, int]:
    """(basal rate ng/day, concentration ug/mL) of a constant-rate program; UsageError otherwise.

    The accuracy method needs one set rate: a continuous program (or a flex program whose
    every step has the same rate).
    """
    mode = getattr(program, "mode", None)
    if mode in (0, 3):  # MODE_STOPPED, MODE_SINGLE_BOLUS: no steady rate to measure
        raise UsageError(f"program mode = {mode}: the accuracy run needs a continuous or flex program")
    if getattr(program, "periodic", None):
        raise UsageError(f"program periodic boluses = {len(program.periodic)}: the accuracy method "
                         f"needs one constant rate, remove them for the run")
    conc = _first_attr(program, ("conc_ug_ml", "concentration_ug_ml"))
    rate = _first_attr(program, ("rate_ng_day", "basal_rate_ng_day", "continuous_rate_ng_day")) or None
    if rate is None:
        rates = set()
        for pattern in getattr(program, "patterns", None) or []:
            for step in getattr(pattern, "steps", None) or []:
                rates.add(getattr(step, "rate_ng_day", None))
        if len(rates) > 1:
            raise UsageError(f"program rates = {sorted(r for r in rates if r is not None)} ng/day: "
                             f"the accuracy method needs one constant rate")
        rate = rates.pop() if rates else None
    if rate is None or conc is None:
        raise UsageError(f"program {type(program).__name__}: no constant rate_ng_day and "
                         f"conc_ug_ml found (the accuracy run needs a continuous program)")
    return int(rate), int(conc)


def _first_attr(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _program_lines(program: Any) -> list[str]:
    describe = getattr(program, "describe", None)
    return list(describe()) if callable(describe) else [repr(program)]


def _rate_text(rate_ng_day: int, conc_ug_ml: int) -> str:
    return f"{rate_ng_day / 1000:g} ug/day at {conc_ug_ml} ug/mL"


def _density(args: argparse.Namespace) -> tuple[float, str]:
    from .accuracy.iec60601 import water_density_g_ml
    if args.density is not None:
        return args.density, "stated with --density"
    return (water_density_g_ml(args.temperature),
            f"water at {args.temperature:g} degC, CIPM 2001 formula")


def _step_volume_nl() -> float | None:
    try:
        from pumpcore import calibration
        repo = Path(__file__).resolve().parents[2]
        mech = calibration.load_mechanism(str(repo / "hw" / "mechanism.json"))
        return calibration.pl_per_step_from_mechanism(mech) / 1000.0
    except (ImportError, OSError, ValueError):
        return None


def analyse_and_report(samples: list, rate_ng_day: int, conc_ug_ml: int, args: argparse.Namespace,
                       info_fields: dict[str, Any], balance_sigma_g: float | None) -> int:
    """Analyse `samples`, write the report into args.out, print the figures."""
    from .accuracy import iec60601, report
    from .accuracy.run import set_rate_ml_h
    density, density_note = _density(args)
    rate_ml_h = set_rate_ml_h(rate_ng_day, conc_ug_ml)
    step_nl = _step_volume_nl()
    result = iec60601.analyse(samples, rate_ml_h, density_g_ml=density,
                              evaporation_g_h=args.evaporation_mg_h / 1000.0,
                              balance_sigma_g=balance_sigma_g,
                              step_volume_ml=None if step_nl is None else step_nl * 1e-6)
    info = report.RunInfo(rate_text=_rate_text(rate_ng_day, conc_ug_ml),
                          temperature_c=args.temperature, density_note=density_note,
                          step_volume_nl=step_nl, **info_fields)
    paths = report.write_report(result, info, Path(args.out), _rate_text(rate_ng_day, conc_ug_ml))
    print(f"accuracy ({result.profile.name}): A = {result.mean_error_a_pct:+.3f} %"
          + ("" if result.last_hour_error_b_pct is None
             else f", B = {result.last_hour_error_b_pct:+.3f} %"))
    for w in result.windows:
        print(f"  P = {w.p_min:>3} min{' (suppl.)' if w.supplementary else '':9}  "
              f"Ep(max) = {w.ep_max:+8.3f} %  Ep(min) = {w.ep_min:+8.3f} %  ({w.n_windows} windows)")
    print(f"report: {paths['report']}  plots: {paths['trumpet']}, {paths['startup']}")
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from .cmd_program import load_program
    try:
        program = load_program(Path(args.program))
    except ImportError as exc:  # the TOML program-file reader is another module's job
        raise UsageError(f"--program {args.program}: cannot read program files in this checkout "
                         f"({exc})") from None
    rate_ng_day, conc_ug_ml = program_rate(program)
    if args.hours <= 0:
        raise UsageError(f"--hours = {args.hours:g}: must be > 0")
    if args.from_log:
        from .accuracy.run import load_samples_csv
        meta, samples = load_samples_csv(Path(args.from_log))
        sigma = meta.get("balance_sigma_g")
        fields = dict(rig=meta.get("rig", "?"), firmware=meta.get("firmware", "?"),
                      program_file=str(args.program), program_lines=_program_lines(program),
                      balance=meta.get("balance", "?"), noise_model=meta.get("noise_model", ""))
        return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields,
                                  float(sigma) if sigma else None)
    if args.balance == "sim":
        from .accuracy import simrun
        return simrun.run_on_virtual_rig(args, program, rate_ng_day, conc_ug_ml)
    from .accuracy import benchrun
    return benchrun.run_on_bench(args, program, rate_ng_day, conc_ug_ml)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="IEC 60601-2-24 gravimetric accuracy run: trumpet curves and report",
                       description="Run the program for H hours of rig time, read the balance every 30 s, "
                                   "and write start-up and trumpet curves (PNG) and a Markdown report.")
    p.add_argument("--program", required=True, help="program file (TOML) with one constant rate")
    p.add_argument("--hours", type=float, required=True, help="run length in hours of rig time")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--balance", default="sim",
                   help="'sim' (virtual rig and its balance, the default) or the serial port of an "
                        "MT-SICS balance (then --port is the bench rig)")
    p.add_argument("--port", default=argparse.SUPPRESS, help="serial port of the bench rig")
    p.add_argument("--time-scale", type=time_scale_arg, default=DEFAULT_TIME_SCALE,
                   help=f"virtual rig time scale, a ceiling (default {DEFAULT_TIME_SCALE:g}x), or 'max'")
    p.add_argument("--temperature", type=float, default=20.0,
                   help="fluid temperature in degC for the water density (default 20)")
    p.add_argument("--density", type=float, default=None, help="fluid density in g/mL (overrides water)")
    p.add_argument("--evaporation-mg-h", type=float, default=0.0,
                   help="measured evaporation from the beaker in mg/h, added back (default 0)")
    p.add_argument("--from-log", default=None, help="re-analyse a saved run log (samples.csv) instead of running")
    p.set_defaults(func=cmd_accuracy)
