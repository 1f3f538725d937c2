"""The emulated Pico's rig directory under $PUMPCTL_HOME/rigs/emu: its files, the pin map it is
wired by, the hardware description written for `pumpctl deploy --hw-dir`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..virtualrig import EMU_RIG_NAME, pumpctl_home

REPO = Path(__file__).resolve().parents[4]
PINMAP_PATH = REPO / "hw" / "pinmap.json"

STATE_FILE = "emu.json"
SOCKET_FILE = "ctl.sock"
FLASH_FILE = "flash.img"
LOG_FILE = "emu.log"

BOOT_TIMEOUT_S = 60.0
"""Wall seconds allowed for the image to enumerate over USB after power-on."""


def default_rig_dir() -> Path:
    """`$PUMP_RIGS_DIR/emu` when that is set, else `$PUMPCTL_HOME/rigs/emu`: beside the virtual
    rigs (`pumpctl sim`), never inside the checkout."""
    base = os.environ.get("PUMP_RIGS_DIR")
    return (Path(base) if base else pumpctl_home() / "rigs") / EMU_RIG_NAME


LEGACY_RIG_DIR = REPO / "rigs" / EMU_RIG_NAME
"""Where the emulated Pico kept its state before it moved under $PUMPCTL_HOME (git-ignored)."""


def legacy_rig_dir_note(rig_dir: Path, legacy: Path = LEGACY_RIG_DIR) -> str | None:
    """One line for the user when an old `<repo>/rigs/emu/` is still in the checkout (its flash,
    state and log are no longer used), else None."""
    if rig_dir.resolve() == legacy.resolve() or not legacy.is_dir():
        return None
    return ("emulated-Pico state now lives in %s; the old %s is no longer used (move its flash.img "
            "there to keep that flash, or delete the old directory)" % (rig_dir, legacy))


EMU_HW_DIR = "hw"


def write_emu_hw_dir(rig_dir: Path, hw_dir: Path = REPO / "hw", mechanism: str | None = None) -> Path:
    """Write `<rig_dir>/hw/` for `pumpctl deploy --hw-dir`: the mechanism's file as is (only it,
    under its own name: hw/mechanism.json, or mechanism-NAME.json for `mechanism` NAME, so a
    deploy naming another mechanism is refused there; the chip's physics read the same file,
    emu_mechanism_path) and the one
    pin map without its driver UART. rp2040py 0.3.6 never returns from `machine.UART(...)`
    construction on the v1.22.2 image (silicon does), so on the emulator the firmware must treat
    the TMC2209 as configured by its MS1/MS2 pins; the emulator cannot test the driver UART.
    (Written without the key until pumphw.pinmap accepts an explicit `"driver_uart": null`.)"""
    out = rig_dir / EMU_HW_DIR
    out.mkdir(parents=True, exist_ok=True)
    pins = json.loads((hw_dir / "pinmap.json").read_text())
    pins.pop("driver_uart", None)
    pins["_what"] = ("Emulated-Pico copy of hw/pinmap.json, written by pumpctl emu start: no driver_uart "
                     "(rp2040py hangs in machine.UART construction; the emulator cannot test the UART).")
    (out / "pinmap.json").write_text(json.dumps(pins, indent=1) + "\n")
    from ... import mechanisms
    src = mechanisms.path(mechanism, hw_dir)
    for stale in list(out.glob("mechanism*.json")):
        stale.unlink()
    (out / mechanisms.file_name(mechanism or mechanisms.DEFAULT)).write_text(src.read_text())
    return out


def emu_mechanism_path(rig_dir: Path) -> Path:
    """The mechanism file write_emu_hw_dir left in `<rig_dir>/hw/` (hw/mechanism.json if none)."""
    found = sorted((rig_dir / EMU_HW_DIR).glob("mechanism*.json"))
    return found[0] if len(found) == 1 else REPO / "hw" / "mechanism.json"


def emu_mechanism_name(rig_dir: Path) -> str | None:
    """The name of the mechanism write_emu_hw_dir left in `<rig_dir>/hw/` (the one its flash was
    deployed with, and its physics are made from), or None when that directory holds none."""
    found = sorted((rig_dir / EMU_HW_DIR).glob("mechanism*.json"))
    if len(found) != 1:
        return None
    from ... import mechanisms
    try:
        return mechanisms.name_of(json.loads(found[0].read_text()))
    except (OSError, ValueError, AttributeError):
        return None


def start_mechanism(rig_dir: Path, mechanism: str | None, fresh: bool) -> str | None:
    """The mechanism a start of the emulated Pico in `rig_dir` wires to its pins: `mechanism`,
    or, when None, the one a kept flash was started with (its deploy's; None: the default). A
    kept flash started with another mechanism than `mechanism` raises UsageError: its firmware
    doses by the old mechanism's microstep while the pins would drive the new one's physics."""
    before = emu_mechanism_name(rig_dir) if (rig_dir / FLASH_FILE).exists() and not fresh else None
    if mechanism is None:
        return before
    if before is not None and before != mechanism:
        raise UsageError(f"the emulated Pico's flash in {rig_dir} was started with mechanism {before!r}, "
                         f"not {mechanism!r}: start it with --fresh (a new, empty Pico) to wire it to "
                         f"{mechanism!r}, then deploy --mechanism {mechanism}")
    return mechanism


def load_pinmap(path: Path = PINMAP_PATH) -> dict[str, Any]:
    """The one pin map (hw/pinmap.json), checked for the pins the rig wires."""
    pins = json.loads(path.read_text())
    for name in ("step", "dir", "en_n", "diag", "end_stop_n", "bolus_button_n", "alarm_led",
                 "buzzer", "status_led"):
        value = pins.get(name)
        if not isinstance(value, int) or not 0 <= value <= 29:
            raise UsageError(f"{path}: pin {name} = {value!r}: must be a GPIO number 0..29")
    enc = pins.get("screw_encoder")
    if enc is not None:
        for key, top in (("id", 1), ("sda", 29), ("scl", 29)):
            value = enc.get(key) if isinstance(enc, dict) else None
            if not isinstance(value, int) or not 0 <= value <= top:
                raise UsageError(f"{path}: screw_encoder.{key} = {value!r}: must be an integer 0..{top}")
    adc = pins.get("pressure_adc") or {}
    if adc.get("channel") not in (0, 1, 2, 3):
        raise UsageError(f"{path}: pressure_adc.channel = {adc.get('channel')!r}: must be 0..3")
    return pins


def _write_state(rig_dir: Path, state: dict[str, Any]) -> None:
    tmp = rig_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, rig_dir / STATE_FILE)
