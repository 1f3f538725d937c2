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


def render(catalog, key, args):
    """`catalog.TEXTS[key] % args`, the catalog loaded for the call and let go after (issue
    16: the texts of the refusals and errors sit in the RP2040's heap only while one is made).
    A catalog that cannot be loaded now (no heap or no flash for it) gives "<key> <args>"
    instead, the key naming the text in the catalog: an error is never lost for want of its
    words. The
    layer's `text()` imports the catalog, by a plain import, so that the deploy ships it."""
    try:
        return catalog.TEXTS[key] % args
    except MemoryError:
        return untold(key, args)
    finally:
        forget(catalog.__name__)


def untold(key, args):
    """The text of `key` when its catalog could not be loaded: the key and the values."""
    return "%s %r" % (key, args)


def text(key, *args):
    """The core's text of `key` with `args` (pumpcore.coretext, loaded for the call)."""
    try:
        from pumpcore import coretext
    except Exception:       # no heap or no flash for it now: the key and the values
        return untold(key, args)
    return render(coretext, key, args)
