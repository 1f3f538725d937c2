"""IEC 60601-2-24 gravimetric accuracy analysis: flow, start-up curve, trumpet curves, mean error.

The method (IEC 60601-2-24:1998 clause 50, carried into IEC 60601-2-24:2012 clause 201.12.1)
-----------------------------------------------------------------------------------------------
The pump delivers into a beaker on a balance; the balance is read every sample interval
S = 0.5 min (30 s) from the start of the infusion. With W_i the balance reading (g) at sample i,
d the fluid density (g/mL) at the test temperature and r the set rate (mL/h):

* Flow per sample interval ("Q_i"), the curve of the *start-up graph*::

      Q_i = 60 * (W_i - W_(i-1)) / (S * d)          [mL/h, S in min]

  The standard plots Q_i against time over the whole test period T0 (2 h for the intermediate
  rate test); the first hour is the stabilisation period T1.
* Analysis period T2: the trumpet curves and the mean error come from the *second hour*
  (60 min after the stabilisation period) for the intermediate-rate test, or from the stated
  analysis period after the stabilisation period for the long, low-rate tests (see below).
* Observation windows P = 2, 5, 11, 19, 31 min. Within T2 there are ``m = (T2 - P)/S + 1``
  windows of each length, starting at every sample. The *percentage variation* of window j is::

      E_p(j) = (S / P) * sum_{i=j}^{j+P/S-1} 100 * (Q_i - r) / r        [%]

  i.e. the mean of the Q_i in the window compared with r. The *trumpet curve* plots, for every
  P, the maximum ``Ep(max) = max_j E_p(j)`` and the minimum ``Ep(min) = min_j E_p(j)``.
  Because the mean of the Q_i in a window telescopes to the mass difference between its end
  samples, ``E_p(j) = 100 * (dV_j / (r * P) - 1)`` with dV_j the volume delivered in the window;
  this module computes it that way (exactly equal, and a missing interior reading does not
  void the window).
* Overall mean percentage error over the analysis period ("A")::

      A = 100 * (Q - r) / r,   Q = 60 * (W_end - W_start) / (T2 * d)      [%, T2 in min]

* "B": the same mean error over the last hour of a long test period (the standard's long-run
  figure), reported when the run is long enough.
* Low rates. The standard repeats the test at the minimum/low rate, and for syringe and
  ambulatory pumps at low rates (below about 1 mL/h) the test and analysis periods are longer
  (published trumpet curves of ambulatory pumps are "plotted from data after the end of the
  stabilisation period of 24 h" and extend to windows of hours). This module's ``low-rate``
  profile therefore keeps S = 30 s and the five standard windows, takes the stabilisation period
  T1 as 1 h (24 h when the run is at least 48 h long) and the analysis period as the whole rest of
  the run, and adds supplementary windows of 1, 2, 4 and 8 h (clearly marked as supplementary:
  they are not the standard's five).

Sources: the normative text was not retrievable here; the values above (S = 0.5 min, T = 120 min,
trumpet from the second hour, P = 2, 5, 11, 19, 31 min, Ep(max)/Ep(min), A and B, 24 h
stabilisation for ambulatory low-rate curves) are as the standard states them and as
manufacturers' manuals citing it reproduce them (B. Braun Perfusor/Infusomat, Smiths CADD,
Accu-Chek Spirit/D-TRONplus, Infutest analyser documentation).

Density: water by the CIPM formula (Tanaka et al., Metrologia 38 (2001) 301), 0.998207 g/mL at
20 degC, unless the caller states another fluid density.

Units in this module: time s, mass g, volume mL, rate mL/h, errors %. Host-side floats (the
analysis is not on the dose path).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from ..errors import UsageError

SAMPLE_INTERVAL_S = 30.0
STANDARD_WINDOWS_MIN: tuple[int, ...] = (2, 5, 11, 19, 31)
SUPPLEMENTARY_WINDOWS_MIN: tuple[int, ...] = (60, 120, 240, 480)
LOW_RATE_THRESHOLD_ML_H = 1.0
STANDARD_TEST_PERIOD_S = 7200.0
STANDARD_STABILISATION_S = 3600.0
STANDARD_ANALYSIS_S = 3600.0
AMBULATORY_STABILISATION_S = 86400.0
INTERVAL_TOLERANCE = 0.1          # a sample interval may differ from S by at most 10 %
DEFAULT_TEMPERATURE_C = 20.0


class AnalysisError(UsageError):
    """The data cannot be analysed by the method (names the field, the value and the limit)."""


def water_density_g_ml(temp_c: float) -> float:
    """Density of air-free water (g/mL) at `temp_c` degC, CIPM/Tanaka 2001, valid 0..40 degC."""
    if not 0.0 <= temp_c <= 40.0:
        raise AnalysisError(f"temperature_c = {temp_c}: outside the water-density formula's "
                            f"range 0..40 degC")
    a1, a2, a3, a4, a5 = -3.983035, 301.797, 522528.9, 69.34881, 999.974950
    rho_kg_m3 = a5 * (1.0 - (temp_c + a1) ** 2 * (temp_c + a2) / (a3 * (temp_c + a4)))
    return rho_kg_m3 / 1000.0


class Sample:
    """One balance reading: rig time `t_s` (s since the infusion started), `mass_g` (None when
    the reading failed), `stable` as the balance flagged it."""

    __slots__ = ("t_s", "mass_g", "stable")

    def __init__(self, t_s: float, mass_g: float | None, stable: bool = True) -> None:
        self.t_s = float(t_s)
        self.mass_g = None if mass_g is None else float(mass_g)
        self.stable = bool(stable)

    def __repr__(self) -> str:
        return f"Sample(t_s={self.t_s}, mass_g={self.mass_g}, stable={self.stable})"


class TestProfile:
    """Which test of the standard: sample interval S (s), stabilisation period T1 (s), analysis
    period T2 (s, None = to the end of the run), observation windows (min)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str, sample_interval_s: float, stabilisation_s: float,
                 analysis_s: float | None, windows_min: Sequence[int],
                 supplementary_min: Sequence[int] = ()) -> None:
        if sample_interval_s <= 0:
            raise AnalysisError(f"sample_interval_s = {sample_interval_s}: must be > 0")
        if stabilisation_s < 0:
            raise AnalysisError(f"stabilisation_s = {stabilisation_s}: must be >= 0")
        if analysis_s is not None and analysis_s < sample_interval_s:
            raise AnalysisError(f"analysis_s = {analysis_s}: shorter than one sample interval "
                                f"{sample_interval_s} s")
        for p in list(windows_min) + list(supplementary_min):
            if p <= 0 or (p * 60.0) % sample_interval_s:
                raise AnalysisError(f"observation window {p} min: must be a positive multiple of "
                                    f"the sample interval {sample_interval_s} s")
        self.name = name
        self.sample_interval_s = float(sample_interval_s)
        self.stabilisation_s = float(stabilisation_s)
        self.analysis_s = None if analysis_s is None else float(analysis_s)
        self.windows_min = tuple(windows_min)
        self.supplementary_min = tuple(supplementary_min)

    def describe(self) -> str:
        """One line for reports."""
        t2 = "rest of the run" if self.analysis_s is None else f"{self.analysis_s / 60:g} min"
        return (f"{self.name}: S = {self.sample_interval_s:g} s, stabilisation T1 = "
                f"{self.stabilisation_s / 3600:g} h, analysis period T2 = {t2}, windows P = "
                f"{', '.join(str(p) for p in self.windows_min)} min"
                + (f" (+ supplementary {', '.join(str(p) for p in self.supplementary_min)} min)"
                   if self.supplementary_min else ""))


