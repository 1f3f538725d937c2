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


def call_once(module, function, *args):
    """`module.function(*args)`, then let `module` go (forget): for code the device needs only
    now and then (program checks, refusal texts, the boot's state decoding), which then sits in
    the RP2040's heap only while it runs. The caller imports `module` itself, by a plain
    import in the calling function, so that the deploy's import walk ships it."""
    try:
        return getattr(module, function)(*args)
    finally:
        forget(module.__name__)
