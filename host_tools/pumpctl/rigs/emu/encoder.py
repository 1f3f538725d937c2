"""The AS5600 screw encoder as an I2C target on the emulated RP2040's I2C block (datasheet
registers, bus time at the configured SCL, only with both pins in the I2C function).
"""
from __future__ import annotations

from typing import Any

I2C_FUNCSEL = 3
"""RP2040 GPIO function 3 is I2C (datasheet 2.19.2): the AS5600 is on the bus only through it."""


class As5600:
    """The AS5600 screw encoder (ams AS5600 datasheet v1-06) as an I2C target on the emulated
    RP2040's I2C block `bus`, on the pins of hw/pinmap.json "screw_encoder".

    It acknowledges address 0x36 only while both its SDA and SCL GPIOs are switched to the I2C
    function (FUNCSEL 3), as wires on those pins would; any other address is not acknowledged.
    A write sets the register pointer (first byte) and is acknowledged; a read returns the
    registers from the pointer on with auto-increment, except that the pointer stays on RAW
    ANGLE, ANGLE and MAGNITUDE when it was set to their high byte (the datasheet's special
    case), so a re-read needs no pointer write. STATUS (0x0B) reads MD (magnet detected) unless
    the `magnet` flag is off (then ML, magnet too weak); RAW ANGLE and ANGLE (no ZPOS/MPOS
    programmed) come from `angle()`, sampled at the read's address phase, 12 bit. AGC 0x80,
    MAGNITUDE 0x0800. Bus time is modelled: each byte (9 bits) and each start/address phase
    completes after its bit times at the SCL the firmware configured (IC_FS_SCL_HCNT/LCNT at
    clk_sys 125 MHz), not at once. `reads` counts completed angle reads (for the tier's checks).
    """

    ADDR = 0x36
    SPECIAL_HIGH = (0x0C, 0x0E, 0x1B)

    def __init__(self, mcu: Any, bus: int, sda: int, scl: int, angle: Any) -> None:
        self.mcu = mcu
        self.i2c = mcu.i2c[bus]
        self.sda, self.scl = mcu.gpio[sda], mcu.gpio[scl]
        self.angle = angle
        self.magnet = True
        self.pointer = 0
        self.reads = 0
        self.naks = 0
        self._first_write = False
        self._sticky: int | None = None
        self._snapshot = 0
        self._pending: Any = None
        self._alarm = mcu.clock.create_alarm(self._fire)
        i2c = self.i2c
        i2c.on_start = self._on_start
        i2c.on_connect = self._on_connect
        i2c.on_write_byte = self._on_write
        i2c.on_read_byte = self._on_read
        i2c.on_stop = self._on_stop

    # bus timing -------------------------------------------------------------------------
    def _bit_ns(self) -> int:
        i2c = self.i2c
        clocks = int(i2c.scl_low_period) + int(i2c.scl_high_period)
        return max(clocks, 2) * 8          # clk_sys 125 MHz: 8 ns per clock

    def _after(self, bits: int, then: Any) -> None:
        self._pending = then
        self._alarm.schedule(bits * self._bit_ns())

    def _fire(self) -> None:
        then, self._pending = self._pending, None
        if then is not None:
            then()

    # target behaviour -------------------------------------------------------------------
    def _muxed(self) -> bool:
        return (getattr(self.sda, "function_select", None) == I2C_FUNCSEL
                and getattr(self.scl, "function_select", None) == I2C_FUNCSEL)

    def register(self, reg: int) -> int:
        a = self._snapshot & 0x0FFF
        if reg == 0x0B:
            return 0x20 if self.magnet else 0x10      # MD, or ML (magnet too weak, no MD)
        if reg in (0x0C, 0x0E):
            return a >> 8
        if reg in (0x0D, 0x0F):
            return a & 0xFF
        if reg == 0x1A:
            return 0x80
        if reg == 0x1B:
            return 0x08
        return 0x00                                   # ZMCO, ZPOS, MPOS, MANG, CONF, MAGNITUDE lo

    def _on_start(self, repeated: bool) -> None:
        self._after(1, self.i2c.complete_start)

    def _on_connect(self, address: int, mode: Any) -> None:
        ack = address == self.ADDR and self._muxed()
        if not ack:
            self.naks += 1
        elif int(mode) == 1:                          # I2CMode.READ: sample the angle now
            value = self.angle()
            self._snapshot = 0 if value is None else int(value)
            self._sticky = self.pointer if self.pointer in self.SPECIAL_HIGH else None
        else:
            self._first_write = True
        self._after(9, lambda: self.i2c.complete_connect(ack))

    def _on_write(self, value: int) -> None:
        if self._first_write:
            self.pointer = value & 0xFF
            self._first_write = False
        self._after(9, lambda: self.i2c.complete_write(True))

    def _on_read(self, ack: bool) -> None:
        reg = self.pointer
        value = self.register(reg)
        if reg in (0x0C, 0x0D):
            self.reads += reg == 0x0D
        if self._sticky is not None and reg == self._sticky + 1:
            self.pointer = self._sticky
        else:
            self.pointer = (reg + 1) & 0xFF
        self._after(9, lambda: self.i2c.complete_read(value))

    def _on_stop(self) -> None:
        self._after(1, self.i2c.complete_stop)
