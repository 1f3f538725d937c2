"""The persistent-state record parser: `statecodec.decode` and `statecodec.unflatten` (the
record layout is statecodec's docstring; the encoder, which every save runs, stays there).

Its own module for the RP2040's RAM (issue 16): the device parses its state only at boot, and
on v1.22.2 this code and its error texts would sit in the heap for the whole run;
`statecodec.decode` loads it for the call and lets it go after (`pumpcore.call_once`).
"""
import struct

from pumpcore.crc import crc32
from pumpcore.statecodec import (StateError, PersistentState, FIELDS, FIELD_LIMITS, MAGIC, HEADER_SIZE,
                                 MAX_DEPTH, SEQ_MAX, STATE_VERSION, MAX_SECTION_INTS, ERR_SHORT,
                                 ERR_MAGIC, ERR_VERSION, ERR_LENGTH, ERR_CRC, ERR_FIELD, ERR_LAYOUT, _HDR)

_N = len(FIELDS)


def unflatten(shape, vals, name="section"):
    """statecodec.unflatten: the inverse of flatten(): rebuild the nested tuple. Raises StateError on a malformed shape
    or a value count that does not match."""
    stack = []
    cur = None
    k = 0
    n = 0
    done = None
    for c in shape:
        if done is not None:
            raise StateError(name + " shape", repr(shape), "has bytes after the outer tuple", ERR_LAYOUT)
        if 0x30 <= c <= 0x39:
            n = n * 10 + (c - 0x30)
            if n > MAX_SECTION_INTS:
                raise StateError(name + " shape", repr(shape), "run longer than %d" % MAX_SECTION_INTS,
                                 ERR_LAYOUT)
            continue
        if c == 0x28:
            if n or len(stack) >= MAX_DEPTH:
                raise StateError(name + " shape", repr(shape), "malformed", ERR_LAYOUT)
            if cur is not None:
                stack.append(cur)
            cur = []
        elif c == 0x69:
            cnt = n if n else 1
            n = 0
            if cur is None or k + cnt > len(vals):
                raise StateError(name + " shape", repr(shape), "does not match %d values" % len(vals),
                                 ERR_LAYOUT)
            for j in range(cnt):
                cur.append(vals[k + j])
            k += cnt
        elif c == 0x29:
            if cur is None or n:
                raise StateError(name + " shape", repr(shape), "malformed", ERR_LAYOUT)
            t = tuple(cur)
            if stack:
                cur = stack.pop()
                cur.append(t)
            else:
                cur = None
                done = t
        else:
            raise StateError(name + " shape", repr(shape), "unexpected byte %d" % c, ERR_LAYOUT)
    if done is None or k != len(vals):
        raise StateError(name + " shape", repr(shape), "does not match %d values" % len(vals), ERR_LAYOUT)
    return done


def decode(buf):
    """statecodec.decode: parse a record. Returns a PersistentState (with .seq) or raises StateError whose
    `code` (ERR_*) and message say exactly what is wrong."""
    n = len(buf)
    if n < HEADER_SIZE + 4:
        raise StateError("record length", n, "too short: a record has at least %d bytes"
                         % (HEADER_SIZE + 4), ERR_SHORT)
    magic, version, n_fixed, seq, total, n_sec, n_blob = struct.unpack_from(_HDR, buf, 0)
    if magic != MAGIC:
        raise StateError("magic", repr(bytes(magic)), "expected %r" % MAGIC, ERR_MAGIC)
    if version != STATE_VERSION:
        raise StateError("version", version, "this firmware reads version %d" % STATE_VERSION,
                         ERR_VERSION)
    if total != n:
        raise StateError("total_len", total, "but the record has %d bytes (torn or truncated)" % n,
                         ERR_LENGTH)
    stored = struct.unpack_from("<I", buf, n - 4)[0]
    computed = crc32(memoryview(buf)[:n - 4])
    if stored != computed:
        raise StateError("crc", "0x%08x" % stored, "computed 0x%08x over the record" % computed, ERR_CRC)
    if n_fixed != _N:
        raise StateError("n_fixed", n_fixed, "version %d has %d fields" % (STATE_VERSION, _N),
                         ERR_LAYOUT)
    if seq < 1 or seq > SEQ_MAX:
        raise StateError("seq", seq, "must be 1..%d" % SEQ_MAX, ERR_FIELD)
    st = PersistentState()
    st.seq = seq
    off = HEADER_SIZE
    end = n - 4
    if off + 4 * _N > end:
        raise StateError("fixed fields", _N, "do not fit in %d bytes" % n, ERR_LAYOUT)
    for i in range(_N):
        v = struct.unpack_from("<i", buf, off)[0]
        lo, hi = FIELD_LIMITS[i]
        if v < lo or v > hi:
            raise StateError(FIELDS[i], v, "outside %d..%d" % (lo, hi), ERR_FIELD)
        st.ints[i] = v
        off += 4
    for _ in range(n_sec):
        if off + 3 > end:
            raise StateError("section header", off, "runs past the end (%d)" % end, ERR_LAYOUT)
        sid, slen = struct.unpack_from("<BH", buf, off)
        off += 3
        if off + slen + 2 > end:
            raise StateError("section %d shape length" % sid, slen, "runs past the end", ERR_LAYOUT)
        shape = bytes(buf[off:off + slen])
        off += slen
        cnt = struct.unpack_from("<H", buf, off)[0]
        off += 2
        if off + 4 * cnt > end:
            raise StateError("section %d length" % sid, cnt, "runs past the end", ERR_LAYOUT)
        vals = struct.unpack_from("<%di" % cnt, buf, off) if cnt else ()
        off += 4 * cnt
        st.sections[sid] = unflatten(shape, vals, "section %d" % sid)
    for _ in range(n_blob):
        if off + 3 > end:
            raise StateError("blob header", off, "runs past the end (%d)" % end, ERR_LAYOUT)
        bid, blen = struct.unpack_from("<BH", buf, off)
        off += 3
        if off + blen > end:
            raise StateError("blob %d length" % bid, blen, "runs past the end", ERR_LAYOUT)
        st.blobs[bid] = bytes(buf[off:off + blen])
        off += blen
    if off != end:
        raise StateError("record length", n, "has %d unparsed bytes" % (end - off), ERR_LAYOUT)
    return st
