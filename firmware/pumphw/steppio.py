"""PIO step generator: exact STEP pulse trains with DIR setup, fed (count, period) segments.

Python decides how many steps by when; this PIO program decides the edges. Each segment is
two 32-bit words in the TX FIFO:

    word A = (count << 1) | direction     count 1..MAX_SEGMENT_STEPS, direction 0/1
    word B = period_cycles - _PERIOD_OVERHEAD_CYCLES

For every segment the state machine drives DIR (out pin) from bit 0 of word A, waits
DIR_SETUP_CYCLES, then emits exactly `count` STEP pulses (side-set pin) of HIGH_CYCLES high,
one every `period_cycles`; after the last pulse's full low time it pushes word A back into the
RX FIFO as the completion report. The driver adds the reported counts to `steps_done()` and
checks each report against what it queued. `abort()` stops the machine, reads the Y register
(pulses still owed of the running segment) to count exactly how many pulses were made, drains
both FIFOs and restarts the program with STEP low.

Timing at SM_FREQ = 1 MHz (1 cycle = 1 us, an integer divider of the 125 MHz system clock):
- period resolution 1 us, exact; period_us from MIN_PERIOD_US (20 us) to MAX_PERIOD_US (60 s);
- STEP high 2 us, STEP low >= 18 us (TMC2209 needs >= 100 ns each);
- DIR settles 3 us before the first STEP rising edge of a segment (TMC2209 needs 20 ns) and
  is held a whole low time after the previous segment's last rising edge;
- back-to-back segments: the first pulse of a segment comes SEGMENT_GAP_CYCLES (7 us) later
  than one period after the previous segment's last pulse (the load and report instructions).

The program source is `_step_program`, written in MicroPython's `rp2.asm_pio` language. It is
assembled on the Pico by `rp2.asm_pio(**asm_options(rp2))`; host tests assemble the very same
function with their own emitter and run its opcodes in an RP2040 PIO emulator.
"""
from pumpcore.fixed import const
from pumphw import text

SM_FREQ = const(1000000)           # state-machine clock, Hz: 1 cycle = 1 us
HIGH_CYCLES = const(2)             # STEP high time, cycles (the jmp plus its [1] delay)
_PERIOD_OVERHEAD_CYCLES = const(5)  # period = HIGH_CYCLES + 3 + word B cycles
SEGMENT_GAP_CYCLES = const(7)      # extra cycles between segments (report + load)
DIR_SETUP_CYCLES = const(3)        # out pins (DIR) -> STEP rising edge, cycles
MIN_PERIOD_US = const(20)
MAX_PERIOD_US = const(60000000)
MAX_SEGMENT_STEPS = const(1000000)
MAX_IN_FLIGHT = const(4)           # segments queued and not yet reported (RX FIFO depth)
_TX_ROOM_LEVEL = const(2)          # a segment is two words in the 4-deep TX FIFO

# Instructions executed by abort() on the stopped machine (rp2.StateMachine.exec strings).
EXEC_READ_Y = "mov(isr, y)"
EXEC_PUSH = "push(noblock)"
EXEC_DROP_TX = "pull(noblock)"

_STEP_MASK = const(0x3FFFFFFF)     # steps_done wraps at 2**30 (RP2040 small int)


def _step_program():
    # The PIO program, in rp2.asm_pio syntax (names are provided by the assembler).
    # One STEP pin on side-set (mandatory on every instruction), DIR on the out pin, OSR
    # shifting right so bit 0 of word A is the direction.
    label("load")
    pull(block)             .side(0)     # word A: (count << 1) | dir
    mov(isr, osr)           .side(0)     # keep word A: it is the completion report
    out(pins, 1)            .side(0)     # DIR <- bit 0; DIR setup starts here
    out(y, 31)              .side(0)     # Y = pulses still to make in this segment
    pull(block)             .side(0)     # word B: low-time loop count, stays in OSR
    wrap_target()
    jmp(y_dec, "high")      .side(1) [1]  # STEP rises and Y counts the pulse, same cycle
    label("high")
    mov(x, osr)             .side(0)     # STEP falls
    label("low")
    jmp(x_dec, "low")       .side(0)     # word B + 1 cycles
    jmp(not_y, "fin")       .side(0)     # all pulses made: report
    wrap()
    label("fin")
    push(block)             .side(0)     # report word A (never blocks: <= 4 in flight)
    jmp("load")             .side(0)


def asm_options(rp2):
    """Keyword arguments for rp2.asm_pio: STEP and DIR start low, OSR shifts right."""
    return {
        "sideset_init": rp2.PIO.OUT_LOW,
        "out_init": rp2.PIO.OUT_LOW,
        "out_shiftdir": rp2.PIO.SHIFT_RIGHT,
    }


def check_segment(steps, period_us, direction):
    """ValueError naming the field, value and limit unless steps is 1..MAX_SEGMENT_STEPS,
    period_us (us between rising edges) MIN_PERIOD_US..MAX_PERIOD_US and direction 0 or 1."""
    if not isinstance(steps, int) or steps < 1 or steps > MAX_SEGMENT_STEPS:
        raise ValueError(text("seg_steps", steps, MAX_SEGMENT_STEPS))
    if not isinstance(period_us, int) or period_us < MIN_PERIOD_US or period_us > MAX_PERIOD_US:
        raise ValueError(text("period", period_us, MIN_PERIOD_US, MAX_PERIOD_US))
    if direction != 0 and direction != 1:
        raise ValueError(text("direction", direction))


