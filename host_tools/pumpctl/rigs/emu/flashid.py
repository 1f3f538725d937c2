"""The emulated Pico's flash chip answers Read Unique ID (0x4B) with an ID of its own.

On a Pico, `machine.unique_id()` is the 64-bit unique ID of the W25Q16JV flash chip: the
pico-sdk reads it at boot with command 0x4B, four dummy bytes, then eight ID bytes
(pico_unique_id / flash_get_unique_id: FLASH_RUID_CMD, FLASH_RUID_DUMMY_BYTES = 4,
FLASH_RUID_DATA_BYTES = 8). The firmware's rig id is that ID in hex (pumphw.rp2hw). rp2040py
answers an opcode it does not model with 0xFF, so every emulated chip was rig ffffffffffffffff:
two chips under one PUMPCTL_HOME shared one key-store entry, where two Picos never do.

The ID belongs to the flash, as on silicon: `<rig dir>/flash.id` (16 hex digits) beside
flash.img, made at random with a fresh flash, kept while the flash is kept, and carried with a
cached flash image (it holds the key deployed under that id).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CMD_READ_UNIQUE_ID = 0x4B
DUMMY_BYTES = 4
ID_BYTES = 8
FLASH_ID_FILE = "flash.id"


def parse_flash_id(text: str) -> bytes | None:
    """The 8 ID bytes of a flash.id text (16 hex digits, whitespace around allowed), else None."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        return None
    return raw if len(raw) == ID_BYTES else None


def flash_id(rig_dir: Path) -> bytes:
    """The unique ID of the flash in `rig_dir`: read from flash.id, or made at random and written
    there when the file is missing or does not hold 16 hex digits (a new chip)."""
    path = rig_dir / FLASH_ID_FILE
    try:
        raw = parse_flash_id(path.read_text())
    except OSError:
        raw = None
    if raw is None:
        raw = os.urandom(ID_BYTES)
        write_flash_id(rig_dir, raw.hex())
    return raw


def write_flash_id(rig_dir: Path, hex_id: str) -> None:
    """Give the flash in `rig_dir` the ID `hex_id` (16 hex digits; ValueError otherwise)."""
    if parse_flash_id(hex_id) is None:
        raise ValueError("a flash unique ID is 16 hex digits, not %r" % hex_id)
    tmp = rig_dir / (FLASH_ID_FILE + ".tmp")
    tmp.write_text(hex_id.strip().lower() + "\n")
    os.replace(tmp, rig_dir / FLASH_ID_FILE)


def answer_unique_id(ssi: Any, unique_id: bytes) -> None:
    """Make rp2040py's SSI flash model (`mcu.ssi`, peripherals/ssi.py RPSSI) answer 0x4B: the
    opcode and the dummy bytes shift out 0xFF, then the ID bytes, then 0xFF. Every other command
    is left to the model."""
    if len(unique_id) != ID_BYTES:
        raise ValueError("a flash unique ID is %d bytes, not %d" % (ID_BYTES, len(unique_id)))
    model = ssi._shift_byte
    first = 1 + DUMMY_BYTES

    def shift_byte(byte_out: int) -> int:
        buf = ssi._tx_buffer
        if buf and buf[0] == CMD_READ_UNIQUE_ID:
            buf.append(byte_out)
            pos = len(buf) - 1
            return unique_id[pos - first] if first <= pos < first + ID_BYTES else 0xFF
        return model(byte_out)

    ssi._shift_byte = shift_byte
