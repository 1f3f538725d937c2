"""pumpsim.model: physics checks on CPython and bit-identical results in the micropython binary."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pumpsim import model
from tests.support.mpy import run_micropython

REPO = Path(__file__).resolve().parents[2]


def mech() -> model.Mechanism:
    return model.Mechanism.load(str(REPO / "hw" / "mechanism.json"))


def test_pl_per_step_from_mechanism_json():
    m = mech()
    exact = 800 / (200 * 64) * math.pi * (19130 / 2) ** 2 / 1000
    assert abs(m.pl_per_step - exact) <= 0.5
    assert m.pl_per_step == 17964


def test_same_as_pumpcore_calibration_if_present():
    cal = pytest.importorskip("pumpcore.calibration")
    d = json.loads((REPO / "hw" / "mechanism.json").read_text())
    assert cal.pl_per_step_from_mechanism(d) == mech().pl_per_step


def test_mechanism_errors_name_field_value_and_limit():
    with pytest.raises(ValueError, match=r"mechanism.microsteps = 0: must be an integer in 1..256"):
        model.Mechanism(800, 200, 0, 19130, 20000000)
    with pytest.raises(ValueError, match="mechanism.lead_um missing"):
        model.Mechanism.from_dict({})
    with pytest.raises(ValueError, match=r"params.tau_ms = -1"):
        model.Params(tau_ms=-1)
    with pytest.raises(ValueError, match="params.bogus: unknown"):
        model.Params(bogus=1)


def test_decay_matches_exp_within_fixed_point():
    d = model._Decay(30000)
    for dt in (1, 7, 1000, 30000, 123457):
        got = d.apply(10 ** 9, dt)
        want = 10 ** 9 * math.exp(-dt / 30000)
        assert abs(got - want) <= want * 1e-8 + 2, dt


def test_volume_is_conserved_and_flows_out():
    w = model.World(mech())
    w.enable(True)
    assert w.queue_segment(500, 2000, model.DIR_INFUSE)
    w.advance_to(10 ** 6)
    assert w.pulses == 500 and w.plunger_steps == 500
    moved = 500 * w.pl_per_step
    assert w.capacity_pl - w.reservoir_pl == moved
    assert w.line_pl + w.out_pl == moved
    w.advance_to(30 * 60 * 10 ** 6)        # 60 tau later the line has drained
    assert w.line_pl == 0 and w.out_pl == moved


def test_occlusion_builds_pressure_step_by_step_then_stalls():
    w = model.World(mech())
    w.enable(True)
    w.set_occluded(True)
    w.queue_segment(10, 1000, model.DIR_INFUSE)
    w.advance_to(10 ** 6)
    per_step_pa = w.pl_per_step * 1000 // w.params.compliance_pl_per_kpa
    assert abs(w.pressure_pa() - 10 * per_step_pa) <= 10
    assert w.out_pl == 0
    w.queue_segment(10 ** 6, 1000, model.DIR_INFUSE)
    w.advance_to(10 ** 9)
    # stall force 250 N on the 287.4 mm^2 bore: ~870 kPa; the rotor skips and, with StallGuard
    # off as rp2hw configures the TMC2209 (SGTHRS = TCOOLTHRS = 0), DIAG says nothing
    assert not w.diag() and w.stall_line_pl <= w.line_pl < w.stall_line_pl + w.pl_per_step
    assert 860000 < w.pressure_pa() < 880000
    moved = w.plunger_steps
    skipped = w.skipped
    w.advance_to(2 * 10 ** 9)
    assert w.plunger_steps == moved and w.skipped > skipped      # pulses emitted, screw still
    assert w.pulses == w.plunger_steps + w.skipped
    w.set_occluded(False)
    w.queue_segment(10, 1000, model.DIR_INFUSE)
    w.advance_to(2 * 10 ** 9 + 10 ** 6)
    assert w.plunger_steps > moved                       # pressure fell below stall: moving again
    w.abort()
    w.advance_to(3 * 10 ** 9)
    assert not w.diag() and w.pressure_pa() < 1000


def test_end_stop_stalls_and_reservoir_empties():
    w = model.World(mech(), reservoir_pl=5 * 17964 + 100)
    w.enable(True)
    w.queue_segment(8, 1000, model.DIR_INFUSE)
    w.advance_to(10 ** 6)
    # the generator emits all 8; the plunger makes 5 and skips 3 at the end stop, DIAG silent
    assert w.pulses == 8 and w.plunger_steps == 5 and w.skipped == 3 and w.end_stop()
    assert not w.diag() and w.pending() == 0


def test_forced_stall_and_disabled_driver():
    w = model.World(mech())
    w.set_forced_stall(True)
    w.enable(True)
    w.queue_segment(5, 1000, model.DIR_INFUSE)
    w.advance_to(10 ** 6)
    # driver error: the PIO still emits, the outputs are off, DIAG high while enabled
    assert w.pulses == 5 and w.plunger_steps == 0 and w.diag()
    w.enable(False)
    assert not w.diag()
    w.set_forced_stall(False)
    w.queue_segment(5, 1000, model.DIR_INFUSE)
    w.enable(False)
    w.advance_to(2 * 10 ** 6)
    assert w.pulses == 10 and w.plunger_steps == 0       # pulses made, motor not energised


def test_queue_depth_and_bad_segments():
    w = model.World(mech())
    for _ in range(1 + model.World.QUEUE_DEPTH):
        assert w.queue_segment(10, 1000, 1)
    assert not w.queue_segment(10, 1000, 1)
    with pytest.raises(ValueError, match=r"queue period_us = 0: must be in 1..2\*\*30-1"):
        w.queue_segment(1, 0, 1)
    with pytest.raises(ValueError, match="queue direction = 7"):
        w.queue_segment(1, 10, 7)


def test_balance_noise_quantisation_and_evaporation():
    p = model.Params(seed=42)
    w = model.World(mech(), p)
    readings = []
    for i in range(2000):
        w.advance_to(i * 100000 + 50000)
        r = w.balance_reading_ng()
        assert r % p.balance_readability_ng == 0
        assert r == w.balance_reading_ng()                 # same slot, same reading
        readings.append(r - w.balance_true_ng())
    mean = sum(readings) / len(readings)
    sd = (sum((x - mean) ** 2 for x in readings) / len(readings)) ** 0.5
    assert abs(mean) < 2000 and 15000 < sd < 26000
    w.advance_to(3600 * 10 ** 6)
    assert w.balance_true_ng() == -p.evaporation_ng_per_h


def test_button_bounce_debounced_to_one_press_each():
    w = model.World(mech())
    prng = model.Prng(3)
    t = 0
    for _ in range(5):
        t = w.press_button(prng, at_us=t) + 500000
    edges = w.button_edges(t)
    assert len(edges) >= 5 * 4                             # bounce is there
    d = model.Debouncer(20)
    d.feed(edges, t)
    assert d.take() == 5 and d.take() == 0


def test_state_round_trip():
    w = model.World(mech())
    w.enable(True)
    w.set_occluded(True)
    w.queue_segment(100, 500, 1)
    w.advance_to(20000)
    w2 = model.World(mech())
    w2.restore(json.loads(json.dumps(w.state())))
    w.advance_to(10 ** 6)
    w2.advance_to(10 ** 6)
    assert w.summary() == w2.summary()


SCENARIO = """
from pumpsim.model import Mechanism, World, Params, Prng, Debouncer
w = World(Mechanism(800, 200, 64, 19130, 20000000), Params(seed=9, tau_ms=7000))
p = Prng(11)
out = []
w.enable(True)
t = 0
for i in range(60):
    t += 50000 + p.below(400000)
    w.advance_to(t)
    k = p.below(6)
    if k == 0:
        w.queue_segment(1 + p.below(300), 100 + p.below(5000), 1)
    elif k == 1:
        w.set_occluded(not w.occluded)
    elif k == 2:
        w.press_button(p)
    elif k == 3:
        w.queue_segment(1 + p.below(20), 1000, 0)
    s = w.summary()
    out.append("%d %d %d %d %d %d %d %d %d" % (s["t_us"], s["pulses"], s["line_pl"], s["out_pl"],
               s["pressure_pa"], w.pressure_adc_kpa_x10(), w.balance_reading_ng(), len(w.button),
               1 if w.diag() else 0))
