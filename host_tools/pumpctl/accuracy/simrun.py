"""Accuracy run on the virtual rig: time-scaled firmware, program uploaded, simulated balance read.

Needs `pumpctl.rigs.virtualrig.VirtualRig` (issue 3). What this module uses of a started rig is
small and duck-typed, so it can follow that class as it lands: ``rig.port`` (the pty the
firmware serves the protocol on), ``rig.balance()`` (side channel: rig time and balance
reading, see `balance.SimBalance`), ``rig.stop()``, and optionally ``rig.noise_model()`` /
``rig.time_scale``.
"""
from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from ..rigs.virtualrig import poll_scale
from .balance import SimBalance
from .iec60601 import Sample
from .run import SAMPLE_INTERVAL_S, SampleLog


def start_virtual_rig(time_scale: float, out_dir: Path, mechanism: str | None = None,
                      balance: str | None = None) -> Any:
    """A fresh virtual rig at `time_scale`, made for `mechanism` (None: the default) and
    weighing with the simulated `balance` (None: the mechanism's), firmware deployed and key
    provisioned."""
    from ..rigs.simsession import start_deployed_rig
    return start_deployed_rig(out_dir / "rig", time_scale, "accuracy", log=lambda line: None,
                              mechanism=mechanism, balance=balance)


def sim_balance_name(args: argparse.Namespace) -> str | None:
    """The simulated balance --balance names (None: 'sim', the mechanism's own)."""
    return None if args.balance == "sim" else args.balance


DEFAULT_EVAPORATION_MIN = 240.0   # 481 readings: slope sd ~0.8 ug/h for the model's 20 ug noise


