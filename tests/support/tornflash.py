"""Simulated flash filesystem that cuts power at the k-th byte or k-th operation, then reboots.

Implements the `fs` interface of firmware/pumpfw/store.py (open/remove/rename/listdir/size/
exists/mkdir/sync) over an in-memory dict, with one of two power-loss semantics:

- "littlefs" (the Pico): a file's new contents become durable only when flush()/sync or
  close() returns; a cut before that leaves the old contents. Creating a file (open "wb"/"ab"
  on a missing path) commits an empty entry at once, as littlefs does. rename/remove atomic.
- "posix" (the virtual rig: a host directory, process SIGKILLed): every byte written is durable
  as it is written, so a write can be torn at any byte; open("wb") truncates at once; rename
  and remove are atomic.

Arm a cut with `arm(byte=k)` (power fails just before the k-th byte written since arming, 0
based) or `arm(op=k)` (the k-th operation since arming does not happen). Every call after the
cut raises PowerCut (a BaseException, so store code that handles OSError cannot swallow it).
`reboot()` returns a fresh TornFlash holding exactly what survived.

`count_points(scenario)` dry-runs a scenario to count its bytes and operations;
`every_cut(...)` replays it with a cut at every byte and every operation.
"""
from __future__ import annotations

from typing import Callable, Iterator

LITTLEFS = "littlefs"
POSIX = "posix"


class PowerCut(BaseException):
    """Power failed: nothing more happens on this flash until reboot()."""


class _File:
    def __init__(self, flash: "TornFlash", path: str, mode: str) -> None:
        self.flash = flash
        self.path = path
        self.mode = mode
        self.pos = 0
        self.closed = False
        if "r" in mode:
            self.data = bytearray(flash.durable[path])
        elif "w" in mode:
            self.data = bytearray()
        else:  # append
            self.data = bytearray(flash.durable.get(path, b""))
            self.pos = len(self.data)

    # reading -------------------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        self.flash._op("read")
        if n is None or n < 0:
            n = len(self.data) - self.pos
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def seek(self, off: int, whence: int = 0) -> int:
        self.flash._op("seek")
        base = 0 if whence == 0 else (self.pos if whence == 1 else len(self.data))
        self.pos = max(0, base + off)
        return self.pos

    # writing -------------------------------------------------------------------------
    def write(self, data) -> int:
        if "r" in self.mode:
            raise OSError(9, "file not open for writing")
        self.flash._op("write")
        data = bytes(data)
        k = self.flash._bytes_allowed(len(data))
        self.data[self.pos:self.pos + k] = data[:k]
        self.pos += k
        if self.flash.semantics == POSIX:
            self.flash.durable[self.path] = bytes(self.data)
        if k < len(data):
            self.flash._die()
        return len(data)

    def flush(self) -> None:
        self.flash._op("flush")
        self._commit()

    def _commit(self) -> None:
        if "r" not in self.mode and self.flash.semantics == LITTLEFS:
            self.flash.durable[self.path] = bytes(self.data)

    def close(self) -> None:
        if self.closed:
            return
        self.flash._op("close")
        self._commit()
        self.closed = True

    def __enter__(self) -> "_File":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TornFlash:
    """The simulated flash. `durable` maps path -> bytes: what a reboot would find."""

    def __init__(self, semantics: str = LITTLEFS, files: dict[str, bytes] | None = None) -> None:
        if semantics not in (LITTLEFS, POSIX):
            raise ValueError(f"semantics = {semantics!r}: must be {LITTLEFS!r} or {POSIX!r}")
        self.semantics = semantics
        self.durable: dict[str, bytes] = dict(files or {})
        self.cut_byte: int | None = None
        self.cut_op: int | None = None
        self.bytes_written = 0
        self.ops = 0
        self.dead = False

    # power-cut control -------------------------------------------------------------
    def arm(self, byte: int | None = None, op: int | None = None) -> None:
        """Cut power before the byte-th byte written, or instead of the op-th operation,
        counted from now."""
        self.cut_byte = byte
        self.cut_op = op
        self.bytes_written = 0
        self.ops = 0

    def _die(self) -> None:
        self.dead = True
        raise PowerCut()

    def _op(self, what: str) -> None:
        if self.dead:
            raise PowerCut()
        if self.cut_op is not None and self.ops == self.cut_op:
            self._die()
        self.ops += 1

    def _bytes_allowed(self, n: int) -> int:
        if self.cut_byte is None:
            self.bytes_written += n
            return n
        k = self.cut_byte - self.bytes_written
        if k < n:
            k = max(k, 0)
            self.bytes_written += k
            return k
        self.bytes_written += n
        return n

    def reboot(self) -> "TornFlash":
        """A new flash with what survived; no cut armed."""
        return TornFlash(self.semantics, self.durable)

    # the fs interface used by pumpfw.store ---------------------------------------------
    def open(self, path: str, mode: str) -> _File:
        self._op("open")
        if mode not in ("rb", "wb", "ab"):
            raise ValueError(f"mode = {mode!r}: the store uses only 'rb', 'wb', 'ab'")
        if "r" in mode:
            if path not in self.durable:
                raise OSError(2, f"no such file: {path}")
        elif path not in self.durable:
            self.durable[path] = b""  # both semantics: the new directory entry exists now
        elif mode == "wb" and self.semantics == POSIX:
            self.durable[path] = b""  # O_TRUNC is immediate on a host filesystem
        return _File(self, path, mode)

    def remove(self, path: str) -> None:
        self._op("remove")
        if path not in self.durable:
            raise OSError(2, f"no such file: {path}")
        del self.durable[path]

    def rename(self, old: str, new: str) -> None:
        self._op("rename")
        if old not in self.durable:
            raise OSError(2, f"no such file: {old}")
        self.durable[new] = self.durable.pop(old)

    def listdir(self, path: str) -> list[str]:
        self._op("listdir")
        prefix = "" if path in ("", ".") else path.rstrip("/") + "/"
        out = []
        for p in self.durable:
            if p.startswith(prefix) and "/" not in p[len(prefix):]:
                out.append(p[len(prefix):])
        return sorted(out)

    def size(self, path: str) -> int:
        self._op("size")
        if path not in self.durable:
            raise OSError(2, f"no such file: {path}")
        return len(self.durable[path])

    def exists(self, path: str) -> bool:
        self._op("exists")
        return path in self.durable

    def mkdir(self, path: str) -> None:
        self._op("mkdir")

    def sync(self, f: _File) -> None:
        f.flush()


def count_points(scenario: Callable[[TornFlash], object], flash: TornFlash) -> tuple[int, int]:
    """Run `scenario` on a copy of `flash` with no cut; return (bytes written, operations)."""
    probe = flash.reboot()
    probe.arm()
    scenario(probe)
    return probe.bytes_written, probe.ops


def every_cut(scenario: Callable[[TornFlash], object],
              flash: TornFlash) -> Iterator[tuple[str, int, TornFlash, bool]]:
    """For every byte offset and every operation of `scenario` run on a copy of `flash`, cut
    power there and yield (kind, k, rebooted_flash, completed). `completed` is False when the
    cut interrupted the scenario (the usual case); the last point of each kind is past the end
    of the scenario, so the uncut outcome is checked too."""
    n_bytes, n_ops = count_points(scenario, flash)
    for kind, n in (("byte", n_bytes), ("op", n_ops)):
        for k in range(n + 1):
            f = flash.reboot()
            if kind == "byte":
                f.arm(byte=k)
            else:
                f.arm(op=k)
            completed = True
            try:
                scenario(f)
            except PowerCut:
                completed = False
            yield kind, k, f.reboot(), completed
