"""Accuracy report: start-up and trumpet-curve PNGs (matplotlib, Agg) and a Markdown report."""
from __future__ import annotations

import json
from pathlib import Path

from .iec60601 import AccuracyResult


class RunInfo:
    """What the report names: rig, firmware build, program, balance and the run's conditions."""

    def __init__(self, *, rig: str, firmware: str, program_file: str, program_lines: list[str],
                 balance: str, rate_text: str, temperature_c: float | None,
                 density_note: str, noise_model: str = "", step_volume_nl: float | None = None,
                 time_scale: float | None = None, wall_s: float | None = None,
                 rig_events: str = "", evaporation_note: str = "", started: str = "",
                 events: list[dict] | None = None) -> None:
        self.rig = rig
        self.firmware = firmware
        self.program_file = program_file
        self.program_lines = program_lines
        self.balance = balance
        self.rate_text = rate_text
        self.temperature_c = temperature_c
        self.density_note = density_note
        self.noise_model = noise_model
        self.step_volume_nl = step_volume_nl
        self.time_scale = time_scale
        self.wall_s = wall_s
        self.rig_events = rig_events
        self.evaporation_note = evaporation_note
        self.started = started
        self.events = events or []

    def footer(self) -> str:
        """The line printed on every image: rig, build, date."""
        return "rig: %s   build: %s   run started: %s" % (self.rig, self.firmware, self.started or "-")

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_EVENT_COLOURS = {"alarm": "tab:red", "suspend": "tab:purple", "resume": "tab:green",
                  "reset": "black", "missed": "tab:brown"}


