"""The host's half of request authentication: signing a request with the rig's key.

The device only checks signatures (pumpcore.auth: the pads, the MAC check, the trailer's parse)
and never imports this module, so its code and its names cost the Pico no RAM (issue 16). The
HMAC is pumpcore.auth.Hmac, the same code the device checks with. Runs on CPython and
MicroPython alike.
"""
import struct

from pumpcore import text, wire
from pumpcore.auth import KEY_SIZE, Hmac


def hmac_sha256(key, msg):
    """HMAC-SHA256(key, msg) as 32 bytes."""
    return Hmac(key).digest(msg)


def check_rig_id(rig_id):
    """Raise wire.WireError unless `rig_id` is 1..MAX_RIG_ID printable ASCII characters."""
    if not isinstance(rig_id, str) or not 1 <= len(rig_id) <= wire.MAX_RIG_ID:
        raise wire.WireError(text("rig_id_len", rig_id, wire.MAX_RIG_ID))
    for ch in rig_id:
        if not 0x21 <= ord(ch) <= 0x7E:
            raise wire.WireError(text("rig_id_chr", rig_id))


def sign_request(seq, cmd, body, rig_id, counter, key):
    """Binary frame of an authenticated request: body + rig id + counter + HMAC, with CRC.

    `counter` must be 1 .. wire.COUNTER_LIMIT and above the rig's last accepted counter.
    """
    check_rig_id(rig_id)
    if not isinstance(counter, int) or not 1 <= counter <= wire.COUNTER_LIMIT:
        raise wire.WireError(text("counter", counter, wire.COUNTER_LIMIT))
    if len(key) != KEY_SIZE:
        raise wire.WireError(text("key_size", len(key), KEY_SIZE))
    rid = rig_id.encode()
    n = len(body) + 1 + len(rid) + 4 + wire.HMAC_SIZE
    if n > wire.MAX_PAYLOAD:
        raise wire.WireError(text("payload", n, wire.MAX_PAYLOAD))
    head = struct.pack(wire.HEADER_FMT, wire.PROTOCOL_VERSION, wire.KIND_REQUEST, seq, cmd, 0, n)
    signed = head + bytes(body) + bytes((len(rid),)) + rid + struct.pack("<I", counter)
    mac = hmac_sha256(key, signed)
    return wire.build_frame(wire.KIND_REQUEST, seq, cmd, 0, signed[wire.HEADER_SIZE:] + mac)
