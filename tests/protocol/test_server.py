"""ProtocolServer against a fake Controller: framing, resync, retransmission, auth, every command."""
from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpcore import authhost, wire, wirehost
from pumpfw.server import ProtocolServer
from tests.protocol.fakes import KEY, RIG, FakeController, FakeProgram


class Link:
    """A server, its fake controller, and helpers to talk to it frame by frame."""

    def __init__(self, controller: FakeController | None = None) -> None:
        self.ctl = controller or FakeController()
        self.out: list[bytes] = []
        self.server = ProtocolServer(self.ctl, self.out.append)
        self.seq = 100
        self.counter = 0

    def feed(self, data: bytes) -> list[tuple]:
        n = len(self.out)
        self.server.feed(data)
        return [wirehost.decode_line(x) for x in self.out[n:]]

    def req(self, cmd: int, payload: bytes = b"", seq: int | None = None) -> tuple[int, bytes]:
        self.seq += 1
        got = self.feed(wire.encode_frame(wire.KIND_REQUEST, self.seq if seq is None else seq, cmd, 0, payload))
        assert len(got) == 1
        return got[0][4], got[0][5]

    def signed(self, cmd: int, body: bytes = b"", counter: int | None = None, key: bytes = KEY,
               rig: str = RIG) -> tuple[int, bytes]:
        self.seq += 1
        if counter is None:
            self.counter += 1
            counter = self.counter
        frame = authhost.sign_request(self.seq, cmd, body, rig, counter, key)
        got = self.feed(wire.frame_to_line(frame))
        assert len(got) == 1
        return got[0][4], got[0][5]


def reason(payload: bytes) -> str:
    return wirehost.parse_error(payload)[1]


@pytest.fixture
def link() -> Link:
    return Link()


# ---- framing and resynchronisation ---------------------------------------------------------
def test_hello_reports_versions_table_crc_and_rig(link: Link) -> None:
    status, p = link.req(wire.CMD_HELLO)
    assert status == wire.OK
    head = wirehost.unpack_fields(wire.HELLO_RESP, p)
    assert head == {"protocol_version": 1, "table_crc": wire.TABLE_CRC, "auth_counter": 0, "max_payload": 1024}
    assert wirehost.unpack_strings(p, 11, 3)[0] == ["0.1.0-test", "deadbeef", RIG]


