"""'Would import on a Pico': every machine/rp2/time/select name the hardware layer uses exists in
the micropython-rp2-rpi-pico-stubs package, with the keyword arguments it is called with.

The firmware files are parsed with `ast`. Names bound to those modules, to their classes and
to instances of their classes (`self._adc = machine.ADC(...)`, `m = self._machine`, ...) are
followed through assignments; every attribute used on them must exist in the stubs, and every
keyword argument passed to a stub class or method must be one of its parameters.
"""
from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
CHECKED_FILES = ["pumphw/rp2hw.py", "pumphw/steppio.py", "pumphw/__init__.py", "pumphw/pinmap.py"]
MODULES = {"machine": "machine.pyi", "rp2": "rp2/__init__.pyi", "time": "time.pyi",
           "select": "select.pyi"}
# parameters whose type the code cannot show by assignment
PARAM_HINTS = {"en_pin": ("machine", "Pin"), "diag_pin": ("machine", "Pin"),
               "pin": ("machine", "Pin")}


def _stub_root() -> Path:
    dist = metadata.distribution("micropython-rp2-rpi-pico-stubs")
    return Path(dist.locate_file("machine.pyi")).parent


class Stubs:
    """module -> {name: ClassDef | FunctionDef(s) | constant}, class -> {member: nodes}."""

    def __init__(self, root: Path):
        self.modules: dict[str, dict[str, list[ast.AST]]] = {}
        self.classes: dict[tuple[str, str], dict[str, list[ast.AST]]] = {}
        for mod, rel in MODULES.items():
            names: dict[str, list[ast.AST]] = {}
            self._collect(root / rel, mod, names, root)
            self.modules[mod] = names

    def _collect(self, path: Path, mod: str, names: dict, root: Path) -> None:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.names[0].name == "*":
                sub = root / (node.module.replace(".", "/") + ".pyi")
                if sub.exists():
                    self._collect(sub, mod, names, root)
            for name, n in _defined(node):
                names.setdefault(name, []).append(n)
                if isinstance(n, ast.ClassDef):
                    members: dict[str, list[ast.AST]] = {}
                    for item in n.body:
                        for mname, m in _defined(item):
                            members.setdefault(mname, []).append(m)
                    self.classes[(mod, name)] = members


def _defined(node: ast.AST):
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        yield node.name, node
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id, node
    elif isinstance(node, ast.Assign):
        for t in node.targets:
            if isinstance(t, ast.Name):
                yield t.id, node


