"""Which firmware modules a device runs: the import closure of `main.py`, read with `ast`.

`pumpctl deploy` ships exactly these files (and the hardware descriptions), never a hand-kept
list: a module the device never imports is not carried in its flash or its RAM, and a module it
does import cannot be left behind.

The walk starts at `main.py` (and `boot.py` when there is one) and follows every `import` and
`from ... import`, at module level and inside functions (a lazy import runs on the device too).
Branches on the platform are followed as the device takes them: on a Pico `sys.platform` is
"rp2", so `if sys.platform == "rp2": ... else: ...` walks only the first branch there and only
the second on the virtual rig (the MicroPython unix port, "linux"); a taken branch that ends in
`return` or `raise` ends its block, as it does at run time. Every other `if` is walked both ways.

A name that is neither a file of the firmware tree nor one of the interpreter's built-in modules
(`MICROPYTHON_BUILTINS`) is an error that names the module and the line, except inside a
`try:` whose handler catches ImportError (a fallback for CPython, where the firmware is also
tested) and inside such a handler.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

ENTRY_POINTS = ("main.py", "boot.py")   # what the device runs by itself; main.py must exist

# Modules compiled into the interpreter (MicroPython 1.22, the RPI_PICO build and the unix
# port), by their plain and `u`-prefixed names. A firmware import of anything else must be a
# file of the firmware tree.
_COMMON = ("array", "binascii", "builtins", "cmath", "collections", "errno", "gc", "hashlib", "heapq",
           "io", "json", "math", "micropython", "os", "platform", "random", "re", "select", "struct",
           "sys", "time", "uctypes", "asyncio", "uasyncio", "deflate", "_thread", "framebuf", "cryptolib")
_RP2_ONLY = ("machine", "rp2", "_rp2", "_onewire", "onewire", "neopixel", "dht", "ds18x20", "vfs",
             "_boot", "_boot_fat")
_UNIX_ONLY = ("machine", "socket", "ffi", "termios", "ssl")
MICROPYTHON_BUILTINS = {
    "rp2": frozenset(_COMMON + _RP2_ONLY + tuple("u" + n for n in _COMMON + _RP2_ONLY)),
    "unix": frozenset(_COMMON + _UNIX_ONLY + tuple("u" + n for n in _COMMON + _UNIX_ONLY)),
}


def builtins_for(platform: str) -> frozenset[str]:
    """The built-in modules of the interpreter that runs on `platform` ("rp2": a Pico, real or
    emulated; anything else: the unix port of the virtual rig)."""
    return MICROPYTHON_BUILTINS["rp2" if platform == "rp2" else "unix"]


@dataclass(frozen=True)
class DeviceImport:
    """One arrow of the closure: `source` (a file of the tree, relative) imports `module` at `line`."""

    source: str
    line: int
    module: str


def _module_file(root: Path, dotted: str) -> str | None:
    """The tree's file (relative posix path) for a dotted module name, or None."""
    base = root.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return (base / "__init__.py").relative_to(root).as_posix()
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py").relative_to(root).as_posix()
    return None