def test_resync_after_garbage_torn_frames_and_overflow(link: Link) -> None:
    good = wire.encode_frame(0, 1, wire.CMD_STATUS, 0, b"")
    torn = good[: len(good) // 2]
    stream = (b"\x00\xffgarbage\n" + torn + good + b"REPL>>> " + torn + b"\n" + b"~" + b"A" * 5000 + b"\n"
              + good.replace(b"\n", b"\r\n") + b"~!!!!\n")
    got = link.feed(stream)
    assert [g[2] for g in got] == [1, 1]          # second one answered from the cache: same seq/bytes
    assert link.server.frames_dropped == 4        # torn (restarted by ~), torn+\n, overflow, bad base64
    assert link.server.retransmits == 1


def test_stream_split_at_every_byte_boundary(link: Link) -> None:
    lines = [wire.encode_frame(0, s, wire.CMD_CAL_READ, 0, b"") for s in range(3)]
    stream = b"junk".join(lines)
    for b in stream:
        link.server.feed(bytes((b,)))
    assert [wirehost.decode_line(x)[2] for x in link.out] == [0, 1, 2]


def test_ctrl_c_is_noise_by_default_and_aborts_frame(link: Link) -> None:
    """A keyed rig's server (the default): 0x03 and the raw-REPL bytes never stop anything."""
    good = wire.encode_frame(0, 1, wire.CMD_STATUS, 0, b"")
    assert link.server.feed(b"\r\x03\x03\r\x01\x04\x02") is False
    assert link.server.feed(good[:10] + b"\x03" + good[10:]) is False
    assert link.server.feed(good[:10] + b"\x01" + good[10:]) is False
    assert link.out == []                          # a frame with a control byte inside is dropped
    assert link.server.feed(b"\x01\x04" + good + b"\x03\x04") is False and len(link.out) == 1
    assert link.server.interrupts == 4


def test_ctrl_c_reported_on_a_keyless_rig_and_aborts_frame(link: Link) -> None:
    link.server.break_enabled = True
    good = wire.encode_frame(0, 1, wire.CMD_STATUS, 0, b"")
    assert link.server.feed(b"\r\x03\x03") is True
    assert link.server.feed(good[:10] + b"\x03" + good[10:]) is True
    assert link.out == []                          # the frame with a Ctrl-C inside is dropped
    assert link.server.feed(good) is False and len(link.out) == 1
    assert link.server.interrupts == 3


def test_responses_and_bad_crc_dropped_unknown_command_and_version_answered(link: Link) -> None:
    assert link.feed(wire.encode_frame(wire.KIND_RESPONSE, 1, wire.CMD_STATUS, 0, b"")) == []
    frame = bytearray(wire.build_frame(0, 2, wire.CMD_STATUS, 0, b""))
    frame[-1] ^= 1
    assert link.feed(wire.frame_to_line(bytes(frame))) == []
    status, p = link.req(0x7F)
    assert status == wire.ERR_UNKNOWN_COMMAND and reason(p) == "unknown command code 0x7f"
    got = link.feed(wire.encode_frame(0, 3, wire.CMD_STATUS, 0, b"", version=9))
    assert got[0][0] == wire.PROTOCOL_VERSION and got[0][4] == wire.ERR_VERSION
    assert reason(got[0][5]) == "protocol version 9 not supported: this firmware speaks 1"
    status, p = link.req(wire.CMD_STATUS, b"x")
    assert status == wire.ERR_BAD_PAYLOAD and reason(p) == "status payload length = 1: needs 0 bytes"


# ---- retransmission: answered again, never executed again ------------------------------------
def test_retransmitted_bolus_is_answered_not_executed(link: Link) -> None:
    frame = authhost.sign_request(500, wire.CMD_BOLUS, struct.pack("<II", 50_000, 0), RIG, 1, KEY)
    line = wire.frame_to_line(frame)
    first = link.feed(line)
    again = link.feed(line)
    again2 = link.feed(b"noise" + line)
    assert first == again == again2 and first[0][4] == wire.OK
    assert [c for c in link.ctl.calls if c[0] == "bolus"] == [("bolus", wire.BOLUS_CLINICIAN, 50_000, 0)]
    # evicted from the cache by later requests: refused as a replay, still not executed
    for _ in range(6):
        link.req(wire.CMD_STATUS)
    late = link.feed(line)
    assert late[0][4] == wire.ERR_REPLAY
    assert len([c for c in link.ctl.calls if c[0] == "bolus"]) == 1


def test_same_seq_different_bytes_is_a_new_request(link: Link) -> None:
    a = link.feed(wire.encode_frame(0, 9, wire.CMD_LOG_READ, 0, struct.pack("<IB", 0, 1)))
    b = link.feed(wire.encode_frame(0, 9, wire.CMD_LOG_READ, 0, struct.pack("<IB", 5, 1)))
    assert a[0][5][-32:] == bytes([0]) * 32 and b[0][5][-32:] == bytes([5]) * 32


# ---- authentication -----------------------------------------------------------------------
def test_auth_refusals_name_the_reason_and_change_nothing(link: Link) -> None:
    body = struct.pack("<II", 50_000, 0)
    st, p = link.signed(wire.CMD_BOLUS, body, counter=5, rig="rig-other")
    assert st == wire.ERR_WRONG_RIG and reason(p) == "request is for rig 'rig-other', this is rig 'rig-test-01'"
    st, p = link.signed(wire.CMD_BOLUS, body, counter=5, key=bytes(32))
    assert st == wire.ERR_BAD_MAC and "wrong key for rig 'rig-test-01'" in reason(p)
    # forged: a valid frame with one body byte changed and the CRC fixed up
    frame = bytearray(authhost.sign_request(77, wire.CMD_BOLUS, body, RIG, 5, KEY))
    frame[wire.HEADER_SIZE] ^= 0x40
    fixed = wire.build_frame(0, 77, wire.CMD_BOLUS, 0, bytes(frame[wire.HEADER_SIZE:-4]))
    got = link.feed(wire.frame_to_line(fixed))
    assert got[0][4] == wire.ERR_BAD_MAC
    # malformed trailer
    st, p = link.req(wire.CMD_BOLUS, body + b"\x05abc")
    assert st == wire.ERR_BAD_PAYLOAD and "authentication trailer malformed" in reason(p)
    assert link.ctl.calls == []
    # a good one, then its counter again and an older one
    assert link.signed(wire.CMD_BOLUS, body, counter=5)[0] == wire.OK
    st, p = link.signed(wire.CMD_BOLUS, body, counter=5)
    assert st == wire.ERR_REPLAY and reason(p) == "counter = 5: already used (last accepted 5); replayed request refused"
    assert link.signed(wire.CMD_BOLUS, body, counter=4)[0] == wire.ERR_REPLAY
    assert [c[0] for c in link.ctl.calls] == ["accept_counter", "bolus"]


def test_counter_above_small_int_limit_refused(link: Link) -> None:
    frame = bytearray(authhost.sign_request(3, wire.CMD_SUSPEND, b"", RIG, 1, KEY))
    plen = len(frame) - wire.HEADER_SIZE - 4
    struct.pack_into("<I", frame, wire.HEADER_SIZE + plen - 36, 2**31)
    signed = bytes(frame[:wire.HEADER_SIZE + plen - 32])
    mac = authhost.hmac_sha256(KEY, signed)
    line = wire.frame_to_line(wire.build_frame(0, 3, wire.CMD_SUSPEND, 0, signed[wire.HEADER_SIZE:] + mac))
    got = link.feed(line)
    assert got[0][4] == wire.ERR_BAD_PAYLOAD and "counter = 2147483648: above the limit 1073741823" in reason(got[0][5])
    assert link.ctl.calls == []


def test_no_key_provisioned() -> None:
    link = Link(FakeController(key=None))
    st, p = link.signed(wire.CMD_SUSPEND)
    assert st == wire.ERR_NO_KEY and "no key provisioned" in reason(p) and link.ctl.calls == []


def test_every_delivery_change_needs_auth(link: Link) -> None:
    for code, name, flags in wire.COMMANDS:
        if name in ("time_sync", "program_commit", "bolus", "patient_bolus", "suspend", "resume", "refill",
                    "prime", "alarm_ack", "calibration_write", "maintenance"):
            assert flags & wire.FLAG_AUTH, name
            st, _ = link.req(code, bytes(8))
            assert st == wire.ERR_BAD_PAYLOAD, name   # unsigned: refused before any controller call
    assert link.ctl.calls == []


# ---- commands -----------------------------------------------------------------------------
def test_delivery_commands_reach_the_controller(link: Link) -> None:
    assert link.signed(wire.CMD_TIME_SYNC, struct.pack("<HI", 9500, 3_600_000))[0] == wire.OK
    st, p = link.signed(wire.CMD_TIME_SYNC, struct.pack("<HI", 9500, 86_400_000))
    assert st == wire.ERR_BAD_PAYLOAD and reason(p) == "ms_of_day = 86400000: must be below 86400000"
    assert link.signed(wire.CMD_PATIENT_BOLUS)[0] == wire.OK
    assert link.signed(wire.CMD_SUSPEND)[0] == wire.OK
    assert link.signed(wire.CMD_RESUME)[0] == wire.OK
    assert link.signed(wire.CMD_REFILL, struct.pack("<II", 20_000_000, 2000))[0] == wire.OK
    st, p = link.signed(wire.CMD_REFILL, struct.pack("<II", 20_000_000, 0))
    assert st == wire.ERR_BAD_PAYLOAD and reason(p) == "conc_ug_ml = 0: outside 1..1073741823"
    assert link.signed(wire.CMD_PRIME, struct.pack("<I", 50_000))[0] == wire.OK
    assert link.signed(wire.CMD_CAL_WRITE, struct.pack("<I", 3000))[0] == wire.OK
    assert link.signed(wire.CMD_ALARM_ACK, struct.pack("<H", 7))[0] == wire.OK
    st, p = link.signed(wire.CMD_ALARM_ACK, struct.pack("<H", 8))
    assert st == wire.ERR_REFUSED and wirehost.parse_error(p) == (9, "alarm_id = 8: no such alarm")
    st, p = link.signed(wire.CMD_BOLUS, struct.pack("<II", 0, 0))
    assert st == wire.ERR_BAD_PAYLOAD and reason(p) == "dose_ng = 0: outside 1..1073741823"
    names = [c[0] for c in link.ctl.calls if c[0] != "accept_counter"]
    assert names == ["set_time", "bolus", "suspend", "resume", "refill", "prime", "set_calibration", "ack_alarm",
                     "ack_alarm"]
    assert ("bolus", wire.BOLUS_PATIENT, 0, 0) in link.ctl.calls


def test_maintenance_is_signed_and_its_window_bounded(link: Link) -> None:
    """The REPL is reached only through a signed maintenance command with a window of 1..30 min;
    an out-of-range window is refused before its counter is accepted (nothing consumed)."""
    st, p = link.req(wire.CMD_MAINTENANCE, struct.pack("<I", 600_000))
    assert st == wire.ERR_BAD_PAYLOAD and "authentication trailer malformed" in reason(p)
    for bad in (0, wire.MAINT_MIN_MS - 1, wire.MAINT_MAX_MS + 1):
        st, p = link.signed(wire.CMD_MAINTENANCE, struct.pack("<I", bad))
        assert st == wire.ERR_BAD_PAYLOAD and reason(p) == (
            "window_ms = %d: outside 60000..1800000 (1 to 30 min)" % bad)
    assert link.ctl.calls == []
    for good in (wire.MAINT_MIN_MS, wire.MAINT_DEFAULT_MS, wire.MAINT_MAX_MS):
        assert link.signed(wire.CMD_MAINTENANCE, struct.pack("<I", good))[0] == wire.OK
    assert [c for c in link.ctl.calls if c[0] == "maintenance"] == [
        ("maintenance", 60_000), ("maintenance", 600_000), ("maintenance", 1_800_000)]


def test_controller_refusal_code_and_text(link: Link) -> None:
    link.ctl.refuse_bolus = True
    st, p = link.signed(wire.CMD_PATIENT_BOLUS)
    assert st == wire.ERR_REFUSED and wirehost.parse_error(p) == (3, "patient bolus refused: lockout 3 h not over")


def test_controller_exception_is_reported_not_raised() -> None:
    class Broken(FakeController):
        def status(self) -> Any:
            raise ZeroDivisionError("division by zero")

        def limits(self) -> Any:
            return {"max_rate_ng_day": -1}

    link = Link(Broken())
    st, p = link.req(wire.CMD_STATUS)
    assert st == wire.ERR_INTERNAL and reason(p) == "internal error in status: ZeroDivisionError division by zero"
    st, p = link.req(wire.CMD_LIMITS_READ)
    assert st == wire.ERR_INTERNAL and "max_rate_ng_day = -1" in reason(p)


def test_reads(link: Link) -> None:
    st, p = link.req(wire.CMD_ALARMS)
    assert st == wire.OK and p[0] == 1
    assert wirehost.unpack_fields(wire.ALARM_ENTRY, p, 1) == link.ctl.alarm_list[0]
    st, p = link.req(wire.CMD_CAL_READ)
    assert wirehost.unpack_fields(wire.CAL_RESP, p) == {"pl_per_step": 3051, "source": 0}
    st, p = link.req(wire.CMD_LIMITS_READ)
    assert wirehost.unpack_fields(wire.LIMITS_RESP, p) == link.ctl.limits()
    st, p = link.req(wire.CMD_STATUS)
    assert wirehost.unpack_fields(wire.STATUS_RESP, p) == link.ctl.status()


def test_log_read_bounds_and_clamp(link: Link) -> None:
    st, p = link.req(wire.CMD_LOG_READ, struct.pack("<IB", 90, 200))
    head = wirehost.unpack_fields(wire.LOG_READ_RESP, p)
    assert head == {"oldest_seq": 0, "next_seq": 100, "first_seq": 90, "count": 10}
    st, p = link.req(wire.CMD_LOG_READ, struct.pack("<IB", 0, 200))
    assert wirehost.unpack_fields(wire.LOG_READ_RESP, p)["count"] == wire.MAX_LOG_RECORDS
    assert len(p) <= wire.MAX_PAYLOAD
    link.ctl.log = link.ctl.log[:50]
    st, p = link.req(wire.CMD_LOG_READ, struct.pack("<IB", 60, 5))
    assert wirehost.unpack_fields(wire.LOG_READ_RESP, p)["count"] == 0


# ---- program staging --------------------------------------------------------------------------
def _stage(link: Link, data: bytes, offset: int = 0, total: int | None = None) -> tuple[int, bytes]:
    return link.req(wire.CMD_PROG_STAGE, struct.pack("<II", offset, len(data) if total is None else total) + data)


def test_stage_verify_commit_and_read(link: Link) -> None:
    prog = FakeProgram(186_000, "x" * 1500)
    enc = prog.encode()
    assert _stage(link, enc[:1000], 0, len(enc))[0] == wire.OK
    st, p = link.req(wire.CMD_PROG_VERIFY)
    assert st == wire.ERR_STAGE and reason(p) == "staged 1000 of 1506 bytes: upload incomplete"
    assert _stage(link, enc[1000:], 1000, len(enc))[0] == wire.OK
    st, p = link.req(wire.CMD_PROG_VERIFY)
    v = wirehost.unpack_fields(wire.PROG_VERIFY_RESP, p)
    from zlib import crc32
    assert v == {"length": len(enc), "crc": crc32(enc)}
    st, p = link.req(wire.CMD_STATUS)
    assert wirehost.unpack_fields(wire.STATUS_RESP, p)["flags"] & wire.STATUS_FLAG_PROGRAM_STAGED
    st, p = link.req(wire.CMD_PROG_READ, struct.pack("<BBI", 1, 1, 0))
    head = wirehost.unpack_fields(wire.PROG_READ_RESP, p)
    text = "\n".join(prog.describe()).encode()
    assert head == {"total_len": len(text), "crc": crc32(enc), "offset": 0} and p[12:] == text[:wire.MAX_READ_CHUNK]
    st, p = link.signed(wire.CMD_PROG_COMMIT, struct.pack("<I", crc32(enc) ^ 1))
    assert st == wire.ERR_STAGE and "running program unchanged" in reason(p) and link.ctl.program is None
    assert link.signed(wire.CMD_PROG_COMMIT, struct.pack("<I", crc32(enc)))[0] == wire.OK
    assert link.ctl.program.encode() == enc
    st, p = link.req(wire.CMD_PROG_READ, struct.pack("<BBI", 0, 0, 1012))
    assert wirehost.unpack_fields(wire.PROG_READ_RESP, p)["total_len"] == len(enc) and p[12:] == enc[1012:]
    st, p = link.signed(wire.CMD_PROG_COMMIT, struct.pack("<I", crc32(enc)))
    assert st == wire.ERR_STAGE and reason(p) == "no verified staged program: stage and verify first"


def test_staging_errors_leave_running_program(link: Link) -> None:
    st, p = _stage(link, b"FP", 5, 10)
    assert st == wire.ERR_STAGE and "expected offset 0" in reason(p)
    st, p = _stage(link, b"x", 0, 5000)
    assert st == wire.ERR_BAD_PAYLOAD and reason(p) == "total_len = 5000: outside 1..4096 (largest program)"
    st, p = _stage(link, b"xyz", 0, 2)
    assert st == wire.ERR_BAD_PAYLOAD and reason(p) == "chunk offset 0 + 3 bytes: beyond total_len 2"
    assert _stage(link, b"XX-not-a-program")[0] == wire.OK
    st, p = link.req(wire.CMD_PROG_VERIFY)
    assert st == wire.ERR_PROGRAM and "does not decode: program: not a fake program" in reason(p)
    assert _stage(link, FakeProgram(2_000_000).encode())[0] == wire.OK
    st, p = link.req(wire.CMD_PROG_VERIFY)
    assert st == wire.ERR_PROGRAM and "above the hard limit max_rate_ng_day 1500000" in reason(p)
    st, p = link.req(wire.CMD_PROG_VERIFY, b"")
    link.req(wire.CMD_PROG_VERIFY)
    st, p = link.req(wire.CMD_PROG_READ, struct.pack("<BBI", 1, 0, 0))
    assert st == wire.ERR_STAGE
    # a verified program re-staged in part is no longer committable
    good = FakeProgram(100_000).encode()
    _stage(link, good)
    link.req(wire.CMD_PROG_VERIFY)
    _stage(link, good[:3], 0, len(good))
    from zlib import crc32
    st, p = link.signed(wire.CMD_PROG_COMMIT, struct.pack("<I", crc32(good)))
    assert st == wire.ERR_STAGE
    assert link.ctl.program is None and not [c for c in link.ctl.calls if c[0] == "commit_program"]


def test_signed_request_with_bad_body_consumes_no_counter(link: Link) -> None:
    st, p = link.signed(wire.CMD_BOLUS, struct.pack("<II", 0, 0), counter=3)
    assert st == wire.ERR_BAD_PAYLOAD and link.ctl.calls == [] and link.ctl.counter == 0
    st, p = link.signed(wire.CMD_PROG_COMMIT, struct.pack("<I", 1234), counter=3)
    assert st == wire.ERR_STAGE and link.ctl.calls == []
    assert link.signed(wire.CMD_BOLUS, struct.pack("<II", 1000, 0), counter=3)[0] == wire.OK
    assert [c[0] for c in link.ctl.calls] == ["accept_counter", "bolus"]


def test_largest_frame_with_crlf_answered_one_more_char_dropped(link: Link) -> None:
    line = wire.encode_frame(0, 4, wire.CMD_PROG_STAGE, 0, struct.pack("<II", 0, 4000) + bytes(wire.MAX_STAGE_CHUNK))
    assert len(line) == wire.MAX_LINE + 2
    got = link.feed(line.replace(b"\n", b"\r\n"))
    assert len(got) == 1 and got[0][4] == wire.OK
    assert link.feed(line.replace(b"\n", b"\r\r\n")) == []


def test_bare_controller_reports_missing_methods_by_name() -> None:
    from pumpfw.controller import Controller
    out: list[bytes] = []
    server = ProtocolServer(Controller(), out.append)
    server.feed(wire.encode_frame(0, 1, wire.CMD_STATUS, 0, b""))
    server.feed(wire.encode_frame(0, 2, wire.CMD_ALARMS, 0, b""))
    got = [wirehost.decode_line(x) for x in out]
    assert got[0][4] == wire.ERR_INTERNAL and reason(got[0][5]) == "internal error in status: NotImplementedError status"
    assert got[1][4] == wire.OK and got[1][5] == b"\x00"


def test_controller_returning_false_is_a_refusal() -> None:
    class No(FakeController):
        def suspend(self) -> bool:
            return False

    link = Link(No())
    st, p = link.signed(wire.CMD_SUSPEND)
    assert st == wire.ERR_REFUSED and reason(p) == "refused by the firmware (no reason given)"


_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!-_ \x00\xff"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_quad_by_quad_intake_accepts_exactly_what_the_whole_line_decoder_accepts(data: Any) -> None:
    """The server decodes each base64 quad as it arrives (no line buffer, issue 16): a line
    with characters replaced, inserted, deleted or padded anywhere is answered exactly when
    the whole-line strict decoder (wirehost.decode_line) takes it for a valid request, fed
    at once or one byte at a time; and the next good frame is always answered."""
    seq = data.draw(st.integers(0, 0xFFFF))
    payload = data.draw(st.binary(max_size=40))
    line = bytearray(wire.encode_frame(wire.KIND_REQUEST, seq, wire.CMD_STATUS, 0, payload))
    body = line[1:-1]
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(("replace", "insert", "delete", "pad")))
        at = data.draw(st.integers(0, len(body)))
        ch = data.draw(st.sampled_from(list(_CHARS)))
        if op == "replace" and at < len(body):
            body[at] = ch
        elif op == "insert":
            body.insert(at, ch)
        elif op == "delete" and at < len(body):
            del body[at]
        elif op == "pad":
            body[at:at] = b"=" * data.draw(st.integers(1, 3))
    mutated = b"~" + bytes(body) + (b"\r\n" if data.draw(st.booleans()) else b"\n")
    decoded = wirehost.decode_line(mutated)
    want = decoded is not None and decoded[1] == wire.KIND_REQUEST
    for bytewise in (False, True):
        link = Link()
        if bytewise:
            got = [r for b in mutated for r in link.feed(bytes((b,)))]
        else:
            got = link.feed(mutated)
        assert (len(got) == 1) == want, (mutated, got)
        assert len(link.feed(wire.encode_frame(wire.KIND_REQUEST, 7, wire.CMD_STATUS, 0, b""))) == 1


def test_a_padded_quad_ends_the_frame_even_when_what_follows_would_decode() -> None:
    """Two base64 texts run together decode, quad by quad, to the whole frame, but the first
    one's "=" pad must end a frame: the line is refused, as the whole-line decoder refuses it."""
    import base64
    frame = wire.build_frame(wire.KIND_REQUEST, 5, wire.CMD_STATUS, 0, b"")
    for k in (1, 2, 4, 5):
        line = b"~" + base64.b64encode(frame[:k]) + base64.b64encode(frame[k:]) + b"\n"
        assert b"=" in line[:-5] and wirehost.decode_line(line) is None
        assert Link().feed(line) == []
