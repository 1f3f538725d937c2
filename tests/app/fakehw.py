"""A deterministic in-process hardware layer for app tests: manual clock, instant stepper.

Steps queued are emitted at their period in device time as the test advances the clock; a
stall or a dead motor can be forced. Used to drive pumpfw.app on CPython without a rig.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from pumphw.base import RESET_POWER_ON, maint_record_decode, maint_record_words
from pumphw.interface import Hardware, Stepper

REPO = Path(__file__).resolve().parents[2]


class FakeStepper(Stepper):
    def __init__(self, hw: "FakeHardware") -> None:
        self.hw = hw
        self._enabled = False
        self.done = 0
        self.queue_segments: list[list[int]] = []   # [steps_left, period_us, next_due_us]
        self.stalled = False
        self.edges: list[int] = []                  # device time (us) of every pulse

    def enable(self, on):
        self._enabled = bool(on)

    def enabled(self):
        return self._enabled

    def queue(self, steps, period_us, direction):
        # like the PIO program: the first pulse of a segment comes at once if the generator is
        # idle, else one period after the previous segment's last pulse
        self.queue_segments.append([steps, period_us, self.hw.now_us if not self.queue_segments else -1])
        return True

    def run_until(self, t_us: int) -> None:
        while self.queue_segments and self._enabled and not self.stalled:
            seg = self.queue_segments[0]
            if seg[2] > t_us:
                return
            self.done += 1
            self.edges.append(seg[2])
            seg[0] -= 1
            if seg[0] == 0:
                self.queue_segments.pop(0)
                if self.queue_segments:
                    nxt = self.queue_segments[0]
                    nxt[2] = seg[2] + nxt[1]
                    self.last_pulse = seg[2]
            else:
                seg[2] += seg[1]

    def steps_done(self):
        return self.done & 0x3FFFFFFF

    def pending(self):
        return sum(s[0] for s in self.queue_segments)

    def abort(self):
        n = self.pending()
        self.queue_segments.clear()
        return n

    def stall(self):
        return self.stalled


class FakeReset(BaseException):
    """hw.reset() was called (a BaseException: the app's reset path must not swallow it)."""


class FakeHardware(Hardware):
    def __init__(self, flash: Path, reset_cause: int = RESET_POWER_ON,
                 scratch: list[int] | None = None, mechanism: str | None = None) -> None:
        """`mechanism`: the name of the mechanism a fresh flash gets (pumpctl.mechanisms; None:
        the default); the fake screw turns by that file's microsteps per revolution."""
        from pumpctl import mechanisms
        self.now_us = 0
        self.flash_root = str(flash)
        flash.mkdir(parents=True, exist_ok=True)
        if not (flash / "mechanism.json").exists():
            shutil.copy(mechanisms.path(mechanism), flash / "mechanism.json")
        if not (flash / "pinmap.json").exists():
            shutil.copy(REPO / "hw" / "pinmap.json", flash / "pinmap.json")
        mech = json.loads((flash / "mechanism.json").read_text())
        self.steps_per_rev = mech["full_steps_per_rev"] * mech["microsteps"]
        self.stepper = FakeStepper(self)
        self.pressure = 0
        self.end = False
        self.presses = 0
        self.inbox = bytearray()
        # a host command's bytes are waiting (a test that calls the app's command methods
        # directly): the next idle returns at once, as the device's sleep ends on host bytes
        self.host_waiting = False
        self.outbox = bytearray()
        self.pattern = 0
        self.fed = 0
        self._cause = reset_cause
        # the RP2040 watchdog scratch registers 0..3: pass the previous boot's list to model a
        # watchdog/soft reset (kept), or none for a power-on (zero)
        self.scratch = scratch if scratch is not None else [0, 0, 0, 0]
        self.ctrl_c = True          # link_interrupt state (the REPL default)
        self.hold: tuple[int, int, int] | None = None
        self.hold_t0_us = 0
        self.resets = 0
        # AS5600 on the screw: the screw follows every pulse unless the coupling slips
        self.slipping = False
        self.screw_keep_permille = 1000   # a coupling that slips partly: the share of pulses the screw follows
        self.screw_steps = 0
        self._screw_seen = 0
        self._screw_carry = 0

    def screw_angle(self):
        done = self.stepper.done
        keep = 0 if self.slipping else self.screw_keep_permille
        self._screw_carry += (done - self._screw_seen) * keep
        moved = self._screw_carry // 1000
        self._screw_carry -= moved * 1000
        self.screw_steps += moved
        self._screw_seen = done
        return (self.screw_steps * 4096 // self.steps_per_rev) % 4096

    def ticks_ms(self):
        return (self.now_us // 1000) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    def sleep_ms(self, ms):
        self.advance_ms(ms)

    def idle(self, ms):
        if self.inbox or self.host_waiting:
            self.host_waiting = False
            ms = 0
        self.advance_ms(ms)

    def advance_ms(self, ms: int) -> None:
        self.now_us += int(ms) * 1000
        self.stepper.run_until(self.now_us)

    def pressure_kpa_x10(self):
        return self.pressure

    def end_stop(self):
        return self.end

    def bolus_button_presses(self):
        n, self.presses = self.presses, 0
        return n

    def alarm_output(self, pattern):
        self.pattern = pattern

    def watchdog_start(self, timeout_ms):
        self.wdt = timeout_ms

    def watchdog_feed(self):
        self.fed += 1

    def reset_cause(self):
        return self._cause

    def serial_read(self):
        data = bytes(self.inbox)
        self.inbox.clear()
        return data

    def serial_write(self, data):
        self.outbox += data

    def rig_id(self):
        return "fake-rig"

    # maintenance: the hold's timer is played by hold_elapse (the app is no longer running)
    def link_interrupt(self, enabled):
        self.ctrl_c = bool(enabled)

    def maintenance_hold(self, window_ms, tag, pattern):
        self.hold = (window_ms, tag, pattern)
        self.pattern = pattern
        self.scratch[:] = maint_record_words(tag, window_ms)
        self.hold_t0_us = self.now_us

    def hold_elapse(self, ms: int) -> bool:
        """Let `ms` pass at the REPL; True when the watchdog has reset the rig (window over +
        watchdog timeout without a feed)."""
        self.advance_ms(ms)
        assert self.hold is not None
        window = self.hold[0]
        el = (self.now_us - self.hold_t0_us) // 1000
        self.scratch[2] = min(el, window)
        return el > window + getattr(self, "wdt", 0)

    def maintenance_record(self):
        rec = maint_record_decode(self.scratch)
        self.scratch[:] = [0, 0, 0, 0]
        return rec

    def reset(self):
        self.resets += 1
        raise FakeReset()
