"""Deployed flash images of the emulated Pico, cached by the build they hold.

A deploy to a fresh emulated chip costs 80-150 s of wall time (busy code runs at ~1/40 of the
chip's speed). Every later run of the same firmware on the same image can boot a copy of the
flash that deploy left instead: `pumpctl deploy` to a fresh chip, flash saved before the reset
into the application (no application state in it), stored as

    $PUMPCTL_HOME/emu-flash/<key>.img     the chip's littlefs region (the supervisor's flash.img)
    $PUMPCTL_HOME/emu-flash/<key>.json    what it holds: image SHA-256, build digest, rig id, files
    $PUMPCTL_HOME/emu-flash/target-<image sha256[:16]>.json   what that image reported to deploy

`key` is a hash of the image's SHA-256 and the **build digest that `pumpctl deploy` would
record for this tree now** (pumpcore.buildrec.files_digest over the files plan_deploy makes,
compiled with the same mpy-cross, for the target the image reported). A changed firmware file,
pin map, mechanism file, compiler or image gives another key, so it is deployed again; a cached
image is used only if its record names the same digest and this host holds the key of its rig
id. After the boot the caller checks that hello reports that build (`check_booted`).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...errors import PumpError

CACHE_DIR_NAME = "emu-flash"


def cache_dir() -> Path:
    from ..virtualrig import pumpctl_home
    return pumpctl_home() / CACHE_DIR_NAME


class StaleFlash(PumpError):
    """The chip booted from a cached flash image reports another build than the cache said."""


@dataclasses.dataclass
class CachedFlash:
    """One cache entry: the flash image and its record (`meta`)."""

    path: Path
    meta: dict[str, Any]

    @property
    def build(self) -> str:
        from pumpcore import buildrec
        return str(self.meta["digest"])[:buildrec.BUILD_HEX]

    def describe(self) -> str:
        return ("flash image cached from a deploy at %s (build %s, %d files, %s); booted from a copy"
                % (self.meta.get("deployed_utc", "?"), self.build, int(self.meta.get("files", 0)),
                   self.meta.get("reason", "?")))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp%d" % os.getpid())
    tmp.write_text(text)
    os.replace(tmp, path)


def _target_file(image_sha256: str, base: Path) -> Path:
    return base / ("target-%s.json" % image_sha256[:16])


def entry_key(image_sha256: str, digest: str) -> str:
    return hashlib.sha256(("%s\n%s\n" % (image_sha256, digest)).encode()).hexdigest()[:24]


def planned_digest(target: Any, hw_dir: Path, mechanism: str | None = None,
                   firmware_dir: Path | None = None) -> str | None:
    """The full build digest `pumpctl deploy` would record for this tree on `target`
    (pumpctl.deploy.TargetInfo), or None when the .mpy compiler that deploy would use is not
    installed (deploy would install it or send source: no cache decision can be made)."""
    from ... import deploy as deploymod
    compiler = deploymod.find_compiler((target.mpy_major, target.mpy_sub), install=False, log=lambda s: None)
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="pumpctl-emucache-") as build:
        files = deploymod.plan_deploy(firmware_dir or deploymod.DEFAULT_FIRMWARE_DIR, hw_dir, Path(build),
                                      compiler[0], target.arch, target.platform, mechanism=mechanism)
        return deploymod.build_digest(files)


def lookup(image_sha256: str, hw_dir: Path, mechanism: str | None = None,
           base: Path | None = None, firmware_dir: Path | None = None) -> CachedFlash | None:
    """The cached flash image of this tree's build on this image, or None (never cached, the
    tree changed since, no compiler to tell, or this host lost the rig's key)."""
    from ... import keys
    from ...deploy import TargetInfo
    base = base or cache_dir()
    try:
        target = TargetInfo(**json.loads(_target_file(image_sha256, base).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    digest = planned_digest(target, hw_dir, mechanism, firmware_dir)
    if digest is None:
        return None
    key = entry_key(image_sha256, digest)
    img, rec = base / (key + ".img"), base / (key + ".json")
    try:
        meta = json.loads(rec.read_text())
    except (OSError, ValueError):
        return None
    if not img.is_file() or meta.get("digest") != digest or meta.get("image_sha256") != image_sha256:
        return None
    try:
        if keys.load_key(str(meta.get("rig_id", ""))) is None:
            return None
    except PumpError:
        return None
    return CachedFlash(img, meta)


def store(flash: Path, image_sha256: str, report: Any, wall_s: float, base: Path | None = None) -> CachedFlash:
    """Keep `flash` (the chip's flash saved right after `report`, a pumpctl.deploy.DeployReport
    of a deploy without restart) as this build's cached image; returns the entry."""
    base = base or cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    digest = str(report.build["digest"])
    key = entry_key(image_sha256, digest)
    img = base / (key + ".img")
    tmp = img.with_name(img.name + ".tmp%d" % os.getpid())
    shutil.copyfile(flash, tmp)
    os.replace(tmp, img)
    meta = {"image_sha256": image_sha256, "digest": digest, "build": report.build["build"],
            "files": len(report.files), "verified": report.verified, "rig_id": report.rig_id,
            "compiled": bool(report.compiled),
            "reason": report.reason, "deploy_wall_s": round(wall_s, 1),
            "deployed_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    _atomic_write(base / (key + ".json"), json.dumps(meta, indent=1) + "\n")
    _atomic_write(_target_file(image_sha256, base), json.dumps(dataclasses.asdict(report.target)) + "\n")
    return CachedFlash(img, meta)


def evict(entry: CachedFlash) -> None:
    entry.path.unlink(missing_ok=True)
    entry.path.with_suffix(".json").unlink(missing_ok=True)


def check_booted(entry: CachedFlash, build_hash: str) -> None:
    """StaleFlash (and the entry evicted) unless the booted firmware reports the entry's build."""
    if build_hash != entry.build:
        evict(entry)
        raise StaleFlash("emulated Pico booted from cached flash %s reports build %s, the cache said %s: "
                         "entry removed, deploy again" % (entry.path.name, build_hash, entry.build))
