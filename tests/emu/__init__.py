"""Emulated-Pico tier: the official MicroPython RP2040 image in rp2040py, the pump on its pins."""
