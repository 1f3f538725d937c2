"""App tests: firmware/ on sys.path (pumpfw and pumphw are device packages, not host ones)."""
import sys
from pathlib import Path

FIRMWARE = str(Path(__file__).resolve().parents[2] / "firmware")
if FIRMWARE not in sys.path:
    sys.path.insert(0, FIRMWARE)
