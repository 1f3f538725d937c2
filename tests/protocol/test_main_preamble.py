"""main.py's first lines: a Ctrl-C that lands before kbd_intr(-1) takes hold is retried, never
raised out of main.py (where MicroPython would drop a keyed rig into the REPL, silently)."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

MAIN = Path(__file__).resolve().parents[2] / "firmware" / "main.py"


def test_a_ctrl_c_before_kbd_intr_takes_hold_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    src = MAIN.read_text()
    preamble = src[:src.index("import pumphw")]
    calls: list[int] = []

    def kbd_intr(c: int) -> None:
        calls.append(c)
        if len(calls) == 1:
            raise KeyboardInterrupt   # the 0x03 was pending when the module started
    monkeypatch.setitem(sys.modules, "micropython", types.SimpleNamespace(kbd_intr=kbd_intr))
    exec(compile(preamble, str(MAIN), "exec"), {"__name__": "__main__"})
    assert calls == [-1, -1]