def _key(expr: ast.AST) -> str | None:
    """'a', 'self.b', 'x.y.z' for names and attribute chains, else None."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        base = _key(expr.value)
        return None if base is None else base + "." + expr.attr
    return None


def _params(fn: ast.FunctionDef) -> tuple[set[str], bool]:
    a = fn.args
    names = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
    return names, a.kwarg is not None


class Checker:
    """Follows module/class/instance bindings through one firmware file and reports misuses."""

    def __init__(self, stubs: Stubs, tree: ast.AST):
        self.stubs = stubs
        self.tree = tree
        # key -> ("module", mod) | ("class", mod, cls) | ("instance", mod, cls)
        self.kinds: dict[str, tuple] = {}
        for name, (mod, cls) in PARAM_HINTS.items():
            self.kinds[name] = ("instance", mod, cls)
        self.problems: list[str] = []
        self.uses: set[str] = set()

    def kind_of(self, expr: ast.AST):
        if isinstance(expr, ast.Call):
            k = self.kind_of(expr.func)
            if k and k[0] == "class":
                return ("instance", k[1], k[2])
            return None
        key = _key(expr)
        if key in self.kinds:
            return self.kinds[key]
        if isinstance(expr, ast.Attribute):
            base = self.kind_of(expr.value)
            if base and base[0] == "module" and (base[1], expr.attr) in self.stubs.classes:
                return ("class", base[1], expr.attr)
        return None

    def bind(self) -> None:
        for _ in range(3):  # bindings can refer to later ones (methods in any order)
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name in MODULES:
                            self.kinds[a.asname or a.name] = ("module", a.name)
                elif isinstance(node, ast.ImportFrom) and node.module in MODULES:
                    for a in node.names:
                        if (node.module, a.name) in self.stubs.classes:
                            self.kinds[a.asname or a.name] = ("class", node.module, a.name)
                        elif a.name not in self.stubs.modules[node.module]:
                            self.problems.append("from %s import %s: not in the stubs" % (node.module, a.name))
                elif isinstance(node, ast.Assign):
                    k = self.kind_of(node.value)
                    if k:
                        for t in node.targets:
                            key = _key(t)
                            if key:
                                self.kinds[key] = k

    def check(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute):
                base = self.kind_of(node.value)
                if not base:
                    continue
                if base[0] == "module":
                    members = self.stubs.modules[base[1]]
                    where = base[1]
                else:
                    members = self.stubs.classes[(base[1], base[2])]
                    where = "%s.%s" % (base[1], base[2])
                self.uses.add("%s.%s" % (where, node.attr))
                if node.attr not in members:
                    self.problems.append("line %d: %s has no %r" % (node.lineno, where, node.attr))
            elif isinstance(node, ast.Call) and node.keywords:
                self._check_keywords(node)

    def _check_keywords(self, call: ast.Call) -> None:
        k = self.kind_of(call.func)
        fns: list[ast.FunctionDef] = []
        label = ""
        if k and k[0] == "class":
            fns = [f for f in self.stubs.classes[(k[1], k[2])].get("__init__", [])
                   if isinstance(f, ast.FunctionDef)]
            label = "%s.%s()" % (k[1], k[2])
        elif isinstance(call.func, ast.Attribute):
            base = self.kind_of(call.func.value)
            if base and base[0] in ("instance", "class"):
                fns = [f for f in self.stubs.classes[(base[1], base[2])].get(call.func.attr, [])
                       if isinstance(f, ast.FunctionDef)]
                label = "%s.%s.%s()" % (base[1], base[2], call.func.attr)
        if not fns:
            return
        for kw in call.keywords:
            if kw.arg is None:
                continue
            if not any(kw.arg in _params(f)[0] or _params(f)[1] for f in fns):
                self.problems.append("line %d: %s takes no keyword %r" % (call.lineno, label, kw.arg))


@pytest.fixture(scope="module")
def stubs() -> Stubs:
    return Stubs(_stub_root())


@pytest.mark.parametrize("rel", CHECKED_FILES)
def test_every_pico_name_exists_in_the_stubs(stubs, rel):
    checker = Checker(stubs, ast.parse((FIRMWARE / rel).read_text()))
    checker.bind()
    checker.check()
    assert checker.problems == []


def test_the_checker_sees_the_hardware_names(stubs):
    """The bindings reach what matters, so an empty problem list means something."""
    checker = Checker(stubs, ast.parse((FIRMWARE / "pumphw/rp2hw.py").read_text()))
    checker.bind()
    checker.check()
    for name in ("machine.Pin.IRQ_FALLING", "machine.WDT.feed", "machine.ADC.read_u16",
                 "machine.PWM.duty_u16", "machine.UART.any", "machine.Timer.PERIODIC",
                 "machine.reset_cause", "machine.WDT_RESET", "machine.unique_id",
                 "time.ticks_diff", "select.poll.ipoll", "machine.Pin.value"):
        assert name in checker.uses, name
    steppio = Checker(stubs, ast.parse((FIRMWARE / "pumphw/steppio.py").read_text()))
    steppio.bind()
    steppio.check()
    for name in ("rp2.StateMachine.exec", "rp2.StateMachine.tx_fifo", "rp2.StateMachine.restart",
                 "rp2.PIO.SHIFT_RIGHT", "rp2.asm_pio"):
        assert name in steppio.uses, name


def test_the_checker_catches_a_wrong_name(stubs):
    bad = ("import machine\nimport rp2\nfrom machine import Pin\n"
           "p = Pin(3, Pin.OUT, pull_up=1)\np.toggle_fast()\nw = machine.WDT(timeout_ms=5)\n"
           "sm = rp2.StateMachine(0)\nsm.fifo_level()\nmachine.POWER_ON_RESET\n")
    checker = Checker(stubs, ast.parse(bad))
    checker.bind()
    checker.check()
    text = "\n".join(checker.problems)
    for needle in ("'toggle_fast'", "'pull_up'", "'timeout_ms'", "'fifo_level'", "'POWER_ON_RESET'"):
        assert needle in text, (needle, text)
