"""A virtual rig is made for one mechanism (issue 14): its physics, its fresh flash and its
world.json say which; asked for another it refuses, a flash holding another is not booted, and
a deploy of another is refused before anything is copied."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pumpctl import deploy, mechanisms
from pumpctl.errors import UsageError
from pumpctl.rigs.virtualrig import VirtualRig

pytestmark = pytest.mark.rig


def test_a_rig_is_made_for_one_mechanism_and_refuses_to_mix(tmp_path: Path) -> None:
    rig_dir = tmp_path / "rig"
    rig = VirtualRig.start(rig_dir, time_scale="max", fresh=True, mechanism="precision")
    try:
        w = rig.wait_firmware(1, timeout_s=30)
        w = rig.world()
        assert w["mechanism"] == "precision" and w["refused"] is None
        assert w["pl_per_step"] == 652                  # the physics are the precision drive's
        assert w["balance_params"]["balance_readability_ng"] == 100     # its XPR2U
        flash_mech = json.loads((rig_dir / "flash" / "mechanism.json").read_text())
        assert flash_mech["name"] == "precision"
        with pytest.raises(UsageError, match=r"made for mechanism 'precision', not '20ml': nothing deployed"):
            deploy.deploy(rig.port, log=lambda m: None)
        # someone copies the other mechanism's file onto the flash by hand: not booted
        shutil.copyfile(mechanisms.path(None), rig_dir / "flash" / "mechanism.json")
        rig.restart()
        w = rig.world()
        assert w["firmware"] == "down"
        assert "flash holds mechanism '20ml', this rig's physics are mechanism 'precision'" in w["refused"]
    finally:
        rig.stop()
    with pytest.raises(UsageError, match=r"made for mechanism 'precision', not '20ml'.*--fresh --mechanism 20ml"):
        VirtualRig.start(rig_dir, time_scale="max", mechanism="20ml")
