"""Host side of the PIO proof: assemble rp2.asm_pio functions and run them in rp2040-pio-emulator.

`assemble(func)` runs a function written in MicroPython's asm_pio language (the very function
the Pico assembles) against an emitter that encodes instructions per the RP2040 datasheet
(section 3.4), giving opcodes and wrap settings. `EmulatedStateMachine` wraps the `pioemu`
emulator behind the `rp2.StateMachine` methods the firmware's StepGenerator uses (put, get,
tx_fifo, rx_fifo, active, exec, restart), keeps the 4-deep FIFOs of the chip, and records every
edge on the STEP and DIR pins with its cycle number.
"""
from __future__ import annotations

import types
from dataclasses import replace
from typing import Callable

from pioemu import State, emulate

# operand values of the asm_pio language (RP2040 datasheet 3.4 encodings)
_SRC_DEST = {"pins": 0, "x": 1, "y": 2, "null": 3, "pindirs": 4, "pc": 5, "status": 5,
             "isr": 6, "osr": 7}
_JMP_COND = {"not_x": 1, "x_dec": 2, "not_y": 3, "y_dec": 4, "x_not_y": 5, "pin": 6,
             "not_osre": 7}
_BLOCK = 0x21
_NOBLOCK = 0x01
_IF = 0x40


class Program:
    """Assembled program: opcodes, wrap_target, wrap_top, side-set bit count (mandatory)."""

    def __init__(self, opcodes: list[int], wrap_target: int, wrap_top: int, sideset_count: int,
                 labels: dict[str, int]):
        self.opcodes = opcodes
        self.wrap_target = wrap_target
        self.wrap_top = wrap_top
        self.sideset_count = sideset_count
        self.labels = labels


class _Emitter:
    def __init__(self, sideset_count: int):
        self.sideset_count = sideset_count
        self.labels: dict[str, int] = {}
        self.ops: list[int] = []
        self.sided: set[int] = set()
        self.wrap_target_at = 0
        self.wrap_top_at: int | None = None
        self.final = False

    # directives
    def label(self, name: str) -> None:
        if not self.final:
            if name in self.labels:
                raise ValueError("duplicate label %r" % name)
            self.labels[name] = len(self.ops)

    def wrap_target(self) -> None:
        self.wrap_target_at = len(self.ops)

    def wrap(self) -> None:
        self.wrap_top_at = len(self.ops) - 1

    # modifiers: `.side(v)` and `[delay]` act on the last instruction
    def side(self, value: int) -> "_Emitter":
        if not 0 <= value < (1 << self.sideset_count):
            raise ValueError("side-set value %d does not fit %d bit(s)" % (value, self.sideset_count))
        self.sided.add(len(self.ops) - 1)
        self.ops[-1] |= value << (13 - self.sideset_count)
        return self

    def __getitem__(self, delay: int) -> "_Emitter":
        if not 0 <= delay <= (31 >> self.sideset_count):
            raise ValueError("delay %d too large beside %d side-set bit(s)" % (delay, self.sideset_count))
        self.ops[-1] |= delay << 8
        return self

    def _emit(self, word: int) -> "_Emitter":
        self.ops.append(word)
        return self

    # instructions
    def jmp(self, cond, target=None) -> "_Emitter":
        if target is None:
            cond, target = 0, cond
        addr = self.labels.get(target, 0) if not self.final else self.labels[target]
        return self._emit((cond << 5) | addr)

    def out(self, dest: int, bits: int) -> "_Emitter":
        return self._emit(0x6000 | (dest << 5) | (bits & 0x1F))

    def in_(self, src: int, bits: int) -> "_Emitter":
        return self._emit(0x4000 | (src << 5) | (bits & 0x1F))

    def mov(self, dest: int, src: int) -> "_Emitter":
        return self._emit(0xA000 | (dest << 5) | src)

    def set(self, dest: int, value: int) -> "_Emitter":
        return self._emit(0xE000 | (dest << 5) | value)

    def pull(self, mode: int = _BLOCK, mode2: int = 0) -> "_Emitter":
        mode |= mode2
        return self._emit(0x8080 | (mode & 0x60))

    def push(self, mode: int = _BLOCK, mode2: int = 0) -> "_Emitter":
        mode |= mode2
        return self._emit(0x8000 | (mode & 0x60))

    def nop(self) -> "_Emitter":
        return self._emit(0xA042)


