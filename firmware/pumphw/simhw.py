"""Simulated twin of the hardware layer: pumphw.base.Hardware over the pumpsim physical model.

Two links to the world, chosen by `make_sim_hardware()`:
- rig link (env PUMPSIM_SOCK set by the virtual-rig supervisor): every pin-level call is one
  round trip of fixed-size frames on a Unix socket to the supervisor, which owns the World
  (so physics survives power cuts and the host can weigh the balance while firmware is down);
- local link (no supervisor): an in-process World, for tests that run firmware in one process.

Time: sim_us = base_us + (monotonic_us - epoch_us) * num // den (time scale num/den).
ticks_ms wraps at 2**30 like the RP2040 port and starts at 0 at boot; sleep_ms sleeps
ms * den / num real ms. Nothing else reveals the scale. Per-call cost: clock reads are local
(no allocation); stepper/sensor calls pack into preallocated buffers (no allocation on the
unix port, checked with micropython.heap_lock in tests/rig).
"""
import os
import sys
import time

from pumpcore.fixed import const
from pumphw import base
from pumpsim import twinport
from pumpsim.twinport import (OP_ABORT, OP_ALARM, OP_BUTTON, OP_ENABLE, OP_ENABLED, OP_ENDSTOP, OP_SCREW,
                              OP_PRESSURE, OP_QUEUE, OP_STEPS, OP_WDT_FEED, OP_WDT_START)

_TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)

try:
    _mono_us = time.ticks_us          # micropython unix port: CLOCK_MONOTONIC in us
    _sleep_us = time.sleep_us
except AttributeError:                # CPython
    def _mono_us():
        return time.monotonic_ns() // 1000

    def _sleep_us(us):
        time.sleep(us / 1000000)


class _SimClock:
    """Scaled monotonic clock: sim microseconds from real ones."""

    def __init__(self, epoch_us, base_us, num, den):
        if num <= 0 or den <= 0:
            raise ValueError("time scale = %r/%r: must be positive" % (num, den))
        self.epoch_us = epoch_us
        self.base_us = base_us
        self.num = num
        self.den = den

    def sim_us(self):
        return self.base_us + (_mono_us() - self.epoch_us) * self.num // self.den

    def real_us(self, sim_us):
        """Real microseconds that `sim_us` of sim time take (rounded up)."""
        return (sim_us * self.den + self.num - 1) // self.num


def _le64(buf, off):
    """Little-endian int64 at buf[off:off+8] for values in -2**56..2**56-1, with no big-int
    intermediate (the unix port would allocate one and fail under heap_lock)."""
    v = 0
    i = off + 6
    while i >= off:
        v = (v << 8) | buf[i]
        i -= 1
    if buf[off + 7] & 0x80:
        v -= 1 << 56
    return v


class _RigLink:
    """Round trips to the supervisor's TwinPort over a Unix socket."""

    def __init__(self, path):
        import socket
        import struct
        self._pack = struct.pack_into
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if sys.implementation.name == "micropython":
            s.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
            self._write = s.write
            self._readinto = s.readinto
        else:
            s.connect(path)
            self._write = s.sendall
            self._readinto = s.recv_into
        self._sock = s
        self._req = bytearray(twinport.REQUEST_SIZE)
        self._ans = bytearray(twinport.ANSWER_SIZE)
        self.r0 = 0
        self.r1 = 0
        self.r2 = 0

    def call(self, op, sim_us, a, b, c):
        self._pack("<qqqqq", self._req, 0, op, sim_us, a, b, c)
        self._write(self._req)
        n = self._readinto(self._ans)
        if n != twinport.ANSWER_SIZE:
            self._read_rest(n)
        ans = self._ans
        self.r0 = _le64(ans, 0)
        self.r1 = _le64(ans, 8)
        self.r2 = _le64(ans, 16)

    def _read_rest(self, n):
        if not n:
            raise OSError("virtual rig supervisor closed the hardware link")
        got = bytearray(self._ans[:n])
        while len(got) < twinport.ANSWER_SIZE:
            part = bytearray(twinport.ANSWER_SIZE - len(got))
            k = self._readinto(part)
            if not k:
                raise OSError("virtual rig supervisor closed the hardware link")
            got += part[:k]
        self._ans[:] = got


