"""The texts of the firmware's refusals and errors live in three catalogs loaded for the call
(issue 16's RAM budget): pumpcore.coretext, pumpfw.fwtext and pumphw.hwtext, each reached
through its layer's `text(key, *args)`. These tests hold the contract a caller relies on:
every key it names is in its layer's catalog, with the number of values the text takes; every
key is short enough to be an interned name on the device (not a string object, which is what
the move saves); and no text is left that nobody names."""
from __future__ import annotations

import ast
import re
import sys

import pytest

from pumpctl import deploy, devicecode
from tests.support.mpy import FIRMWARE, run_micropython

if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

from pumpcore import coretext, render, untold  # noqa: E402
from pumpfw import fwtext  # noqa: E402
from pumphw import hwtext  # noqa: E402

CATALOGS = {"pumpcore": coretext, "pumpfw": fwtext, "pumphw": hwtext}
# MicroPython's compiler interns a string literal of up to 10 characters
# (MICROPY_ALLOC_PARSE_INTERN_STRING_LEN); a longer one becomes a heap string object
KEY_MAX = 10
_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrxXiuoc%]")


def _conversions(fmt: str) -> int:
    return sum(1 for m in _CONVERSION.findall(fmt) if m != "%%")


def _calls() -> list[tuple[str, str, int, str]]:
    """(layer, key, number of values, where) of each `text("key", ...)` in the firmware: the
    layer is the package whose `text` the module imports (`from <layer> import text`)."""
    out = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        rel = path.relative_to(FIRMWARE).as_posix()
        layer = None
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "text" for a in node.names):
                layer = node.module
        if rel.endswith("__init__.py") and any(isinstance(n, ast.FunctionDef) and n.name == "text"
                                              for n in tree.body):
            layer = rel.split("/")[0]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "text"):
                continue
            where = "%s:%d" % (rel, node.lineno)
            assert layer is not None, "%s calls text() without importing a layer's text" % where
            key = node.args[0]
            if isinstance(key, ast.Name) and key.id == "key":
                continue          # a helper passing its caller's key on (ProtocolServer._refuse)
            assert isinstance(key, ast.Constant) and isinstance(key.value, str), \
                "%s: the key must be a literal (the test checks it against the catalog)" % where
            out.append((layer, key.value, len(node.args) - 1, where))
        for node in ast.walk(tree):   # the server's _refuse(status, key, *values)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_refuse" and isinstance(node.args[1], ast.Constant)):
                out.append(("pumpfw", node.args[1].value, len(node.args) - 2, "%s:%d" % (rel, node.lineno)))
    return out


CALLS = _calls()


def test_the_firmware_names_its_texts_by_key() -> None:
    assert len(CALLS) > 80, CALLS          # the walk found the callers (not a vacuous pass)
    assert {layer for layer, _, _, _ in CALLS} == set(CATALOGS)


@pytest.mark.parametrize("layer,key,n,where", CALLS, ids=[c[3] for c in CALLS])
def test_every_key_a_caller_names_is_in_its_catalog_with_its_arity(layer: str, key: str, n: int,
                                                                    where: str) -> None:
    texts = CATALOGS[layer].TEXTS
    assert key in texts, "%s names %r, which %s does not hold" % (where, key, CATALOGS[layer].__name__)
    assert _conversions(texts[key]) == n, "%s gives %d values to %r: %r" % (where, n, key, texts[key])


@pytest.mark.parametrize("layer", sorted(CATALOGS))
def test_catalog_keys_are_interned_names_and_every_text_is_used(layer: str) -> None:
    texts = CATALOGS[layer].TEXTS
    for key in texts:
        assert len(key) <= KEY_MAX and key.isidentifier(), key
    used = {key for lay, key, _, _ in CALLS if lay == layer}
    assert set(texts) - used == set(), "texts no caller names"


def test_a_catalog_that_cannot_be_made_gives_the_key_and_the_values() -> None:
    class NoHeapFormat(str):
        def __mod__(self, args: object) -> str:
            raise MemoryError        # as when the heap has no room for the text being made

    class NoHeap:
        __name__ = "pumpcore.nothing"
        TEXTS = {"alarm_code": NoHeapFormat("alarm code = %r: must be 1..%d")}

    assert render(NoHeap, "alarm_code", (99, 20)) == "alarm_code (99, 20)" == untold("alarm_code", (99, 20))
    assert render(coretext, "alarm_code", (99, 20)) == "alarm code = 99: must be 1..20"


def test_the_catalogs_ship_with_the_firmware() -> None:
    files = devicecode.device_files(deploy.DEFAULT_FIRMWARE_DIR, "rp2")
    for name in ("pumpcore/coretext.py", "pumpfw/fwtext.py", "pumphw/hwtext.py"):
        assert name in files


TEXTS_ON_DEVICE = """import sys
from pumpcore import alarms, wire
try:
    alarms.priority(99)
except ValueError as e:
    print('ERR', e)
print('LOADED', 'pumpcore.coretext' in sys.modules)
from pumpfw import text
print('FW', text('no_alarm', 42))
print('LOADED', 'pumpfw.fwtext' in sys.modules)
"""


def test_texts_are_made_and_let_go_on_micropython() -> None:
    from pumpcore import alarms
    with pytest.raises(ValueError) as err:
        alarms.priority(99)
    out = run_micropython(TEXTS_ON_DEVICE).split("\n")
    assert out[:4] == ["ERR " + str(err.value), "LOADED False", "FW no alarm with id 42", "LOADED False"], out


REPEATED = """import gc, sys
from pumpfw import text
from pumpcore import alarms
def once():
    text('no_alarm', 42)
    try:
        alarms.priority(99)
    except ValueError:
        pass
def batch():
    for i in range(300):
        once()
    gc.collect()
    return gc.mem_alloc()
first = second = third = 0   # the globals made before measuring: their dict does not grow between
first = batch()              # whatever settles once (the keys interned) settles here
second = batch()
third = batch()
print('GROWTH', second - first, third - first, 'pumpfw.fwtext' in sys.modules, 'pumpcore.coretext' in sys.modules)
"""


def test_texts_made_again_and_again_leave_the_heap_as_it_was_on_micropython() -> None:
    """A flood of refusals loads and lets go a catalog each time: after a first 300 of each
    kind, two more floods of 300 leave the heap after a collection where the first left it."""
    out = run_micropython(REPEATED).split("\n")
    assert out[0] == "GROWTH 0 0 False False", out
