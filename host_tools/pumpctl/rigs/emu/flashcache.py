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
image is used only if its record names the same digest. The rig key that flash holds is kept
beside it (`<key>.key`, mode 0600: it is in the image anyway) and given to the current
PUMPCTL_HOME when the copy boots (`provision_key`). After the boot the caller checks that hello
reports that build (`check_booted`). `$PUMPCTL_EMU_FLASH_DIR` overrides the directory.
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
CACHE_DIR_ENV = "PUMPCTL_EMU_FLASH_DIR"
"""Where the cache lives when set (the HIL plugin sets it to the user's own cache before it points
PUMPCTL_HOME at the session's scratch home, so the cache outlives the session)."""


def cache_dir() -> Path:
    """`$PUMPCTL_EMU_FLASH_DIR`, else `$PUMPCTL_HOME/emu-flash` (beside the rigs' state)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    from ..virtualrig import pumpctl_home
    return pumpctl_home() / CACHE_DIR_NAME


class StaleFlash(PumpError):
    """The chip booted from a cached flash image reports another build than the cache said."""


@dataclasses.dataclass
class CachedFlash:
    """One cache entry: the flash image and its record (`meta`)."""

    path: Path
    meta: dict[str, Any]
    rig_key: bytes = dataclasses.field(default=b"", repr=False)

    def provision_key(self) -> None:
        """Give this host (the current PUMPCTL_HOME) the key the cached flash holds, as the
        deploy that made it did."""
        from ... import keys
        keys.save_key(str(self.meta["rig_id"]), self.rig_key)

    def place_flash_id(self, rig_dir: Path) -> None:
        """Give the chip in `rig_dir` the unique ID of the chip this flash was deployed on, the
        id its key is kept under (flashid.py). An entry cached before the emulated flash had an
        ID (rig ffffffffffffffff) keeps that one."""
        from .flashid import write_flash_id
        try:
            write_flash_id(rig_dir, str(self.meta.get("rig_id")))
        except ValueError as exc:
            evict(self)
            raise StaleFlash("cached flash %s: its rig id is not a flash unique ID (%s): entry removed, "
                             "deploy again" % (self.path.name, exc)) from None

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
    (pumpctl.deploy.TargetInfo), or None when no .mpy compiler for it is installed or
    installable (deploy would then send source: no cache decision is made). Installs the
    compiler where deploy would (a few seconds from pip's cache), as deploy itself would."""
    from ... import deploy as deploymod
    compiler = deploymod.find_compiler((target.mpy_major, target.mpy_sub), install=True, log=lambda s: None)
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
        key_hex = (base / (key + ".key")).read_text().strip()
        rig_key = bytes.fromhex(key_hex)
    except (OSError, ValueError):
        return None
    if len(rig_key) != keys.KEY_BYTES:
        return None
    return CachedFlash(img, meta, rig_key)


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
    # the rig key the flash holds (rigkey.bin is inside the image too), private like keys/
    from ... import keys
    rig_key = keys.load_key(report.rig_id)
    if rig_key is None:
        raise PumpError("caching the emulated Pico's flash: this host holds no key for rig %s" % report.rig_id)
    key_file = base / (key + ".key")
    fd = os.open(str(key_file) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(rig_key.hex() + "\n")
    os.replace(str(key_file) + ".tmp", key_file)
    _atomic_write(base / (key + ".json"), json.dumps(meta, indent=1) + "\n")
    _atomic_write(_target_file(image_sha256, base), json.dumps(dataclasses.asdict(report.target)) + "\n")
    return CachedFlash(img, meta, rig_key)


def evict(entry: CachedFlash) -> None:
    entry.path.unlink(missing_ok=True)
    entry.path.with_suffix(".json").unlink(missing_ok=True)
    entry.path.with_suffix(".key").unlink(missing_ok=True)


def check_booted(entry: CachedFlash, build_hash: str) -> None:
    """StaleFlash (and the entry evicted) unless the booted firmware reports the entry's build."""
    if build_hash != entry.build:
        evict(entry)
        raise StaleFlash("emulated Pico booted from cached flash %s reports build %s, the cache said %s: "
                         "entry removed, deploy again" % (entry.path.name, build_hash, entry.build))
