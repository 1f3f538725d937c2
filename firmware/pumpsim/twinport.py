"""The world's pin-level face for the simulated twin: the ops pumphw.simhw sends, one dispatcher.

Used in two places with the same code: in-process (simhw's local link calls `call` directly) and
in the virtual-rig supervisor (CPython), which decodes the fixed 40-byte requests from the twin's
socket and answers with 24 bytes. Request: five little-endian int64 (op, sim_us, a, b, c);
answer: three int64 (r0, r1, r2). Results land in `r0, r1, r2` (no tuple per call).

A boot of the firmware is one `TwinPort`: it remembers the pulse count at boot (steps_done
starts at 0 like the RP2040's PIO), the watchdog deadline, the alarm pattern and a fresh
button debouncer. The World outlives it (power cuts do not reset physics).
"""
from pumpcore.fixed import const
from pumpsim import model

OP_ENABLE = const(1)     # a = on                       -> r0 = enabled
OP_ENABLED = const(2)    #                              -> r0 = enabled
OP_QUEUE = const(3)      # a = steps, b = period_us, c = dir -> r0 = accepted
OP_STEPS = const(4)      #                              -> r0 = steps_done, r1 = pending, r2 = stall
OP_ABORT = const(5)      #                              -> r0 = pulses dropped
OP_PRESSURE = const(6)   #                              -> r0 = kPa x 10
OP_ENDSTOP = const(7)    #                              -> r0 = end stop closed
OP_BUTTON = const(8)     #                              -> r0 = debounced presses since last
OP_ALARM = const(9)      # a = pattern                  -> r0 = 1
OP_WDT_START = const(10)  # a = timeout_ms              -> r0 = 1
OP_WDT_FEED = const(11)  # a = 1: fed in time since the last feed the world has (below) -> r0 = 1
OP_SCRATCH_READ = const(12)   # a = index 0..3          -> r0 = watchdog SCRATCHa
OP_SCRATCH_WRITE = const(13)  # a = index 0..3, b = u32 -> r0 = 1
OP_MAINT_HOLD = const(14)     # a = window_ms           -> r0 = 1 (the hold's timer, see below)
OP_RESET = const(15)          #                         -> r0 = 1 (machine.reset: the rig resets)
OP_SCREW = const(16)     #                              -> r0 = screw encoder RAW ANGLE (or -1)
OP_SENSE = const(17)     # every input at once: nothing in r0..r2, the answer's snapshot (below)
OP_IDLE = const(40)      # a = us to wait, b = wake on host bytes, c = host bytes read so far
                         #                              -> r0 = sim_us at wake

OP_NAMES = {OP_ENABLE: "enable", OP_ENABLED: "enabled", OP_QUEUE: "queue", OP_STEPS: "steps",
            OP_ABORT: "abort", OP_PRESSURE: "pressure", OP_ENDSTOP: "end_stop",
            OP_BUTTON: "button", OP_ALARM: "alarm", OP_WDT_START: "wdt_start",
            OP_WDT_FEED: "wdt_feed", OP_SCRATCH_READ: "scratch_read",
            OP_SCRATCH_WRITE: "scratch_write", OP_MAINT_HOLD: "maint_hold", OP_RESET: "reset", OP_IDLE: "idle",
            OP_SCREW: "screw", OP_SENSE: "sense"}

OP_NO_ANSWER = const(0x80)  # or-ed into a posted op (feed, alarm): performed, not answered

REQUEST_SIZE = const(40)
# answer: r0, r1, r2 (int64), then the input snapshot taken after the op: valid_until_us and
# idle_until_us (int64), steps_done, pending, stall, pressure kPa x 10, end stop, screw angle,
# button presses, enabled (int32 each). The twin answers its input reads from the snapshot while
# its sim time is before valid_until_us (nothing it reads can change before then: see
# TwinPort.horizon), and at `max` answers its own idles and sleeps that end before
# idle_until_us (the supervisor would answer them at once, with the same time). -1: no cache.
ANSWER_SIZE = const(72)
SNAP_OFF = const(24)
_WRAP = const(0x3FFFFFFF)

