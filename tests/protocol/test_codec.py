"""Frame codec, CRCs, base64 strictness, payload layouts and HMAC against independent references."""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpcore import auth, authhost, crc, wire, wirehost


def test_crc_check_values() -> None:
    assert crc.crc32(b"123456789") == 0xCBF43926
    assert crc.crc32_py(b"123456789") == 0xCBF43926
    assert crc.crc16(b"123456789") == 0x29B1
    assert crc.crc32(b"") == 0


@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_crc32_pure_python_equals_zlib(data: bytes, start: int) -> None:
    assert crc.crc32_py(data, start) == zlib.crc32(data, start)
    assert crc.crc32(data, start) == zlib.crc32(data, start)


def _reference_line(version: int, kind: int, seq: int, cmd: int, status: int, payload: bytes) -> bytes:
    head = struct.pack("<BBHBBH", version, kind, seq, cmd, status, len(payload)) + payload
    return b"~" + base64.b64encode(head + struct.pack("<I", zlib.crc32(head))) + b"\n"


@given(st.integers(0, 1), st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255),
       st.binary(max_size=wire.MAX_PAYLOAD))
def test_frame_round_trip_and_reference_layout(kind: int, seq: int, cmd: int, status: int, payload: bytes) -> None:
    line = wire.encode_frame(kind, seq, cmd, status, payload)
    assert line == _reference_line(wire.PROTOCOL_VERSION, kind, seq, cmd, status, payload)
    assert len(line) <= wire.MAX_LINE + 2
    assert b"\x03" not in line and line.count(b"~") == 1 and line.count(b"\n") == 1
    assert wirehost.decode_line(line) == (wire.PROTOCOL_VERSION, kind, seq, cmd, status, payload)


