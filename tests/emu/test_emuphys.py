"""The emulated rig's physics adapter over pumpsim.model, and the sensor transfer (host only)."""
from __future__ import annotations

import pytest

from pumpctl.rigs.emu.physics import EmuPhysics, pressure_to_adc_counts


def test_sensor_transfer_matches_the_abp_ratiometric_output() -> None:
    assert pressure_to_adc_counts(0) == 410            # 10 % of 4095
    assert pressure_to_adc_counts(1034) == 3685         # 90 % of 4095 at 15 psi (103.42 kPa)
    assert pressure_to_adc_counts(517) == 2047          # 51.7 kPa: just under 50 % of supply
    assert pressure_to_adc_counts(10**6) == 4095 and pressure_to_adc_counts(None) == 0


def test_edges_move_the_shared_model_and_an_occlusion_builds_pressure_until_the_motor_skips() -> None:
    phys = EmuPhysics.create()
    if not phys.has_model:
        pytest.skip("pumpsim.model not importable")
    for i in range(50):
        phys.step(1, i * 1_000_000)
    s = phys.sample(60_000_000)
    assert s["plunger_steps"] == 50 and s["steps_infused"] == 50 and not s["stall"]
    phys.occlude(True)
    t = 60_000_000
    for i in range(5000):
        t += 100_000
        phys.step(1, t)
    s = phys.sample(t)
    # the motor skips against the blocked line; DIAG stays low (the TMC2209 as configured has
    # StallGuard off: pumpsim.model diag()), so only the pressure and the screw encoder see it
    assert s["pressure_kpa_x10"] > 1034 and not s["stall"], s
    assert s["plunger_steps"] < s["steps_infused"], s
    phys.empty(True)
    assert phys.sample(t + 1_000_000)["end_stop"]


def test_clear_empty_leaves_the_volume_asked_for_as_on_the_virtual_rig() -> None:
    """Was: the emulated rig's clear_empty ignored `nl` and always refilled to capacity, so a
    test asking for a nearly empty syringe got a full one there and a nearly empty one on the
    virtual rig."""
    phys = EmuPhysics.create()
    if not phys.has_model:
        pytest.skip("pumpsim.model not importable")
    cap_nl = phys.model.capacity_pl // 1000
    phys.empty(True)
    phys.empty(False, nl=5_000)
    assert phys.model.reservoir_pl == 5_000_000 and not phys.sample(1_000)["end_stop"]
    phys.empty(False)
    assert phys.model.reservoir_pl == cap_nl * 1000
    with pytest.raises(ValueError, match="reservoir_nl"):
        phys.empty(False, nl=cap_nl + 1)


def test_the_emulated_hil_rig_passes_clear_empty_nl_to_the_supervisor() -> None:
    from pumpctl.hil.rigs import EmuHilRig
    sent: list[tuple[str, dict]] = []

    class Emu:
        def request(self, cmd: str, **kw: object) -> dict:
            sent.append((cmd, kw))
            return {}
    rig = EmuHilRig.__new__(EmuHilRig)
    rig.emu = Emu()
    rig.can = lambda fault: ""          # type: ignore[method-assign]
    rig.fault("clear_empty", nl=7_000)
    rig.fault("clear_empty")
    rig.fault("empty_reservoir")
    assert sent == [("empty", {"on": False, "nl": 7_000}), ("empty", {"on": False}), ("empty", {"on": True})]