def _mark_events(ax, events: list[dict], t_max_min: float) -> None:
    """Vertical lines at each alarm, suspend, resume, reset (labelled once per kind)."""
    seen: set[str] = set()
    for ev in events:
        t = ev["t_s"] / 60.0
        if not -1 <= t <= t_max_min + 1:
            continue
        kind = ev["kind"]
        ax.axvline(t, color=_EVENT_COLOURS.get(kind, "tab:red"), lw=1.2, ls="-.",
                   label=None if kind in seen else kind)
        ax.annotate(ev["what"], (t, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=6, va="top", ha="right")
        seen.add(kind)


def _footer(fig, info: "RunInfo | None") -> None:
    if info is not None:
        fig.text(0.01, 0.005, info.footer(), fontsize=6.5, color="0.3", ha="left", va="bottom")


def plot_startup(result: AccuracyResult, path: Path, title: str, info: "RunInfo | None" = None,
                 spec_a_pct: float | None = None) -> Path:
    """Start-up graph: Q_i (mL/h) per 30 s against time, the set rate, and hourly means; the
    spec band on A around the set rate, the rig's alarms and suspends, rig/build/date."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    t_min = [t / 60.0 for t, _ in result.flow]
    q = [f * 1000.0 for _, f in result.flow]
    ax.plot(t_min, q, lw=0.6, color="tab:blue", label="Q_i per 30 s sample")
    hourly_t, hourly_q = [], []
    per_h = int(round(3600 / result.profile.sample_interval_s))
    for h in range(0, len(q) // per_h):
        chunk = q[h * per_h:(h + 1) * per_h]
        hourly_t.append((h + 0.5) * 60)
        hourly_q.append(sum(chunk) / len(chunk))
    if hourly_q:
        ax.plot(hourly_t, hourly_q, "o-", color="tab:orange", ms=3, label="hourly mean")
    ax.axhline(result.set_rate_ml_h * 1000.0, color="k", ls="--", lw=1, label="set rate")
    if spec_a_pct is not None:
        r = result.set_rate_ml_h * 1000.0
        ax.axhspan(r * (1 - spec_a_pct / 100), r * (1 + spec_a_pct / 100), color="tab:green", alpha=0.15,
                   label=f"spec on A: +/-{spec_a_pct:g} %")
    if info is not None:
        _mark_events(ax, info.events, result.run_s / 60.0)
    ax.axvspan(result.analysis_start_s / 60, result.analysis_end_s / 60, color="0.9", zorder=0,
               label="analysis period T2")
    ax.set_xlabel("time from start (min)")
    ax.set_ylabel("flow (uL/h)")
    ax.set_title(f"Start-up curve: {title}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, info)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_trumpet(result: AccuracyResult, path: Path, title: str, info: "RunInfo | None" = None,
                 spec: dict[str, float] | None = None) -> Path:
    """Trumpet curve: Ep(max) and Ep(min) (%) against observation window P (min), and A; the
    spec band, the run's interruptions listed on the image, rig/build/date."""
    plt = _pyplot()
    std = [w for w in result.windows if not w.supplementary]
    sup = [w for w in result.windows if w.supplementary]
    ncols = 2 if sup else 1
    fig, axes = plt.subplots(1, ncols, figsize=(9 if sup else 6.5, 4.5), dpi=110, squeeze=False)
    panels = [(axes[0][0], std, "IEC windows")]
    if sup:
        panels.append((axes[0][1], sup, "supplementary"))
    for ax, ws, label in panels:
        if not ws:
            continue
        p = [w.p_min for w in ws]
        ax.plot(p, [w.ep_max for w in ws], "^-", color="tab:red", label="Ep(max)")
        ax.plot(p, [w.ep_min for w in ws], "v-", color="tab:blue", label="Ep(min)")
        if all(w.noise_floor_pct is not None for w in ws):
            floor = [w.noise_floor_pct for w in ws]
            ax.plot(p, floor, ":", color="0.5", label="balance noise (1 sigma)")
            ax.plot(p, [-f for f in floor], ":", color="0.5")
        ax.axhline(result.mean_error_a_pct, color="tab:green", ls="--",
                   label=f"A = {result.mean_error_a_pct:+.2f} %")
        ax.axhline(0.0, color="k", lw=0.6)
        limits = spec or {}
        if "A" in limits:
            ax.axhspan(-limits["A"], limits["A"], color="tab:green", alpha=0.12,
                       label=f"spec on A: +/-{limits['A']:g} %")
        ep = [(int(k[2:]), v) for k, v in limits.items() if k.startswith("Ep")]
        if ep:
            ax.plot([p for p, _ in ep], [v for _, v in ep], "s", color="tab:olive", ms=5, label="spec on Ep")
            ax.plot([p for p, _ in ep], [-v for _, v in ep], "s", color="tab:olive", ms=5)
        ax.set_xlabel("observation window P (min)")
        ax.set_ylabel("percentage error (%)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"Trumpet curve: {title}", fontsize=10)
    marked = [e for e in (info.events if info else []) if e["kind"] != "resume"]
    if marked:
        text = "during the run: " + "; ".join("%s at %.2f h" % (e["what"], e["t_s"] / 3600) for e in marked[:6])
        if len(marked) > 6:
            text += "; +%d more" % (len(marked) - 6)
        fig.text(0.5, 0.035, text, fontsize=7, color="tab:red", ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.06 if marked else 0.03, 1, 1))
    _footer(fig, info)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(value: float | None, spec: str = "+.2f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: AccuracyResult, info: RunInfo, images: dict[str, str],
             judged: dict | None = None) -> str:
    """The report text (Markdown)."""
    expected_ml = result.set_rate_ml_h * result.run_s / 3600.0
    lines = [
        f"# Accuracy report (IEC 60601-2-24 method): {info.rate_text}",
        "",
    ]
    if judged is not None:
        lines += [f"**VERDICT: {judged['verdict']}** ({judged['reason']})", "",
                  f"Spec: {judged['spec']}.", ""]
    lines += [
        "| | |", "|---|---|",
        f"| run started | {info.started or '-'} |",
        f"| rig | {info.rig} |",
        f"| firmware build | {info.firmware} |",
        f"| program | {info.program_file} |",
        f"| balance | {info.balance} |",
        f"| set rate | {info.rate_text} = {result.set_rate_ml_h * 1000:.4f} uL/h |",
        f"| fluid density | {result.density_g_ml:.6f} g/mL ({info.density_note}) |",
        f"| evaporation | {info.evaporation_note or 'not corrected'} |",
        f"| test | {result.profile.describe()} |",
        f"| run | {result.run_s / 3600:g} h of rig time"
        + (f", time scale {info.time_scale if info.time_scale == 'max' else '%gx' % info.time_scale}"
           if info.time_scale else "")
        + (f", {info.wall_s:.0f} s wall" if info.wall_s is not None else "") + " |",
        f"| analysis period T2 | {result.analysis_start_s / 60:g} .. {result.analysis_end_s / 60:g} min |",
        f"| delivered (balance) | {result.delivered_ml * 1000:.3f} uL (set rate x time: "
        f"{expected_ml * 1000:.3f} uL) |",
        f"| readings missing / unstable | {result.missing_samples} / {result.unstable_samples} |",
    ]
    if info.step_volume_nl:
        lines.append(f"| mechanism step | {info.step_volume_nl:.3f} nL per microstep |")
    if info.noise_model:
        lines.append(f"| balance noise model | {info.noise_model} |")
    if info.rig_events:
        lines.append(f"| the rig during the run | {info.rig_events} |")
    if info.events:
        lines += ["", "## Events the rig logged during the run", "", "| t (h) | event | interrupts delivery |",
                  "|---:|---|---|"]
        lines += [f"| {e['t_s'] / 3600:.3f} | {e['what']} | {'yes' if e['interrupts'] else 'no'} |"
                  for e in info.events]
    if judged is not None:
        lines += ["", "## Verdict", "", "| figure | value | limit | result |", "|---|---:|---:|---|"]
        for c in judged["checks"]:
            v = c["value_pct"]
            shown = (c["note"] if v is None else
                     f"{v[0]:+.3f} / {v[1]:+.3f} %" if isinstance(v, list) else f"{v:+.3f} %")
            lines.append(f"| {c['figure']} | {shown} | +/-{c['limit_pct']:g} % | {'pass' if c['ok'] else 'FAIL'} |")
        if judged["interruptions"]:
            lines += ["", "Interrupted: " + "; ".join(f"{e['what']} at {e['t_s'] / 3600:.3f} h"
                                                       for e in judged["interruptions"])]
    lines += ["", "## Program", "", "```", *info.program_lines, "```", "",
              "## Figures", "",
              f"**A** (mean error over T2) = {_fmt(result.mean_error_a_pct)} %; "
              f"**B** (mean error over the last hour) = {_fmt(result.last_hour_error_b_pct)} %", "",
              "| P (min) | windows | Ep(max) % | Ep(min) % | noise floor % | step floor % |",
              "|---:|---:|---:|---:|---:|---:|"]
    for w in result.windows:
        tag = " (suppl.)" if w.supplementary else ""
        lines.append(f"| {w.p_min}{tag} | {w.n_windows} | {w.ep_max:+.2f} | {w.ep_min:+.2f} | "
                     f"{_fmt(w.noise_floor_pct, '.2f')} | {_fmt(w.quantum_floor_pct, '.2f')} |")
    lines += ["", "Noise floor: the 1-sigma error a perfect pump would show through the balance's "
              "reading noise (sqrt(2) sigma / (d r P)); step floor: one microstep over the volume "
              "of the window (the mechanism's quantisation).", ""]
    for name, rel in images.items():
        lines += [f"![{name}]({rel})", ""]
    return "\n".join(lines)


def write_report(result: AccuracyResult, info: RunInfo, out_dir: Path, title: str,
                 judged: dict | None = None, spec: object | None = None) -> dict[str, Path]:
    """Write startup.png, trumpet.png, report.md and result.json into `out_dir`; return paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    limits: dict[str, float] = dict(getattr(spec, "limits", {}) or {})
    paths = {
        "startup": plot_startup(result, out_dir / "startup.png", title, info, limits.get("A")),
        "trumpet": plot_trumpet(result, out_dir / "trumpet.png", title, info, limits),
    }
    md = markdown(result, info, {"trumpet curve": "trumpet.png", "start-up curve": "startup.png"}, judged)
    paths["report"] = out_dir / "report.md"
    paths["report"].write_text(md)
    paths["json"] = out_dir / "result.json"
    paths["json"].write_text(json.dumps({"info": info.as_dict(), "result": result.as_dict(),
                                         "verdict": judged}, indent=2))
    return paths
