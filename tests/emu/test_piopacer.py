"""The PIO pacer (rigs/emu/wiring.PioPacer) on a bare rp2040py chip, without a firmware image: a
state machine stalled on `pull(block)` parks the pacer (no alarm per emulated us), and a TX FIFO
write through the bus, with the CPU asleep right after it, runs the machine on time (no backlog
written off). Runs wherever rp2040py is installed."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rp2040py")

from pumpctl.rigs.emu.wiring import PioPacer  # noqa: E402

PIO0 = 0x5020_0000
CTRL, FSTAT, TXF0, INSTR_MEM0, SM0_CLKDIV = 0x000, 0x004, 0x010, 0x048, 0x0C8
FSTAT_RXEMPTY_SM0 = 1 << 8
# pull(block); out(y, 32); label loop: jmp(y_dec, loop); push(block); jmp(0)
PROGRAM = (0x80A0, 0x6040, 0x0082, 0x8020, 0x0000)
SYS_NS = 8                                   # 125 MHz


class Chip:
    """A bare RP2040 with the pacer attached and a counting program on PIO0 SM0 at 1 MHz."""

    def __init__(self) -> None:
        from rp2040py import RP2040

        self.mcu = RP2040()
        self.mcu.simulator = self        # PIO is stepped by the loop below, as a Simulator steps it
        self.pacer = PioPacer(self.mcu)
        self.clock = self.mcu.clock
        for i, op in enumerate(PROGRAM):
            self.write(INSTR_MEM0 + 4 * i, op)
        self.write(SM0_CLKDIV, 125 << 16)    # 1 us per state-machine cycle
        self.write(CTRL, 1)                  # SM0 on: it stalls on its first pull
        self.sleep(5_000)

    def write(self, offset: int, value: int) -> None:
        """A CPU store to a PIO0 register, through the bus (as the firmware's would go)."""
        self.mcu.core.waiting = False
        self.mcu.write_uint32(PIO0 + offset, value)

    def rx_empty(self) -> bool:
        return bool(self.mcu.pio[0].read_uint32(FSTAT) & FSTAT_RXEMPTY_SM0)

    def sleep(self, ns: int, until: Any = None) -> tuple[int, float | None]:
        """The CPU asleep for `ns`: jumps from alarm to alarm, PIO advanced by each jump's
        clocks, as rp2040py's simulator loop does in WFE. Returns (jumps, emulated ns at which
        `until()` first held, or None)."""
        self.mcu.core.waiting = True
        end = self.clock.nanos + ns
        jumps, seen = 0, None
        while self.clock.nanos < end:
            idle = min(self.clock.nanos_to_next_alarm, end - self.clock.nanos)
            self.clock.tick(idle)
            for pio in self.mcu.pio:
                if not pio.stopped:
                    pio.advance(int(idle / SYS_NS) or 1)
            jumps += 1
            if seen is None and until is not None and until():
                seen = self.clock.nanos
        return jumps, seen


def test_a_machine_stalled_on_pull_parks_the_pacer() -> None:
    chip = Chip()
    assert chip.pacer.parked
    jumps, _ = chip.sleep(10_000_000)                # 10 emulated ms
    assert jumps <= 10_000_000 // PioPacer.PARK_CHECK_NS + 2, jumps   # not one per us (10,000)
    assert chip.pacer.parked


def test_a_tx_write_wakes_the_pacer_and_the_machine_runs_on_time() -> None:
    chip = Chip()
    count = 50
    t0, wakes = chip.clock.nanos, chip.pacer.wakes
    chip.write(TXF0, count)                      # the CPU queues a word, then sleeps at once
    assert not chip.pacer.parked and chip.pacer.wakes == wakes + 1
    assert chip.clock.nanos_to_next_alarm <= 1_000          # the machine's next cycle, not 1 ms
    _, done = chip.sleep(1_000_000, until=lambda: not chip.rx_empty())
    # the pull completes in the write; out, count + 1 loop cycles, push: count + 3 us, each
    # instruction on its own cycle
    assert done is not None, "the machine never reported: it ran one instruction per parked jump"
    assert (count + 3) * 1_000 <= done - t0 <= (count + 4) * 1_000, done - t0
    assert chip.mcu.pio[0].backlog_drops == 0
    assert chip.pacer.parked                     # stalled on the next pull again


def test_cancel_gives_the_bus_its_blocks_back() -> None:
    chip = Chip()
    chip.pacer.cancel()
    assert chip.mcu.peripherals[0x50200] is chip.mcu.pio[0]
    assert chip.mcu.peripherals[0x50300] is chip.mcu.pio[1]


class FakeTime:
    """Wall time for RealTimeCeiling that moves only when told to or slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.naps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.naps.append(s)
        self.now += s


def _ceiling() -> tuple[Any, Any, FakeTime]:
    from rp2040py import RP2040

    from pumpctl.rigs.emu.wiring import RealTimeCeiling

    mcu = RP2040()
    fake = FakeTime()
    ceiling = RealTimeCeiling(mcu)
    ceiling._time = fake  # type: ignore[assignment]
    ceiling.anchor()
    return mcu.clock, ceiling, fake


def test_outside_waits_the_chip_runs_no_faster_than_wall_time() -> None:
    clock, ceiling, fake = _ceiling()
    clock.tick(50_000_000)                       # 50 emulated ms of idle jumps, no wall time
    assert abs(ceiling.slept_s - 0.050) < 0.0015, ceiling.slept_s
    assert max(fake.naps) <= ceiling.MAX_SLEEP_S


def test_inside_a_wait_the_chip_runs_ahead() -> None:
    clock, ceiling, fake = _ceiling()
    ceiling.waits = 1
    clock.tick(2_000_000_000)                    # 2 emulated s in no wall time at all
    assert ceiling.slept_s == 0.0 and not fake.naps
    ceiling.waits = 0
    ceiling.anchor()                             # as the supervisor does when a wait ends
    clock.tick(10_000_000)
    assert abs(ceiling.slept_s - 0.010) < 0.0015, ceiling.slept_s


def test_behind_real_time_it_does_not_race_to_catch_up() -> None:
    clock, ceiling, fake = _ceiling()
    fake.now += 5.0                              # busy code: 5 wall s, no emulated time
    clock.tick(1_000_000)
    clock.tick(20_000_000)                       # then idle: held to real time from here
    assert abs(ceiling.slept_s - 0.020) < 0.0015, ceiling.slept_s