DEBOUNCE_MS = const(20)  # the RP2040 layer's debounce window, mirrored by the twin


def clear_answer(link):
    """Zero the answer registers (r0..r2) and the input snapshot (s_*) that both ends of the twin
    link keep: the supervisor's TwinPort and the firmware's links in pumphw.simhw."""
    link.r0 = link.r1 = link.r2 = 0
    link.s_steps = link.s_pending = link.s_stall = link.s_press = 0
    link.s_end = link.s_screw = link.s_btn = link.s_enabled = 0


class TwinPort:
    """One firmware boot attached to `world`. `call(op, sim_us, a, b, c)` moves the world to
    sim_us (never backwards) and performs the op; results in r0, r1, r2.

    `scratch`: the chip's four watchdog scratch registers (a list shared with whoever plays the
    chip across boots: the supervisor keeps it through watchdog and soft resets and zeroes it
    at a power-on). The maintenance hold (OP_MAINT_HOLD) plays rp2hw's timer: until the window
    ends it feeds the watchdog and writes the ms elapsed to SCRATCH2; after that nothing feeds
    it, so the watchdog expires WDT timeout later. Nothing of it runs once the boot is over
    (`freeze`), as a reset stops a Pico's timers."""

    def __init__(self, world, boot_us, scratch=None):
        self.world = world
        world.advance_to(boot_us)
        # A boot starts from the safe state: PIO empty, driver disabled (power cut or reset).
        world.abort()
        world.enable(False)
        self.boot_us = boot_us
        self.boot_pulses = world.pulses
        self.debouncer = model.Debouncer(DEBOUNCE_MS)
        self.debouncer.feed(world.button_edges(boot_us), boot_us)
        self.debouncer.take()
        self.wdt_timeout_ms = 0          # 0: watchdog not started
        self.wdt_last_feed_us = 0
        self.alarm_pattern = 0
        self.scratch = scratch if scratch is not None else [0, 0, 0, 0]
        self.hold_start_us = -1          # maintenance hold: -1 = none
        self.hold_end_us = 0
        self.reset_requested = False     # OP_RESET: the supervisor resets the rig (cause watchdog)
        self.calls = 0
        clear_answer(self)   # the input snapshot (sense): what every input reads at the world's time now

    def hold_tick(self, now_us):
        """What the hold's timer did up to sim time now_us: the watchdog fed until the window
        ended, SCRATCH2 = ms of the window elapsed."""
        if self.hold_start_us < 0:
            return
        t = now_us if now_us < self.hold_end_us else self.hold_end_us
        if t > self.wdt_last_feed_us:
            self.wdt_last_feed_us = t
        self.scratch[2] = (t - self.hold_start_us) // 1000

    def freeze(self, now_us):
        """The boot ends at now_us (reset, power cut, exit): its timers stop here."""
        self.hold_tick(now_us)
        self.hold_start_us = -1

    def watchdog_expired(self, now_us):
        """True when the watchdog runs and was not fed for its timeout by sim time now_us."""
        self.hold_tick(now_us)
        return bool(self.wdt_timeout_ms) and now_us - self.wdt_last_feed_us > self.wdt_timeout_ms * 1000

    def sense(self):
        """Read every input at the world's time now into s_* (the button's presses are taken,
        as an OP_BUTTON read takes them: the twin hands them to the firmware's next read)."""
        w = self.world
        self.s_steps = (w.pulses - self.boot_pulses) & _WRAP
        self.s_pending = w.pending()
        self.s_stall = 1 if w.diag() else 0
        self.s_press = w.pressure_adc_kpa_x10()
        self.s_end = 1 if w.end_stop() else 0
        self.s_screw = w.screw_angle()
        self.debouncer.feed(w.button_edges(w.t_us), w.t_us)
        self.s_btn = self.debouncer.take()
        self.s_enabled = 1 if w.enabled else 0

    def horizon(self, bound_us):
        """The first sim time after now at which an input could read differently from the
        snapshot (sense) by the world's own motion: the next pulse (steps, pending, screw, end
        stop, pressure), the next whole ms at which the line's decay moves the pressure reading
        (model.World.pressure_change_us), the next raw button edge or debounce settle; never
        beyond bound_us (the caller's: next scheduled fault, watchdog deadline, hold). Faults
        and the firmware's own outputs change inputs too: they come through the caller, which
        lands them only at a time the firmware has not read yet."""
        w = self.world
        h = bound_us
        if w.seg_steps and w.next_pulse_us < h:
            h = w.next_pulse_us
        if w.button and w.button[0][0] < h:
            h = w.button[0][0]
        d = self.debouncer
        if d.raw != d.state and d.raw_since + d.stable_us < h:
            h = d.raw_since + d.stable_us
        if h > w.t_us:
            h = w.pressure_change_us(h)
        return h

    def call(self, op, sim_us, a, b, c):
        w = self.world
        w.advance_to(sim_us)
        self.calls += 1
        if self.hold_start_us >= 0:
            self.hold_tick(w.t_us)
        r1 = 0
        r2 = 0
        if op == OP_STEPS:
            r0 = (w.pulses - self.boot_pulses) & _WRAP
            r1 = w.pending()
            r2 = 1 if w.diag() else 0
        elif op == OP_PRESSURE:
            r0 = w.pressure_adc_kpa_x10()
        elif op == OP_ENDSTOP:
            r0 = 1 if w.end_stop() else 0
        elif op == OP_SCREW:
            r0 = w.screw_angle()
        elif op == OP_WDT_FEED:
            self.wdt_last_feed_us = w.t_us
            r0 = 1
        elif op == OP_QUEUE:
            r0 = 1 if w.queue_segment(a, b, c) else 0
        elif op == OP_ENABLE:
            w.enable(a)
            r0 = 1 if w.enabled else 0
        elif op == OP_ENABLED:
            r0 = 1 if w.enabled else 0
        elif op == OP_ABORT:
            r0 = w.abort()
        elif op == OP_BUTTON:
            self.debouncer.feed(w.button_edges(w.t_us), w.t_us)
            r0 = self.debouncer.take()
        elif op == OP_ALARM:
            self.alarm_pattern = a
            r0 = 1
        elif op == OP_IDLE:
            # in-process link: nothing to wait for, the wait passes at once (the supervisor
            # answers OP_IDLE itself, paced, and never hands it here)
            w.advance_to(sim_us + a)
            r0 = w.t_us
        elif op == OP_WDT_START:
            self.wdt_timeout_ms = a
            self.wdt_last_feed_us = w.t_us
            r0 = 1
        elif op == OP_SCRATCH_READ:
            if not 0 <= a < 4:
                raise ValueError("scratch index = %r: must be 0..3" % (a,))
            r0 = self.scratch[a]
        elif op == OP_SCRATCH_WRITE:
            if not 0 <= a < 4 or not 0 <= b <= 0xFFFFFFFF:
                raise ValueError("scratch write %r = %r: index 0..3, value 0..2**32-1" % (a, b))
            self.scratch[a] = b
            r0 = 1
        elif op == OP_MAINT_HOLD:
            if a < 1:
                raise ValueError("maintenance hold window_ms = %r: must be >= 1" % (a,))
            self.hold_start_us = w.t_us
            self.hold_end_us = w.t_us + a * 1000
            r0 = 1
        elif op == OP_RESET:
            self.reset_requested = True
            r0 = 1
        elif op == OP_SENSE:
            self.sense()
            r0 = 0
        else:
            raise ValueError("twin op = %r: unknown (known: %s)" % (op, sorted(OP_NAMES)))
        self.r0 = r0
        self.r1 = r1
        self.r2 = r2
