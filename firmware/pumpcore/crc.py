"""CRC-16/CCITT-FALSE and CRC-32 (IEEE, as zlib/binascii): same results on CPython and MicroPython.

CRC-32 uses `binascii.crc32` where the interpreter has it (CPython, the unix port and the
RP2040 port build it in C) and a table-driven pure-Python fallback otherwise. Both return an
unsigned 32-bit int; on the RP2040 a value >= 2**30 is a heap int, so call per frame, not per
byte. Check values: crc32(b"123456789") == 0xCBF43926, crc16(b"123456789") == 0x29B1.
"""
try:
    import binascii as _binascii
    _crc32_native = getattr(_binascii, "crc32", None)
except ImportError:  # pragma: no cover - every supported interpreter has binascii
    _crc32_native = None

_TABLE32 = None


def _table32():
    global _TABLE32
    if _TABLE32 is None:
        table = []
        for n in range(256):
            c = n
            for _ in range(8):
                if c & 1:
                    c = 0xEDB88320 ^ (c >> 1)
                else:
                    c >>= 1
            table.append(c)
        _TABLE32 = table
    return _TABLE32


def crc32_py(data, crc=0):
    """Pure-Python CRC-32 of `data` (bytes-like), continuing from `crc`; unsigned 32-bit result."""
    table = _table32()
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 (poly 0x04C11DB7 reflected, init/xorout 0xFFFFFFFF) of `data`, continuing from `crc`.

    Returns an unsigned 32-bit int (0 .. 2**32 - 1) on both interpreters.
    """
    if _crc32_native is not None:
        return _crc32_native(data, crc) & 0xFFFFFFFF
    return crc32_py(data, crc)


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout) of `data`."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc
