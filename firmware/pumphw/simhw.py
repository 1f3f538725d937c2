"""Simulated twin of the hardware layer: pumphw.interface.Hardware over the pumpsim physical model.

Two links to the world, chosen by `make_sim_hardware()`:
- rig link (env PUMPSIM_SOCK set by the virtual-rig supervisor): every pin-level call is one
  round trip of fixed-size frames on a Unix socket to the supervisor, which owns the World
  (so physics survives power cuts and the host can weigh the balance while firmware is down);
- local link (no supervisor): an in-process World, for tests that run firmware in one process.

Time is the firmware's own (virtual time): the twin keeps a sim-microsecond counter that moves
only as the firmware lets it, never with the host's wall clock, so a busy host can slow a run but
never change its physics:
- `idle(ms)` and `sleep_ms(ms)` ask the supervisor to let `ms` of sim time pass (OP_IDLE); it
  answers with the sim time at which the firmware wakes (idle wakes early when host bytes
  arrive: they land at that time). The supervisor paces the answers so sim time never runs
  faster than the rig's time scale (a ceiling), or answers at once at `--time-scale max`;
- each main-loop iteration costs ITER_COST_US of sim time (charged in `idle`, which the app
  calls once per iteration), and each `ticks_ms()` read costs TICKS_COST_US, so a loop that
  polls the clock without sleeping still moves time on, at the emulated Pico's pace.
ticks_ms wraps at 2**30 like the RP2040 port and starts at 0 at boot; boot itself costs
BOOT_COST_US (the Pico's imports). Nothing else reveals the scale. Per-call cost: clock reads
are local (no allocation); stepper/sensor calls pack into preallocated buffers (no allocation on
the unix port, checked with micropython.heap_lock in tests/rig).

The modelled costs come from docs/emulated-pico.md: the emulated RP2040 runs a bare
`while ticks_diff(ticks_ms(), t0) < 100: n += 1` loop 5,789 times per emulated 100 ms (17 us an
iteration, hence TICKS_COST_US); on the unix port the app's idle loop iteration (`PumpApp.step`
with the hardware calls, no sleep) takes 220-580 times that bare-loop iteration (bench
measurement, docs/virtual-time.md), i.e. about 3.8 ms of Pico time: ITER_COST_US = 4 ms. The
Pico's import of the application takes about 1.3 emulated s from reset: BOOT_COST_US.
"""
import os
import sys

from pumpcore.fixed import const
from pumphw import base, interface
from pumpsim import twinport
from pumpsim.twinport import (OP_ABORT, OP_ALARM, OP_ENABLE,
                              OP_IDLE, OP_MAINT_HOLD, OP_QUEUE, OP_RESET,
                              OP_SCRATCH_READ, OP_SCRATCH_WRITE, OP_SENSE, OP_WDT_FEED,
                              OP_WDT_START)

_TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)
ITER_COST_US = const(4000)     # one main-loop iteration on the Pico (see the module docstring)
TICKS_COST_US = const(17)      # one ticks_ms() read in a polling loop on the Pico
BOOT_COST_US = const(1300000)  # reset to the application running (imports) on the Pico

class _VirtualClock:
    """The firmware's sim time in microseconds: moved on only by the twin (costs, idle answers)."""

    def __init__(self, t_us):
        self.t_us = t_us

    def sim_us(self):
        return self.t_us


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


def _le32(buf, off):
    """Little-endian int32 at buf[off:off+4] (a small int on the unix port: no allocation)."""
    v = buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | ((buf[off + 3] & 0x7F) << 24)
    if buf[off + 3] & 0x80:
        v -= 0x80000000
    return v


