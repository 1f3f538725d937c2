"""PIO step program proven on the host: exact pulse counts, period, pulse width, DIR setup, reports.

The program is the firmware's own `pumphw.steppio._step_program`, assembled here by the host
emitter and cross-checked against an independent assembler (adafruit_pioasm) reading the
pioasm text below; the driver is the firmware's own `StepGenerator`, talking to the
rp2040-pio-emulator through an rp2.StateMachine look-alike.
"""
from __future__ import annotations

from collections import deque
from dataclasses import replace

import adafruit_pioasm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumphw import steppio
from tests.hw.pio_host import EmulatedStateMachine, assemble, pulses

STEP, DIR = 2, 3

PIOASM_TEXT = """
.side_set 1
load:
    pull block        side 0
    mov isr, osr      side 0
    out pins, 1       side 0
    out y, 31         side 0
    pull block        side 0
.wrap_target
    jmp y-- high      side 1 [1]
high:
    mov x, osr        side 0
low:
    jmp x-- low       side 0
    jmp !y fin        side 0
.wrap
fin:
    push block        side 0
    jmp load          side 0
"""

PROGRAM = assemble(steppio._step_program)


def test_program_matches_an_independent_assembler():
    ref = adafruit_pioasm.Program(PIOASM_TEXT)
    assert list(ref.assembled) == PROGRAM.opcodes
    assert ref.pio_kwargs["wrap_target"] == PROGRAM.wrap_target
    assert ref.pio_kwargs["wrap"] == PROGRAM.wrap_top
    assert ref.pio_kwargs["sideset_enable"] is False  # mandatory side-set: every instruction drives STEP
    assert len(PROGRAM.opcodes) <= 32


def test_timing_constants_meet_the_tmc2209():
    ns_per_cycle = 10**9 // steppio.SM_FREQ
    assert steppio.HIGH_CYCLES * ns_per_cycle >= 100          # STEP high >= 100 ns
    low = steppio.MIN_PERIOD_US - steppio.HIGH_CYCLES
    assert low * ns_per_cycle >= 100                          # STEP low >= 100 ns
    assert steppio.DIR_SETUP_CYCLES * ns_per_cycle >= 20 * 10  # DIR setup, 10x margin over 20 ns
    assert 125_000_000 % steppio.SM_FREQ == 0                 # integer clock divider at 125 MHz
    _, word_b = steppio.segment_words(1, steppio.MIN_PERIOD_US, 1)
    assert word_b >= 0


def make():
    sm = EmulatedStateMachine(PROGRAM, step_pin=STEP, dir_pin=DIR)
    return sm, steppio.StepGenerator(sm)


def feed(sm, gen, segments):
    """Queue every segment as soon as the driver has room, running the emulator in between."""
    for steps, period, direction in segments:
        while not gen.queue(steps, period, direction):
            assert not sm.idle(), "driver refused a segment while the machine had nothing to do"
            sm.run(10**9, stop_on_pull=True)


def dir_level_at(edges, cycle, initial=0):
    level = initial
    for cyc, pin, lvl in edges:
        if pin == DIR and cyc <= cycle:
            level = lvl
    return level


def check_train(sm, segments, back_to_back=True):
    """Every property of the emitted STEP/DIR waveform against the requested segments."""
    got = pulses(sm.edges, STEP)
    assert len(got) == sum(s[0] for s in segments)
    dir_edges = [(c, lvl) for c, pin, lvl in sm.edges if pin == DIR]
    i = 0
    prev_last_rise = None
    prev_period = None
    for steps, period, direction in segments:
        mine = got[i:i + steps]
        i += steps
        for rise, fall in mine:
            assert fall - rise == steppio.HIGH_CYCLES
            assert dir_level_at(sm.edges, rise) == direction
        for (r0, _), (r1, _) in zip(mine, mine[1:]):
            assert r1 - r0 == period                   # 1 cycle = 1 us at SM_FREQ
        first_rise = mine[0][0]
        # DIR is stable for DIR_SETUP_CYCLES before the first rise and during the segment
        last_dir_change = max([c for c, _ in dir_edges if c <= first_rise], default=None)
        if last_dir_change is not None:
            assert first_rise - last_dir_change >= steppio.DIR_SETUP_CYCLES
        assert not [c for c, _ in dir_edges if first_rise < c <= mine[-1][1]]
        if prev_last_rise is not None:
            gap = first_rise - prev_last_rise
            if back_to_back:
                assert gap == prev_period + steppio.SEGMENT_GAP_CYCLES
            else:
                assert gap >= prev_period + steppio.SEGMENT_GAP_CYCLES
            # DIR held after the previous rising edge for at least a full low time
            changes = [c for c, _ in dir_edges if prev_last_rise < c < first_rise]
            for c in changes:
                assert c - prev_last_rise >= prev_period
        prev_last_rise = mine[-1][0]
        prev_period = period
    # STEP ends low
    assert sm.state.pin_values >> STEP & 1 == 0


