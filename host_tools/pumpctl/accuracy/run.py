"""Gravimetric run orchestration: sample a balance every 30 s of rig time, log every reading, analyse.

The run reads the balance at t = k * S (S = 30 s, the standard's sample interval) on the rig's
clock (the virtual rig's scaled time, or the host's monotonic clock for a real rig), appends each
reading to a CSV log as it is taken (flushed and synced, so a crash or power cut loses at most
the reading in flight and the run can be re-analysed from the log), and records a failed reading
as missing rather than inventing one. Too many failures in a row abort the run with the
balance's own error.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import UsageError
from .balance import Balance, BalanceError
from .iec60601 import SAMPLE_INTERVAL_S, Sample

MAX_CONSECUTIVE_FAILURES = 5


def set_rate_ml_h(rate_ng_day: int, conc_ug_ml: int) -> float:
    """Volume rate (mL/h) of a dose rate (ng/day) at a concentration (ug/mL = ng/uL)."""
    if rate_ng_day <= 0:
        raise UsageError(f"rate_ng_day = {rate_ng_day}: an accuracy run needs a rate > 0")
    if conc_ug_ml <= 0:
        raise UsageError(f"conc_ug_ml = {conc_ug_ml}: must be > 0")
    return rate_ng_day / conc_ug_ml / 1000.0 / 24.0  # uL/day -> mL/day -> mL/h


class RunClock:
    """The clock a run samples on: `now_s()` (s) and `sleep_until(t_s)`."""

    def now_s(self) -> float:
        raise NotImplementedError

    def sleep_until(self, t_s: float) -> None:
        raise NotImplementedError


class HostClock(RunClock):
    """Host monotonic time: a real rig runs in real time (MtSicsBalance stamps readings so)."""

    def now_s(self) -> float:
        return time.monotonic()

    def sleep_until(self, t_s: float) -> None:
        while True:
            left = t_s - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))


class RigClock(RunClock):
    """The virtual rig's clock: `rig_time_fn()` gives rig seconds; waits are spent in wall time
    divided by `time_scale` (polled, so a rig that runs faster or slower is still followed)."""

    def __init__(self, rig_time_fn: Callable[[], float], time_scale: float) -> None:
        if time_scale <= 0:
            raise UsageError(f"time_scale = {time_scale}: must be > 0")
        self._fn = rig_time_fn
        self.time_scale = time_scale

    def now_s(self) -> float:
        return float(self._fn())

    def sleep_until(self, t_s: float) -> None:
        while True:
            left = t_s - self.now_s()
            if left <= 0:
                return
            time.sleep(max(0.0005, min(left / self.time_scale * 0.8, 1.0)))


class SampleLog:
    """CSV log of a run: ``# key: value`` header lines, then ``t_s,mass_g,stable`` rows.

    Every row is flushed and fsync'ed as written: what was measured is never lost.
    """

    def __init__(self, path: Path, meta: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: TextIO = open(path, "w", newline="")
        for key, value in meta.items():
            self._f.write(f"# {key}: {value}\n")
        self._f.write("t_s,mass_g,stable\n")
        self._sync()

    def note(self, key: str, value: object) -> None:
        """A `# key: value` line after the readings (events, how the run ended)."""
        self._f.write(f"# {key}: {value}\n")
        self._sync()

    def append(self, s: Sample) -> None:
        mass = "" if s.mass_g is None else repr(s.mass_g)
        self._f.write(f"{s.t_s!r},{mass},{int(s.stable)}\n")
        self._sync()

    def _sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def load_samples_csv(path: Path) -> tuple[dict[str, Any], list[Sample]]:
    """Read a SampleLog back: (header fields, samples); repeated `event` lines are collected in
    meta["events"] (a list). UsageError names the line."""
    meta: dict[str, Any] = {"events": []}
    samples: list[Sample] = []
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise UsageError(f"run log {path}: is a directory (give the samples.csv inside it)") from None
    except UnicodeDecodeError:
        raise UsageError(f"run log {path}: not a text samples log (not UTF-8)") from None
    except OSError as exc:
        raise UsageError(f"cannot read run log {path}: {exc.strerror}") from None
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            if key.strip() == "event":
                meta["events"].append(value.strip())
            else:
                meta[key.strip()] = value.strip()
        elif line.strip():
            rows.append(line)
    for n, row in enumerate(csv.DictReader(rows), start=2):
        try:
            mass = None if row["mass_g"] in ("", None) else float(row["mass_g"])
            samples.append(Sample(float(row["t_s"]), mass, row.get("stable", "1") == "1"))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"run log {path}: data row {n - 1} = {row!r}: expected "
                             f"t_s,mass_g,stable") from None
    return meta, samples


def gravimetric_run(balance: Balance, clock: RunClock, duration_s: float,
                    log: SampleLog | None = None, interval_s: float = SAMPLE_INTERVAL_S,
                    on_sample: Callable[[Sample], None] | None = None,
                    max_failures: int = MAX_CONSECUTIVE_FAILURES) -> list[Sample]:
    """Read `balance` every `interval_s` of `clock` time for `duration_s`; t_s relative to the
    start (the first reading, taken at once, is the reference W_0). Returns every sample."""
    if duration_s < interval_s:
        raise UsageError(f"duration = {duration_s:g} s: shorter than one sample interval "
                         f"{interval_s:g} s")
    n_samples = int(duration_s // interval_s) + 1
    t_start = clock.now_s()
    samples: list[Sample] = []
    failures = 0
    for k in range(n_samples):
        nominal = t_start + k * interval_s
        clock.sleep_until(nominal)
        try:
            reading = balance.read()
        except BalanceError as exc:
            failures += 1
            sample = Sample(nominal - t_start, None, False)
            if failures >= max_failures or k == 0:
                samples.append(sample)
                if log:
                    log.append(sample)
                raise BalanceError(f"run aborted at t = {nominal - t_start:g} s after {failures} "
                                   f"failed balance reading(s) in a row: {exc}") from exc
        else:
            failures = 0
            sample = Sample(reading.t_s - t_start, reading.mass_g, reading.stable)
        samples.append(sample)
        if log:
            log.append(sample)
        if on_sample:
            on_sample(sample)
    return samples