def segment_words(steps, period_us, direction):
    """(word A, word B) the driver puts in the TX FIFO for a segment (checked as above)."""
    check_segment(steps, period_us, direction)
    return (steps << 1) | direction, period_us * (SM_FREQ // 1000000) - _PERIOD_OVERHEAD_CYCLES


class StepGenerator:
    """Driver of one state machine running `_step_program`.

    `sm` is an rp2.StateMachine already initialised with the program (see make_step_generator)
    or any object with the same methods (put, get, tx_fifo, rx_fifo, active, exec, restart).
    queue(), steps_done(), pending() and busy() allocate nothing: they are safe per tick.
    """

    def __init__(self, sm):
        self._sm = sm
        self._ring = [0] * MAX_IN_FLIGHT   # word A of each segment in flight, oldest first
        self._head = 0
        self._count = 0                    # segments in flight (queued, not yet reported)
        self._pending = 0                  # pulses in flight
        self._done = 0                     # pulses reported made since boot (wraps at 2**30)
        self.report_errors = 0             # reports that did not match the queued segment
        sm.active(1)

    def _drain(self):
        # Take every completion report out of the RX FIFO.
        sm = self._sm
        while sm.rx_fifo():
            word = sm.get()
            expect = self._ring[self._head]
            if self._count == 0 or word != expect:
                self.report_errors += 1
            if self._count:
                self._head = (self._head + 1) % MAX_IN_FLIGHT
                self._count -= 1
                self._pending -= expect >> 1
            self._done = (self._done + (word >> 1)) & _STEP_MASK

    def queue(self, steps, period_us, direction):
        """Queue `steps` pulses every `period_us` us in `direction`; False if no room (retry).

        steps = 0 queues nothing and returns True. Raises ValueError for values out of range.
        """
        if steps == 0:
            return True
        check_segment(steps, period_us, direction)
        self._drain()
        if self._count >= MAX_IN_FLIGHT or self._sm.tx_fifo() > _TX_ROOM_LEVEL:
            return False
        word_a = (steps << 1) | direction
        self._ring[(self._head + self._count) % MAX_IN_FLIGHT] = word_a
        self._count += 1
        self._pending += steps
        self._sm.put(word_a)
        self._sm.put(period_us * (SM_FREQ // 1000000) - _PERIOD_OVERHEAD_CYCLES)
        return True

    def steps_done(self):
        """Pulses made since boot, counted from the PIO's completion reports and abort().

        A segment's pulses are counted when the segment completes (its report arrives), so
        keep segments short if the count must follow the motor closely."""
        self._drain()
        return self._done

    def pending(self):
        """Pulses queued and not yet reported made (includes the running segment)."""
        self._drain()
        return self._pending

    def busy(self):
        """True while any queued segment has not reported completion."""
        self._drain()
        return self._count > 0

    def abort(self):
        """Stop at once, count exactly the pulses made, drop the rest; returns pulses dropped.

        Leaves STEP low and the machine waiting for a new segment."""
        sm = self._sm
        sm.active(0)
        self._drain()
        made = 0
        if self._count:
            pulled = 2 * self._count - sm.tx_fifo()   # words the machine took from TX
            if pulled >= 2:                           # the oldest segment is loaded: Y is live
                sm.exec(EXEC_READ_Y)
                sm.exec(EXEC_PUSH)
                owed = sm.get()
                made = (self._ring[self._head] >> 1) - owed
                if made < 0 or pulled > 2:
                    self.report_errors += 1
                    made = max(made, 0)
        while sm.tx_fifo():
            sm.exec(EXEC_DROP_TX)
        while sm.rx_fifo():
            sm.get()
        dropped = self._pending - made
        self._done = (self._done + made) & _STEP_MASK
        self._pending = 0
        self._count = 0
        sm.restart()
        sm.active(1)
        return dropped


_program = None   # the assembled program: one object per boot, so PIO memory holds it once


def make_step_generator(sm_id, step_gpio, dir_gpio):
    """StepGenerator on RP2040 state machine `sm_id` (0..7) with STEP and DIR on these GPIOs.

    Idempotent within a boot: the program is assembled once and reused (MicroPython loads a
    program object into PIO instruction memory only once), so building the hardware layer again
    never fails with ENOMEM. If the memory is still full (a foreign program left there), the
    PIO block's programs are removed and the load is tried once more."""
    global _program
    import rp2
    from machine import Pin
    if _program is None:
        _program = rp2.asm_pio(**asm_options(rp2))(_step_program)
    try:
        sm = rp2.StateMachine(sm_id, _program, freq=SM_FREQ,
                              sideset_base=Pin(step_gpio), out_base=Pin(dir_gpio))
    except OSError:
        rp2.PIO(sm_id >> 2).remove_program()
        sm = rp2.StateMachine(sm_id, _program, freq=SM_FREQ,
                              sideset_base=Pin(step_gpio), out_base=Pin(dir_gpio))
    return StepGenerator(sm)
