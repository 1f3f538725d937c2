"""Byte links to a rig: serial device or pty, pyserial URLs (loop://, spy://, socket://), in-process loopback.

Every failure a user can meet becomes a PortError / RigTimeout with one clear line: no such
port, port busy (another program holds it), permission denied, rig unplugged mid-transfer.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from .errors import PortError

BAUD = 115200   # USB CDC ignores it; a real UART bridge needs it
POLL_S = 0.02   # longest single wait inside read(); the port's timeout is set once (tcsetattr is slow)

try:
    from termios import error as _TermiosError   # pyserial lets it escape when the tty vanishes
except ImportError:  # pragma: no cover - Windows
    class _TermiosError(Exception):  # type: ignore[no-redef]
        pass


class Transport(Protocol):
    """What Pump needs from a link."""

    name: str

    def write(self, data: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes:
        """Bytes received, waiting up to `timeout_s` seconds for the first; b"" on timeout."""
        ...

    def close(self) -> None: ...


class SerialTransport:
    """A serial device, a pty, or a pyserial URL, opened exclusively where the OS allows."""

    def __init__(self, port: str) -> None:
        import serial  # pyserial
        self.name = port
        self._errors = (serial.SerialException, OSError, _TermiosError)
        try:
            if "://" in port:
                self._ser: Any = serial.serial_for_url(port, baudrate=BAUD, timeout=POLL_S)
            else:
                if os.path.isdir(port):
                    raise PortError("cannot open %s: is a directory, not a serial port (see pumpctl ports)" % port)
                if not os.path.exists(port):
                    raise PortError("cannot open %s: no such port (is the rig plugged in / the virtual rig "
                                    "started? see pumpctl ports)" % port)
                self._ser = serial.Serial(port, BAUD, timeout=POLL_S, exclusive=True)
        except PortError:
            raise
        except (serial.SerialException, OSError, ValueError, _TermiosError) as exc:
            raise PortError("cannot open %s: %s" % (port, _explain_open(exc))) from None

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
            self._ser.flush()
        except self._errors as exc:
            raise PortError("lost %s while writing: rig unplugged mid-transfer? (%s)" % (self.name, exc)) from None

    def read(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        try:
            while True:
                waiting = self._ser.in_waiting
                data = self._ser.read(waiting or 1)   # returns at the first byte or after POLL_S
                if data:
                    more = self._ser.in_waiting
                    return data + (self._ser.read(more) if more else b"")
                if time.monotonic() >= deadline:
                    return b""
        except self._errors as exc:
            raise PortError("lost %s while reading: rig unplugged mid-transfer? (%s)" % (self.name, exc)) from None

    def close(self) -> None:
        try:
            self._ser.close()
        except self._errors:
            pass


def _explain_open(exc: BaseException) -> str:
    text = str(exc)
    low = text.lower()
    errno = getattr(exc, "errno", None)
    if "exclusively lock" in low or errno == 16 or "resource busy" in low or "busy" in low:
        return "port busy (another program holds it: a terminal, mpremote, a second pumpctl?)"
    if errno == 13 or "permission denied" in low:
        return "permission denied (add yourself to the dialout group, or check the device's mode)"
    if errno == 2 or "no such file" in low or "could not open port" in low and "errno 2" in low:
        return "no such port"
    return text


class LoopbackTransport:
    """In-process link to a firmware ProtocolServer (tests, benchmarks): no OS, no threads.

    `write` feeds the bytes to the server at once; the server's answers are queued for `read`.
    `drop_responses` (int) discards that many next responses, as a lossy link would, so tests
    can exercise retransmission.
    """

    def __init__(self, controller: Any, name: str = "loopback") -> None:
        ProtocolServer = import_server()
        self.name = name
        self._rx: deque[bytes] = deque()
        self.server = ProtocolServer(controller, self._answer)
        self.drop_responses = 0
        self.closed = False

    def _answer(self, line: bytes) -> None:
        if self.drop_responses > 0:
            self.drop_responses -= 1
            return
        self._rx.append(bytes(line))

    def write(self, data: bytes) -> None:
        if self.closed:
            raise PortError("lost %s while writing: link closed" % self.name)
        self.server.feed(data)

    def read(self, timeout_s: float) -> bytes:
        if self._rx:
            out = b"".join(self._rx)
            self._rx.clear()
            return out
        if timeout_s > 0:
            time.sleep(min(timeout_s, 0.001))
        return b""

    def close(self) -> None:
        self.closed = True


def import_server() -> Any:
    """pumpfw.server.ProtocolServer, from the repository's firmware/ tree if not installed."""
    try:
        from pumpfw.server import ProtocolServer
    except ImportError:
        firmware = Path(__file__).resolve().parents[2] / "firmware"
        if not (firmware / "pumpfw" / "server.py").is_file():
            raise
        sys.path.insert(0, str(firmware))
        from pumpfw.server import ProtocolServer
    return ProtocolServer


class TracingTransport:
    """Wraps a transport and reports every chunk sent (">") and received ("<") to `sink`."""

    def __init__(self, inner: Transport, sink: Callable[[str], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.sink = sink

    def write(self, data: bytes) -> None:
        self.sink("> %r" % data)
        self.inner.write(data)

    def read(self, timeout_s: float) -> bytes:
        data = self.inner.read(timeout_s)
        if data:
            self.sink("< %r" % data)
        return data

    def close(self) -> None:
        self.inner.close()


def open_transport(port: str) -> SerialTransport:
    """Open `port` (device path, pty, or pyserial URL); PortError with the reason on failure."""
    if not port:
        raise PortError("no port given: use --port, $PUMP_PORT, or plug in exactly one Pico")
    return SerialTransport(port)
