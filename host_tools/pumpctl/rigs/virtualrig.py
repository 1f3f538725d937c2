"""Virtual rig host API: start/stop a rig (supervisor process), inject faults, read the world.

    with VirtualRig.start(tmp_path / "rig", time_scale=1000) as rig:
        port = rig.port                    # open it like a Pico's USB serial port
        rig.fault("occlude")
        sim_ms, grams = rig.balance()

`python -m pumpctl.rigs.virtualrig serve RIG_DIR ...` runs the supervisor in the foreground (what
`start` spawns, detached); see rigs/virtualrig_supervisor.py for what it does.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from ..errors import PortError, RigTimeout, UsageError

from .virtualrig_supervisor import FAULT_KINDS  # the one table of the supervisor's faults  # noqa: E402


def pumpctl_home() -> Path:
    """$PUMPCTL_HOME, default the user state directory platformdirs gives (~/.local/state/pumpctl
    on Linux, honouring $XDG_STATE_HOME)."""
    home = os.environ.get("PUMPCTL_HOME")
    if home:
        return Path(home)
    import platformdirs
    return platformdirs.user_state_path("pumpctl", appauthor=False)


EMU_RIG_NAME = "emu"
"""The emulated Pico's directory under $PUMPCTL_HOME/rigs (pumpctl.rigs.emu): no virtual rig takes it."""


def rig_dir_for(name: str) -> Path:
    """Directory of the named rig under $PUMPCTL_HOME/rigs/."""
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"rig name = {name!r}: must be a plain name (no '/', not starting with '.')")
    if name == EMU_RIG_NAME:
        raise UsageError(f"rig name = {name!r}: reserved for the emulated Pico ($PUMPCTL_HOME/rigs/{name}, "
                         f"pumpctl emu); choose another name")
    return pumpctl_home() / "rigs" / name


def list_rigs() -> list[dict[str, object]]:
    """Every virtual rig directory under $PUMPCTL_HOME/rigs with its last port and whether its
    supervisor runs (the emulated Pico's directory is not one)."""
    out: list[dict[str, object]] = []
    root = pumpctl_home() / "rigs"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir() or d.name == EMU_RIG_NAME:
            continue
        try:
            info = json.loads((d / "rig.json").read_text())
        except (OSError, ValueError):
            info = {}
        pid = info.get("pid")
        running = bool(isinstance(pid, int) and process_alive(pid))
        out.append({"name": d.name, "port": info.get("port") if running else None,
                    "pid": pid if running else None, "running": running, "dir": str(d)})
    return out


