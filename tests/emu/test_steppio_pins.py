"""pumphw.steppio on the official RP2040 image: requested microsteps vs STEP edges at the pin.

The PIO program and its driver run on the emulated chip exactly as on a Pico; the rig counts
every STEP rising edge with the DIR level and emulated time. No application is involved.
"""
from __future__ import annotations

import importlib.util

import pytest

from pumpctl.rigs.emu.rig import EmuRig
from pumpctl.rigs.emu.rigdir import load_pinmap

from .conftest import copy_to_chip, FIRMWARE, mpremote

pytestmark = pytest.mark.emu
PINS = load_pinmap()
_spec = importlib.util.spec_from_file_location("steppio_host", FIRMWARE / "pumphw" / "steppio.py")
steppio = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(steppio)
SEGMENT_GAP_CYCLES = steppio.SEGMENT_GAP_CYCLES  # 1 cycle = 1 us at SM_FREQ
# Edge times are sampled per emulated CPU step (an exception entry is 16 cycles, 128 ns; under
# load a burst of them was seen to shift one edge by 288 ns). Half a state-machine cycle still
# tells any real one-cycle (1000 ns) error apart; the exact timing proof is tests/hw's PIO test.
TOL_NS = 500

SETUP = f"""
import time
from machine import Pin
import steppio
if 'gen' not in globals():  # PIO instruction memory holds one copy; a second load is ENOMEM
    en = Pin({PINS['en_n']}, Pin.OUT, value=1)
    gen = steppio.make_step_generator(0, {PINS['step']}, {PINS['dir']})
    en.value(0)
def run(segments, settle_ms=2):
    start = gen.steps_done()
    i = 0
    while i < len(segments):
        if gen.queue(*segments[i]):
            i += 1
        else:
            time.sleep_ms(1)
    while gen.busy():
        time.sleep_ms(1)
    time.sleep_ms(settle_ms)
    print(gen.steps_done() - start, gen.report_errors)
"""


@pytest.fixture(scope="module")
def chip(emu: EmuRig) -> EmuRig:
    copy_to_chip(emu.port, {"pumpcore/__init__.py": FIRMWARE / "pumpcore" / "__init__.py",
                            "pumpcore/fixed.py": FIRMWARE / "pumpcore" / "fixed.py",
                            "steppio.py": FIRMWARE / "pumphw" / "steppio.py"})
    return emu


def _run(chip: EmuRig, segments: list[tuple[int, int, int]]) -> tuple[list[int], list[int], int, int]:
    since = chip.request("edges", since=0)["count"]
    out = mpremote(chip.port, "exec", SETUP + f"run({segments!r})")
    done, errors = map(int, out.split()[-2:])
    edges = chip.request("edges", since=since)
    assert all(edges["en"]), "a STEP edge came while EN held the driver disabled"
    return edges["t_ns"], edges["dir"], done, errors


@pytest.mark.parametrize("segments", [
    [(1, 20, 1)],
    [(100, 50, 1)],
    [(37, 1000, 0)],
    [(60, 250, 1), (40, 20, 1), (25, 333, 0), (80, 20, 1)],  # rate and direction changes mid-run
])
def test_n_requested_steps_give_n_edges_with_dir_and_period(chip: EmuRig, segments: list[tuple[int, int, int]]) -> None:
    t, d, done, errors = _run(chip, segments)
    total = sum(s[0] for s in segments)
    assert len(t) == total and done == total and errors == 0
    k = 0
    prev_period_us = 0
    for n, period_us, direction in segments:
        assert d[k:k + n] == [direction] * n
        for j in range(k + 1, k + n):
            assert abs((t[j] - t[j - 1]) - period_us * 1000) <= TOL_NS, (k, j, t[j] - t[j - 1])
        if k:  # boundary: the previous segment's last low time, then the gap (report + load)
            gap = t[k] - t[k - 1] - prev_period_us * 1000
            assert abs(gap - SEGMENT_GAP_CYCLES * 1000) <= TOL_NS, (k, gap)
        k += n
        prev_period_us = period_us


def test_abort_counts_exactly_the_pulses_made(chip: EmuRig) -> None:
    since = chip.request("edges", since=0)["count"]
    out = mpremote(chip.port, "exec", SETUP + (
        "start = gen.steps_done()\n"
        "gen.queue(500, 100, 1)\n"
        "gen.queue(500, 100, 1)\n"
        "time.sleep_ms(23)\n"
        "dropped = gen.abort()\n"
        "time.sleep_ms(2)\n"
        "print(gen.steps_done() - start, dropped, gen.pending(), gen.report_errors)\n"))
    made, dropped, pending, errors = map(int, out.split()[-4:])
    edges = chip.request("edges", since=since)["count"] - since
    assert edges == made, f"abort reported {made} pulses made, the pin saw {edges}"
    assert made + dropped == 1000 and pending == 0 and errors == 0
    assert 150 <= made <= 300
