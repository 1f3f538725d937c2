"""Pure core of the pump controller: dose math, program, scheduler, codecs. No hardware imports."""
import sys


def forget(name):
    """Let a boot-only module go (issue 16's RAM budget on the RP2040): drop it from sys.modules
    and from its package's attributes, so that once its last reference is gone the next gc
    frees its code. A later import loads it again from flash. No-op for a module not loaded,
    and on CPython (the host's tests hold and patch these modules; RAM is the device's concern;
    the virtual rig's MicroPython does forget, as a Pico does)."""
    if sys.implementation.name != "micropython":
        return
    sys.modules.pop(name, None)
    pkg, _, leaf = name.rpartition(".")
    parent = sys.modules.get(pkg)
    if parent is not None and leaf in parent.__dict__:
        delattr(parent, leaf)
