"""The emulated Pico's cache of deployed flash images (pumpctl.rigs.emu.flashcache), without a
firmware image: a cached flash is found only for the very build `pumpctl deploy` would record
now (a changed firmware file, pin map or image is deployed again), only while this host holds
the rig's key, and a chip that boots another build evicts the entry."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pumpctl import deploy as deploymod
from pumpctl import keys
from pumpctl.deploy import TargetInfo
from pumpctl.errors import PumpError
from pumpctl.rigs.emu import flashcache

REPO = Path(__file__).resolve().parents[2]
IMAGE_SHA = "c448dd6798e284e3f697f0dd9262ead423465c74fea6fb62d91624768a954814"


@dataclass
class FakeReport:
    """The fields of pumpctl.deploy.DeployReport that flashcache.store reads."""
    target: TargetInfo
    build: dict[str, Any]
    files: list[Any] = field(default_factory=list)
    verified: int = 0
    rig_id: str = "e66038b7134c5a2f"
    reason: str = ".mpy 6.3 compiled with mpy-cross"
    compiled: bool = True


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A two-module firmware tree, the repo's hw files, a target whose .mpy the installed
    mpy-cross emits, a home with the rig's key."""
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "home"))
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "main.py").write_text("import app\napp.run()\n")
    (fw / "app.py").write_text("def run():\n    return 186\n")
    hw = tmp_path / "hw"
    hw.mkdir()
    for name in deploymod.HW_FILES:
        shutil.copyfile(REPO / "hw" / name, hw / name)
    compiler = deploymod._candidate_compilers((6, 3))
    found = [c for c in compiler if (deploymod.compiler_format(c) or ((0, 0), ""))[0][0] == 6]
    if not found:
        pytest.skip("no mpy-cross installed to plan a deploy with")
    fmt = deploymod.compiler_format(found[0])[0]
    target = TargetInfo(fmt[0], fmt[1], "armv6m", "rp2", "1.22.2")
    keys.save_key("e66038b7134c5a2f", bytes(range(32)))
    return {"fw": fw, "hw": hw, "target": target, "base": tmp_path / "home" / "emu-flash"}


def _store(t: dict[str, Any], tmp_path: Path) -> flashcache.CachedFlash:
    digest = flashcache.planned_digest(t["target"], t["hw"], firmware_dir=t["fw"])
    assert digest is not None and len(digest) == 64
    flash = tmp_path / "flash.img"
    flash.write_bytes(b"littlefs" * 512)
    rep = FakeReport(t["target"], {"digest": digest, "build": digest[:16]}, files=[1, 2, 3, 4], verified=4)
    return flashcache.store(flash, IMAGE_SHA, rep, 88.0, base=t["base"])


def test_a_stored_image_is_found_for_the_same_build_only(tree: dict[str, Any], tmp_path: Path) -> None:
    assert flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"]) is None
    entry = _store(tree, tmp_path)
    got = flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"])
    assert got is not None and got.path == entry.path and got.path.read_bytes() == b"littlefs" * 512
    assert got.meta["files"] == 4 and got.meta["rig_id"] == "e66038b7134c5a2f"
    assert got.build == got.meta["digest"][:16] and got.build in got.describe()
    # another image: not this entry
    assert flashcache.lookup("0" * 64, tree["hw"], base=tree["base"], firmware_dir=tree["fw"]) is None


@pytest.mark.parametrize("change", ["firmware", "pinmap", "new module"])
def test_a_changed_tree_is_not_served_from_the_cache(tree: dict[str, Any], tmp_path: Path, change: str) -> None:
    _store(tree, tmp_path)
    if change == "firmware":
        (tree["fw"] / "app.py").write_text("def run():\n    return 187\n")
    elif change == "pinmap":
        pins = json.loads((tree["hw"] / "pinmap.json").read_text())
        pins["_note"] = "edited"
        (tree["hw"] / "pinmap.json").write_text(json.dumps(pins))
    else:
        (tree["fw"] / "app.py").write_text("import extra\ndef run():\n    return extra.X\n")
        (tree["fw"] / "extra.py").write_text("X = 186\n")
    assert flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"]) is None


def test_the_rig_key_travels_with_the_image(tree: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A HIL session runs in a scratch PUMPCTL_HOME: the cached flash's key (it is inside the
    image too) is kept private beside it and given to that home when the copy boots."""
    entry = _store(tree, tmp_path)
    key_file = entry.path.with_suffix(".key")
    assert key_file.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "scratch-home"))
    assert keys.load_key("e66038b7134c5a2f") is None
    got = flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"])
    assert got is not None
    got.provision_key()
    assert keys.load_key("e66038b7134c5a2f") == bytes(range(32))
    key_file.write_text("not hex\n")          # a damaged key file: deploy again, never a guess
    assert flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"]) is None


def test_storing_needs_the_key_the_deploy_provisioned(tree: dict[str, Any], tmp_path: Path) -> None:
    keys.key_path("e66038b7134c5a2f").unlink()
    with pytest.raises(PumpError, match="no key for rig e66038b7134c5a2f"):
        _store(tree, tmp_path)


def test_the_cache_dir_can_be_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUMPCTL_HOME", str(tmp_path / "h"))
    monkeypatch.delenv(flashcache.CACHE_DIR_ENV, raising=False)
    assert flashcache.cache_dir() == tmp_path / "h" / "emu-flash"
    monkeypatch.setenv(flashcache.CACHE_DIR_ENV, str(tmp_path / "c"))
    assert flashcache.cache_dir() == tmp_path / "c"


def test_a_chip_reporting_another_build_evicts_the_entry(tree: dict[str, Any], tmp_path: Path) -> None:
    entry = _store(tree, tmp_path)
    flashcache.check_booted(entry, entry.build)         # the build the cache named: kept
    assert entry.path.exists()
    with pytest.raises(flashcache.StaleFlash, match="reports build 0123456789abcdef, the cache said"):
        flashcache.check_booted(entry, "0123456789abcdef")
    assert not entry.path.exists()
    assert flashcache.lookup(IMAGE_SHA, tree["hw"], base=tree["base"], firmware_dir=tree["fw"]) is None
