"""The host's half of the wire codec: unpacking what the firmware packs, decoding whole lines.

The device never imports this module (tests/layout checks the deploy's import closure), so its
code and its names cost the Pico no RAM: interned names are never freed once a module loads
(issue 16). Every definition it reads (layouts, sizes, the frame primitives) is pumpcore.wire's,
the one source both sides share; nothing here is a copy. Runs on CPython and MicroPython alike.
"""
import struct

from pumpcore.wire import (B64_TABLE, HEADER_SIZE, MAX_FRAME, MAX_LINE, STATUS_NAMES, WireError,
                           b64_quad_into, parse_frame)


def b64_decode_into(src, n, dst):
    """Strictly decode base64 `src[0:n]` into bytearray `dst`; return bytes written or -1.

    Strict: n a multiple of 4, only the alphabet, "=" only as 1 or 2 final pad characters with
    zero unused bits, and the whole fits in `dst`: the device's rule (pumpcore.wire.b64_quad_into,
    which the server applies quad by quad as the characters arrive).
    """
    if n == 0 or n & 3:
        return -1
    t = B64_TABLE
    o = 0
    for i in range(0, n, 4):
        got = b64_quad_into(dst, o, t[src[i]], t[src[i + 1]], t[src[i + 2]], t[src[i + 3]])
        if got < 0 or (got < 3 and i + 4 != n):
            return -1
        o += got
    return o


def status_name(status):
    """Short name of a status code, e.g. "replay"."""
    if 0 <= status < len(STATUS_NAMES):
        return STATUS_NAMES[status]
    return "status-%d" % status


def layout_size(layout):
    """Bytes taken by a fixed layout."""
    return struct.calcsize(layout[0])


def unpack_fields(layout, buf, offset=0):
    """Unpack a layout from `buf` at `offset` into a dict; WireError if `buf` is too short."""
    fmt, names = layout
    size = struct.calcsize(fmt)
    if len(buf) - offset < size:
        raise WireError("payload: %d bytes, layout %s needs %d" % (len(buf) - offset, fmt, size))
    vals = struct.unpack_from(fmt, buf, offset)
    d = {}
    for i in range(len(names)):
        d[names[i]] = vals[i]
    return d


def unpack_strings(buf, offset, count):
    """Read `count` strings packed by pack_strings; returns (list of str, new offset)."""
    out = []
    for _ in range(count):
        if offset >= len(buf):
            raise WireError("string %d: payload ends at byte %d" % (len(out), offset))
        n = buf[offset]
        offset += 1
        if offset + n > len(buf):
            raise WireError("string %d: length %d beyond payload end %d" % (len(out), n, len(buf)))
        out.append(bytes(buf[offset:offset + n]).decode())
        offset += n
    return out, offset


def parse_error(payload):
    """(detail, reason text) from an error response payload."""
    if len(payload) < 1:
        return 0, ""
    return payload[0], bytes(payload[1:]).decode()


def decode_line(line):
    """Decode one line (with or without the leading "~" and trailing newline/CR).

    Returns (version, kind, seq, cmd, status, payload bytes) or None when the line is not a
    valid frame. Used by the host and tests; the server uses the same primitives in place.
    """
    start = 0
    end = len(line)
    while end > 0 and line[end - 1] in (0x0A, 0x0D):
        end -= 1
    tilde = bytes(line).rfind(b"~", 0, end)
    if tilde < 0:
        return None
    start = tilde + 1
    n = end - start
    if n > MAX_LINE:
        return None
    buf = bytearray(MAX_FRAME)
    got = b64_decode_into(memoryview(line)[start:end], n, buf)
    if got < 0:
        return None
    parsed = parse_frame(buf, got)
    if parsed is None:
        return None
    version, kind, seq, cmd, status, length = parsed
    return version, kind, seq, cmd, status, bytes(buf[HEADER_SIZE:HEADER_SIZE + length])