segment = st.tuples(st.integers(1, 40), st.integers(steppio.MIN_PERIOD_US, 2000), st.integers(0, 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=6))
def test_n_steps_give_exactly_n_pulses_at_the_period(segments):
    sm, gen = make()
    feed(sm, gen, segments)
    sm.run_until_idle()
    check_train(sm, segments)
    assert gen.steps_done() == len(pulses(sm.edges, STEP))   # reported == emitted
    assert gen.pending() == 0 and not gen.busy() and gen.report_errors == 0


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(100_000, steppio.MAX_PERIOD_US), st.integers(0, 1))
def test_long_periods_are_exact(steps, period, direction):
    sm, gen = make()
    feed(sm, gen, [(steps, period, direction)])
    sm.run_until_idle()
    check_train(sm, [(steps, period, direction)])
    assert gen.steps_done() == steps


def test_rate_and_direction_change_mid_run():
    segments = [(40, 100, 1), (25, 37, 1), (10, 250, 0), (3, 1000, 1), (1, 20, 1)]
    sm, gen = make()
    feed(sm, gen, segments)
    sm.run_until_idle()
    check_train(sm, segments)
    assert gen.steps_done() == 79


def test_segments_after_idle_start_with_dir_setup():
    sm, gen = make()
    feed(sm, gen, [(2, 50, 1)])
    sm.run_until_idle()
    sm.run(5000)
    feed(sm, gen, [(3, 60, 0)])
    sm.run_until_idle()
    check_train(sm, [(2, 50, 1), (3, 60, 0)], back_to_back=False)
    assert gen.steps_done() == 5


def test_queue_refuses_when_full_and_never_blocks():
    sm, gen = make()
    accepted = 0
    while gen.queue(5, 100, 1):
        accepted += 1
    # the machine pulled the first segment at once, so three fit: one loaded, two in the FIFO
    assert accepted <= steppio.MAX_IN_FLIGHT
    assert gen.pending() == 5 * accepted and gen.busy()
    sm.run_until_idle()
    assert gen.steps_done() == 5 * accepted and not gen.busy()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=4), st.integers(0, 60_000), st.data())
def test_abort_counts_exactly_what_was_made(segments, run_for, data):
    sm, gen = make()
    total = sum(s[0] for s in segments)
    feed(sm, gen, segments)
    sm.run(run_for)
    dropped = gen.abort()
    made = len(pulses(sm.edges, STEP))                # also checks STEP ended low
    assert sm.state.pin_values >> STEP & 1 == 0
    assert gen.steps_done() == made
    assert dropped == total - made
    assert gen.pending() == 0 and not gen.busy() and gen.report_errors == 0
    assert sm.tx_fifo() == 0 and sm.rx_fifo() == 0
    # the machine is ready again: a new segment is made exactly
    more = data.draw(segment)
    feed(sm, gen, [more])
    sm.run_until_idle()
    assert len(pulses(sm.edges, STEP)) == made + more[0]
    assert gen.steps_done() == made + more[0]
    assert gen.report_errors == 0


def test_abort_when_idle_drops_nothing():
    sm, gen = make()
    assert gen.abort() == 0
    assert gen.steps_done() == 0


@pytest.mark.parametrize("args, field", [
    ((-1, 100, 1), "steps"),
    ((steppio.MAX_SEGMENT_STEPS + 1, 100, 1), "steps"),
    ((1.5, 100, 1), "steps"),
    ((1, steppio.MIN_PERIOD_US - 1, 1), "period_us"),
    ((1, steppio.MAX_PERIOD_US + 1, 1), "period_us"),
    ((1, 100.0, 1), "period_us"),
    ((1, 100, 2), "direction"),
])
def test_bad_segments_name_field_value_and_limit(args, field):
    sm, gen = make()
    with pytest.raises(ValueError) as err:
        gen.queue(*args)
    text = str(err.value)
    assert text.startswith(field + " = ")
    assert repr(args[("steps", "period_us", "direction").index(field)]) in text
    assert gen.pending() == 0 and sm.tx_fifo() == 0


def test_zero_steps_is_a_no_op():
    sm, gen = make()
    assert gen.queue(0, 100, 1) is True
    assert sm.tx_fifo() == 0 and not gen.busy()


def test_wrong_report_is_counted_not_hidden():
    sm, gen = make()
    gen.queue(3, 100, 1)
    sm.run_until_idle()
    # a report nobody asked for (e.g. FIFO corruption) must show up, not vanish
    sm.state = replace(sm.state, receive_fifo=deque([(7 << 1) | 1]))
    gen.steps_done()
    assert gen.report_errors == 1
