"""Hardware edge of the firmware: make_hardware() picks the RP2040 layer on a Pico, the twin elsewhere."""
import sys


def make_hardware():
    """The Hardware for this platform: pumphw.rp2hw.Rp2Hardware() on an RP2040
    (sys.platform == 'rp2'), else the simulated twin pumphw.simhw.make_sim_hardware()."""
    if sys.platform == "rp2":
        from pumphw.rp2hw import Rp2Hardware
        return Rp2Hardware()
    from pumphw.simhw import make_sim_hardware
    return make_sim_hardware()