class _RigLink:
    """Round trips to the supervisor's TwinPort over a Unix socket, and the input cache.

    Every answer carries a snapshot of the inputs taken after the op, and the sim time until
    which none of them can change (`until`, the supervisor's promise: next pulse, next whole ms
    of pressure change, next button edge, scheduled fault, watchdog deadline, hold). Input reads
    before `until` are answered from the snapshot, exactly as the supervisor would have answered
    them; at `max` idles and sleeps that end before `idle_until` are answered here too (the
    supervisor would answer them at once, with that same time). The button's presses in a
    snapshot were taken from the debouncer when it was made: they wait in `s_btn` for the
    firmware's next button read. Watchdog feeds are posted: the last one goes with the next
    request, a later feed replacing a waiting one (a feed is a time: the latest supersedes the
    earlier ones), except when the later one comes more than a watchdog timeout after the
    waiting one: the watchdog bites in that gap, so the waiting one is written first and the
    supervisor bites at its deadline, the same sim time as without the cache. A feed written
    says whether every feed it replaced followed the one before within the timeout (op arg
    a = 1): the supervisor then takes it as a feed in time, however long ago the last feed it
    has (without that, a run of feeds on one promise longer than the timeout needed a write
    every timeout: a socket write and a supervisor wake-up every 5 loop iterations)."""

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
        n = twinport.REQUEST_SIZE
        self._buf = bytearray(2 * n)          # [posted feed][request]: one write for both
        mv = memoryview(self._buf)
        self._req_mv = mv[n:]
        self._post_mv = mv[:n]
        self._alarm = bytearray(n)
        self._posted = False
        self._post_t = 0      # sim time of the waiting feed
        self._post_cont = 0   # 1: no gap longer than the timeout from _fed_us to the waiting feed
        self._fed_us = 0      # the last feed (or watchdog start) the supervisor has
        self._wdt_us = 0      # the watchdog's timeout (0: not running)
        self._ans = bytearray(twinport.ANSWER_SIZE)
        twinport.clear_answer(self)
        self.until = -1
        self.idle_until = -1

    def post(self, op, sim_us, a):
        """An op whose answer the firmware does not use (watchdog feed, alarm output): no round
        trip. A feed waits for the next call (a later feed replaces it); an alarm output goes
        at once (the rig's read-out shows it), after a waiting feed."""
        if op == OP_WDT_FEED:
            if self._posted:
                if self._wdt_us and sim_us - self._post_t > self._wdt_us:
                    self._flush_feed()        # the watchdog bites in this gap: show its start
                    cont = 0
                else:
                    cont = self._post_cont
            else:
                cont = 1 if not self._wdt_us or sim_us - self._fed_us <= self._wdt_us else 0
            self._posted = True               # packed when it goes (most are replaced first)
            self._post_t = sim_us
            self._post_cont = cont
            return
        if self._posted:
            self._flush_feed()
        self._pack("<qqqqq", self._alarm, 0, op | twinport.OP_NO_ANSWER, sim_us, a, 0, 0)
        self._write(self._alarm)

    def _flush_feed(self):
        self._pack("<qqqqq", self._buf, 0, OP_WDT_FEED | twinport.OP_NO_ANSWER, self._post_t,
                   self._post_cont, 0, 0)
        self._write(self._post_mv)
        self._fed_us = self._post_t
        self._posted = False

    def sense(self, sim_us):
        """The snapshot holds at sim_us, or a round trip for a fresh one."""
        if sim_us >= self.until:
            self.call(OP_SENSE, sim_us, 0, 0, 0)

    def call(self, op, sim_us, a, b, c):
        self._pack("<qqqqq", self._buf, twinport.REQUEST_SIZE, op, sim_us, a, b, c)
        if self._posted:
            self._pack("<qqqqq", self._buf, 0, OP_WDT_FEED | twinport.OP_NO_ANSWER, self._post_t,
                       self._post_cont, 0, 0)
            self._write(self._buf)
            self._fed_us = self._post_t
            self._posted = False
        else:
            self._write(self._req_mv)
        if op == OP_WDT_START:
            self._fed_us = sim_us         # the supervisor counts the timeout from here
            self._wdt_us = a * 1000
        n = self._readinto(self._ans)
        if n != twinport.ANSWER_SIZE:
            self._read_rest(n)
        ans = self._ans
        self.r0 = _le64(ans, 0)
        self.r1 = _le64(ans, 8)
        self.r2 = _le64(ans, 16)
        self.until = _le64(ans, 24)
        self.idle_until = _le64(ans, 32)
        self.s_steps = _le32(ans, 40)
        self.s_pending = _le32(ans, 44)
        self.s_stall = _le32(ans, 48)
        self.s_press = _le32(ans, 52)
        self.s_end = _le32(ans, 56)
        self.s_screw = _le32(ans, 60)
        self.s_btn += _le32(ans, 64)
        self.s_enabled = _le32(ans, 68)

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