def test_max_sizes_are_consistent() -> None:
    assert wire.MAX_FRAME == wire.HEADER_SIZE + wire.MAX_PAYLOAD + wire.CRC_SIZE
    assert wire.MAX_LINE == 4 * ((wire.MAX_FRAME + 2) // 3)
    assert wire.MAX_LOG_RECORDS == (wire.MAX_PAYLOAD - wirehost.layout_size(wire.LOG_READ_RESP)) // wire.LOG_RECORD_SIZE
    assert wire.MAX_STAGE_CHUNK == wire.MAX_PAYLOAD - wirehost.layout_size(wire.PROG_STAGE_REQ)
    assert wire.MAX_READ_CHUNK == wire.MAX_PAYLOAD - wirehost.layout_size(wire.PROG_READ_RESP)
    with pytest.raises(wire.WireError, match="payload length = 1025: above MAX_PAYLOAD 1024"):
        wire.build_frame(0, 1, 1, 0, bytes(1025))


@given(st.binary(min_size=1, max_size=200))
def test_b64_decode_accepts_exactly_canonical_base64(data: bytes) -> None:
    text = base64.b64encode(data)
    buf = bytearray(300)
    n = wirehost.b64_decode_into(text, len(text), buf)
    assert bytes(buf[:n]) == data


@given(st.binary(max_size=64))
def test_b64_decode_rejects_what_is_not_canonical(text: bytes) -> None:
    buf = bytearray(100)
    n = wirehost.b64_decode_into(text, len(text), buf)
    try:
        ref = base64.b64decode(text, validate=True)
        canonical = base64.b64encode(ref) == text and len(text) > 0
    except ValueError:
        canonical = False
    if canonical:
        assert bytes(buf[:n]) == ref
    else:
        assert n == -1


def test_decode_line_drops_corruption() -> None:
    line = wire.encode_frame(0, 7, wire.CMD_STATUS, 0, b"abc")
    body = bytearray(line)
    body[5] = ord("A") if body[5] != ord("A") else ord("B")
    assert wirehost.decode_line(bytes(body)) is None            # CRC
    assert wirehost.decode_line(line[:-3] + b"\n") is None       # torn
    assert wirehost.decode_line(b"noise ~" + line[1:]) is not None  # garbage before the marker
    assert wirehost.decode_line(line.replace(b"\n", b"\r\n")) is not None


def test_pack_fields_names_field_value_and_limit() -> None:
    with pytest.raises(wire.WireError, match=r"dose_ng = 4294967296: outside 0\.\.4294967295"):
        wire.pack_fields(wire.BOLUS_REQ, {"dose_ng": 2**32, "duration_ms": 0})
    with pytest.raises(wire.WireError, match="duration_ms: missing"):
        wire.pack_fields(wire.BOLUS_REQ, {"dose_ng": 1})
    with pytest.raises(wire.WireError, match=r"dose_ng = '5': not an integer"):
        wire.pack_fields(wire.BOLUS_REQ, {"dose_ng": "5", "duration_ms": 0})
    with pytest.raises(wire.WireError, match="needs 8"):
        wirehost.unpack_fields(wire.BOLUS_REQ, b"\x00" * 7)


def test_every_command_code_unique_and_table_crc_covers_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = [c for c, _n, _f in wire.COMMANDS]
    names = [n for _c, n, _f in wire.COMMANDS]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    assert wire.command_flags(0x7F) == -1 and wire.command_name(0x7F) == "cmd 0x7f"
    before = crc.crc32(wire._table_text().encode())
    assert before == wire.TABLE_CRC
    monkeypatch.setattr(wire, "BOLUS_REQ", ("<IH", ("dose_ng", "duration_ms")))
    monkeypatch.setattr(wire, "LAYOUTS", tuple((n, wire.BOLUS_REQ if n == "bolus" else lay) for n, lay in wire.LAYOUTS))
    assert crc.crc32(wire._table_text().encode()) != before


def test_limits_response_carries_every_hard_limit_in_range() -> None:
    """LIMITS_RESP is HardLimits field for field (the reservoir under its wire name), and every
    value HardLimits admits fits the u32 field and stays an RP2040 small int (< 2**30)."""
    from pumpcore import limits
    wire_name = {"reservoir_capacity_nl": "max_reservoir_nl"}
    names = [wire_name.get(name, name) for name, _lo, _hi in limits._FIELDS]
    assert list(wire.LIMITS_RESP[1]) == names
    assert "max_flow_ng_day" in wire.LIMITS_RESP[1]
    fmt = wire.LIMITS_RESP[0]
    for (name, lo, hi), code in zip(limits._FIELDS, fmt[1:]):
        assert code == "I", name
        assert 0 < lo <= hi < 2**30, name
    top = limits.HardLimits(max_rate_ng_day=limits.ABS_MAX_FLOW_NG_DAY, max_24h_ng=5_000_000,
                            max_bolus_ng=limits.ABS_MAX_BOLUS_NG, reservoir_capacity_nl=limits.ABS_MAX_RESERVOIR_NL)
    doc = dict(zip(names, top.as_tuple()))
    assert wirehost.unpack_fields(wire.LIMITS_RESP, wire.pack_fields(wire.LIMITS_RESP, doc)) == doc


@given(st.binary(max_size=100), st.binary(max_size=300))
def test_hmac_equals_python_hmac(key: bytes, msg: bytes) -> None:
    assert authhost.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_signed_request_layout() -> None:
    key = bytes(range(32))
    frame = authhost.sign_request(9, wire.CMD_BOLUS, b"B" * 8, "rig-1", 42, key)
    parsed = wire.parse_frame(frame, len(frame))
    assert parsed is not None
    plen = parsed[5]
    assert plen == 8 + 1 + 5 + 4 + 32
    assert auth.split_trailer(frame, plen, 8) == (b"rig-1", 42)
    assert auth.verify_mac(auth.Hmac(key), frame, plen)
    assert not auth.verify_mac(auth.Hmac(bytes(32)), frame, plen)
    signed = frame[:wire.HEADER_SIZE + plen - 32]
    assert frame[wire.HEADER_SIZE + plen - 32:wire.HEADER_SIZE + plen] == hmac.new(key, signed, hashlib.sha256).digest()
    with pytest.raises(wire.WireError, match="counter = 0: outside 1..1073741823"):
        authhost.sign_request(9, wire.CMD_BOLUS, b"", "rig-1", 0, key)
    with pytest.raises(wire.WireError, match="rig_id = 'a b'"):
        authhost.sign_request(9, wire.CMD_BOLUS, b"", "a b", 1, key)
    with pytest.raises(wire.WireError, match="key: 5 bytes, a rig key is 32"):
        authhost.sign_request(9, wire.CMD_BOLUS, b"", "rig", 1, b"short")


def test_error_payload_cut_to_fit() -> None:
    p = wire.error_payload(3, "x" * 5000)
    assert len(p) == wire.MAX_PAYLOAD and wirehost.parse_error(p) == (3, "x" * (wire.MAX_PAYLOAD - 1))


@settings(max_examples=50)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=80), max_size=4))
def test_strings_round_trip(strings: list[str]) -> None:
    packed = wire.pack_strings(strings)
    fits = all(len(s.encode()) <= 255 for s in strings)
    if fits:
        assert wirehost.unpack_strings(packed, 0, len(strings)) == (strings, len(packed))


def test_largest_frame_fits_and_one_byte_more_does_not() -> None:
    for size in (wire.MAX_PAYLOAD - 2, wire.MAX_PAYLOAD - 1, wire.MAX_PAYLOAD):
        line = wire.encode_frame(1, 5, 19, 0, bytes(size))
        assert wirehost.decode_line(line) is not None, size
    big = b"~" + base64.b64encode(bytes(wire.MAX_FRAME + 1)) + b"\n"
    assert wirehost.decode_line(big) is None
    buf = bytearray(4)
    text = base64.b64encode(bytes(5))
    assert wirehost.b64_decode_into(text, len(text), buf) == -1


def test_a_layout_filled_in_order_names_each_value_and_refuses_a_wrong_count() -> None:
    got = wire.fields(wire.LIMITS_RESP, tuple(range(7)))
    assert list(got) == list(wire.LIMITS_RESP[1]) and list(got.values()) == list(range(7))
    with pytest.raises(wire.WireError, match="6 values for a layout of 7 fields"):
        wire.fields(wire.LIMITS_RESP, tuple(range(6)))
