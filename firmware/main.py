"""Boot entry of the pump firmware: build the hardware layer, then run the application.

The same file boots a real Pico (pumphw.rp2hw) and the virtual rig (pumphw.simhw): the
hardware layer is chosen by platform in pumphw.make_hardware().

First of all, Ctrl-C on the USB link stops being an interrupt: from here on no byte from the
host can stop the application (the app gives Ctrl-C back only on a keyless rig, or when a
signed maintenance command hands the link to the REPL). MicroPython turns Ctrl-C on just before
it runs this file; a 0x03 in the moment before kbd_intr(-1) takes hold raises KeyboardInterrupt
inside the retry loop below, not out of main.py into the REPL. (Before this file, the frozen
_boot.py that mounts the flash runs with Ctrl-C off: pyexec_frozen_module(..., false), v1.22.2.)
"""
while True:
    try:
        try:
            import micropython
            micropython.kbd_intr(-1)
        except (ImportError, AttributeError):   # CPython (tests), or a port without kbd_intr
            pass
        break
    except KeyboardInterrupt:   # a 0x03 that arrived before kbd_intr(-1) took hold: once more
        pass

# Collect while the imports run: loading ~30 modules leaves garbage between their long-lived
# code objects, and on the RP2040 (234 KB heap) the app's 4 KB buffers then found no room in a
# heap with 40 KB free (MemoryError at boot, seen on the emulated Pico). A collection every
# 8 KB allocated frees that garbage before the next module lands beyond it.
import gc
try:
    gc.threshold(8192)
except AttributeError:                  # CPython
    pass

import pumphw
from pumpfw import app

hw = pumphw.make_hardware()   # a module global: the maintenance hold's timer outlives app.run
app.run(hw)
