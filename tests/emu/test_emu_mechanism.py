"""The emulated Pico's mechanism (issue 14): the pins drive the physics of the mechanism file its
hw/ holds, the one its flash was deployed with; a kept flash keeps it, another one needs a fresh
chip; a deploy of another mechanism onto it is refused. Host only: no image, no emulator."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl import deploy, mechanisms
from pumpctl.errors import UsageError
from pumpctl.rigs.emu import rigdir
from pumpctl.rigs.emu.physics import EmuPhysics, pressure_to_adc_counts


def test_the_physics_are_made_from_the_chips_mechanism_file(tmp_path: Path) -> None:
    hw = rigdir.write_emu_hw_dir(tmp_path, mechanism="precision")
    assert sorted(p.name for p in hw.glob("mechanism*.json")) == ["mechanism-precision.json"]
    phys = EmuPhysics.create(rigdir.emu_mechanism_path(tmp_path))
    assert phys.mechanism == "precision" and rigdir.emu_mechanism_name(tmp_path) == "precision"
    if not phys.has_model:
        pytest.skip("pumpsim.model not importable")
    # the precision drive's 1 mL syringe, not the 20 mL rig's
    assert phys.model.capacity_pl == mechanisms.load("precision")["syringe_capacity_nl"] * 1000
    assert phys.adc_counts(517) == pressure_to_adc_counts(517, rigdir.emu_mechanism_path(tmp_path))
    default = EmuPhysics.create()
    assert default.mechanism == mechanisms.DEFAULT
    assert default.model.capacity_pl != phys.model.capacity_pl


def test_a_start_keeps_the_mechanism_a_kept_flash_was_started_with(tmp_path: Path) -> None:
    rigdir.write_emu_hw_dir(tmp_path, mechanism="precision")
    assert rigdir.start_mechanism(tmp_path, None, fresh=False) is None      # no flash yet: the default
    (tmp_path / rigdir.FLASH_FILE).write_bytes(b"\xff" * 16)
    assert rigdir.start_mechanism(tmp_path, None, fresh=False) == "precision"
    assert rigdir.start_mechanism(tmp_path, "precision", fresh=False) == "precision"
    with pytest.raises(UsageError, match=r"started with mechanism 'precision', not '20ml': start it with --fresh"):
        rigdir.start_mechanism(tmp_path, "20ml", fresh=False)
    assert rigdir.start_mechanism(tmp_path, "20ml", fresh=True) == "20ml"      # a new, empty Pico
    assert rigdir.start_mechanism(tmp_path, None, fresh=True) is None


class _FakeEmu:
    def __init__(self, port: str, mechanism: str) -> None:
        self.port, self._mech = port, mechanism

    def request(self, cmd: str, timeout: float = 0.0) -> dict:
        assert cmd == "status"
        return {"mechanism": self._mech}

    def close(self) -> None:
        pass


def test_deploy_refuses_another_mechanism_onto_the_emulated_pico(monkeypatch: pytest.MonkeyPatch) -> None:
    from pumpctl.rigs.emu.rig import EmuRig
    monkeypatch.setattr(EmuRig, "attach", classmethod(lambda cls, rig_dir=None: _FakeEmu("/dev/pts/77", "20ml")))
    with pytest.raises(UsageError, match=r"emulated Pico on /dev/pts/77 is wired to mechanism '20ml', not 'precision'"):
        deploy.check_rig_mechanism("/dev/pts/77", "precision")
    deploy.check_rig_mechanism("/dev/pts/77", "20ml")          # the same: nothing to refuse
    deploy.check_rig_mechanism("/dev/pts/78", "precision")     # another port: not that chip