class SimStepper(base.Stepper):
    """Step generator + driver, executed by the model in sim time."""

    def __init__(self, hw):
        self._hw = hw
        self._link = hw._link

    def enable(self, on):
        self._link.call(OP_ENABLE, self._hw._clock.sim_us(), 1 if on else 0, 0, 0)

    def enabled(self):
        self._link.call(OP_ENABLED, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r0 == 1

    def queue(self, steps, period_us, direction):
        if steps < 0 or steps > _TICKS_MASK:
            raise ValueError("stepper.queue steps = %r: must be in 0..%d" % (steps, _TICKS_MASK))
        if period_us < 1 or period_us > _TICKS_MASK:
            raise ValueError("stepper.queue period_us = %r: must be in 1..%d" % (period_us, _TICKS_MASK))
        if direction != base.DIR_INFUSE and direction != base.DIR_RETRACT:
            raise ValueError("stepper.queue direction = %r: must be DIR_INFUSE (1) or DIR_RETRACT (0)"
                             % (direction,))
        self._link.call(OP_QUEUE, self._hw._clock.sim_us(), steps, period_us, direction)
        return self._link.r0 == 1

    def steps_done(self):
        self._link.call(OP_STEPS, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    def pending(self):
        self._link.call(OP_STEPS, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r1

    def abort(self):
        self._link.call(OP_ABORT, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    def stall(self):
        self._link.call(OP_STEPS, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r2 == 1


class SimHardware(base.Hardware):
    """The twin: same names as the RP2040 layer, nothing more for the firmware to call."""

    def __init__(self, link, clock, boot_us, reset_cause, rig_id, flash_root):
        self._link = link
        self._clock = clock
        self._boot_us = boot_us
        self._reset_cause = reset_cause
        self._rig_id = rig_id
        self.flash_root = flash_root
        self.stepper = SimStepper(self)
        self._poll = None
        self._stdin = None
        self._stdout = None

    # time
    def ticks_ms(self):
        return ((self._clock.sim_us() - self._boot_us) // 1000) & _TICKS_MASK

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def sleep_ms(self, ms):
        if ms > 0:
            _sleep_us(self._clock.real_us(ms * 1000))

    def idle(self, ms):
        """Wait up to ms of device time, returning as soon as host bytes arrive."""
        if ms <= 0:
            return
        if self._poll is None:
            self._open_stdio()
        us = self._clock.real_us(ms * 1000)
        if us < 2000:
            if not self._poll.poll(0):
                _sleep_us(us)
            return
        self._poll.poll(us // 1000)

    # inputs
    def pressure_kpa_x10(self):
        self._link.call(OP_PRESSURE, self._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    def end_stop(self):
        self._link.call(OP_ENDSTOP, self._clock.sim_us(), 0, 0, 0)
        return self._link.r0 == 1

    def screw_angle(self):
        self._link.call(OP_SCREW, self._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    def bolus_button_presses(self):
        self._link.call(OP_BUTTON, self._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    # outputs
    def alarm_output(self, pattern):
        self._link.call(OP_ALARM, self._clock.sim_us(), pattern, 0, 0)

    # watchdog and reset
    def watchdog_start(self, timeout_ms):
        if timeout_ms < 1 or timeout_ms > 8388:
            raise ValueError("watchdog timeout_ms = %r: must be in 1..8388 (RP2040 limit)" % (timeout_ms,))
        self._link.call(OP_WDT_START, self._clock.sim_us(), timeout_ms, 0, 0)

    def watchdog_feed(self):
        self._link.call(OP_WDT_FEED, self._clock.sim_us(), 0, 0, 0)

    def watchdog_stop(self):
        self._link.call(OP_WDT_START, self._clock.sim_us(), 0, 0, 0)   # timeout 0: disarmed

    def reset_cause(self):
        return self._reset_cause

    # host link: the process's stdin/stdout (the rig's pty)
    def _open_stdio(self):
        import select
        self._stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
        self._stdout = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        if sys.implementation.name == "micropython":
            self._read1 = self._stdin.read
        else:
            fd = sys.stdin.fileno()
            self._read1 = lambda n: os.read(fd, n)
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)

    def serial_read(self):
        """Bytes waiting on the link. Stops after a 0x03 (Ctrl-C) and leaves what follows
        unread for the REPL, as the Pico's USB CDC takes Ctrl-C out of band: mpremote sends
        b"\\r\\x03\\r\\x01" in one burst and the Ctrl-A must reach the REPL."""
        if self._poll is None:
            self._open_stdio()
        if not self._poll.poll(0):
            return b""
        out = bytearray()
        while len(out) < 4096 and self._poll.poll(0):
            b = self._read1(1)
            if not b:
                break
            out += b
            if b[0] == 3:
                break
        return bytes(out)

    def serial_write(self, data):
        if self._stdout is None:
            self._open_stdio()
        self._stdout.write(data)
        if hasattr(self._stdout, "flush"):
            self._stdout.flush()

    def rig_id(self):
        return self._rig_id


class _LocalLink:
    """In-process link: calls the TwinPort directly."""

    def __init__(self, port):
        self.port = port
        self.r0 = 0
        self.r1 = 0
        self.r2 = 0

    def call(self, op, sim_us, a, b, c):
        p = self.port
        p.call(op, sim_us, a, b, c)
        self.r0 = p.r0
        self.r1 = p.r1
        self.r2 = p.r2


def _parse_scale(text):
    """'1000' or '1000/1' or '5/2' -> (num, den)."""
    if "/" in text:
        a, b = text.split("/")
        return int(a), int(b)
    return int(text), 1


def make_sim_hardware(world=None, time_scale=(1, 1), rig_id="sim-local", flash_root=None,
                      reset_cause=base.RESET_POWER_ON):
    """The simulated twin. Inside a virtual rig (env PUMPSIM_SOCK) it attaches to the rig's
    supervisor and every argument is ignored; otherwise it builds an in-process world
    (`world`: a pumpsim.model.World, default from ../hw/mechanism.json defaults) with
    `time_scale` = (num, den) and returns a hardware whose `_port` is the TwinPort (tests only).
    """
    env = os.getenv("PUMPSIM_SOCK")
    if env:
        num, den = _parse_scale(os.getenv("PUMPSIM_SCALE") or "1")
        clock = _SimClock(int(os.getenv("PUMPSIM_EPOCH_US")), int(os.getenv("PUMPSIM_BASE_US")), num, den)
        return SimHardware(_RigLink(env), clock, int(os.getenv("PUMPSIM_BOOT_US")),
                           int(os.getenv("PUMPSIM_RESET") or "0"), os.getenv("PUMPSIM_RIG_ID") or "sim",
                           os.getenv("PUMPSIM_FLASH") or os.getcwd())
    from pumpsim import model
    if world is None:
        world = model.World(model.Mechanism(800, 200, 64, 19130, 20000000))
    num, den = time_scale
    clock = _SimClock(_mono_us(), world.t_us, num, den)
    port = twinport.TwinPort(world, world.t_us)
    hw = SimHardware(_LocalLink(port), clock, world.t_us, reset_cause, rig_id,
                     flash_root or os.getcwd())
    hw._port = port
    return hw