def measure_evaporation(rig: Any, minutes: float, density_g_ml: float,
                        when: str = "before the run") -> tuple[float, str]:
    """Weigh the beaker for `minutes` of rig time with nothing delivered (no program yet, or
    the program stopped) and fit the loss rate: (evaporation g/h, the report's note). The
    method's own correction: the rig's model is never read for it, the balance is."""
    from .iec60601 import drift_g_h
    interval_ms = int(SAMPLE_INTERVAL_S * 1000)
    n = int(minutes * 60 // SAMPLE_INTERVAL_S) + 1
    got = rig.balance_log(0, every_ms=interval_ms)
    readings: list[Sample] = []
    while True:
        for _, t_ms, grams in got:
            if len(readings) < n:
                readings.append(Sample(t_ms / 1000.0, grams, True))
        if len(readings) >= n:
            break
        time.sleep(0.05)
        got = rig.balance_log(len(readings))
    slope, se = drift_g_h(readings)
    evap = max(0.0, -slope)
    return evap, ("measured %s: %.2f ug/h (standard error %.2f ug/h) from %d readings "
                  "over %g min with nothing delivered, added back" % (when, evap * 1e6, se * 1e6, n, minutes))


def evaporation_before_after(before: float, before_note: str, after: float, after_note: str) -> tuple[float, str]:
    """The correction the run uses: the mean of the rates measured before and after it (a rate
    drifting linearly through the run averages to exactly that), with both in the note."""
    mean = (before + after) / 2.0
    return mean, ("mean of the rates measured before and after the run, %.2f ug/h, added back "
                  "(%s; %s)" % (mean * 1e6, before_note.replace(", added back", ""),
                                after_note.replace(", added back", "")))


def run_with_rig(rig: Any, args: argparse.Namespace, program: Any, rate_ng_day: int,
                 conc_ug_ml: int) -> int:
    """Upload and commit the program on a started rig, weigh for args.hours of rig time, report."""
    from .analysis import (Conditions, analyse_and_report, density_for, evaporation_for, program_crc,
                           program_lines)
    from .progress import RunProgress
    from ..pump import Pump
    from . import events as run_events
    from .run import set_rate_ml_h
    out = Path(args.out)
    balance = SimBalance.from_rig(rig)
    from pumpsim.model import Params
    density, density_note = density_for(args, Params().density_mg_per_ml / 1000)
    spec_balance = rig_balance(rig, args)
    rate_ml_h = set_rate_ml_h(rate_ng_day, conc_ug_ml)
    from ..rigs.simsession import prepare_for_delivery
    with Pump.open(rig.port) as pump:
        hello = pump.hello()
        # a full reservoir of the rig's mechanism (the rig's own limit: the syringe)
        prepare_for_delivery(pump, conc_ug_ml, log=lambda line: None)
        balance.tare()
        given = evaporation_for(args)
        minutes = DEFAULT_EVAPORATION_MIN if args.evaporation_min is None else args.evaporation_min
        if given is not None:
            evap, evap_note = given
        elif minutes <= 0:
            evap, evap_note = 0.0, ("not corrected (--evaporation-min 0): water lost from the beaker "
                                    "counts as under-delivery")
        else:
            evap, evap_note = measure_evaporation(rig, minutes, density)
            share = 100.0 * evap / density / rate_ml_h
            evap_note += " (%.2g %% of the set rate)" % share
        first_seq = int(pump.read_log(0, 0).next_seq)
        review = pump.upload_program(bytes(program.encode()), confirm=lambda review: True)
        if not getattr(review, "committed", True):
            raise UsageError(f"virtual rig {hello.rig_id}: program not committed")
        noise_text, sigma = balance_noise_model(spec_balance)
        firmware = f"{hello.firmware_version} build {hello.build_hash}"
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cond = Conditions(density_g_ml=density, density_note=density_note, evaporation_g_h=evap,
                          evaporation_note=evap_note, spec_text=args.spec, started=started)
        meta = {"rig": hello.rig_id, "mechanism": hello.mechanism, "firmware": firmware,
                "balance": "simulated %s" % spec_balance.describe(),
                "program": args.program, "program_crc": "%08x" % program_crc(program),
                "rate_ng_day": rate_ng_day, "conc_ug_ml": conc_ug_ml, "hours": args.hours,
                "time_scale": args.time_scale, "noise_model": noise_text,
                "balance_sigma_g": "" if sigma is None else sigma, **cond.log_meta()}
        log = SampleLog(out / "samples.csv", meta)
        wall0 = time.monotonic()
        st = pump.status()
        offset_ms = run_events.rig_wall_ms(st.day, st.ms_of_day) - rig.world()["sim_us"] // 1000
        bar = RunProgress(args.hours * 3600.0, enabled=not getattr(args, "json", False))
        alarms_seen: set[str] = set()

        def on_progress(samples: list[Sample]) -> None:
            if not bar.enabled or not samples:
                return
            if time.monotonic() - bar.last_poll > 2.0:
                bar.last_poll = time.monotonic()
                for a in pump.alarms():
                    alarms_seen.add(_alarm_name(a.code))
            bar.update(samples, density, alarms_seen)
        try:
            samples = recorded_run(rig, args.hours * 3600.0, log, args.time_scale, on_progress,
                                   on_start=lambda t0_ms: setattr(bar, "t0_wall_ms", t0_ms + offset_ms))
            bar.finish()
            t0_wall = getattr(bar, "t0_wall_ms", offset_ms)
            cond.events = run_events.record_run_end(log, pump, first_seq, t0_wall, len(samples))
            # what the rig counted over the run, read before the after-weighing's suspend
            events = rig_events(rig, rate_ng_day, st, pump)
            if given is None and minutes > 0:
                # after: the program stopped, the line drained (tau ~1 s), weigh again
                from ..errors import PumpError
                try:
                    pump.suspend()
                except PumpError as exc:
                    cond.evaporation_note += " (not measured after the run: suspend refused: %s)" % exc
                else:
                    after, after_note = measure_evaporation(rig, minutes, density, when="after the run")
                    cond.evaporation_g_h, cond.evaporation_note = evaporation_before_after(
                        evap, evap_note, after, after_note)
                log.note("evaporation_g_h", repr(cond.evaporation_g_h))
                log.note("evaporation_note", cond.evaporation_note)
        finally:
            bar.finish()
            log.close()
    if not getattr(args, "json", False):
        print("rig during the run: " + events)
    fields = dict(rig=f"virtual rig {hello.rig_id} (mechanism {hello.mechanism})", firmware=firmware,
                  program_file=args.program, rig_events=events,
                  program_lines=program_lines(program),
                  balance="simulated %s" % spec_balance.describe(),
                  noise_model=noise_text, time_scale=args.time_scale,
                  wall_s=time.monotonic() - wall0)
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields,
                              None if sigma is None else float(sigma), cond)


def _alarm_name(code: int) -> str:
    from pumpcore import alarms
    try:
        return str(alarms.alarm_name(code))
    except alarms.AlarmError:
        return "alarm-%d" % code


def rig_balance(rig: Any, args: argparse.Namespace) -> Any:
    """The simulated balance the rig weighs with (pumpctl.accuracy.balances)."""
    from . import balances
    name = sim_balance_name(args)
    if name is None:
        from .. import mechanisms
        return balances.for_mechanism(mechanisms.load(getattr(args, "mechanism", None)))
    return balances.get(name)


