"""The emulated rig's AS5600 (emurig.As5600) on rp2040py's own I2C block, driven as the pico-sdk
drives it (IC_TAR, IC_DATA_CMD with RESTART/STOP), without a firmware image: it runs wherever
rp2040py is installed, so the encoder model is checked even where tests/emu's chip tests skip."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rp2040py")

from pumpctl.rigs.emu.encoder import I2C_FUNCSEL, As5600  # noqa: E402

IC_TAR, IC_DATA_CMD, IC_FS_SCL_HCNT, IC_FS_SCL_LCNT = 0x04, 0x10, 0x1C, 0x20
IC_ENABLE, IC_RXFLR, IC_RAW_INTR_STAT, IC_CLR_TX_ABRT = 0x6C, 0x78, 0x34, 0x54
CMD_READ, CMD_STOP, CMD_RESTART = 1 << 8, 1 << 9, 1 << 10
R_TX_ABRT = 1 << 6


class Bus:
    def __init__(self, muxed: bool = True, angle: int | None = 1234) -> None:
        from rp2040py import RP2040

        self.mcu = RP2040()
        self.angle = [angle]
        self.enc = As5600(self.mcu, 0, 16, 17, lambda: self.angle[0])
        self.i2c = self.mcu.i2c[0]
        for pin in (16, 17):
            self.mcu.gpio[pin].ctrl = I2C_FUNCSEL if muxed else 5     # 5: SIO (plain GPIO)

    def speed(self, hcnt: int, lcnt: int) -> None:
        self.i2c.write_uint32(IC_ENABLE, 0)
        self.i2c.write_uint32(IC_FS_SCL_HCNT, hcnt)
        self.i2c.write_uint32(IC_FS_SCL_LCNT, lcnt)

    def read_mem(self, addr: int, reg: int, n: int) -> tuple[list[int], float, bool]:
        """Pointer write then a repeated-start read of n bytes (what readfrom_mem_into does);
        returns (bytes, emulated ns taken, aborted)."""
        i2c, clock = self.i2c, self.mcu.clock
        i2c.write_uint32(IC_ENABLE, 0)
        i2c.write_uint32(IC_TAR, addr)
        i2c.write_uint32(IC_ENABLE, 1)
        i2c.read_uint32(IC_CLR_TX_ABRT)
        i2c.write_uint32(IC_DATA_CMD, reg)
        for k in range(n):
            i2c.write_uint32(IC_DATA_CMD, CMD_READ | (CMD_RESTART if k == 0 else 0) | (CMD_STOP if k == n - 1 else 0))
        t0 = clock.nanos
        while clock.has_scheduled_alarm and i2c.read_uint32(IC_RXFLR) < n:
            if i2c.read_uint32(IC_RAW_INTR_STAT) & R_TX_ABRT:
                break
            clock.tick(clock.nanos_to_next_alarm)
        aborted = bool(i2c.read_uint32(IC_RAW_INTR_STAT) & R_TX_ABRT)
        got = [i2c.read_uint32(IC_DATA_CMD) & 0xFF for _ in range(i2c.read_uint32(IC_RXFLR))]
        return got, clock.nanos - t0, aborted


def test_status_and_raw_angle_in_one_read() -> None:
    bus = Bus()
    got, _ns, aborted = bus.read_mem(0x36, 0x0B, 3)
    assert not aborted and got == [0x20, 1234 >> 8, 1234 & 0xFF]      # MD set, RAW ANGLE 1234
    assert bus.enc.reads == 1 and bus.enc.naks == 0
    bus.angle[0] = 4095
    assert bus.read_mem(0x36, 0x0B, 3)[0] == [0x20, 0x0F, 0xFF]


def test_pointer_stays_on_raw_angle_when_set_to_its_high_byte() -> None:
    """Datasheet: RAW ANGLE/ANGLE/MAGNITUDE suppress the auto-increment when the pointer was set
    to their high byte, so four bytes read from 0x0C are hi, lo, hi, lo."""
    bus = Bus(angle=0xABC)
    assert bus.read_mem(0x36, 0x0C, 4)[0] == [0x0A, 0xBC, 0x0A, 0xBC]
    assert bus.read_mem(0x36, 0x0E, 2)[0] == [0x0A, 0xBC]             # ANGLE = RAW ANGLE (no ZPOS)
    assert bus.read_mem(0x36, 0x1A, 1)[0] == [0x80]                   # AGC mid-range


def test_no_magnet_reads_ml_without_md() -> None:
    bus = Bus()
    bus.enc.magnet = False
    assert bus.read_mem(0x36, 0x0B, 1)[0] == [0x10]


@pytest.mark.parametrize("muxed, addr", [(True, 0x37), (False, 0x36)])
def test_other_address_or_pins_not_in_i2c_function_are_not_acknowledged(muxed: bool, addr: int) -> None:
    bus = Bus(muxed=muxed)
    got, _ns, aborted = bus.read_mem(addr, 0x0B, 3)
    assert aborted and got == [] and bus.enc.naks == 1 and bus.enc.reads == 0


def test_bus_time_follows_the_configured_scl() -> None:
    """57 bit times for pointer write + repeated start + 3 bytes; at the pico-sdk's 400 kHz
    setting (HCNT 125, LCNT 187 at 125 MHz: 2.5 us a bit) that is ~143 us, at 100 kHz 4x more."""
    bus = Bus()
    bus.speed(125, 187)
    _got, fast_ns, _ = bus.read_mem(0x36, 0x0B, 3)
    assert 130_000 <= fast_ns <= 160_000, fast_ns
    bus.speed(500, 750)
    _got, slow_ns, _ = bus.read_mem(0x36, 0x0B, 3)
    assert slow_ns == pytest.approx(4 * fast_ns, rel=0.01)


def test_attached_rig_wires_the_encoder_from_the_pin_map() -> None:
    from rp2040py import RP2040

    from pumpctl.rigs.emu.physics import EmuPhysics
    from pumpctl.rigs.emu.wiring import EmuWiring
    from pumpctl.rigs.emu.rigdir import load_pinmap

    physics = EmuPhysics.create()
    if not physics.has_model:
        pytest.skip("pumpsim not importable")
    wiring = EmuWiring(load_pinmap(), physics)
    wiring.attach(RP2040())
    enc: Any = wiring.encoder
    assert enc is not None and enc.i2c is wiring.mcu.i2c[0]
    assert wiring.state()["encoder"] == {"reads": 0, "naks": 0, "magnet": True, "pointer": 0}
