"""MT-SICS balance simulator on a pseudo-terminal, so MtSicsBalance is tested without a balance.

`MtSicsSimulator(mass_fn)` opens a pty and answers MT-SICS commands on it from a thread, like a
lab balance on a USB-serial adapter: `sim.port` is the device path to give `MtSicsBalance` (or
`pumpctl accuracy --balance PORT`). `mass_fn()` returns the gross load (g) now; the simulator
keeps zero and tare, rounds to its readability, and reports overload/underload against its
capacity. `inject(reply)` makes the next command get that exact reply (any MT-SICS error, a
garbled line), `inject(None)` makes it get no reply at all (a timeout).
"""
from __future__ import annotations

import math
import os
import threading
import time
import tty
from collections import deque
from typing import Callable


class MtSicsSimulator:
    """A balance answering MT-SICS on a pty. Capacity and readability in g."""

    def __init__(self, mass_fn: Callable[[], float], capacity_g: float = 220.0,
                 readability_g: float = 0.00001, model: str = "XPR225DR 220 g",
                 serial_no: str = "SIM0000001", stable_fn: Callable[[], bool] | None = None) -> None:
        self.mass_fn = mass_fn
        self.stable_fn = stable_fn or (lambda: True)
        self.capacity_g = capacity_g
        self.readability_g = readability_g
        self.model = model
        self.serial_no = serial_no
        self.zero_g = 0.0
        self.tare_g = 0.0
        self.commands: list[str] = []        # every command received, for tests
        self._injected: deque[str | None] = deque()
        self._lock = threading.Lock()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="mtsics-sim", daemon=True)

    @classmethod
    def for_balance(cls, spec: object, mass_fn: Callable[[], float],
                    clock: Callable[[], float] = time.monotonic) -> "MtSicsSimulator":
        """A simulator with a simulated balance's datasheet figures (accuracy.balances.BalanceSpec):
        its capacity, readability and model, and its settling: `S` (stable weight) answers
        only once the load has stayed within one readability step for the settling time
        (`S I` before), as the balance's stability detector does; under a steady flow it never
        settles, so a dynamic run reads `SI`. `clock()`: seconds (the rig's time in a test)."""
        readability_g = float(getattr(spec, "readability_ug")) * 1e-6
        settle_s = float(getattr(spec, "settling_s"))
        history: deque[tuple[float, float]] = deque()

        def stable() -> bool:
            now, m = clock(), float(mass_fn())
            history.append((now, m))
            # keep the last sample at or before the window's start (the load held it until the next)
            while len(history) > 1 and history[1][0] <= now - settle_s:
                history.popleft()
            span = max(h[1] for h in history) - min(h[1] for h in history)
            return history[0][0] <= now - settle_s * 0.999 and span <= readability_g

        # a first sample, so the settling time counts from the simulator's start
        history.append((clock(), float(mass_fn())))
        part = str(getattr(spec, "part"))
        return cls(mass_fn, capacity_g=float(getattr(spec, "capacity_g")), readability_g=readability_g,
                   model="%s %g g" % (part.split()[-2] if "ultra" in part else part, float(getattr(spec, "capacity_g"))),
                   stable_fn=stable)

    def start(self) -> "MtSicsSimulator":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # the serving loop polls every 50 ms
        self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "MtSicsSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, reply: str | None) -> None:
        """The next command is answered with `reply` verbatim (None: not answered)."""
        with self._lock:
            self._injected.append(reply)

    # ---- the balance ----
    def _format(self, grams: float) -> str:
        digits = max(0, -int(round(math.log10(self.readability_g))))
        return f"{round(grams / self.readability_g) * self.readability_g:>12.{digits}f} g"

    def _gross(self) -> float:
        return float(self.mass_fn())

    def _weight(self, cmd: str) -> str:
        gross = self._gross()
        if gross > self.capacity_g:
            return "S +"
        if gross < -self.capacity_g * 0.05:
            return "S -"
        stable = self.stable_fn()
        if cmd == "S" and not stable:
            return "S I"
        return f"S {'S' if stable else 'D'} {self._format(gross - self.zero_g - self.tare_g)}"

    def answer(self, line: str) -> str | None:
        """The reply a balance gives to one command line (without CR LF)."""
        cmd = line.strip()
        self.commands.append(cmd)
        with self._lock:
            if self._injected:
                return self._injected.popleft()
        if cmd in ("S", "SI"):
            return self._weight(cmd)
        if cmd in ("Z", "ZI"):
            gross = self._gross()
            if gross > self.capacity_g * 0.02 + self.zero_g:
                return f"{cmd} +"
            if gross < self.zero_g - self.capacity_g * 0.02:
                return f"{cmd} -"
            self.zero_g, self.tare_g = gross, 0.0
            return f"{cmd} A"
        if cmd in ("T", "TI"):
            gross = self._gross()
            if gross > self.capacity_g:
                return f"{cmd} +"
            if gross - self.zero_g < 0:
                return f"{cmd} -"
            self.tare_g = gross - self.zero_g
            return f"{cmd} S {self._format(self.tare_g)}"
        if cmd == "I2":
            return f'I2 A "{self.model}"'
        if cmd == "I3":
            return 'I3 A "sim-1.0"'
        if cmd in ("I4", "@"):
            if cmd == "@":
                self.zero_g = self.tare_g = 0.0
            return f'I4 A "{self.serial_no}"'
        if cmd.split(" ")[0] in ("S", "SI", "Z", "T", "I2", "I3", "I4"):
            return "EL"  # known command with a parameter it does not take
        return "ES"

    def _serve(self) -> None:
        import select

        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 1024)
            except OSError:
                return
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                text = raw.rstrip(b"\r").decode("ascii", errors="replace")
                if not text:
                    continue
                reply = self.answer(text)
                if reply is not None:
                    os.write(self._master, reply.encode("ascii", errors="replace") + b"\r\n")
