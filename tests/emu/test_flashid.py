"""The emulated flash chip's unique ID (pumpctl.rigs.emu.flashid), without a firmware image: the
real rp2040py SSI model answers Read Unique ID as a W25Q16JV does, each new flash gets an ID of
its own, a kept flash keeps it, and a cached flash carries the ID its key was deployed under."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl.rigs.emu import flashcache
from pumpctl.rigs.emu.flashid import FLASH_ID_FILE, answer_unique_id, flash_id, parse_flash_id

ID = bytes.fromhex("e66038b7134c5a2f")


def _command(ssi, sent: list[int]) -> bytes:
    """Shift `sent` through the SSI's flash model framed by chip-select, as flash_do_cmd does."""
    from rp2040py.gpio_pin import GPIOPinState
    ssi._on_cs_pin_changed(GPIOPinState.HIGH, GPIOPinState.LOW)
    ssi._cs_asserted = False
    ssi._on_cs_pin_changed(GPIOPinState.LOW, GPIOPinState.HIGH)
    out = bytes(ssi._shift_byte(b) for b in sent)
    ssi._on_cs_pin_changed(GPIOPinState.HIGH, GPIOPinState.LOW)
    return out


def test_read_unique_id_answers_the_flashs_id_and_leaves_other_commands_alone() -> None:
    from rp2040py.rp2040 import RP2040
    ssi = RP2040().ssi
    ruid = [0x4B] + [0] * 4 + [0] * 8          # opcode, 4 dummy bytes, 8 ID bytes (pico-sdk)
    jedec = _command(ssi, [0x9F, 0, 0, 0])
    assert _command(ssi, ruid) == b"\xff" * 13   # the model alone: every chip ffffffffffffffff
    answer_unique_id(ssi, ID)
    assert _command(ssi, ruid) == b"\xff" * 5 + ID
    assert _command(ssi, ruid + [0, 0]) == b"\xff" * 5 + ID + b"\xff\xff"
    assert _command(ssi, [0x9F, 0, 0, 0]) == jedec
    with pytest.raises(ValueError, match="8 bytes"):
        answer_unique_id(ssi, b"\x01\x02")


def test_a_new_flash_gets_an_id_of_its_own_and_keeps_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = flash_id(a)
    assert len(first) == 8 and flash_id(a) == first          # kept while the flash is kept
    assert flash_id(b) != first                                # another chip, another ID
    (a / FLASH_ID_FILE).write_text("not hex\n")               # a damaged file: a new chip's ID
    assert parse_flash_id((a / FLASH_ID_FILE).read_text()) is None
    assert len(flash_id(a)) == 8 and parse_flash_id((a / FLASH_ID_FILE).read_text()) is not None


def test_a_cached_flash_boots_under_the_id_its_key_was_deployed_under(tmp_path: Path) -> None:
    img = tmp_path / "k.img"
    img.write_bytes(b"flash")
    (tmp_path / "k.json").write_text("{}")
    entry = flashcache.CachedFlash(img, {"rig_id": ID.hex()}, b"k" * 32)
    rig_dir = tmp_path / "rig"
    rig_dir.mkdir()
    flash_id(rig_dir)                                          # the chip had an ID of its own
    entry.place_flash_id(rig_dir)
    assert flash_id(rig_dir) == ID
    bad = flashcache.CachedFlash(img, {"rig_id": "pico-1"}, b"k" * 32)
    with pytest.raises(flashcache.StaleFlash, match="not a flash unique ID"):
        bad.place_flash_id(rig_dir)
    assert not img.exists()                                    # evicted: deployed again
