"""The progress line of a long accuracy run (rig time elapsed, the last 10 min's flow, alarms seen)."""
from __future__ import annotations

import sys
from typing import Any, Iterable, Sequence, TextIO


class RunProgress:
    """Progress of a long run on stderr (a rich progress bar, only on a terminal): rig time
    elapsed of the total, the last 10 min's flow, the alarms seen so far."""

    def __init__(self, total_s: float, enabled: bool = True, stream: TextIO | None = None,
                 force: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.total_s = total_s
        self.enabled = enabled and (force or bool(getattr(self.stream, "isatty", lambda: False)()))
        self.last_poll = 0.0
        self._bar: Any = None
        self._task: Any = None
        self.last_text = ""

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
        self._bar = RichProgress(TextColumn("accuracy run"), BarColumn(),
                                 TextColumn("{task.fields[text]}"), TimeElapsedColumn(),
                                 console=Console(file=self.stream, force_terminal=True),
                                 transient=False)
        self._task = self._bar.add_task("run", total=self.total_s, text="")
        self._bar.start()

    @staticmethod
    def describe(samples: Sequence[Any], total_s: float, density_g_ml: float,
                 alarms_seen: Iterable[str]) -> str:
        """'3.50 h of 24 h, last 10 min 3.871 uL/h, alarms: none' from the readings so far."""
        last = samples[-1]
        flow = "-"
        back = [s for s in samples[-21:] if s.mass_g is not None]
        if len(back) >= 2 and back[-1].t_s > back[0].t_s:
            ul_h = ((back[-1].mass_g - back[0].mass_g) / density_g_ml * 1000.0
                    / ((back[-1].t_s - back[0].t_s) / 3600.0))
            flow = "%.3f uL/h" % ul_h
        names = sorted(alarms_seen)
        return "%.2f h of %g h, last 10 min %s, alarms: %s" % (
            last.t_s / 3600.0, total_s / 3600.0, flow, ", ".join(names) if names else "none")

    def update(self, samples: Sequence[Any], density_g_ml: float, alarms_seen: Iterable[str]) -> None:
        if not self.enabled or not samples:
            return
        self.last_text = self.describe(samples, self.total_s, density_g_ml, alarms_seen)
        if self._bar is None:
            self._start()
        self._bar.update(self._task, completed=min(samples[-1].t_s, self.total_s), text=self.last_text)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
