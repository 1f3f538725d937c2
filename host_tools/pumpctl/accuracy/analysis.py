"""The accuracy analysis of a run: the program's set rate, the conditions (density, evaporation,
spec, the rig's events), the figures, the verdict and the report.

The virtual-rig run (`simrun`), the bench run (`benchrun`) and `--from-log` (`reanalyse`) all
end here; the CLI (`pumpctl accuracy`) only parses arguments and calls them. Nothing here
imports the CLI.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Any

from ..errors import UsageError


def _emit_json(doc: dict[str, Any]) -> None:
    """The --json document on stdout: sorted keys, one object (as every pumpctl command)."""
    sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    sys.stdout.flush()


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


def program_lines(program: Any) -> list[str]:
    describe = getattr(program, "describe", None)
    return list(describe()) if callable(describe) else [repr(program)]


def _rate_text(rate_ng_day: int, conc_ug_ml: int) -> str:
    return f"{rate_ng_day / 1000:g} ug/day at {conc_ug_ml} ug/mL"


def density_for(args: argparse.Namespace, model_density_g_ml: float | None = None) -> tuple[float, str]:
    """(density g/mL, where it comes from) for the report: --density as stated; else the virtual
    rig's fluid model when the run is on it; else water at --temperature (CIPM formula)."""
    from .iec60601 import water_density_g_ml
    if args.density is not None:
        return args.density, "stated with --density"
    if model_density_g_ml is not None:
        return model_density_g_ml, "the virtual rig's fluid model (pumpsim.model.Params)"
    return (water_density_g_ml(args.temperature),
            f"water at {args.temperature:g} degC, CIPM 2001 formula (no --density given)")


def _step_volume_nl(mechanism: str | None = None) -> float | None:
    try:
        from pumpcore import calibration
        from .. import mechanisms
        return calibration.pl_per_step_from_mechanism(mechanisms.load(mechanism)) / 1000.0
    except (ImportError, OSError, ValueError, UsageError):
        return None


def program_crc(program: Any) -> int:
    """CRC-32 of the program's encoding: the rig's running-program CRC, and the samples log's."""
    return zlib.crc32(bytes(program.encode())) & 0xFFFFFFFF


def check_run_length(rate_ng_day: int, conc_ug_ml: int, hours: float) -> None:
    """Refuse, before anything starts, a run too short for the method at this rate."""
    from .iec60601 import profile_for, required_run_s
    from .run import set_rate_ml_h
    if not hours > 0 or hours > 24 * 30:
        raise UsageError(f"--hours = {hours:g}: must be above 0 and at most 720 h")
    rate = set_rate_ml_h(rate_ng_day, conc_ug_ml)
    need_s = required_run_s(rate, hours * 3600.0)
    if hours * 3600.0 < need_s - 1e-6:
        prof = profile_for(rate, hours * 3600.0)
        raise UsageError(f"--hours = {hours:g}: the {prof.name} test at {rate * 1000:.4g} uL/h needs at "
                         f"least {need_s / 60:g} min ({need_s / 3600:g} h) of rig time")


class Conditions:
    """What the analysis used besides the readings: density and evaporation with where each
    comes from, the spec, the events the rig logged. Written to and read from the samples log."""

    def __init__(self, *, density_g_ml: float, density_note: str, evaporation_g_h: float,
                 evaporation_note: str, spec_text: str | None, events: list[dict[str, Any]] | None = None,
                 started: str = "") -> None:
        self.density_g_ml = density_g_ml
        self.density_note = density_note
        self.evaporation_g_h = evaporation_g_h
        self.evaporation_note = evaporation_note
        self.spec_text = spec_text
        self.events = events or []
        self.started = started

    def log_meta(self) -> dict[str, Any]:
        return {"density_g_ml": repr(self.density_g_ml), "density_note": self.density_note,
                "evaporation_g_h": repr(self.evaporation_g_h), "evaporation_note": self.evaporation_note,
                "spec": self.spec_text or "", "started": self.started}


def evaporation_for(args: argparse.Namespace) -> tuple[float, str] | None:
    """--evaporation-mg-h as given (g/h, note), or None when it is to be measured / not given."""
    if args.evaporation_mg_h is None:
        return None
    if not 0 <= args.evaporation_mg_h < 1000:
        raise UsageError(f"--evaporation-mg-h = {args.evaporation_mg_h:g}: must be 0..1000 mg/h")
    if args.evaporation_mg_h == 0:
        return 0.0, "not corrected (--evaporation-mg-h 0): water lost from the beaker counts as under-delivery"
    return (args.evaporation_mg_h / 1000.0,
            f"{args.evaporation_mg_h:g} mg/h stated with --evaporation-mg-h, added back")


