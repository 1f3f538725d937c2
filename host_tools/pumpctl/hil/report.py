"""HIL run report: rig, firmware build, programs, each check's measured figures and outcome, as Markdown with PNG plots.

Figures come from the `record(name, value, unit)` fixture (and `record.series(...)` for plots);
outcomes from pytest's reports. `write(path)` writes PATH (Markdown) and the plots beside it in
`<stem>_plots/`. Nothing here talks to a rig.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure: name, value (number or text), unit ('' if none)."""

    name: str
    value: Any
    unit: str

    def text(self) -> str:
        v = self.value
        if isinstance(v, float):
            s = "%.6g" % v
        else:
            s = str(v)
        return s + ((" " + self.unit) if self.unit else "")


@dataclass
class Series:
    """Points to plot: x values, one or more named y lines, axis labels with units."""

    name: str
    x: list[float]
    lines: dict[str, list[float]]
    xlabel: str
    ylabel: str


@dataclass
class Check:
    """One test of the suite: outcome (passed/failed/skipped/error), why, figures, plots."""

    nodeid: str
    outcome: str = "not run"
    duration_s: float = 0.0
    message: str = ""
    figures: list[Figure] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    programs: list[str] = field(default_factory=list)
    rig_id: str = ""

    @property
    def short(self) -> str:
        return self.nodeid.split("::", 1)[-1]


class HilReport:
    """Collects the run; `write(path)` renders it."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.rig: dict[str, str] = {}
        self.firmware: dict[str, str] = {}
        # the rigs whose firmware rows are in, held (an id() alone can be reused by the next
        # rig once a per-test rig is freed, and that rig's rows would then be left out)
        self.firmware_of: list[object] = []
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.t0 = time.monotonic()

    def check(self, nodeid: str) -> Check:
        c = self.checks.get(nodeid)
        if c is None:
            c = self.checks[nodeid] = Check(nodeid)
        return c

    def record(self, nodeid: str, name: str, value: Any, unit: str = "") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("figure name = %r: must be a non-empty string" % (name,))
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise ValueError("figure %s value = %r: must be a number or text" % (name, value))
        self.check(nodeid).figures.append(Figure(name, value, unit))

    def add_series(self, nodeid: str, series: Series) -> None:
        n = len(series.x)
        for label, ys in series.lines.items():
            if len(ys) != n:
                raise ValueError("series %s line %s: %d y values for %d x values" % (series.name, label, len(ys), n))
        self.check(nodeid).series.append(series)

    def outcome(self, nodeid: str, when: str, outcome: str, duration_s: float, message: str) -> None:
        c = self.check(nodeid)
        c.duration_s += duration_s
        if when == "call" or outcome != "passed":
            if outcome == "failed" and when != "call":
                outcome = "error"
            if c.outcome in ("failed", "error") and outcome == "passed":
                return
            c.outcome = outcome
            if message:
                c.message = message
        elif c.outcome == "not run":
            c.outcome = "passed" if when == "setup" else c.outcome

    # ---- rendering --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.checks.values():
            out[c.outcome] = out.get(c.outcome, 0) + 1
        return out

    def markdown(self, plots: dict[str, list[str]]) -> str:
        counts = self.counts()
        lines = ["# HIL run report", "",
                 "Started %s, %.0f s wall. Outcome: %s." % (
                     self.started, time.monotonic() - self.t0,
                     ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())) or "nothing run"),
                 "", "## Rig", "", "| | |", "|---|---|"]
        for k, v in self.rig.items():
            lines.append("| %s | %s |" % (k, _cell(v)))
        lines += ["", "## Firmware build", "", "| | |", "|---|---|"]
        for k, v in self.firmware.items():
            lines.append("| %s | %s |" % (k, _cell(v)))
        lines += ["", "## Checks", "", "| check | result | measured | s |", "|---|---|---|---:|"]
        for c in self.checks.values():
            figs = "; ".join("%s = %s" % (f.name, f.text()) for f in c.figures) or "-"
            lines.append("| %s | %s | %s | %.1f |" % (_cell(c.short), c.outcome.upper() if c.outcome == "failed"
                                                     else c.outcome, _cell(figs), c.duration_s))
        lines += ["", "## Details", ""]
        for c in self.checks.values():
            lines += ["### %s: %s" % (c.short, c.outcome), ""]
            if c.rig_id:
                lines.append("Rig: %s" % c.rig_id)
            for p in c.programs:
                lines.append("Program: %s" % p)
            if c.message:
                lines += ["", "```", c.message.strip()[-1500:], "```"]
            for f in c.figures:
                lines.append("- %s: %s" % (f.name, f.text()))
            for rel in plots.get(c.nodeid, []):
                lines += ["", "![%s](%s)" % (rel, rel)]
            lines.append("")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        """Write the Markdown report to `path` and its plots to `<stem>_plots/`; returns path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_dir = path.parent / (path.stem + "_plots")
        plots: dict[str, list[str]] = {}
        if any(c.series for c in self.checks.values()):
            plt = _pyplot()
            plot_dir.mkdir(exist_ok=True)
            for c in self.checks.values():
                for s in c.series:
                    name = _slug(c.short + "-" + s.name) + ".png"
                    fig, ax = plt.subplots(figsize=(7, 3.6))
                    for label, ys in s.lines.items():
                        ax.plot(s.x, ys, label=label, linewidth=1.2)
                    ax.set_xlabel(s.xlabel)
                    ax.set_ylabel(s.ylabel)
                    ax.set_title(s.name)
                    ax.grid(True, alpha=0.3)
                    ax.legend(fontsize=8)
                    fig.tight_layout()
                    fig.savefig(plot_dir / name, dpi=90)
                    plt.close(fig)
                    plots.setdefault(c.nodeid, []).append("%s/%s" % (plot_dir.name, name))
        path.write_text(self.markdown(plots))
        return path


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
