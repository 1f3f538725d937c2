"""`EmuRig`: the host's handle on an emulated Pico (start, attach, side channel, stop)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ...errors import PortError, RigTimeout, UsageError
from ..virtualrig import process_alive
from .flashid import FLASH_ID_FILE
from .image import find_image
from .rigdir import (BOOT_TIMEOUT_S, FLASH_FILE, LOG_FILE, STATE_FILE, default_rig_dir, start_mechanism,
                     write_emu_hw_dir)


class EmuRig:
    """Handle on a running emulated-Pico supervisor: its port and its side channel."""

    def __init__(self, rig_dir: Path, state: dict[str, Any]) -> None:
        self.dir = rig_dir
        self.state = state
        self.port: str = state["port"]
        self.pid: int = state["pid"]
        self._sock: socket.socket | None = None
        self._file: Any = None

    @classmethod
    def attach(cls, rig_dir: Path | None = None) -> EmuRig:
        """The rig running in `rig_dir`, or raise PortError saying how to start one."""
        rig_dir = rig_dir or default_rig_dir()
        path = rig_dir / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            raise PortError(f"no emulated Pico running in {rig_dir} (start one: pumpctl emu start)") from None
        if not process_alive(state["pid"]):
            path.unlink(missing_ok=True)
            raise PortError(f"emulated Pico in {rig_dir} died (pid {state['pid']}); see {rig_dir / LOG_FILE}")
        return cls(rig_dir, state)

    @classmethod
    def start(cls, rig_dir: Path | None = None, firmware: str | None = None, fresh: bool = False,
              timeout: float = BOOT_TIMEOUT_S, detach: bool = False,
              owner_pid: int | None = None, mechanism: str | None = None) -> EmuRig:
        """Start a supervisor in the background, wait until the image has enumerated, return its
        handle. `fresh` wipes the flash image first. detach: it outlives this process (`pumpctl
        emu start`); otherwise it ends when `owner_pid` (default: this process) ends, so a test
        run cut by a timeout leaves no emulator running. `mechanism` (pumpctl.mechanisms): the
        mechanism wired to the pins and written to `<rig_dir>/hw/` for deploy; None keeps the one
        a kept flash was started with (its deploy's), else the default. A kept flash started with
        another mechanism than before is refused: its firmware doses by the old one's microstep."""
        rig_dir = rig_dir or default_rig_dir()
        image, _info = find_image(firmware)
        try:
            running = cls.attach(rig_dir)
        except PortError:
            running = None
        if running is not None:
            raise UsageError(f"an emulated Pico is already running in {rig_dir} on {running.port} "
                             f"(pid {running.pid}); pumpctl emu stop first")
        rig_dir.mkdir(parents=True, exist_ok=True)
        write_emu_hw_dir(rig_dir, mechanism=start_mechanism(rig_dir, mechanism, fresh))
        if fresh:
            # a new, empty Pico: its flash has an ID of its own (flashid.py)
            (rig_dir / FLASH_FILE).unlink(missing_ok=True)
            (rig_dir / FLASH_ID_FILE).unlink(missing_ok=True)
        (rig_dir / STATE_FILE).unlink(missing_ok=True)
        log = open(rig_dir / LOG_FILE, "ab")
        owner = [] if detach else ["--owner-pid", str(owner_pid or os.getpid())]
        proc = subprocess.Popen([sys.executable, "-m", "pumpctl.rigs.emu.supervisor", "serve", "--dir", str(rig_dir),
                                 "--image", str(image), *owner], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, cwd=str(rig_dir))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (rig_dir / LOG_FILE).read_text(errors="replace")[-800:]
                raise PortError(f"emulated Pico supervisor exited with {proc.returncode}: {tail}")
            try:
                state = json.loads((rig_dir / STATE_FILE).read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("pid") == proc.pid and state.get("ready"):
                return cls(rig_dir, state)
            time.sleep(0.05)
        proc.terminate()
        raise RigTimeout(f"emulated Pico did not boot within {timeout:.0f} s; see {rig_dir / LOG_FILE}")

    def request(self, cmd: str, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
        """One side-channel request; returns the reply or raises UsageError with its error."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._sock.connect(self.state["socket"])
            except OSError as exc:
                self._sock = None
                raise PortError(f"emulated Pico side channel {self.state['socket']}: {exc}") from None
            self._file = self._sock.makefile("rwb")
        self._sock.settimeout(timeout)
        self._file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            self.close()
            raise PortError("emulated Pico side channel closed (supervisor gone)")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise UsageError(f"emu {cmd}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._file = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the supervisor; the flash image is saved first (like switching the rig off)."""
        try:
            self.request("stop", timeout=timeout)
        except (PortError, OSError):
            pass
        self.close()
        deadline = time.monotonic() + timeout
        while process_alive(self.pid) and time.monotonic() < deadline:
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if process_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