def balance_noise_model(spec: Any = None) -> tuple[str, float]:
    """The simulated balance's noise model: the one physical model (pumpsim.model.Params) set
    to `spec` (pumpctl.accuracy.balances; None: the model's defaults)."""
    from pumpsim.model import Params
    p = Params(**(spec.params() if spec is not None else {}))
    text = ("Gaussian-like (Irwin-Hall of 4 uniforms, seeded) sd %g ug, readability %g ug, "
            "new value every %d ms, evaporation %g ug/h (drift %+g ug/h per day), capacity %g g, density %.3f g/mL"
            % (p.balance_noise_ng / 1000, p.balance_readability_ng / 1000, p.balance_update_ms,
               p.evaporation_ng_per_h / 1000, p.evaporation_drift_ng_per_h_per_day / 1000,
               p.balance_capacity_ng / 1e9, p.density_mg_per_ml / 1000))
    return text, p.balance_noise_ng / 1e9


def rig_events(rig: Any, rate_ng_day: int, since: Any, pump: Any = None) -> str:
    """What the rig itself counted and raised during the run (an accuracy figure is only
    meaningful next to it: a reset or an alarm that stopped the motor shows here). `since`: the
    rig's status read just after the commit; the count and the programmed dose are both taken
    over the same stretch of the rig's own clock (from `since` to now), so a host that reads late
    (at `--time-scale max` a poll can lag minutes of rig time) compares like with like. `pump`:
    an open Pump on the rig (None: one is opened)."""
    from pumpcore import alarms
    from ..pump import Pump
    from . import events as run_events
    if pump is None:
        with Pump.open(rig.port) as opened:
            return rig_events(rig, rate_ng_day, since, opened)
    st = pump.status()
    active = [alarms.alarm_name(a.code) for a in pump.alarms()]
    boots = rig.world().get("boots", 0)
    elapsed_ms = (run_events.rig_wall_ms(st.day, st.ms_of_day)
                  - run_events.rig_wall_ms(since.day, since.ms_of_day))
    counted = st.delivered_total_ng - since.delivered_total_ng
    planned = rate_ng_day * elapsed_ms / 86_400_000
    return ("counted %.3f ug of %.3f ug programmed over the same %.3f h of the rig's clock, "
            "%d microsteps missed, %d firmware boot(s), alarms: %s"
            % (counted / 1000, planned / 1000, elapsed_ms / 3.6e6, st.missed_steps, boots,
               ", ".join(active) or "none"))


def recorded_run(rig: Any, duration_s: float, log: SampleLog, time_scale: float,
                 on_progress: Callable[[list[Sample]], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> list[Sample]:
    """Weigh with the simulated balance's own timed output (one reading every 30 s of rig time,
    exactly, like a lab balance streaming with MT-SICS `SIR`), so host scheduling jitter at a
    high time scale cannot move a sample. The readings are tared at the first one."""
    interval_ms = int(SAMPLE_INTERVAL_S * 1000)
    n = int(duration_s // SAMPLE_INTERVAL_S) + 1
    got = rig.balance_log(0, every_ms=interval_ms)
    samples: list[Sample] = []
    t0 = m0 = None
    while True:
        for _, t_ms, grams in got:
            if len(samples) >= n:
                break
            if t0 is None:
                t0, m0 = t_ms, grams
                if on_start:
                    on_start(t_ms)
            s = Sample((t_ms - t0) / 1000.0, grams - m0, True)
            samples.append(s)
            log.append(s)
        if len(samples) >= n:
            return samples
        if on_progress:
            on_progress(samples)
        left_s = (n - len(samples)) * SAMPLE_INTERVAL_S
        time.sleep(min(1.0, max(0.005, left_s / poll_scale(time_scale) / 4)))
        got = rig.balance_log(len(samples))


def run_on_virtual_rig(args: argparse.Namespace, program: Any, rate_ng_day: int,
                       conc_ug_ml: int) -> int:
    """`pumpctl accuracy --balance sim`: start a rig, run, stop it whatever happens. The fluid
    is the model's (density 1.000 g/mL) unless --density says otherwise."""
    rig = start_virtual_rig(args.time_scale, Path(args.out), getattr(args, "mechanism", None),
                            sim_balance_name(args))
    try:
        return run_with_rig(rig, args, program, rate_ng_day, conc_ug_ml)
    finally:
        rig.stop()
