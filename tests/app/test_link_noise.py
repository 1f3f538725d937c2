"""10,000 random byte streams rich in 0x01-0x04, in and out of frames, fed to a delivering keyed
app (issue 12): 0 stops, the plunger within 1 microstep of the program, 0 REPL hand-overs, and
every intact frame among the noise answered exactly once. Figures printed at the end.
"""
from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

from pumpcore import authhost, wire
from pumpcore.program import MODE_CONTINUOUS, Program

from .test_app import DAY0, run_for
from .test_maintenance import keyed_boot

STREAMS = 10_000
SEED = 12
RATE = 1_500_000           # ng/day at 50 ug/mL: 30 mL/day, about 19 microsteps a second
CONC = 50
CONTROL = b"\x01\x02\x03\x04"
MPREMOTE = [b"\r\x03\r\x01", b"\r\x03\x03", b"\x04", b"\r\x01", b"\x02", b"\x05A\x01",
            b"import os; print(open('rigkey.bin','rb').read())\r\x04",
            b"\x01print(len(open('rigkey.bin','rb').read()))\x04\x02"]


def _stream(rnd: random.Random, seq: list[int]) -> tuple[bytes, int]:
    """One stream and how many intact request frames it holds."""
    out = bytearray()
    intact = 0
    for _ in range(rnd.randrange(1, 8)):
        kind = rnd.randrange(7)
        if kind == 0:                       # control bytes, mostly 0x01-0x04
            out += bytes(rnd.choice(CONTROL) if rnd.random() < 0.7 else rnd.randrange(256)
                         for _ in range(rnd.randrange(1, 40)))
        elif kind == 1:
            out += rnd.choice(MPREMOTE)
        elif kind in (2, 3):                # an intact frame (read-only or wrongly signed)
            seq[0] = (seq[0] + 1) & 0xFFFF
            cmd = rnd.choice((wire.CMD_HELLO, wire.CMD_STATUS, wire.CMD_ALARMS, wire.CMD_MAINTENANCE))
            if cmd == wire.CMD_MAINTENANCE:   # a forged maintenance: refused (bad MAC)
                frame = authhost.sign_request(seq[0], cmd, (600_000).to_bytes(4, "little"), "fake-rig",
                                          10 ** 6, bytes(range(1, 33)))
            else:
                frame = wire.build_frame(wire.KIND_REQUEST, seq[0], cmd, 0, b"")
            out += wire.frame_to_line(frame)
            intact += 1
        elif kind == 4:                     # a frame with a control byte inside: dropped
            seq[0] = (seq[0] + 1) & 0xFFFF
            line = wire.frame_to_line(wire.build_frame(wire.KIND_REQUEST, seq[0], wire.CMD_STATUS, 0, b""))
            i = rnd.randrange(1, len(line) - 1)
            out += line[:i] + bytes((rnd.choice(CONTROL),)) + line[i:]
        elif kind == 5:                     # a torn frame: its "~" and part of its base64
            line = wire.frame_to_line(wire.build_frame(wire.KIND_REQUEST, 1, wire.CMD_HELLO, 0, b""))
            out += line[:rnd.randrange(1, len(line) - 1)]
        else:                               # REPL-ish text
            out += rnd.choice((b">>> ", b"raw REPL; CTRL-B to exit\r\n>", b"OK", b"\r\n", b"~"))
    if intact:
        out = b"\n" + out                   # a torn frame from the previous stream ends here
    return bytes(out), intact


def test_ten_thousand_noisy_streams_change_nothing(tmp_path: Path) -> None:
    app, hw = keyed_boot(tmp_path / "flash")
    assert app.set_time(DAY0, 0) is None
    assert app.refill(20_000_000, CONC) is None
    assert app.commit_program(Program(mode=MODE_CONTINUOUS, concentration_ug_ml=CONC, rate_ng_day=RATE)) is None
    t0_us = hw.now_us
    done0 = hw.stepper.done
    pl = app.sched.pl
    rnd = random.Random(SEED)
    seq = [0]
    stops = repl = intact_total = answered = worst_lag = worst_lead = 0
    bytes_total = ctrl_total = 0
    for _ in range(STREAMS):
        data, intact = _stream(rnd, seq)
        intact_total += intact
        bytes_total += len(data)
        ctrl_total += sum(1 for b in data if 1 <= b <= 4)
        hw.inbox += data
        before = len(hw.outbox)
        try:
            run_for(app, hw, rnd.randrange(20, 400))
        except BaseException:               # noqa: BLE001 - any way out of the loop is a stop
            stops += 1
            raise
        out = bytes(hw.outbox[before:])
        answered += out.count(b"~")
        if hw.ctrl_c or app.server.break_enabled or app.maint_window:
            repl += 1
        # the plunger against the program: floor(ideal volume / pL per step) since the commit
        ideal = Fraction(RATE * (hw.now_us - t0_us), 86_400_000_000) * Fraction(1_000_000, CONC)
        want = int(ideal // pl)
        made = hw.stepper.done - done0 + hw.stepper.pending()
        worst_lag = max(worst_lag, want - made)
        worst_lead = max(worst_lead, made - want)
    sim_s = (hw.now_us - t0_us) / 1e6
    print("\nlink noise while delivering %d ug/day at %d ug/mL (keyed rig, in-process):" % (RATE // 1000, CONC))
    print("  streams %d, bytes %d (%d of them 0x01-0x04), %.0f s of device time, %d microsteps"
          % (STREAMS, bytes_total, ctrl_total, sim_s, hw.stepper.done - done0))
    print("  stops %d | REPL hand-overs %d | intact frames %d, answered %d | plunger vs program: "
          "behind by at most %d, ahead by at most %d microsteps" % (stops, repl, intact_total, answered,
                                                                   worst_lag, worst_lead))
    assert stops == 0 and repl == 0
    assert answered == intact_total
    assert worst_lag <= 1 and worst_lead <= 0
    assert app.server.interrupts > 10_000 and not hw.ctrl_c
    assert app.sched.missed_steps == 0 and hw.stepper.enabled()
