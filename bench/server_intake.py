"""Serial intake speed of the protocol server: microseconds per largest frame fed to
ProtocolServer.feed, in the real MicroPython unix port (the device's interpreter).

The frame carries a wrong CRC, so every byte is taken in and decoded and the frame is then
dropped: the figure is the intake alone, with no controller call. Prints the best of 7 runs of
40 frames for this tree and, with --against-dir, for another firmware tree in the same run (a
ratio, as the machines are shared). Asserts nothing.

    python bench/server_intake.py
    python bench/server_intake.py --against-dir /tmp/old/firmware
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.mpy import micropython_binary  # noqa: E402

PROBE = """import time
from pumpcore import wire
from pumpfw.server import ProtocolServer
s = ProtocolServer(None, lambda out: None)
line = bytearray(wire.encode_frame(0, 4, wire.CMD_STATUS, 0, bytes(wire.MAX_PAYLOAD - 24)))
line[5] ^= 1     # a wrong CRC: decoded whole, then dropped
line = bytes(line)
best = 10 ** 9
for r in range(7):
    t = time.ticks_us()
    for i in range(40):
        s.feed(line)
    best = min(best, time.ticks_diff(time.ticks_us(), t))
print(len(line), best / 40, s.frames_dropped)
"""


def measure(firmware: Path) -> tuple[int, float]:
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=8M", "-c", PROBE], capture_output=True,
                          env=dict(os.environ, MICROPYPATH=str(firmware)), timeout=300, check=True)
    n, us, dropped = proc.stdout.split()
    assert int(dropped) == 280, "the frames were not all taken in and dropped"
    return int(n), float(us)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against-dir", type=Path, help="another firmware tree, measured in the same run")
    args = ap.parse_args(argv)
    trees = [("this", REPO / "firmware")] + ([("other", args.against_dir)] if args.against_dir else [])
    got = {}
    for label, tree in trees * 3:          # interleaved: three rounds of each, best kept
        n, us = measure(tree)
        got[label] = min(got.get(label, us), us)
    for label, tree in trees:
        print("%-5s %s: %.1f us per %d-character frame (best of 3 x 7 runs of 40)" % (label, tree, got[label], n))
    if args.against_dir:
        print("ratio this / other = %.2f" % (got["this"] / got["other"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