def analyse_and_report(samples: list, rate_ng_day: int, conc_ug_ml: int, args: argparse.Namespace,
                       info_fields: dict[str, Any], balance_sigma_g: float | None,
                       cond: Conditions) -> int:
    """Analyse `samples`, give the verdict against the spec, write the report into args.out,
    print the figures. Returns the exit status (accuracy.verdict: 0 PASS, 3 FAIL, 4 INTERRUPTED)."""
    from . import events as run_events
    from . import iec60601, report, verdict
    from .run import set_rate_ml_h
    spec = verdict.parse_spec(cond.spec_text)
    rate_ml_h = set_rate_ml_h(rate_ng_day, conc_ug_ml)
    step_nl = _step_volume_nl(getattr(args, "mechanism", None))
    result = iec60601.analyse(samples, rate_ml_h, density_g_ml=cond.density_g_ml,
                              evaporation_g_h=cond.evaporation_g_h,
                              balance_sigma_g=balance_sigma_g,
                              step_volume_ml=None if step_nl is None else step_nl * 1e-6)
    stops = run_events.interruptions(cond.events, result.run_s)
    judged = verdict.verdict(result, spec, stops)
    info = report.RunInfo(rate_text=_rate_text(rate_ng_day, conc_ug_ml),
                          temperature_c=args.temperature, density_note=cond.density_note,
                          step_volume_nl=step_nl, evaporation_note=cond.evaporation_note,
                          started=cond.started, events=cond.events, **info_fields)
    paths = report.write_report(result, info, Path(args.out), _rate_text(rate_ng_day, conc_ug_ml),
                                judged, spec)
    if getattr(args, "json", False):
        _emit_json({"schema": "pumpctl.accuracy/1", "verdict": judged["verdict"],
                    "exit": judged["exit"], "reason": judged["reason"], "spec": judged["spec"],
                    "checks": judged["checks"], "events": cond.events,
                    "mean_error_a_pct": result.mean_error_a_pct,
                    "last_hour_error_b_pct": result.last_hour_error_b_pct,
                    "density_g_ml": cond.density_g_ml, "density_note": cond.density_note,
                    "evaporation_g_h": cond.evaporation_g_h,
                    "evaporation_note": cond.evaporation_note,
                    "windows": [w.as_dict() for w in result.windows],
                    "report": str(paths["report"]), "samples": str(Path(args.out) / "samples.csv")})
        return int(judged["exit"])
    print(f"accuracy ({result.profile.name}): A = {result.mean_error_a_pct:+.3f} %"
          + ("" if result.last_hour_error_b_pct is None
             else f", B = {result.last_hour_error_b_pct:+.3f} %"))
    for w in result.windows:
        print(f"  P = {w.p_min:>3} min{' (suppl.)' if w.supplementary else '':9}  "
              f"Ep(max) = {w.ep_max:+8.3f} %  Ep(min) = {w.ep_min:+8.3f} %  ({w.n_windows} windows)")
    print(f"density {cond.density_g_ml:.6f} g/mL ({cond.density_note}); evaporation: {cond.evaporation_note}")
    print(f"spec: {judged['spec']}")
    print(f"VERDICT {judged['verdict']}: {judged['reason']}")
    print(f"report: {paths['report']}  plots: {paths['trumpet']}, {paths['startup']}")
    return int(judged["exit"])


def reanalyse(args: argparse.Namespace, program: Any, rate_ng_day: int, conc_ug_ml: int) -> int:
    """--from-log: the same figures as the run from its samples log, for the same program only.
    Density, evaporation, spec and events come from the log; --density, --evaporation-mg-h and
    --spec override them (and the report says so)."""
    from . import events as run_events
    from .run import load_samples_csv
    path = Path(args.from_log)
    meta, samples = load_samples_csv(path)
    crc = program_crc(program)
    logged_crc = meta.get("program_crc")
    if not logged_crc:
        raise UsageError(f"run log {path}: no program_crc line (written by an older pumpctl): cannot check "
                         f"that {args.program} is the program that ran")
    if logged_crc.lower() != f"{crc:08x}":
        raise UsageError(f"--program {args.program}: crc {crc:08x} is not the crc {logged_crc} of the program "
                         f"the run in {path} used ({meta.get('program', '?')})")
    for key, value in (("rate_ng_day", rate_ng_day), ("conc_ug_ml", conc_ug_ml)):
        if meta.get(key) not in (None, str(value)):
            raise UsageError(f"run log {path}: {key} = {meta.get(key)}, but {args.program} gives {value}")
    try:
        density = float(meta["density_g_ml"])
        evap = float(meta["evaporation_g_h"])
    except (KeyError, ValueError):
        raise UsageError(f"run log {path}: density_g_ml / evaporation_g_h lines missing or not numbers "
                         f"(written by an older pumpctl): re-run, or give --density and --evaporation-mg-h") from None
    density_note = meta.get("density_note", "") + " (from the run log)"
    if args.density is not None:
        density, density_note = args.density, f"stated with --density (the run used {meta['density_g_ml']} g/mL)"
    evap_note = meta.get("evaporation_note", "")
    given = evaporation_for(args)
    if given is not None:
        evap, evap_note = given[0], given[1] + f" (the run used {float(meta['evaporation_g_h']) * 1000:g} mg/h)"
    spec_text = args.spec if args.spec is not None else (meta.get("spec") or None)
    cond = Conditions(density_g_ml=density, density_note=density_note, evaporation_g_h=evap,
                      evaporation_note=evap_note, spec_text=spec_text,
                      events=[run_events.from_log_line(e) for e in meta.get("events", [])],
                      started=meta.get("started", ""))
    sigma = meta.get("balance_sigma_g")
    fields = dict(rig=meta.get("rig", "?"), firmware=meta.get("firmware", "?"),
                  program_file=str(args.program), program_lines=program_lines(program),
                  balance=meta.get("balance", "?"), noise_model=meta.get("noise_model", ""))
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields,
                              float(sigma) if sigma else None, cond)