class _FlashFile:
    """A file opened "wb" on the twin's flash: the bytes written wait here until flush (the
    store's sync) or close, then go to the host file in one write, like littlefs, where a file's
    new contents appear only when it is synced or closed (a cut before leaves the old ones).
    When the new contents are as long as the old, they are written over them in place: on the
    host's ext4 a truncating open costs milliseconds at close (its replace-by-truncate rule
    starts a write-back), an overwrite of the same length microseconds, and a state save is
    the same length save after save (bench/virtual_time_profile.py: most of the loop's time at 186
    ug/day was that). Host time only: the sim time a save costs is the firmware's, unchanged."""

    def __init__(self, path):
        self._path = path
        self._data = bytearray()
        self._dirty = True          # "wb" makes the file empty even when nothing is written

    def write(self, data):
        self._data += data
        self._dirty = True
        return len(data)

    def flush(self):
        if not self._dirty:
            return
        n = len(self._data)
        try:
            same = os.stat(self._path)[6] == n
        except OSError:
            same = False
        f = open(self._path, "r+b" if same else "wb")
        try:
            got = f.write(self._data)
            if got is not None and got != n:
                raise OSError("%s: wrote %d of %d bytes" % (self._path, got, n))
        finally:
            f.close()
        self._dirty = False

    def close(self):
        self.flush()


class SimFlashFs(base.Fs):
    """The twin's flash for the stores (pumpfw.store's `fs` interface): the rig's flash
    directory, files written "wb" committed at sync or close (_FlashFile), the rest as
    base.Fs does it (builtins open + os; appends go straight to the host file)."""

    def open(self, path, mode):
        if mode == "wb":
            return _FlashFile(path)
        return open(path, mode)

    def sync(self, f):
        """Commit what was written: the host keeps it once the write returned (a power cut of
        the rig kills the process, not the host's page cache), so no fsync."""
        f.flush()


class SimStepper(interface.Stepper):
    """Step generator + driver, executed by the model in sim time."""

    def __init__(self, hw):
        self._hw = hw
        self._link = hw._link

    def enable(self, on):
        self._link.call(OP_ENABLE, self._hw._clock.sim_us(), 1 if on else 0, 0, 0)

    def enabled(self):
        link = self._link
        t = self._hw._clock.t_us
        if t >= link.until:           # link.sense(t), inlined: 8 input reads an iteration
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_enabled == 1

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
        link = self._link
        t = self._hw._clock.t_us
        if t >= link.until:           # link.sense(t), inlined: 8 input reads an iteration
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_steps

    def pending(self):
        link = self._link
        t = self._hw._clock.t_us
        if t >= link.until:           # link.sense(t), inlined: 8 input reads an iteration
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_pending

    def abort(self):
        self._link.call(OP_ABORT, self._hw._clock.sim_us(), 0, 0, 0)
        return self._link.r0

    def stall(self):
        link = self._link
        t = self._hw._clock.t_us
        if t >= link.until:           # link.sense(t), inlined: 8 input reads an iteration
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_stall == 1


