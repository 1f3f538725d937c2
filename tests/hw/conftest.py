"""Put firmware/ on sys.path so the hardware layer (pumphw, not a host package) imports in tests."""
import sys
from pathlib import Path

FIRMWARE = str(Path(__file__).resolve().parents[2] / "firmware")
if FIRMWARE not in sys.path:
    sys.path.insert(0, FIRMWARE)
