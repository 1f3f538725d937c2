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
OP_WDT_FEED = const(11)  #                              -> r0 = 1
OP_SCREW = const(12)     #                              -> r0 = screw encoder RAW ANGLE (or -1)

OP_NAMES = {OP_ENABLE: "enable", OP_ENABLED: "enabled", OP_QUEUE: "queue", OP_STEPS: "steps",
            OP_ABORT: "abort", OP_PRESSURE: "pressure", OP_ENDSTOP: "end_stop",
            OP_BUTTON: "button", OP_ALARM: "alarm", OP_WDT_START: "wdt_start",
            OP_WDT_FEED: "wdt_feed", OP_SCREW: "screw"}

REQUEST_SIZE = const(40)
ANSWER_SIZE = const(24)
_WRAP = const(0x3FFFFFFF)

DEBOUNCE_MS = const(20)  # the RP2040 layer's debounce window, mirrored by the twin


class TwinPort:
    """One firmware boot attached to `world`. `call(op, sim_us, a, b, c)` moves the world to
    sim_us (never backwards) and performs the op; results in r0, r1, r2."""

    def __init__(self, world, boot_us):
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
        self.calls = 0
        self.r0 = 0
        self.r1 = 0
        self.r2 = 0

    def watchdog_expired(self, now_us):
        """True when the watchdog runs and was not fed for its timeout by sim time now_us."""
        return bool(self.wdt_timeout_ms) and now_us - self.wdt_last_feed_us > self.wdt_timeout_ms * 1000

    def call(self, op, sim_us, a, b, c):
        w = self.world
        w.advance_to(sim_us)
        self.calls += 1
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
        elif op == OP_WDT_START:
            self.wdt_timeout_ms = a
            self.wdt_last_feed_us = w.t_us
            r0 = 1
        else:
            raise ValueError("twin op = %r: unknown (known: %s)" % (op, sorted(OP_NAMES)))
        self.r0 = r0
        self.r1 = r1
        self.r2 = r2
