"""The rig's mechanisms by name: `pumpctl deploy --mechanism NAME` and every simulated rig's physics.

A mechanism is one file in hw/: the default, "20ml" (the 20 mL bench rig for long unattended
runs), is hw/mechanism.json; any other NAME is hw/mechanism-NAME.json (hw/mechanism-precision.json:
the drive sized for 93 uL/day). The file's own "name" must be NAME. The device receives the
chosen file as /mechanism.json (nL per microstep, limits, encoder tolerance all derive from it)
and reports the name in hello; the virtual rig, the emulated Pico's physics and the test rigs
read the same file, chosen by the same name (hw/mechanism.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError

REPO = Path(__file__).resolve().parents[2]
HW_DIR = REPO / "hw"
DEFAULT = "20ml"
DEVICE_FILE = "mechanism.json"


def file_name(name: str) -> str:
    """The file in hw/ that describes mechanism `name`."""
    return DEVICE_FILE if name == DEFAULT else "mechanism-%s.json" % name


def available(hw_dir: Path = HW_DIR) -> list[str]:
    """Names of the mechanisms described in `hw_dir` (the default first)."""
    names = [DEFAULT] if (hw_dir / DEVICE_FILE).is_file() else []
    for p in sorted(hw_dir.glob("mechanism-*.json")):
        names.append(p.name[len("mechanism-"):-len(".json")])
    return names


def path(name: str | None, hw_dir: Path = HW_DIR) -> Path:
    """The file of mechanism `name` (None: the default) in `hw_dir`, checked: it exists, is
    JSON, and names itself `name`. Raises UsageError naming what was wrong."""
    name = name or DEFAULT
    if not name or "/" in name or name.startswith("."):
        raise UsageError("mechanism = %r: must be a plain name (one of %s)" % (name, ", ".join(available(hw_dir)) or "none"))
    p = hw_dir / file_name(name)
    if not p.is_file():
        raise UsageError("mechanism %r: no %s (known in %s: %s)" % (name, p, hw_dir, ", ".join(available(hw_dir)) or "none"))
    try:
        d = json.loads(p.read_text())
    except ValueError as exc:
        raise UsageError("mechanism %r: %s is not valid JSON (%s)" % (name, p, exc)) from None
    own = d.get("name", DEFAULT) if isinstance(d, dict) else None
    if own != name:
        raise UsageError("mechanism %r: %s names itself %r" % (name, p, own))
    return p


def load(name: str | None, hw_dir: Path = HW_DIR) -> dict[str, Any]:
    """The parsed file of mechanism `name`."""
    return json.loads(path(name, hw_dir).read_text())


def name_of(mech: dict[str, Any]) -> str:
    """The name a parsed mechanism file gives itself (DEFAULT when it has none: older files)."""
    return str(mech.get("name", DEFAULT))
