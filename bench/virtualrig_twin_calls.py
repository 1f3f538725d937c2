"""Bench: cost of the twin's pin-level calls on a virtual rig, and the rig's start-up time."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pumpctl.rigs.virtualrig import VirtualRig
from pumpctl.rigs.virtualrig_supervisor import seed_flash

ECHO_MAIN = Path(__file__).resolve().parents[1] / "tests" / "rig" / "echo_main.py"

SCRIPT = r"""
import time
from pumphw.simhw import make_sim_hardware
hw = make_sim_hardware()
st = hw.stepper
for name, fn in (("ticks_ms", hw.ticks_ms), ("pressure_kpa_x10", hw.pressure_kpa_x10),
                 ("steps_done", st.steps_done), ("watchdog_feed", hw.watchdog_feed)):
    n = 5000
    t = time.ticks_us()
    for i in range(n):
        fn()
    print("%-18s %6.1f us/call" % (name, time.ticks_diff(time.ticks_us(), t) / n))
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.monotonic()
        # the tests' echo firmware: the app starts the watchdog, which at 1000x resets the
        # unix port long before mpremote finishes once the app has exited to the REPL
        seed_flash(Path(tmp) / "rig" / "flash")
        shutil.copy(ECHO_MAIN, Path(tmp) / "rig" / "flash" / "main.py")
        rig = VirtualRig.start(Path(tmp) / "rig", time_scale=1000)
        print(f"rig start to port ready: {(time.monotonic() - t) * 1000:.0f} ms")
        try:
            src = Path(tmp) / "bench.py"
            src.write_text(SCRIPT)
            t = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "mpremote", "connect", rig.port, "resume",
                                  "run", str(src)], capture_output=True, text=True, timeout=120)
            print(out.stdout + out.stderr, end="")
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "mpremote", "connect", rig.port, "resume", "exec",
                            "pass"], capture_output=True, timeout=60)
            print(f"mpremote resume exec round trip: {(time.monotonic() - t) * 1000:.0f} ms")
        finally:
            rig.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
