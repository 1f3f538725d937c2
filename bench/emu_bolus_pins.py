"""A short clinician bolus on the emulated Pico: when its steps are counted, when they reach the pin.

Boots this firmware tree on an emulated Pico (the flash image tests/emu caches for the tree, else
a deploy as `pumpctl deploy` does), readies it as the application tier does (clock, reservoir,
the 186 ug/day program), sends a clinician bolus (default 200 ng over 1 s) and then, every
100 ms of emulated time, prints the rig's own count (status: delivered_total_ng in microsteps,
bolus_active), the STEP edges at the pin and the step state machine (TX words, Y), until the
generator has been idle for 2 s; then the edge times, EV_BOLUS_END's queued_steps and the
figures. Times are emulated seconds from the moment the command was sent.

    PUMPCTL_EMU_UF2_UNOFFICIAL=~/.cache/rp2040py/local/RPI_PICO-v1.22.2-local.uf2 \\
        python bench/emu_bolus_pins.py [--dose-ng 200] [--over-ms 1000]

8 min 20 s wall here (2026-12-02, 2 cores shared, cached image: app answering after 123 s, the
readying saves ~4 min, the bolus and 2 s of idle ~3 min); it printed edges at 0.923, 1.105, 1.287,
1.469 and 1.651 s, the bolus over (counted 5) at 1.431 s with 3 edges out, queued_steps 5.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "host_tools"))
sys.path.insert(0, str(REPO / "firmware"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dose-ng", type=int, default=200)
    ap.add_argument("--over-ms", type=int, default=1000)
    args = ap.parse_args(argv)

    from pumpcore import logrec
    from pumpctl.deploy import Mpremote, deploy, pumpctl_home, reset_without_follow
    from pumpctl.rigs.emu.rig import EmuRig
    from pumpctl.rigs.emu.rigdir import FLASH_FILE, write_emu_hw_dir
    from tests.emu.appchip import CONC_UG_ML, open_pump, ready, tree_hash

    rig_dir = Path(tempfile.mkdtemp(prefix="emu-bolus-")) / "rig"
    rig_dir.mkdir(parents=True)
    hw_dir = write_emu_hw_dir(rig_dir)
    cached = pumpctl_home() / "emu-flash" / (tree_hash(hw_dir) + ".img")
    t0 = time.monotonic()
    if cached.exists():
        shutil.copyfile(cached, rig_dir / FLASH_FILE)
        rig = EmuRig.start(rig_dir)
        print("booting the cached flash image %s" % cached.name, flush=True)
    else:
        rig = EmuRig.start(rig_dir, fresh=True)
        deploy(rig.port, hw_dir=hw_dir, timeout_s=900, log=lambda s: None, do_restart=False)
        print("deployed in %.0f s wall" % (time.monotonic() - t0), flush=True)
        reset_without_follow(Mpremote(rig.port))
    try:
        with open_pump(rig) as pump:
            print("app answering after %.0f s wall" % (time.monotonic() - t0), flush=True)
            ready(pump)
            pl = pump.calibration().pl_per_step
            ng_per_step = pl * CONC_UG_ML / 1_000_000
            first = pump.read_log(0, 1).next_seq
            before = pump.status().delivered_total_ng
            since = rig.request("edges", since=0)["count"]
            t_sent = rig.request("status")["t_ns"]
            pump.bolus(args.dose_ng, args.over_ms)
            t_answer = rig.request("status")["t_ns"]
            due = args.dose_ng * 1_000_000 / CONC_UG_ML / pl
            print("bolus %d ng over %d ms = %.2f microsteps of %d pL; answered after %.3f s" % (
                args.dose_ng, args.over_ms, due, pl, (t_answer - t_sent) / 1e9), flush=True)
            print("    t_s  bolus  counted  edges  sm_tx  sm_y  idle", flush=True)
            idle_since = None
            while True:
                st = pump.status()
                chip = rig.request("status")
                t = chip["t_ns"]
                sm = chip["step_sm"]
                edges = rig.request("edges", since=since)["count"] - since
                counted = round((st.delivered_total_ng - before) / ng_per_step)
                print("%7.3f  %5s  %7d  %5d  %5d  %4d  %s" % ((t - t_sent) / 1e9, st.bolus_active, counted,
                                                            edges, sm["tx"], sm["y"], sm["idle"]), flush=True)
                if not st.bolus_active and sm["idle"]:
                    idle_since = idle_since or t
                    if t - idle_since >= 2e9:
                        break
                else:
                    idle_since = None
                rig.request("wait", ms=100)
            ends = [logrec.decode(r) for _s, r in pump.iter_log(first)]
            ends = [e for e in ends if e[3] == logrec.EV_BOLUS_END]
        times = [round((x - t_sent) / 1e9, 3) for x in rig.request("edges", since=since)["t_ns"]]
        print("edges at (s):", times)
        print("EV_BOLUS_END:", ends[-1][4:8] if ends else None, "(kind, delivered_ng, serial, queued_steps)")
        print("counted %d microsteps, %d at the pin; last edge %.3f s after sending" % (
            counted, len(times), times[-1] if times else float("nan")))
        print("pio_backlog_drops", rig.request("status")["pio_backlog_drops"])
    finally:
        rig.stop()
        shutil.rmtree(rig_dir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.nice(5)
    sys.exit(main())