def _namespace(em: _Emitter) -> dict:
    ns: dict = dict(_SRC_DEST)
    ns.update(_JMP_COND)
    ns.update(block=_BLOCK, noblock=_NOBLOCK, iffull=_IF, ifempty=_IF)
    for name in ("label", "wrap_target", "wrap", "jmp", "out", "in_", "mov", "set", "pull",
                 "push", "nop"):
        ns[name] = getattr(em, name)
    return ns


def assemble(func: Callable[[], None], sideset_count: int = 1) -> Program:
    """Assemble an asm_pio-language function with `sideset_count` mandatory side-set bits."""
    em = _Emitter(sideset_count)
    for final in (False, True):
        em.final = final
        em.ops = []
        em.sided = set()
        f = types.FunctionType(func.__code__, _namespace(em), func.__name__)
        f()
    if sideset_count and len(em.sided) != len(em.ops):
        raise ValueError("side-set is mandatory here: every instruction needs .side()")
    top = em.wrap_top_at if em.wrap_top_at is not None else len(em.ops) - 1
    return Program(em.ops, em.wrap_target_at, top, sideset_count, dict(em.labels))


def encode_one(source: str, sideset_count: int = 1) -> int:
    """Opcode of one asm_pio instruction given as text (what rp2.StateMachine.exec does).

    Like exec on the chip, a missing `.side()` leaves the side-set bits 0 (pin driven low)."""
    em = _Emitter(sideset_count)
    em.final = True
    exec(source, _namespace(em))
    if len(em.ops) != 1:
        raise ValueError("expected exactly one instruction in %r" % source)
    return em.ops[0]


