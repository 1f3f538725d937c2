"""Accuracy run on the virtual rig: time-scaled firmware, program uploaded, simulated balance read.

Needs `pumpctl.virtualrig.VirtualRig` (issue 3). What this module uses of a started rig is
small and duck-typed, so it can follow that class as it lands: ``rig.port`` (the pty the
firmware serves the protocol on), ``rig.balance()`` (side channel: rig time and balance
reading, see `balance.SimBalance`), ``rig.stop()``, and optionally ``rig.noise_model()`` /
``rig.time_scale``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..virtualrig import poll_scale
from .balance import SimBalance
from .iec60601 import Sample
from .run import SAMPLE_INTERVAL_S, SampleLog


def start_virtual_rig(time_scale: float, out_dir: Path) -> Any:
    """A fresh virtual rig at `time_scale`, firmware deployed and key provisioned."""
    from ..simsession import start_deployed_rig
    return start_deployed_rig(out_dir / "rig", time_scale, "accuracy", log=lambda line: None)


def run_with_rig(rig: Any, args: argparse.Namespace, program: Any, rate_ng_day: int,
                 conc_ug_ml: int) -> int:
    """Upload and commit the program on a started rig, weigh for args.hours of rig time, report."""
    from ..cmd_accuracy import _program_lines, analyse_and_report
    from ..pump import Pump
    out = Path(args.out)
    balance = SimBalance.from_rig(rig)
    from ..simsession import prepare_for_delivery
    with Pump.open(rig.port) as pump:
        hello = pump.hello()
        prepare_for_delivery(pump, conc_ug_ml, log=lambda line: None)
        balance.tare()
        review = pump.upload_program(bytes(program.encode()), confirm=lambda review: True)
        if not getattr(review, "committed", True):
            raise UsageError(f"virtual rig {hello.rig_id}: program not committed")
    noise_text, sigma = balance_noise_model()
    firmware = f"{hello.firmware_version} build {hello.build_hash}"
    meta = {"rig": hello.rig_id, "firmware": firmware, "balance": balance.identify(),
            "program": args.program, "rate_ng_day": rate_ng_day, "conc_ug_ml": conc_ug_ml,
            "time_scale": args.time_scale, "noise_model": noise_text,
            "balance_sigma_g": "" if sigma is None else sigma}
    log = SampleLog(out / "samples.csv", meta)
    wall0 = time.monotonic()
    try:
        samples = recorded_run(rig, args.hours * 3600.0, log, args.time_scale)
    finally:
        log.close()
    events = rig_events(rig, rate_ng_day, args.hours)
    print("rig during the run: " + events)
    fields = dict(rig=f"virtual rig {hello.rig_id}", firmware=firmware, program_file=args.program,
                  rig_events=events,
                  program_lines=_program_lines(program), balance=balance.identify(),
                  noise_model=noise_text, time_scale=args.time_scale,
                  wall_s=time.monotonic() - wall0)
    return analyse_and_report(samples, rate_ng_day, conc_ug_ml, args, fields,
                              None if sigma is None else float(sigma))


def balance_noise_model() -> tuple[str, float]:
    """The simulated balance's noise model, from the one physical model (pumpsim.model.Params)."""
    from pumpsim.model import Params
    p = Params()
    text = ("Gaussian-like (Irwin-Hall of 4 uniforms, seeded) sd %.0f ug, readability %.0f ug, "
            "new value every %d ms, evaporation %.0f ug/h, density %.3f g/mL"
            % (p.balance_noise_ng / 1000, p.balance_readability_ng / 1000, p.balance_update_ms,
               p.evaporation_ng_per_h / 1000, p.density_mg_per_ml / 1000))
    return text, p.balance_noise_ng / 1e9


def rig_events(rig: Any, rate_ng_day: int, hours: float) -> str:
    """What the rig itself counted and raised during the run (an accuracy figure is only
    meaningful next to it: a reset or an alarm that stopped the motor shows here)."""
    from pumpcore import alarms
    from ..pump import Pump
    with Pump.open(rig.port) as pump:
        st = pump.status()
        active = [alarms.alarm_name(a.code) for a in pump.alarms()]
    boots = rig.world().get("boots", 0)
    planned = rate_ng_day * hours / 24
    return ("counted %.3f ug of %.3f ug programmed, %d microsteps missed, %d firmware boot(s), "
            "alarms: %s" % (st.delivered_total_ng / 1000, planned / 1000, st.missed_steps, boots,
                            ", ".join(active) or "none"))


def recorded_run(rig: Any, duration_s: float, log: SampleLog, time_scale: float) -> list[Sample]:
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
            s = Sample((t_ms - t0) / 1000.0, grams - m0, True)
            samples.append(s)
            log.append(s)
        if len(samples) >= n:
            return samples
        left_s = (n - len(samples)) * SAMPLE_INTERVAL_S
        time.sleep(min(1.0, max(0.005, left_s / poll_scale(time_scale) / 4)))
        got = rig.balance_log(len(samples))


def run_on_virtual_rig(args: argparse.Namespace, program: Any, rate_ng_day: int,
                       conc_ug_ml: int) -> int:
    """`pumpctl accuracy --balance sim`: start a rig, run, stop it whatever happens. The fluid
    is the model's (density 1.000 g/mL) unless --density says otherwise."""
    if getattr(args, "density", None) is None:
        from pumpsim.model import Params
        args.density = Params().density_mg_per_ml / 1000
    rig = start_virtual_rig(args.time_scale, Path(args.out))
    try:
        return run_with_rig(rig, args, program, rate_ng_day, conc_ug_ml)
    finally:
        rig.stop()
