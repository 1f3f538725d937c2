"""Hardware edge of the firmware: make_hardware() picks the RP2040 layer on a Pico, the twin elsewhere."""
import sys


def make_hardware():
    """The Hardware for this platform: pumphw.rp2hw.Rp2Hardware() on an RP2040
    (sys.platform == 'rp2'), else the simulated twin pumphw.simhw.make_sim_hardware()."""
    if sys.platform == "rp2":
        from pumphw.rp2hw import Rp2Hardware
        from pumpcore import forget
        hw = Rp2Hardware()
        forget("pumphw.pinmap")    # boot-only: the pin map is checked and applied (~14 KB)
        return hw
    from pumphw.simhw import make_sim_hardware
    return make_sim_hardware()


def rig_id():
    """This rig's id without building the hardware (deploy reads it from the REPL): the RP2040
    unique id in hex on a Pico, the virtual rig's name ($PUMPSIM_RIG_ID) elsewhere."""
    if sys.platform == "rp2":
        import binascii
        import machine
        return binascii.hexlify(machine.unique_id()).decode()
    import os
    return os.getenv("PUMPSIM_RIG_ID") or "sim"


def reset():
    """Reset the rig as machine.reset() does (`pumpctl maintenance end` runs this at the REPL):
    a Pico resets through its watchdog; the virtual rig's supervisor restarts the firmware with
    reset cause watchdog. Either way the maintenance record in the scratch registers survives,
    so the boot logs the maintenance's length and missed volume. Never returns."""
    if sys.platform == "rp2":
        import machine
        machine.reset()
    else:   # an explicit else: deploy's import walk (pumpctl.devicecode) keeps the twin off a Pico
        from pumphw.simhw import make_sim_hardware
        make_sim_hardware().reset()


def text(key, *args):
    """The hardware layer's text of `key` with `args` (pumphw.hwtext, loaded for the call;
    pumpcore.render)."""
    from pumpcore import render, untold
    try:
        from pumphw import hwtext
    except Exception:       # no heap or no flash for it now: the key and the values
        return untold(key, args)
    return render(hwtext, key, args)
