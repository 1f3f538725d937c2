"""Rigs to test against: the virtual rig (micropython on a pty, `pumpctl sim`) and the
emulated Pico (`emu/`, the official RP2040 image in rp2040py, `pumpctl emu`)."""
