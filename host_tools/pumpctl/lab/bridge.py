"""RFC 2217 server for a serial port or pty on a TCP port (exporter side): what ser2net does for labgrid, in pyserial.

One client at a time per port (a second one waits in the listen backlog, as a busy port would
hold it off); the device is opened when a client connects and closed when it goes, so the
rig sees what a USB host opening its CDC port would. Modem-control requests a pty cannot
honour (DTR/RTS) are accepted and ignored, as ser2net does for a pty.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import serial
import serial.rfc2217

LOG = logging.getLogger("pumpctl.lab.bridge")


class _PtySerial(serial.Serial):
    """A serial device whose modem lines may not exist (a pty): setting them is a no-op there."""

    def _update_dtr_state(self) -> None:
        try:
            super()._update_dtr_state()
        except OSError:
            pass

    def _update_rts_state(self) -> None:
        try:
            super()._update_rts_state()
        except OSError:
            pass

    def _update_break_state(self) -> None:
        try:
            super()._update_break_state()
        except OSError:
            pass

    @property
    def cts(self) -> bool:
        try:
            return bool(super().cts)
        except OSError:
            return True

    @property
    def dsr(self) -> bool:
        try:
            return bool(super().dsr)
        except OSError:
            return True

    @property
    def ri(self) -> bool:
        try:
            return bool(super().ri)
        except OSError:
            return False

    @property
    def cd(self) -> bool:
        try:
            return bool(super().cd)
        except OSError:
            return True


class _Connection:
    """The network side of one client: a thread-safe write, as PortManager needs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class Rfc2217Bridge:
    """Serve `device` (a serial device or pty path) as RFC 2217 on host:port (port 0: any free one).

    `start()` binds and serves in a daemon thread; `port` is then the TCP port; `stop()` ends it.
    """

    def __init__(self, device: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not host:
            raise ValueError("bridge host = %r: give an address to listen on (127.0.0.1 for loopback)" % host)
        self.device = device
        self.host = host
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.clients_served = 0

    @property
    def url(self) -> str:
        return "rfc2217://%s:%d" % (self.host, self.port)

    def start(self) -> "Rfc2217Bridge":
        self._thread = threading.Thread(target=self._serve, name="rfc2217-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._srv.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> "Rfc2217Bridge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _serve(self) -> None:
        self._srv.settimeout(0.5)
        while not self._stop.is_set():
            try:
                client, addr = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.clients_served += 1
            try:
                self._serve_client(client)
            except Exception as exc:  # one client's trouble must not end the bridge
                LOG.warning("bridge %s: client %s: %s", self.url, addr, exc)
            finally:
                try:
                    client.close()
                except OSError:
                    pass

    def _serve_client(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ser = _PtySerial()
        ser.port = self.device
        ser.baudrate = 115200
        ser.timeout = 0.05
        try:
            ser.open()
        except (serial.SerialException, OSError) as exc:
            LOG.warning("bridge %s: cannot open %s: %s", self.url, self.device, exc)
            return
        conn = _Connection(client)
        manager = serial.rfc2217.PortManager(ser, conn)
        done = threading.Event()

        def device_to_net() -> None:
            try:
                while not done.is_set():
                    data = ser.read(ser.in_waiting or 1)
                    if data:
                        conn.write(b"".join(manager.escape(data)))
                    manager.check_modem_lines()
            except (serial.SerialException, OSError, TypeError):
                pass
            finally:
                done.set()

        reader = threading.Thread(target=device_to_net, name="rfc2217-rx-%d" % self.port, daemon=True)
        reader.start()
        client.settimeout(0.5)
        try:
            while not done.is_set() and not self._stop.is_set():
                try:
                    data = client.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    break
                out = b"".join(manager.filter(data))
                if out:
                    ser.write(out)
        except (OSError, serial.SerialException):
            pass
        finally:
            done.set()
            reader.join(timeout=2.0)
            ser.close()