class VirtualRig:
    """Handle on a running virtual rig (its supervisor). Methods talk over the side channel."""

    def __init__(self, rig_dir: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.rig_dir = Path(rig_dir)
        self._proc = proc
        info = self._info()
        self.port: str = info["port"]
        self.pid: int = info["pid"]
        self.name: str = info["name"]

    def _info(self) -> dict[str, Any]:
        path = self.rig_dir / "rig.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise PortError(f"no virtual rig running in {self.rig_dir} (start it: pumpctl sim start)") from None

    # ---- life cycle ---------------------------------------------------------------------------
    @classmethod
    def start(cls, rig_dir: Path | str, time_scale: float | str = 1.0, fresh: bool = False,
              name: str | None = None, timeout_s: float = 15.0, detach: bool = False,
              hold_us: int | None = None, cache: bool = True, mechanism: str | None = None,
              balance: str | None = None) -> "VirtualRig":
        """Start a supervisor for `rig_dir` and wait until its port exists.

        time_scale: the ceiling of sim seconds per real second (1000 runs 24 h in 86 s at most;
        the firmware owns the clock, so a busy host slows the run without changing it), or
        "max": as fast as the firmware runs. fresh: wipe the flash directory and the world first
        (factory state). mechanism: the mechanism the physics (and a fresh flash) are made for
        (pumpctl.mechanisms; None: an existing world's, or the default). hold_us: the clock stops at this sim time until `hold(None)` (a script
        then places its requests at known times). detach: the supervisor outlives this process
        (`pumpctl sim start`); otherwise it ends with this process (it watches its parent's pid)
        or when the handle is stopped. cache: the twin answers input reads (and at `max` its
        idles) from what the supervisor promised can not change (docs/virtual-time.md); False
        makes every read a round trip, the reference that the cache must match exactly.
        """
        rig_dir = Path(rig_dir).resolve()
        time_scale = check_time_scale(time_scale)
        if (rig_dir / "rig.json").exists():
            try:
                existing = cls(rig_dir)
                existing.world()
                raise UsageError(f"a virtual rig already runs in {rig_dir} (port {existing.port}); stop it first")
            except (PortError, RigTimeout, OSError):
                (rig_dir / "rig.json").unlink(missing_ok=True)
        rig_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pumpctl.rigs.virtualrig", "serve", str(rig_dir),
               "--time-scale", str(time_scale), "--name", name or rig_dir.name]
        if fresh:
            cmd.append("--fresh")
        if hold_us is not None:
            cmd += ["--hold-us", str(int(hold_us))]
        if not cache:
            cmd.append("--no-cache")
        if mechanism is not None:
            cmd += ["--mechanism", mechanism]
        if balance is not None:
            cmd += ["--balance", balance]
        if not detach:
            cmd += ["--parent-pid", str(os.getpid())]
        log = open(rig_dir / "supervisor.log", "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=detach, close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not (rig_dir / "rig.json").exists():
            if proc.poll() is not None:
                tail = (rig_dir / "supervisor.log").read_text(errors="replace")[-2000:]
                said = [ln for ln in tail.splitlines() if ln.startswith("virtual rig: ")]
                if proc.returncode == 2 and said:
                    raise UsageError(said[-1][len("virtual rig: "):])
                raise PortError(f"virtual rig supervisor exited with status {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                proc.kill()
                raise RigTimeout(f"virtual rig in {rig_dir} did not come up within {timeout_s} s")
            time.sleep(0.02)
        rig = cls(rig_dir, None if detach else proc)
        _register_port(rig.port, rig_dir)
        return rig

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the rig: firmware killed, world saved, sockets removed."""
        try:
            self._request({"cmd": "stop"})
        except (PortError, RigTimeout):
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    return
            elif not process_alive(self.pid):
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)

    def __enter__(self) -> "VirtualRig":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- side channel -------------------------------------------------------------------------
    def _request(self, req: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        path = self.rig_dir / "ctl.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                part = s.recv(65536)
                if not part:
                    raise PortError(f"virtual rig {self.rig_dir} closed its side channel")
                buf += part
        except socket.timeout:
            raise RigTimeout(f"virtual rig {self.rig_dir} did not answer {req.get('cmd')} in {timeout_s} s") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise PortError(f"no virtual rig running in {self.rig_dir} (start it: pumpctl sim start)") from None
        finally:
            s.close()
        resp: dict[str, Any] = json.loads(buf)
        if not resp.get("ok"):
            raise UsageError(str(resp.get("error")))
        return resp

    def world(self) -> dict[str, Any]:
        """The physical world now: plunger_steps, pulses, pending, reservoir_pl, line_pl, out_pl,
        pressure_pa, stall, end_stop, balance_ng, sim_us, firmware (running/hung/down), boots,
        reset_cause, steps_done (this boot), alarm_pattern ..."""
        return self._request({"cmd": "world"})["world"]

    def balance(self) -> tuple[int, float]:
        """(sim ms, grams shown by the balance): noisy, quantised, evaporation included."""
        r = self._request({"cmd": "balance"})
        return r["sim_us"] // 1000, r["ng"] / 1e9

    def balance_log(self, since: int = 0, every_ms: int | None = None) -> list[tuple[int, int, float]]:
        """The balance's own timed output: with `every_ms`, (re)start recording a reading every
        every_ms of sim time; returns the samples with index >= since as (index, sim ms, grams)."""
        req: dict[str, Any] = {"cmd": "balance_log", "since": since}
        if every_ms is not None:
            req["every_ms"] = every_ms
        r = self._request(req)
        return [(i, t_us // 1000, ng / 1e9) for i, t_us, ng in r["samples"]]

    def fault(self, kind: str, at_us: int | None = None, after_ms: int | None = None,
              **args: Any) -> dict[str, Any]:
        """Inject a fault: occlude, unocclude, stall, unstall, jam, unjam, slip,
        unslip, clear, empty, reservoir(nl=),
        button(count=, gap_ms=), power-cut(off_ms=), hang, tare. Now, or landing exactly at sim
        time `at_us` / `after_ms` of sim time from now. Returns the world after the request."""
        if kind not in FAULT_KINDS:
            raise UsageError(f"fault kind = {kind!r}: unknown (one of {', '.join(FAULT_KINDS)})")
        req: dict[str, Any] = {"cmd": "fault", "kind": kind, "args": args}
        if at_us is not None:
            req["at_us"] = at_us
        if after_ms is not None:
            req["after_ms"] = after_ms
        return self._request(req)["world"]

    def hold(self, until_us: int | None) -> dict[str, Any]:
        """Stop the clock at sim time until_us (None: release it). Returns the world."""
        return self._request({"cmd": "hold", "until_us": until_us})["world"]

    def sim_us(self) -> int:
        """The rig's sim time now (us)."""
        return int(self.world()["sim_us"])

    def run_until(self, sim_us: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Let the clock run to sim_us and hold it there; returns the world once the rig waits
        at that time (its firmware idle, down or hung)."""
        self.hold(sim_us)
        return self._until_held(timeout_s, lambda w: f"virtual rig did not reach sim time {sim_us} us "
                                f"in {timeout_s} s (at {w['sim_us']})")

    def wait_held(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until the rig waits at its held clock (its firmware idle at the hold, down or
        hung). A host request sent before that meets a firmware still busy (booting, say) and
        lands a loop iteration later or not, as the host's load decides; sent after it, the
        request lands at the held time. Returns the world."""
        return self._until_held(timeout_s, lambda w: f"virtual rig did not reach its held clock in "
                                f"{timeout_s} s (hold {w['hold_us']} us, at {w['sim_us']} us)")

    def _until_held(self, timeout_s: float, why: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
        """Poll the world until the rig waits at its held clock; RigTimeout(why(world)) after
        timeout_s of wall time."""
        deadline = time.monotonic() + timeout_s
        while True:
            w = self.world()
            if w["held"]:
                return w
            if time.monotonic() > deadline:
                raise RigTimeout(why(w))
            time.sleep(0.005)

    def power_cut(self, off_ms: int = 0) -> None:
        """Kill the firmware at this instant; it boots again after off_ms of sim time."""
        self.fault("power-cut", off_ms=off_ms)

    def restart(self) -> None:
        """Power-cycle the firmware now (flash and world kept)."""
        self._request({"cmd": "restart"})

    def wait_firmware(self, boots: int, timeout_s: float = 10.0) -> dict[str, Any]:
        """Wait until the firmware's boot count reaches `boots` and it is running."""
        deadline = time.monotonic() + timeout_s
        while True:
            w = self.world()
            if w["boots"] >= boots and w["firmware"] == "running":
                return w
            if time.monotonic() > deadline:
                raise RigTimeout(f"virtual rig did not reach boot {boots} in {timeout_s} s (at {w['boots']}, {w['firmware']})")
            time.sleep(0.02)

    @property
    def flash_dir(self) -> Path:
        return self.rig_dir / "flash"


def _port_entry(port: str) -> Path:
    return pumpctl_home() / "ports" / (port.strip("/").replace("/", "_") + ".json")


def _register_port(port: str, rig_dir: Path) -> None:
    """Remember which rig directory serves `port`, so `pumpctl deploy PORT` can restart it."""
    entry = _port_entry(port)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps({"port": port, "rig_dir": str(rig_dir)}))


def find_by_port(port: str) -> VirtualRig:
    """The running virtual rig whose port is `port` (registered at start, or under $PUMPCTL_HOME/rigs)."""
    candidates = []
    try:
        candidates.append(Path(json.loads(_port_entry(port).read_text())["rig_dir"]) / "rig.json")
    except (OSError, ValueError, KeyError):
        pass
    rigs = pumpctl_home() / "rigs"
    if rigs.is_dir():
        candidates.extend(sorted(rigs.glob("*/rig.json")))
    for info in candidates:
        try:
            if json.loads(info.read_text()).get("port") == port:
                return VirtualRig(info.parent)
        except (OSError, ValueError):
            continue
    raise PortError(f"no virtual rig with port {port} under {rigs} (started elsewhere? set PUMPCTL_HOME)")


def restart(port: str) -> None:
    """Power-cycle the virtual rig on `port` (deploy's restart step)."""
    find_by_port(port).restart()


def check_time_scale(time_scale: float | str) -> float | str:
    """A time scale as the rig takes it: a number in (0, 100000], or "max"."""
    if isinstance(time_scale, str):
        if time_scale.strip().lower() == "max":
            return "max"
        try:
            time_scale = float(time_scale)
        except ValueError:
            raise UsageError(f"time_scale = {time_scale!r}: must be a number or 'max'") from None
    if not time_scale > 0 or time_scale > 100000:
        raise UsageError(f"time_scale = {time_scale}: must be > 0 and <= 100000 (or 'max')")
    return time_scale


def time_scale_arg(text: str) -> float | str:
    """argparse type of --time-scale: a number (the ceiling, sim s per wall s) or 'max'."""
    import argparse
    try:
        return check_time_scale(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def poll_scale(time_scale: float | str) -> float:
    """The scale a host uses to size its polling waits: at 'max' the rig may run 100000x."""
    return 100000.0 if time_scale == "max" else float(time_scale)


def scale_text(time_scale: float | str) -> str:
    return "max" if time_scale == "max" else "%gx" % float(time_scale)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone: a child of ours is reaped, another
    process's is read from /proc); shared by the rig handles and the lab's place guards."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:   # not our child: its state from /proc
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pumpctl.rigs.virtualrig",
                                     description="Run a virtual-rig supervisor in the foreground.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the supervisor for RIG_DIR until stopped")
    serve.add_argument("rig_dir", type=Path)
    serve.add_argument("--time-scale", default="1", help="sim seconds per real second")
    serve.add_argument("--name", default=None, help="rig id reported by the firmware")
    serve.add_argument("--fresh", action="store_true", help="wipe flash and world first")
    serve.add_argument("--hold-us", type=int, default=None, help="start with the clock held at this sim time")
    serve.add_argument("--no-cache", action="store_true",
                       help="every input read of the twin is a round trip (the cache's reference)")
    serve.add_argument("--balance", default=None,
                       help="simulated balance of a new world (pumpctl.accuracy.balances; default the mechanism's)")
    serve.add_argument("--mechanism", default=None,
                       help="mechanism the physics are made for (pumpctl.mechanisms; default 20ml)")
    serve.add_argument("--parent-pid", type=int, default=None,
                       help="end when this process ends (a rig started for a test or a session)")
    args = parser.parse_args(argv)
    from .virtualrig_supervisor import Supervisor
    # the parent is watched by pid in the supervisor's loop (not PR_SET_PDEATHSIG, which fires
    # when the *thread* that started the rig ends, e.g. a worker thread of a test)
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 1              # the parent is already gone
    try:
        sup = Supervisor(args.rig_dir, args.name or args.rig_dir.name, args.time_scale, args.fresh,
                         hold_us=args.hold_us, parent_pid=args.parent_pid, cache=not args.no_cache,
                         mechanism=args.mechanism, balance=args.balance)
    except UsageError as exc:
        sys.stderr.write("virtual rig: %s\n" % exc)
        return 2
    sup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