print("\\n".join(out))
"""


@pytest.mark.micropython
def test_identical_on_both_interpreters():
    ns: dict = {}
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(SCENARIO, "scenario", "exec"), ns)
    host = buf.getvalue().strip()
    mpy = run_micropython(SCENARIO).strip()
    assert host.count("\n") == 59
    assert mpy == host


def test_jam_and_slip_are_invisible_to_diag_and_seen_by_the_screw():
    for fault in ("jam", "slip"):
        w = model.World(mech())
        w.enable(True)
        w.queue_segment(3, 1000, model.DIR_INFUSE)
        w.advance_to(10 ** 5)
        if fault == "jam":
            w.set_jammed(True)
        else:
            w.set_slipping(True)
        w.queue_segment(7, 16_700_000, model.DIR_INFUSE)    # 186 ug/day: one step every 16.7 s
        w.advance_to(200 * 10 ** 6)
        assert w.pulses == 10 and not w.diag()
        assert w.screw_steps() == 3 and w.skipped == 7
        # the rotor: a jam holds it, a slipping coupling lets it turn
        assert w.motor_steps == (3 if fault == "jam" else 10)
        st = w.state()
        w2 = model.World(mech())
        w2.restore(st)
        assert w2.jammed == w.jammed and w2.slipping == w.slipping and w2.skipped == 7


def test_world_saved_before_the_encoder_loads():
    w = model.World(mech())
    st = w.state()
    for name in ("jammed", "slipping", "skipped", "motor_steps"):
        del st[name]
    w2 = model.World(mech())
    w2.restore(st)
    assert not w2.jammed and w2.skipped == 0


def _snap(p) -> tuple[int, ...]:
    return (p.s_steps, p.s_pending, p.s_stall, p.s_press, p.s_end, p.s_screw, p.s_btn, p.s_enabled)


def test_twin_horizon_promises_only_what_holds():
    """TwinPort.horizon (the input cache's promise): at every instant before it a fresh read
    of every input gives the snapshot's values (the button's presses were taken by the
    snapshot: 0 after it), through pulses, decays, occlusions and button bounce; and it is not
    trivially short (the cache is worth having). Checked against an independent copy of the
    world read at 1 ms steps and at random instants up to the promise."""
    import copy
    import random
    from pumpsim import twinport
    rnd = random.Random(7)
    w = model.World(mech())
    p = twinport.TwinPort(w, 0)
    prng = model.Prng(3)
    p.call(twinport.OP_ENABLE, 0, 1, 0, 0)
    t = 1000
    bound = 10_000_000
    spans = []
    for k in range(120):
        r = rnd.random()
        if r < 0.25:
            p.call(twinport.OP_QUEUE, t, rnd.choice([1, 1, 3, 40]), rnd.choice([500, 5000, 250_000]), 1)
        elif r < 0.30:
            w.set_occluded(not w.occluded)
        elif r < 0.36:
            w.press_button(prng, at_us=t + rnd.randrange(0, 50_000))
        p.call(twinport.OP_SENSE, t, 0, 0, 0)
        snap = _snap(p)
        h = p.horizon(t + bound)
        assert h > t or h == t + bound
        spans.append(h - t)
        ref = copy.deepcopy(p)
        probes = sorted({t + 1 + i * 1000 for i in range(min(400, (h - t) // 1000))}
                        | {rnd.randrange(t + 1, h) for _ in range(100)} | {h - 1})
        for u in probes:
            ref.call(twinport.OP_SENSE, u, 0, 0, 0)
            assert _snap(ref)[:6] + _snap(ref)[7:] == snap[:6] + snap[7:], (k, t, u, h)
            assert ref.s_btn == 0, (k, t, u, h)
        t = h + rnd.choice([0, 3, 17, 4017, 1_004_017]) if h < t + bound else t + rnd.randrange(1, bound)
    long = sum(1 for s in spans if s >= 100_000)
    assert long >= len(spans) // 4, "only %d of %d promises reach 100 ms: the cache would save little" % (long, len(spans))
    assert spans.count(bound) >= 5        # with nothing moving, the whole bound


@pytest.mark.parametrize("name, pl, capacity_nl", [("precision", 652, 1_000_000), ("20ml", 17964, 20_000_000)])
def test_the_in_process_twin_builds_the_mechanism_its_flash_holds(tmp_path, monkeypatch, name, pl, capacity_nl):
    """pumphw.simhw's in-process twin (no virtual rig around it) takes its physics from the
    mechanism.json the firmware on that flash reads: before, it was always the 20 mL rig's, so a
    precision firmware ran against 18 nL steps and a 20 mL syringe."""
    import shutil
    from pumpctl import mechanisms
    monkeypatch.syspath_prepend(str(REPO / "firmware"))    # pumphw is firmware, not installed
    from pumphw.simhw import make_sim_hardware
    monkeypatch.delenv("PUMPSIM_SOCK", raising=False)
    shutil.copy(mechanisms.path(name), tmp_path / "mechanism.json")
    hw = make_sim_hardware(flash_root=str(tmp_path))
    w = hw._port.world
    assert (w.pl_per_step, w.capacity_pl // 1000) == (pl, capacity_nl)