def standard_profile() -> TestProfile:
    """The intermediate-rate test: 2 h, trumpet and A from the second hour."""
    return TestProfile("standard (IEC 60601-2-24 intermediate rate)", SAMPLE_INTERVAL_S,
                       STANDARD_STABILISATION_S, STANDARD_ANALYSIS_S, STANDARD_WINDOWS_MIN)


def low_rate_profile(run_s: float) -> TestProfile:
    """Low rate (< 1 mL/h, syringe/ambulatory): longer analysis period, supplementary windows."""
    stab = AMBULATORY_STABILISATION_S if run_s >= 2 * AMBULATORY_STABILISATION_S \
        else STANDARD_STABILISATION_S
    return TestProfile("low rate (IEC 60601-2-24 syringe/ambulatory, < 1 mL/h)", SAMPLE_INTERVAL_S,
                       stab, None, STANDARD_WINDOWS_MIN, SUPPLEMENTARY_WINDOWS_MIN)


def profile_for(rate_ml_h: float, run_s: float) -> TestProfile:
    """The profile the standard uses for this set rate and run length."""
    if rate_ml_h <= 0:
        raise AnalysisError(f"set rate = {rate_ml_h} mL/h: must be > 0")
    if rate_ml_h < LOW_RATE_THRESHOLD_ML_H:
        return low_rate_profile(run_s)
    return standard_profile()


