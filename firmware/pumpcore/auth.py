"""HMAC-SHA256 by hand on hashlib.sha256 and the authenticated-request trailer (both sides).

MicroPython (unix port and RP2040) has hashlib.sha256 but no hmac module, so HMAC (RFC 2104)
is built here; results equal CPython's hmac.new(key, msg, "sha256"). An authenticated request
carries, at the end of its payload: rig id (u8 length + ASCII), counter (u32, 1 .. 2**30-1,
strictly above every counter the rig accepted before) and the HMAC-SHA256 of the binary frame
from byte 0 up to and including the counter, under that rig's 32-byte key.

This module is the device's half: the pads, the MAC check and the trailer's parse. Signing a
request (the host's half) is pumpcore.authhost, which the device does not import (issue 16).
"""
import hashlib
import struct

from pumpcore import wire
from pumpcore.fixed import const

_BLOCK = const(64)
KEY_SIZE = const(32)      # bytes of a rig key (/rigkey.bin on the device)
_TRAILER_FIXED = const(37)  # rig id length byte + counter u32 + HMAC (32)


class Hmac:
    """HMAC-SHA256 with the key's inner/outer pads computed once (per rig key)."""

    def __init__(self, key):
        key = bytes(key)
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            ipad[i] = k ^ 0x36
            opad[i] = k ^ 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest(self, msg):
        """32-byte HMAC-SHA256 of `msg` (bytes-like)."""
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


def equal(a, b):
    """Compare two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def split_trailer(buf, payload_len, body_len):
    """Parse the auth trailer of frame `buf` (payload `payload_len` bytes, body `body_len`).

    The body length is fixed by the command's layout, so the trailer position is exact.
    Returns (rig_id bytes, counter) or None when the trailer is malformed (wrong length byte,
    rig id empty or too long).
    """
    rid_len = payload_len - body_len - _TRAILER_FIXED
    if body_len < 0 or rid_len < 1 or rid_len > wire.MAX_RIG_ID:
        return None
    start = wire.HEADER_SIZE + body_len
    if buf[start] != rid_len:
        return None
    end = wire.HEADER_SIZE + payload_len
    counter = struct.unpack_from("<I", buf, end - wire.HMAC_SIZE - 4)[0]
    return bytes(buf[start + 1:start + 1 + rid_len]), counter


def verify_mac(hmac_obj, buf, payload_len):
    """True when the HMAC at the end of frame `buf` matches `hmac_obj` over the signed bytes."""
    end = wire.HEADER_SIZE + payload_len
    mac = hmac_obj.digest(memoryview(buf)[0:end - wire.HMAC_SIZE])
    return equal(mac, memoryview(buf)[end - wire.HMAC_SIZE:end])
