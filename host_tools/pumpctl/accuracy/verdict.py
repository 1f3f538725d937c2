"""Accuracy verdict: the run's figures against a stated spec, and what interrupted the run.

A spec is a comma-separated list of limits in percent, each ``NAME=PCT`` (``+/-``, ``±`` and a
trailing ``%`` are accepted): ``A`` (mean error over the analysis period), ``B`` (mean error over
the last hour) and ``EpN`` (both Ep(max) and Ep(min) of the N-minute window, e.g. ``Ep31``).
A bare number is the limit on A. A figure that the run could not measure (a window longer than
the analysis period, B on a short run) fails the spec: the verdict never passes what was not seen.

Exit status of `pumpctl accuracy` (docs/cli.md): 0 PASS, 3 the spec failed, 4 the run was
interrupted (an alarm, a suspend or a firmware reset during the run), 1 any error.
"""
from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .iec60601 import AccuracyResult

DEFAULT_SPEC = "A=2"
DEFAULT_SPEC_REASON = "default: |A| <= 2 %, the usual stated accuracy of a syringe pump; set with --spec"
EXIT_PASS = 0
EXIT_SPEC_FAILED = 3
EXIT_INTERRUPTED = 4


class Spec:
    """Limits in percent by figure name: {"A": 2.0, "Ep31": 5.0}; `text` as the user gave it."""

    def __init__(self, limits: dict[str, float], text: str, stated: bool) -> None:
        self.limits = limits
        self.text = text
        self.stated = stated

    def describe(self) -> str:
        terms = ", ".join(f"|{_label(k)}| <= {v:g} %" for k, v in self.limits.items())
        return terms + ("" if self.stated else f" ({DEFAULT_SPEC_REASON})")


def _label(name: str) -> str:
    return f"Ep({name[2:]} min)" if name.startswith("Ep") else name


def parse_spec(text: str | None) -> Spec:
    """`--spec` text -> Spec; UsageError names the term and says what is accepted."""
    stated = text is not None
    raw = DEFAULT_SPEC if text is None else text
    limits: dict[str, float] = {}
    for term in [t.strip() for t in raw.split(",")]:
        if not term:
            raise UsageError(f"--spec = {raw!r}: empty term (expected e.g. 'A=2' or 'A=2,Ep31=5')")
        name, sep, value = term.partition("=")
        if not sep:
            name, value = "A", term
        name = name.strip()
        key = name[0].upper() + name[1:].lower() if name else name
        if key not in ("A", "B") and not (key.startswith("Ep") and key[2:].isascii() and key[2:].isdigit()):
            raise UsageError(f"--spec term {term!r}: unknown figure {name!r} (A, B or EpN such as Ep31)")
        v = value.strip().removesuffix("%").strip()
        for prefix in ("+/-", "±", "+-"):
            v = v.removeprefix(prefix).strip()
        try:
            if not v.isascii() or len(v) > 20:
                raise ValueError
            pct = float(v)
        except ValueError:
            raise UsageError(f"--spec term {term!r}: {value.strip()!r} is not a percentage "
                             f"(e.g. A=2 for |A| <= 2 %)") from None
        if not 0 < pct < 1000:
            raise UsageError(f"--spec term {term!r}: the limit must be above 0 and below 1000 %")
        limits[key] = pct
    return Spec(limits, raw, stated)


def check(result: AccuracyResult, spec: Spec) -> list[dict[str, Any]]:
    """One entry per limit: {figure, limit_pct, value_pct (or [max, min]), ok, note}."""
    rows: list[dict[str, Any]] = []
    for key, limit in spec.limits.items():
        if key == "A":
            v = result.mean_error_a_pct
            rows.append({"figure": "A", "limit_pct": limit, "value_pct": v, "ok": abs(v) <= limit,
                         "note": ""})
        elif key == "B":
            v = result.last_hour_error_b_pct
            rows.append({"figure": "B", "limit_pct": limit, "value_pct": v,
                         "ok": v is not None and abs(v) <= limit,
                         "note": "" if v is not None else "not measured: the run has no last hour after T1"})
        else:
            p = int(key[2:])
            w = next((w for w in result.windows if w.p_min == p), None)
            if w is None:
                rows.append({"figure": _label(key), "limit_pct": limit, "value_pct": None, "ok": False,
                             "note": f"not measured: no {p}-min window in the analysis period"})
            else:
                rows.append({"figure": _label(key), "limit_pct": limit, "value_pct": [w.ep_max, w.ep_min],
                             "ok": w.ep_max <= limit and w.ep_min >= -limit, "note": ""})
    return rows


def verdict(result: AccuracyResult, spec: Spec, interruptions: list[dict[str, Any]]) -> dict[str, Any]:
    """{"verdict": PASS|FAIL|INTERRUPTED, "exit": code, "spec": text, "checks": [...],
    "interruptions": [...], "reason": one line}."""
    checks = check(result, spec)
    failed = [c for c in checks if not c["ok"]]
    if interruptions:
        first = interruptions[0]
        verdict_name, code = "INTERRUPTED", EXIT_INTERRUPTED
        reason = (f"{len(interruptions)} interruption(s) during the run, first: {first['what']} at "
                  f"{first['t_s'] / 3600:.2f} h: the figures do not describe an uninterrupted infusion")
    elif failed:
        verdict_name, code = "FAIL", EXIT_SPEC_FAILED
        reason = "; ".join(_check_text(c) for c in failed)
    else:
        verdict_name, code = "PASS", EXIT_PASS
        reason = "; ".join(_check_text(c) for c in checks)
    return {"verdict": verdict_name, "exit": code, "spec": spec.describe(), "spec_text": spec.text,
            "checks": checks, "interruptions": interruptions, "reason": reason}


def _check_text(c: dict[str, Any]) -> str:
    v = c["value_pct"]
    if v is None:
        shown = c["note"]
    elif isinstance(v, list):
        shown = f"{v[0]:+.3f} / {v[1]:+.3f} %"
    else:
        shown = f"{v:+.3f} %"
    return f"{c['figure']} = {shown} ({'within' if c['ok'] else 'outside'} +/-{c['limit_pct']:g} %)"