class WindowResult:
    """Ep(max)/Ep(min) (%) over the `n_windows` windows of `p_min` minutes in the analysis period,
    with the start time (s) of each extreme window and the noise/quantisation floors (%) that a
    perfect pump would still show through the balance noise and the mechanism's step size."""

    def __init__(self, p_min: int, n_windows: int, ep_max: float, ep_min: float,
                 t_max_s: float, t_min_s: float, supplementary: bool,
                 noise_floor_pct: float | None, quantum_floor_pct: float | None) -> None:
        self.p_min = p_min
        self.n_windows = n_windows
        self.ep_max = ep_max
        self.ep_min = ep_min
        self.t_max_s = t_max_s
        self.t_min_s = t_min_s
        self.supplementary = supplementary
        self.noise_floor_pct = noise_floor_pct
        self.quantum_floor_pct = quantum_floor_pct

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class AccuracyResult:
    """Everything the report shows. Times s, flows mL/h, errors %."""

    def __init__(self, *, set_rate_ml_h: float, density_g_ml: float, profile: TestProfile,
                 flow: list[tuple[float, float]], analysis_start_s: float, analysis_end_s: float,
                 mean_error_a_pct: float, last_hour_error_b_pct: float | None,
                 windows: list[WindowResult], delivered_ml: float, run_s: float,
                 missing_samples: int, unstable_samples: int) -> None:
        self.set_rate_ml_h = set_rate_ml_h
        self.density_g_ml = density_g_ml
        self.profile = profile
        self.flow = flow
        self.analysis_start_s = analysis_start_s
        self.analysis_end_s = analysis_end_s
        self.mean_error_a_pct = mean_error_a_pct
        self.last_hour_error_b_pct = last_hour_error_b_pct
        self.windows = windows
        self.delivered_ml = delivered_ml
        self.run_s = run_s
        self.missing_samples = missing_samples
        self.unstable_samples = unstable_samples

    def window(self, p_min: int) -> WindowResult:
        for w in self.windows:
            if w.p_min == p_min:
                return w
        raise KeyError(p_min)

    def as_dict(self) -> dict:
        return {
            "set_rate_ml_h": self.set_rate_ml_h, "density_g_ml": self.density_g_ml,
            "profile": self.profile.describe(), "analysis_start_s": self.analysis_start_s,
            "analysis_end_s": self.analysis_end_s, "mean_error_a_pct": self.mean_error_a_pct,
            "last_hour_error_b_pct": self.last_hour_error_b_pct,
            "delivered_ml": self.delivered_ml, "run_s": self.run_s,
            "missing_samples": self.missing_samples, "unstable_samples": self.unstable_samples,
            "windows": [w.as_dict() for w in self.windows],
        }


def _check_samples(samples: Sequence[Sample], interval_s: float) -> None:
    if len(samples) < 2:
        raise AnalysisError(f"samples: {len(samples)} given, the method needs at least 2")
    if samples[0].mass_g is None:
        raise AnalysisError("samples[0].mass_g = None: the first (reference) reading is missing")
    lo, hi = interval_s * (1 - INTERVAL_TOLERANCE), interval_s * (1 + INTERVAL_TOLERANCE)
    for i in range(1, len(samples)):
        dt = samples[i].t_s - samples[i - 1].t_s
        if not lo <= dt <= hi:
            raise AnalysisError(f"samples[{i}].t_s = {samples[i].t_s}: interval {dt:g} s from the "
                                f"previous sample is outside S = {interval_s:g} s +/- "
                                f"{INTERVAL_TOLERANCE * 100:g} %")


def _volumes_ml(samples: Sequence[Sample], density_g_ml: float,
                evaporation_g_h: float) -> list[float | None]:
    w0, t0 = samples[0].mass_g, samples[0].t_s
    assert w0 is not None
    out: list[float | None] = []
    for s in samples:
        if s.mass_g is None:
            out.append(None)
        else:
            lost_g = evaporation_g_h * (s.t_s - t0) / 3600.0
            out.append((s.mass_g - w0 + lost_g) / density_g_ml)
    return out


