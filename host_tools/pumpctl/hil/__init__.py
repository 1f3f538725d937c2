"""Hardware-in-the-loop test plugin: the same pytest suite on the virtual rig, a bench Pico, or (hook) the emulated Pico."""