class SimHardware(interface.Hardware):
    """The twin: same names as the RP2040 layer, nothing more for the firmware to call."""

    def __init__(self, link, clock, boot_us, reset_cause, rig_id, flash_root):
        self._link = link
        self._clock = clock
        self._boot_us = boot_us
        self._reset_cause = reset_cause
        self._rig_id = rig_id
        self.flash_root = flash_root
        self.flash_fs = SimFlashFs()
        self.stepper = SimStepper(self)
        self._poll = None
        self._ipoll = None
        self._stdin = None
        self._stdout = None
        self._break = True     # Ctrl-C interrupts, as on a Pico until link_interrupt(False)
        self._rx_count = 0      # host bytes read so far (mod 2**30): the supervisor's wake test

    # time
    def ticks_ms(self):
        c = self._clock
        c.t_us += TICKS_COST_US
        return ((c.t_us - self._boot_us) // 1000) & _TICKS_MASK

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def sleep_ms(self, ms):
        if ms > 0:
            c = self._clock
            end = c.t_us + ms * 1000
            if end < self._link.idle_until:
                c.t_us = end          # at `max`, before anything can happen: as answered
                return
            self._link.call(OP_IDLE, c.t_us, ms * 1000, 0, 0)
            c.t_us = self._link.r0

    def idle(self, ms):
        """End of one loop iteration (its modelled cost), then wait up to ms of device time,
        returning as soon as host bytes arrive (they land at the sim time of the wake)."""
        c = self._clock
        c.t_us += ITER_COST_US
        if ms <= 0:
            return
        if self._poll is None:
            self._open_stdio()
        if self._input_ready():
            return
        end = c.t_us + ms * 1000
        if end < self._link.idle_until:
            c.t_us = end              # at `max`, before anything can happen: as answered
            return
        self._link.call(OP_IDLE, c.t_us, ms * 1000, 1, self._rx_count)
        c.t_us = self._link.r0

    # inputs
    def pressure_kpa_x10(self):
        link = self._link
        t = self._clock.t_us
        if t >= link.until:           # link.sense(t), inlined
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_press

    def end_stop(self):
        link = self._link
        t = self._clock.t_us
        if t >= link.until:           # link.sense(t), inlined
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_end == 1

    def screw_angle(self):
        link = self._link
        t = self._clock.t_us
        if t >= link.until:           # link.sense(t), inlined
            link.call(OP_SENSE, t, 0, 0, 0)
        return link.s_screw

    def bolus_button_presses(self):
        link = self._link
        t = self._clock.t_us
        if t >= link.until:           # link.sense(t), inlined
            link.call(OP_SENSE, t, 0, 0, 0)
        n = link.s_btn
        link.s_btn = 0
        return n

    # outputs
    def alarm_output(self, pattern):
        self._link.post(OP_ALARM, self._clock.sim_us(), pattern)

    # watchdog and reset
    def watchdog_start(self, timeout_ms):
        if timeout_ms < 1 or timeout_ms > 8388:
            raise ValueError("watchdog timeout_ms = %r: must be in 1..8388 (RP2040 limit)" % (timeout_ms,))
        self._link.call(OP_WDT_START, self._clock.sim_us(), timeout_ms, 0, 0)

    def watchdog_feed(self):
        self._link.post(OP_WDT_FEED, self._clock.sim_us(), 0)

    def watchdog_stop(self):
        self._link.call(OP_WDT_START, self._clock.sim_us(), 0, 0, 0)   # timeout 0: disarmed

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        """machine.reset(): the supervisor kills this process and boots the firmware again with
        reset cause watchdog, scratch registers kept. Never returns."""
        self._link.call(OP_RESET, self._clock.sim_us(), 0, 0, 0)
        if isinstance(self._link, _LocalLink):
            raise SystemExit("pumphw.simhw: reset (in-process twin: nobody to restart the firmware)")
        while True:            # the supervisor's SIGKILL ends this
            _sleep_us(100000)

    # maintenance
    def link_interrupt(self, enabled):
        """Ctrl-C interrupts (True) or is data (False). The unix port on the rig's raw pty never
        turns 0x03 into a signal, so the twin plays the Pico's USB CDC: with Ctrl-C enabled,
        serial_read stops at a 0x03 (the caller raises KeyboardInterrupt) and leaves the rest
        for the REPL; disabled, 0x03 is returned like any byte."""
        self._break = bool(enabled)
        try:
            import micropython
            micropython.kbd_intr(3 if enabled else -1)
        except (ImportError, AttributeError):
            pass

    def maintenance_hold(self, window_ms, tag, pattern):
        if not isinstance(window_ms, int) or not base.MAINT_HOLD_MIN_MS <= window_ms <= base.MAINT_HOLD_MAX_MS:
            raise ValueError("maintenance window_ms = %r: must be %d..%d" % (
                window_ms, base.MAINT_HOLD_MIN_MS, base.MAINT_HOLD_MAX_MS))
        now = self._clock.sim_us()
        words = base.maint_record_words(tag, window_ms)
        for i in range(base.MAINT_SCRATCH_WORDS):
            self._link.call(OP_SCRATCH_WRITE, now, i, words[i], 0)
        self._link.call(OP_ALARM, now, pattern, 0, 0)
        self._link.call(OP_MAINT_HOLD, now, window_ms, 0, 0)

    def maintenance_record(self):
        now = self._clock.sim_us()
        words = []
        for i in range(base.MAINT_SCRATCH_WORDS):
            self._link.call(OP_SCRATCH_READ, now, i, 0, 0)
            words.append(self._link.r0)
        for i in range(base.MAINT_SCRATCH_WORDS):
            self._link.call(OP_SCRATCH_WRITE, now, i, 0, 0)
        return base.maint_record_decode(words)

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
        self._ipoll = getattr(self._poll, "ipoll", None)

    def _input_ready(self):
        """Host bytes wait on the link (no allocation on the unix port: ipoll reuses its tuple)."""
        if self._ipoll is not None:
            for _ev in self._ipoll(0):
                return True
            return False
        return bool(self._poll.poll(0))

    def serial_read(self):
        """Bytes waiting on the link. While Ctrl-C interrupts (link_interrupt(True)) it stops
        after a 0x03 and leaves what follows unread for the REPL, as the Pico's USB CDC takes
        Ctrl-C out of band: mpremote sends b"\\r\\x03\\r\\x01" in one burst and the Ctrl-A
        must reach the REPL. With Ctrl-C disabled a 0x03 is data like any other byte."""
        if self._poll is None:
            self._open_stdio()
        if not self._input_ready():       # once per loop iteration: no list allocated
            return b""
        out = bytearray()
        while len(out) < 4096 and self._poll.poll(0):
            b = self._read1(1)
            if not b:
                break
            out += b
            if b[0] == 3 and self._break:
                break
        self._rx_count = (self._rx_count + len(out)) & _TICKS_MASK
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
    """In-process link: calls the TwinPort directly (no cache: every input read is a sense)."""

    def __init__(self, port):
        self.port = port
        twinport.clear_answer(self)
        self.until = -1
        self.idle_until = -1

    def post(self, op, sim_us, a):
        self.port.call(op, sim_us, a, 0, 0)

    def sense(self, sim_us):
        self.call(OP_SENSE, sim_us, 0, 0, 0)

    def call(self, op, sim_us, a, b, c):
        """One op on the port; an OP_SENSE also takes the port's snapshot (the input reads
        call it directly: `until` is -1, so every read is a sense)."""
        p = self.port
        p.call(op, sim_us, a, b, c)
        self.r0 = p.r0
        self.r1 = p.r1
        self.r2 = p.r2
        if op == OP_SENSE:
            self.s_steps = p.s_steps
            self.s_pending = p.s_pending
            self.s_stall = p.s_stall
            self.s_press = p.s_press
            self.s_end = p.s_end
            self.s_screw = p.s_screw
            self.s_btn += p.s_btn
            self.s_enabled = p.s_enabled


def make_sim_hardware(world=None, rig_id="sim-local", flash_root=None,
                      reset_cause=base.RESET_POWER_ON):
    """The simulated twin. Inside a virtual rig (env PUMPSIM_SOCK) it attaches to the rig's
    supervisor and every argument is ignored; otherwise it builds an in-process world
    (`world`: a pumpsim.model.World, default: the mechanism the flash holds, flash_root's
    mechanism.json as the firmware reads it, else the 20 mL rig's; its time runs as fast as the
    code, idles are answered at once) and returns a hardware whose `_port` is the TwinPort (tests only).
    """
    env = os.getenv("PUMPSIM_SOCK")
    if env:
        boot_us = int(os.getenv("PUMPSIM_BOOT_US"))
        clock = _VirtualClock(boot_us + BOOT_COST_US)
        return SimHardware(_RigLink(env), clock, boot_us,
                           int(os.getenv("PUMPSIM_RESET") or "0"), os.getenv("PUMPSIM_RIG_ID") or "sim",
                           os.getenv("PUMPSIM_FLASH") or os.getcwd())
    from pumpsim import model
    if world is None:
        # the physics of the mechanism the firmware will read, never another one's
        root = flash_root or os.getcwd()
        try:
            mech = model.Mechanism.load(root.rstrip("/") + "/mechanism.json")
        except OSError:
            mech = model.Mechanism(800, 200, 64, 19130, 20000000)   # hw/mechanism.json, the 20 mL rig
        world = model.World(mech)
    clock = _VirtualClock(world.t_us + BOOT_COST_US)
    port = twinport.TwinPort(world, world.t_us)
    hw = SimHardware(_LocalLink(port), clock, world.t_us, reset_cause, rig_id,
                     flash_root or os.getcwd())
    hw._port = port
    return hw
