"""Hypothesis fuzz of the firmware ProtocolServer: >= 100,000 random and mutated frames.

Properties: the server never raises; no invalid frame (garbage, torn, corrupted, forged,
replayed, wrong rig, wrong key, unsigned) changes any controller state; every complete line is
answered or dropped exactly as an independent reference framer (written here with base64/zlib,
not with pumpcore.wire) predicts; responses carry the request's sequence number and command.
"""
from __future__ import annotations

import base64
import binascii
import random
import re
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumpcore import authhost, wire, wirehost
from pumpfw.server import ProtocolServer
from tests.protocol.fakes import KEY, RIG, FakeController, FakeProgram

BATCH = 50
EXAMPLES = 2100
COUNT = [0]
START_COUNTER = 1000

AUTH_CMDS = [c for c, _n, f in wire.COMMANDS if f & wire.FLAG_AUTH]
ALL_CMDS = [c for c, _n, _f in wire.COMMANDS] + [0x00, 0x7F, 0xFF]

KINDS = ["valid", "valid", "signed_bad", "mutated", "mutated", "garbage", "torn", "random_b64",
         "response", "version", "retransmit", "ctrl_c"]


def _reference_answers(stream: bytes) -> list[tuple[int, int, int, bool]]:
    """(seq, cmd, version, needs_auth) of each request line the protocol rules say is answered.

    Rules: "~" starts (or restarts) a frame, 0x03 abandons it, "\n" ends it; a line longer than
    MAX_LINE characters (plus one CR), not canonical base64, of the wrong length, with a bad CRC or not a
    request is dropped.
    """
    out = []
    start = -1
    for m in re.finditer(rb"[~\n\x03]", stream):
        i = m.start()
        c = stream[i]
        if c == 0x7E:
            start = i + 1
            continue
        if c == 0x03 or start < 0:
            start = -1
            continue
        text = stream[start:i]
        start = -1
        if len(text) > wire.MAX_LINE + 1:      # room for the largest frame and a CR
            continue
        if text.endswith(b"\r"):
            text = text[:-1]
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            continue
        if not text or base64.b64encode(raw) != text or len(raw) < 12:
            continue
        version, kind, seq, cmd, _status, length = struct.unpack_from("<BBHBBH", raw)
        if length > wire.MAX_PAYLOAD or len(raw) != 12 + length:
            continue
        if zlib.crc32(raw[:-4]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
            continue
        if kind != 0:
            continue
        out.append((seq, cmd, version, cmd in AUTH_CMDS))
    return out


def _make(kind: str, seq: int, cmd: int, payload: bytes, rnd: random.Random, prev: bytes) -> bytes:
    if kind == "valid":
        return wire.encode_frame(0, seq, cmd, 0, payload)
    if kind == "signed_bad":
        acmd = AUTH_CMDS[seq % len(AUTH_CMDS)]
        how = rnd.randrange(4)
        counter = rnd.randrange(1, START_COUNTER + 1) if how == 0 else START_COUNTER + 1 + rnd.randrange(50)
        key = bytes(32) if how == 1 else KEY
        rig = "rig-other" if how == 2 else RIG
        frame = bytearray(authhost.sign_request(seq, acmd, payload[:8], rig, counter, key))
        if how == 3:   # forged: a byte of the signed part changed, CRC recomputed
            plen = len(frame) - 12
            frame[8 + rnd.randrange(plen)] ^= 1 << rnd.randrange(8)
            frame = bytearray(wire.build_frame(0, seq, acmd, 0, bytes(frame[8:-4])))
        return wire.frame_to_line(bytes(frame))
    if kind == "mutated":
        line = bytearray(wire.encode_frame(0, seq, cmd, 0, payload))
        for _ in range(rnd.randrange(1, 4)):
            op = rnd.randrange(4)
            pos = rnd.randrange(len(line))
            if op == 0:
                line[pos] ^= 1 << rnd.randrange(8)
            elif op == 1:
                del line[pos]
            elif op == 2:
                line.insert(pos, rnd.randrange(256))
            else:
                line[pos] = rnd.choice(b"AZaz09+/=~\n\r")
        return bytes(line)
    if kind == "garbage":
        return payload
    if kind == "torn":
        line = wire.encode_frame(0, seq, cmd, 0, payload)
        return line[:rnd.randrange(1, len(line) - 1)]
    if kind == "random_b64":
        return b"~" + base64.b64encode(payload + bytes(rnd.randrange(12))) + b"\n"
    if kind == "response":
        return wire.encode_frame(1, seq, cmd, 0, payload)
    if kind == "version":
        return wire.encode_frame(rnd.choice([0, 2, 255]), seq, cmd, 0, payload)
    if kind == "retransmit":
        return prev
    return b"\x03" + payload[:3]   # ctrl_c


def _fresh() -> tuple[FakeController, ProtocolServer, list[bytes]]:
    ctl = FakeController()
    ctl.counter = START_COUNTER
    ctl.program = FakeProgram(186_000, "running")
    out: list[bytes] = []
    return ctl, ProtocolServer(ctl, out.append), out


spec = st.tuples(st.sampled_from(KINDS), st.integers(0, 0xFFFF), st.sampled_from(ALL_CMDS),
                 st.binary(max_size=48), st.integers(0, 2**32 - 1))


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(spec, min_size=BATCH, max_size=BATCH), st.integers(1, 512))
def _fuzz_batch(specs: list[tuple[str, int, int, bytes, int]], chunk: int) -> None:
    ctl, server, out = _fresh()
    before = (ctl.counter, ctl.program.encode(), ctl.suspended, ctl.pl, ctl.day, ctl.ms, list(ctl.alarm_list))
    stream = bytearray()
    prev = b""
    for kind, seq, cmd, payload, r in specs:
        line = _make(kind, seq, cmd, payload, random.Random(r), prev)
        stream += line
        prev = line
    COUNT[0] += len(specs)
    stream = bytes(stream)
    for i in range(0, len(stream), chunk):
        server.feed(stream[i:i + chunk])     # must never raise
    server.feed(b"\n")                        # end any frame left open at the end
    expected = _reference_answers(stream + b"\n")
    got = [wirehost.decode_line(x) for x in out]
    assert all(g is not None and g[1] == wire.KIND_RESPONSE for g in got)
    assert [(g[2], g[3]) for g in got] == [(e[0], e[1]) for e in expected]
    for g, e in zip(got, expected):
        if e[2] != wire.PROTOCOL_VERSION:
            assert g[4] == wire.ERR_VERSION
        elif e[1] not in ALL_CMDS[:-3]:
            assert g[4] == wire.ERR_UNKNOWN_COMMAND
        elif e[3]:
            assert g[4] in (wire.ERR_BAD_PAYLOAD, wire.ERR_WRONG_RIG, wire.ERR_BAD_MAC, wire.ERR_REPLAY)
        if g[4] != wire.OK:
            assert wirehost.parse_error(g[5])[1], "every error carries a reason"
    assert server.frames_answered == len(expected)
    assert ctl.calls == []
    assert (ctl.counter, ctl.program.encode(), ctl.suspended, ctl.pl, ctl.day, ctl.ms, ctl.alarm_list) == before


def test_fuzz_100k_frames() -> None:
    COUNT[0] = 0
    _fuzz_batch()
    assert COUNT[0] >= 100_000, COUNT[0]


def test_reference_framer_agrees_on_known_cases() -> None:
    good = wire.encode_frame(0, 5, wire.CMD_STATUS, 0, b"")
    assert _reference_answers(good) == [(5, wire.CMD_STATUS, 1, False)]
    assert _reference_answers(good[:-1]) == []
    assert _reference_answers(good[:5] + good) == [(5, wire.CMD_STATUS, 1, False)]
    assert _reference_answers(good[:5] + b"\x03" + good[5:]) == []