def _mean_error(samples: Sequence[Sample], vol: Sequence[float | None], i: int, j: int,
                rate_ml_h: float) -> float | None:
    if vol[i] is None or vol[j] is None:
        return None
    dt_h = (samples[j].t_s - samples[i].t_s) / 3600.0
    flow = (vol[j] - vol[i]) / dt_h  # type: ignore[operator]
    return 100.0 * (flow - rate_ml_h) / rate_ml_h


def flow_series(samples: Sequence[Sample], density_g_ml: float,
                evaporation_g_h: float = 0.0) -> list[tuple[float, float]]:
    """Q_i (mL/h) per sample interval, as (end time s, flow); intervals with a missing reading
    at either end are left out."""
    vol = _volumes_ml(samples, density_g_ml, evaporation_g_h)
    out = []
    for i in range(1, len(samples)):
        if vol[i] is not None and vol[i - 1] is not None:
            dt_h = (samples[i].t_s - samples[i - 1].t_s) / 3600.0
            out.append((samples[i].t_s, (vol[i] - vol[i - 1]) / dt_h))  # type: ignore[operator]
    return out


def analyse(samples: Sequence[Sample], set_rate_ml_h: float, *,
            density_g_ml: float | None = None, temperature_c: float = DEFAULT_TEMPERATURE_C,
            profile: TestProfile | None = None, evaporation_g_h: float = 0.0,
            balance_sigma_g: float | None = None,
            step_volume_ml: float | None = None) -> AccuracyResult:
    """Analyse a gravimetric run by the IEC 60601-2-24 method (see the module docstring).

    `samples`: readings every S from the start of the infusion (t_s relative to the start);
    `set_rate_ml_h`: the programmed rate r; `density_g_ml`: the fluid density (default: water at
    `temperature_c`); `profile`: the test (default chosen from the rate and run length);
    `evaporation_g_h`: a measured evaporation rate added back to the readings (0 = none);
    `balance_sigma_g`: the balance's reading noise, to state each window's noise floor;
    `step_volume_ml`: the mechanism's volume per microstep, to state the quantisation floor.
    """
    if not set_rate_ml_h > 0 or not math.isfinite(set_rate_ml_h):
        raise AnalysisError(f"set_rate_ml_h = {set_rate_ml_h}: must be a finite rate > 0")
    density = water_density_g_ml(temperature_c) if density_g_ml is None else density_g_ml
    if not 0.5 <= density <= 2.0:
        raise AnalysisError(f"density_g_ml = {density}: outside the plausible range 0.5..2.0 g/mL")
    samples = list(samples)
    run_s = samples[-1].t_s - samples[0].t_s if samples else 0.0
    prof = profile or profile_for(set_rate_ml_h, run_s)
    _check_samples(samples, prof.sample_interval_s)
    s_int = prof.sample_interval_s
    t0 = samples[0].t_s
    vol = _volumes_ml(samples, density, evaporation_g_h)

    # analysis period indices: first sample at or after T1, last at T1 + T2 (or the run's end)
    start_t = t0 + prof.stabilisation_s
    end_t = samples[-1].t_s if prof.analysis_s is None else start_t + prof.analysis_s
    tol = s_int * INTERVAL_TOLERANCE
    if end_t > samples[-1].t_s + tol:
        raise AnalysisError(f"run length = {run_s / 60:g} min: the {prof.name} test needs at "
                            f"least {(end_t - t0) / 60:g} min (stabilisation + analysis period)")
    ia = next(i for i, s in enumerate(samples) if s.t_s >= start_t - tol)
    ib = max(i for i, s in enumerate(samples) if s.t_s <= end_t + tol)
    if ib <= ia:
        raise AnalysisError(f"analysis period: no whole sample interval between "
                            f"{start_t:g} s and {end_t:g} s")
    # A: the mean error over the analysis period (nearest present end samples)
    ia_p = next((i for i in range(ia, ib) if vol[i] is not None), None)
    ib_p = next((i for i in range(ib, ia, -1) if vol[i] is not None), None)
    if ia_p is None or ib_p is None or ib_p <= ia_p:
        raise AnalysisError("analysis period: fewer than two readings present")
    a_pct = _mean_error(samples, vol, ia_p, ib_p, set_rate_ml_h)
    assert a_pct is not None

    # B: the mean error over the last hour of the run, when the run has one after T1
    b_pct = None
    n_hour = int(round(3600.0 / s_int))
    last = len(samples) - 1
    if last - n_hour >= ia and vol[last] is not None:
        b_pct = _mean_error(samples, vol, last - n_hour, last, set_rate_ml_h)

    windows: list[WindowResult] = []
    n_interval = ib - ia
    for p_min, supplementary in ([(p, False) for p in prof.windows_min]
                                 + [(p, True) for p in prof.supplementary_min]):
        n = int(round(p_min * 60.0 / s_int))
        if n > n_interval:
            continue  # window longer than the analysis period: not computable
        best_max = best_min = None
        t_max = t_min = 0.0
        count = 0
        for j in range(ia, ib - n + 1):  # m = (T2 - P)/S + 1 windows
            e = _mean_error(samples, vol, j, j + n, set_rate_ml_h)
            if e is None:
                continue
            count += 1
            if best_max is None or e > best_max:
                best_max, t_max = e, samples[j].t_s - t0
            if best_min is None or e < best_min:
                best_min, t_min = e, samples[j].t_s - t0
        if best_max is None or best_min is None:
            continue
        window_ml = set_rate_ml_h * p_min / 60.0
        noise = None if balance_sigma_g is None else \
            100.0 * math.sqrt(2.0) * balance_sigma_g / density / window_ml
        quantum = None if step_volume_ml is None else 100.0 * step_volume_ml / window_ml
        windows.append(WindowResult(p_min, count, best_max, best_min, t_max, t_min,
                                    supplementary, noise, quantum))
    last_present = next(v for v in reversed(vol) if v is not None)
    assert last_present is not None
    return AccuracyResult(
        set_rate_ml_h=set_rate_ml_h, density_g_ml=density, profile=prof,
        flow=flow_series(samples, density, evaporation_g_h),
        analysis_start_s=samples[ia].t_s - t0, analysis_end_s=samples[ib].t_s - t0,
        mean_error_a_pct=a_pct, last_hour_error_b_pct=b_pct, windows=windows,
        delivered_ml=last_present, run_s=run_s,
        missing_samples=sum(1 for s in samples if s.mass_g is None),
        unstable_samples=sum(1 for s in samples if s.mass_g is not None and not s.stable))


