"""The emulated Pico's USB-CDC console on a pseudo-terminal that stays the same across resets."""
from __future__ import annotations

import asyncio
import os
from typing import Any


class _NakingHost:
    """The USB host's side of the CDC data OUT endpoint, as a real host behaves.

    rp2040py's host model answers every armed OUT buffer at once, with zero bytes when it has
    nothing to send. TinyUSB re-arms the endpoint from that completion interrupt, so an idle
    emulated Pico took a USB interrupt every ~44 us and never reached WFE: `time.sleep_ms` ran
    as a busy loop and the emulator crawled at ~0.05x real time (measured: 2,287 wakeups in
    100 ms, a bare Python loop at ~10 % of its speed). A real host NAKs the OUT token until it
    has data, which costs the device nothing. This model holds an armed read while there is no
    data and completes it when the pty delivers bytes (`data_arrived`), so the chip idles as
    it does on a bench.
    """

    def __init__(self, cdc: Any) -> None:
        self.cdc = cdc
        self.usb = cdc.usb
        self.serve = self.usb.on_endpoint_read
        self.pending: tuple[int, int] | None = None
        self.usb.on_endpoint_read = self._on_read
        self._host_reset = self.usb.on_reset
        self.usb.on_reset = self._on_reset

    def _on_read(self, endpoint: int, size: int) -> None:
        out = self.cdc._out_endpoint
        if endpoint != 0 and endpoint == out and self.cdc.tx_fifo.item_count == 0:
            self.pending = (endpoint, size)      # NAK: nothing to send yet
            return
        self.serve(endpoint, size)

    def data_arrived(self) -> None:
        if self.pending is not None and self.cdc.tx_fifo.item_count:
            endpoint, size = self.pending
            self.pending = None
            self.serve(endpoint, size)

    def _on_reset(self) -> None:
        self.pending = None
        if self._host_reset is not None:
            self._host_reset()


class _PtyBridge:
    """A pty pair that outlives every boot: host bytes go to the current chip's USB-CDC,
    chip output comes back. While the chip is off, host bytes are dropped (unplugged port)."""

    def __init__(self) -> None:
        import pty
        import tty

        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.cdc: Any = None
        self.clock: Any = None
        self._in = bytearray()
        self._out = bytearray()
        self._alarm: Any = None
        self._host: _NakingHost | None = None
        self._writer = False

    def bind(self, cdc: Any, clock: Any) -> None:
        self.cdc, self.clock = cdc, clock
        self._in.clear()
        self._alarm = clock.create_alarm(self._pump_tick) if clock is not None else None
        self._host = _NakingHost(cdc) if cdc is not None else None
        if cdc is not None:
            cdc.on_serial_data = self.from_device

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            data = b""
        if data and self.cdc is not None:
            self._in += data
            if not self._pump() and self._alarm is not None:
                self._alarm.schedule(1_000_000)

    def _pump(self) -> bool:
        if self.cdc is None:
            self._in.clear()
            return True
        fifo = self.cdc.tx_fifo
        free = max(fifo.size - fifo.item_count, 0)
        chunk = bytes(self._in[:free])
        del self._in[:free]
        for b in chunk:
            self.cdc.send_serial_byte(b)
        if chunk and self._host is not None:
            self._host.data_arrived()
        return not self._in

    def _pump_tick(self) -> None:
        if not self._pump() and self._alarm is not None:
            self._alarm.schedule(1_000_000)

    def from_device(self, data: bytes | bytearray) -> None:
        self._out += data
        if len(self._out) > 1 << 20:
            del self._out[: len(self._out) - (1 << 20)]
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                n = os.write(self.master, self._out)
                del self._out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._out.clear()
        if self._out and not self._writer:
            self.loop.add_writer(self.master, self._flush)
            self._writer = True
        elif not self._out and self._writer:
            self.loop.remove_writer(self.master)
            self._writer = False