class EmulatedStateMachine:
    """An rp2.StateMachine look-alike running `program` in pioemu, 1 emulated cycle = 1 SM clock.

    Pins: `out_base` (DIR, 1 pin) and `sideset_base` (STEP). `edges` lists (cycle, pin, level)
    for every change of a watched pin. Time only moves in `run(cycles)`/`run_until_idle()`.
    """

    FIFO_DEPTH = 4

    def __init__(self, program: Program, step_pin: int = 2, dir_pin: int = 3):
        self.program = program
        self.step_pin = step_pin
        self.dir_pin = dir_pin
        self.state = State(pin_directions=(1 << step_pin) | (1 << dir_pin))
        self.enabled = False
        self.edges: list[tuple[int, int, int]] = []
        self.execs: list[str] = []

    # rp2.StateMachine API ---------------------------------------------------------------
    def active(self, value: int | None = None) -> bool:
        if value is not None:
            self.enabled = bool(value)
        return self.enabled

    def put(self, word: int) -> None:
        if len(self.state.transmit_fifo) >= self.FIFO_DEPTH:
            raise AssertionError("put() on a full TX FIFO would block the firmware")
        fifo = self.state.transmit_fifo.copy()
        fifo.append(word & 0xFFFFFFFF)
        self.state = replace(self.state, transmit_fifo=fifo)

    def get(self) -> int:
        if not self.state.receive_fifo:
            raise AssertionError("get() on an empty RX FIFO would block the firmware")
        fifo = self.state.receive_fifo.copy()
        word = fifo.popleft()
        self.state = replace(self.state, receive_fifo=fifo)
        return word

    def tx_fifo(self) -> int:
        return len(self.state.transmit_fifo)

    def rx_fifo(self) -> int:
        return len(self.state.receive_fifo)

    def exec(self, source: str) -> None:
        """Execute one instruction now (the SM's own program counter is kept)."""
        self.execs.append(source)
        opcode = encode_one(source, self.program.sideset_count)
        pc = self.state.program_counter
        start = replace(self.state, program_counter=0)
        for _, new in emulate([opcode], stop_when=lambda _op, s: s.clock > start.clock,
                              initial_state=start, **self._config(wrap=False)):
            self._record(self.state, new)
            self.state = new
        self.state = replace(self.state, program_counter=pc, clock=start.clock)

    def restart(self) -> None:
        """Like rp2.StateMachine.restart(): jump to the start of the program, STEP low."""
        self.exec_jmp(0)

    def exec_jmp(self, addr: int) -> None:
        new = replace(self.state, program_counter=addr)
        step_mask = 1 << self.step_pin
        new = replace(new, pin_values=new.pin_values & ~step_mask)
        self._record(self.state, new)
        self.state = new

    # time -----------------------------------------------------------------------------
    def _config(self, wrap: bool = True) -> dict:
        cfg = dict(side_set_base=self.step_pin, side_set_count=self.program.sideset_count,
                   out_base=self.dir_pin, out_count=1, shift_osr_right=True)
        if wrap:
            cfg.update(wrap_target=self.program.wrap_target, wrap_top=self.program.wrap_top)
        return cfg

    def _record(self, old: State, new: State) -> None:
        changed = old.pin_values ^ new.pin_values
        for pin in (self.dir_pin, self.step_pin):
            if changed >> pin & 1:
                self.edges.append((old.clock, pin, new.pin_values >> pin & 1))

    def _stalled_on_pull(self, s: State) -> bool:
        op = self.program.opcodes[s.program_counter]
        return (op & 0xE080) == 0x8080 and not s.transmit_fifo and (op & 0x20)

    def run(self, cycles: int, fast_loops: bool = True, stop_on_pull: bool = False,
            until_idle: bool = False) -> None:
        """Advance `cycles` SM clocks (an instruction with a delay may end a little later).

        stop_on_pull: return early, right after the program takes a word from the TX FIFO.
        until_idle: return early, without letting time pass, once the program waits on an
        empty TX FIFO.

        fast_loops: a `jmp x-- self` delay loop with X = v is run as one step of v cycles
        and its final pass (exactly what the chip does: v + 1 cycles, X ends at 0xFFFFFFFF)."""
        if not self.enabled:
            self.state = replace(self.state, clock=self.state.clock + cycles)
            return
        end = self.state.clock + cycles
        ops = self.program.opcodes
        level = len(self.state.transmit_fifo)

        def is_delay_loop(op: int, st: State) -> bool:
            return fast_loops and (op & 0xE0FF) == (0x0040 | st.program_counter) and st.x_register > 1

        def stop(op: int, st: State) -> bool:
            return (st.clock >= end or self._stalled_on_pull(st) or is_delay_loop(op, st)
                    or (stop_on_pull and len(st.transmit_fifo) < level))

        while self.state.clock < end:
            s = self.state
            if stop_on_pull and len(s.transmit_fifo) < level:
                return
            op = ops[s.program_counter]
            if self._stalled_on_pull(s):
                if not until_idle:
                    self.state = replace(s, clock=end)
                return
            if is_delay_loop(op, s):
                skip = min(s.x_register - 1, end - s.clock)
                self.state = replace(s, x_register=s.x_register - skip, clock=s.clock + skip)
                continue
            for old, new in emulate(ops, stop_when=stop, initial_state=s, **self._config()):
                self._record(old, new)
                self.state = new
            if self.state is s:  # emulator refused the opcode
                raise AssertionError("pioemu cannot run opcode %#06x" % op)

    def run_until_idle(self, limit: int = 10**9) -> None:
        """Run until the program waits for a segment on an empty TX FIFO (nothing left to do)."""
        start = self.state.clock
        self.run(limit, until_idle=True)
        if not self._stalled_on_pull(self.state):
            raise AssertionError("state machine still busy after %d cycles" % (self.state.clock - start))

    def idle(self) -> bool:
        """True while the program waits for a segment on an empty TX FIFO."""
        return bool(self._stalled_on_pull(self.state))


def pulses(edges: list[tuple[int, int, int]], step_pin: int) -> list[tuple[int, int]]:
    """(rise cycle, fall cycle) for every STEP pulse in an edge list."""
    out = []
    rise = None
    for cyc, pin, level in edges:
        if pin != step_pin:
            continue
        if level:
            rise = cyc
        else:
            assert rise is not None, "STEP fell without rising"
            out.append((rise, cyc))
            rise = None
    assert rise is None, "STEP left high"
    return out