def samples_from_masses(masses_g: Iterable[float | None], interval_s: float = SAMPLE_INTERVAL_S,
                        t0_s: float = 0.0) -> list[Sample]:
    """Readings taken exactly every `interval_s` seconds from `t0_s` (tests, replayed logs)."""
    return [Sample(t0_s + i * interval_s, m) for i, m in enumerate(masses_g)]


def required_run_s(set_rate_ml_h: float, run_s: float) -> float:
    """The shortest run (s) the method can analyse at this rate and planned length: the standard
    test's 2 h, or at a low rate the stabilisation period plus the longest standard window (so
    that every one of P = 2..31 min is measured). Checked before a run starts."""
    prof = profile_for(set_rate_ml_h, run_s)
    if prof.analysis_s is not None:
        return prof.stabilisation_s + prof.analysis_s
    return prof.stabilisation_s + max(prof.windows_min) * 60.0


def drift_g_h(samples: Sequence[Sample]) -> tuple[float, float]:
    """Least-squares slope of the readings (g/h) and its standard error (g/h): the balance's
    drift with nothing delivered, i.e. minus the evaporation rate. Needs 3 readings or more."""
    pts = [(s.t_s / 3600.0, s.mass_g) for s in samples if s.mass_g is not None]
    n = len(pts)
    if n < 3:
        raise AnalysisError(f"evaporation measurement: {n} readings, at least 3 needed")
    mt = sum(t for t, _ in pts) / n
    mm = sum(m for _, m in pts) / n
    sxx = sum((t - mt) ** 2 for t, _ in pts)
    if sxx <= 0:
        raise AnalysisError("evaporation measurement: all readings at one time")
    slope = sum((t - mt) * (m - mm) for t, m in pts) / sxx
    resid = sum((m - mm - slope * (t - mt)) ** 2 for t, m in pts)
    se = math.sqrt(resid / (n - 2) / sxx)
    return slope, se