def _platform_test(test: ast.expr, platform: str) -> bool | None:
    """True/False when `test` compares `sys.platform` with a string (== / != / in), else None."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and len(test.comparators) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if not (isinstance(left, ast.Attribute) and left.attr == "platform"
            and isinstance(left.value, ast.Name) and left.value.id == "sys"):
        return None
    if isinstance(right, ast.Constant) and isinstance(right.value, str):
        if isinstance(op, ast.Eq):
            return platform == right.value
        if isinstance(op, ast.NotEq):
            return platform != right.value
    if isinstance(right, (ast.Tuple, ast.List, ast.Set)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in right.elts):
        values = {e.value for e in right.elts}  # type: ignore[attr-defined]
        if isinstance(op, ast.In):
            return platform in values
        if isinstance(op, ast.NotIn):
            return platform not in values
    return None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names: list[ast.expr] = []
    if handler.type is None:
        return True
    names = list(handler.type.elts) if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception")
               for n in names)


class _Walker:
    """The imports of one module's statements as the device on `platform` reaches them."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.found: list[tuple[int, str, bool]] = []   # (line, dotted name, optional)

    def block(self, body: list[ast.stmt], optional: bool) -> bool:
        """Walk a statement list; True when it certainly ends (return/raise) on this platform."""
        for stmt in body:
            if self.stmt(stmt, optional):
                return True
        return False

    def stmt(self, node: ast.stmt, optional: bool) -> bool:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.found.append((node.lineno, alias.name, optional))
            return False
        if isinstance(node, ast.ImportFrom):
            if node.level:
                raise UsageError("firmware line %d: relative import 'from %s%s import ...': the device "
                                 "modules import by absolute name" % (node.lineno, "." * node.level, node.module or ""))
            for alias in node.names:
                self.found.append((node.lineno, "%s.%s" % (node.module, alias.name), True))
            self.found.append((node.lineno, node.module or "", optional))
            return False
        if isinstance(node, (ast.Return, ast.Raise)):
            return True
        if isinstance(node, ast.If):
            taken = _platform_test(node.test, self.platform)
            if taken is True:
                return self.block(node.body, optional)
            if taken is False:
                return self.block(node.orelse, optional)
            ends_body = self.block(node.body, optional)
            ends_else = self.block(node.orelse, optional)
            return ends_body and ends_else and bool(node.orelse)
        if isinstance(node, ast.Try):
            fallback = any(_catches_import_error(h) for h in node.handlers)
            self.block(node.body, optional or fallback)
            for h in node.handlers:
                self.block(h.body, optional or _catches_import_error(h))
            self.block(node.orelse, optional)
            self.block(node.finalbody, optional)
            return False
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.block(node.body, optional)
            return False
        for field_name in ("body", "orelse", "finalbody"):   # for, while, with
            inner = getattr(node, field_name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                self.block(inner, optional)
        return False


def device_imports(firmware_dir: Path, platform: str,
                   entries: tuple[str, ...] | None = None) -> tuple[list[str], list[DeviceImport]]:
    """(the files the device on `platform` runs, relative posix paths sorted; every arrow).
    `entries`: the files to start from (relative posix paths; default ENTRY_POINTS, what the
    device runs by itself), e.g. ("pumphw/rp2hw.py",) for what the hardware layer alone needs.

    Raises UsageError, naming the file and line, for an import that is neither a firmware file
    nor a built-in module of that interpreter, and when the tree has no main.py."""
    root = Path(firmware_dir)
    if not (root / "main.py").is_file():
        raise UsageError("firmware directory %s has no main.py (pass --firmware-dir)" % root)
    builtins = builtins_for(platform)
    todo = [name for name in (ENTRY_POINTS if entries is None else entries) if (root / name).is_file()]
    seen: set[str] = set(todo)
    arrows: list[DeviceImport] = []
    while todo:
        rel = todo.pop()
        path = root / rel
        try:
            tree = ast.parse(path.read_text(), rel)
        except SyntaxError as exc:
            raise UsageError("firmware file %s line %s: %s" % (rel, exc.lineno, exc.msg)) from None
        walker = _Walker(platform)
        walker.block(tree.body, False)
        for line, dotted, optional in walker.found:
            if not dotted:
                continue
            parts = dotted.split(".")
            files = [_module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
            if files[-1] is None:
                if optional or parts[0] in builtins and len(parts) == 1:
                    continue
                if files[0] is None and parts[0] in builtins:
                    continue
                raise UsageError("firmware file %s line %d imports %s: not a module of %s and not built into "
                                 "MicroPython on %s" % (rel, line, dotted, root, platform or "the unix port"))
            for f in files:
                if f is None:
                    continue
                arrows.append(DeviceImport(rel, line, f))
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
    return sorted(seen), arrows


def device_files(firmware_dir: Path, platform: str) -> list[str]:
    """The firmware files (relative posix paths, sorted) the device on `platform` imports."""
    return device_imports(firmware_dir, platform)[0]
