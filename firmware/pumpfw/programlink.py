"""The program upload's half of the protocol server, loaded for the call (issue 16's RAM
budget: this code is in the RP2040's heap only while a stage, verify or read request is
served; `ProtocolServer._dispatch` runs it through `pumpcore.call_once`).

- stage_chunk: PROG_STAGE, a chunk of the encoded program into the server's stage, in order
  from offset 0; the first chunk makes the stage, of the total length it announces (at most
  wire.MAX_PROGRAM_BYTES; a heap with no such room refuses the upload as ERR_INTERNAL, the
  running program unchanged);
- verify: PROG_VERIFY, the whole stage decoded, checked canonical and against the hard limits
  (the controller's check_program); the verified program is what a commit may name;
- read_program: PROG_READ, the running or the verified staged program, encoded or described,
  in chunks of wire.MAX_READ_CHUNK bytes.
Each returns (status, payload) as `_dispatch` does; sizes in bytes.
"""
import struct

from pumpcore import wire
from pumpcore.crc import crc32


def stage_chunk(server, n):
    if n < 9:
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "program_stage payload length = %d: needs 8 bytes "
                         "of offset/total and at least 1 byte of program" % n)
    offset, total = struct.unpack_from(wire.PROG_STAGE_REQ[0], server._frame, wire.HEADER_SIZE)
    size = n - 8
    if not 1 <= total <= wire.MAX_PROGRAM_BYTES:
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "total_len = %d: outside 1..%d (largest program)" % (
            total, wire.MAX_PROGRAM_BYTES))
    if offset + size > total:
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "chunk offset %d + %d bytes: beyond total_len %d" % (
            offset, size, total))
    if offset == 0:
        server._clear_stage()
        server._stage = bytearray(total)   # the whole program's room, once per upload
        server._stage_total = total
    elif offset != server._stage_len or total != server._stage_total:
        expect = server._stage_len if server._stage_total else 0
        return server._err(wire.ERR_STAGE, 0, "chunk offset %d of %d bytes: expected offset %d of %d "
                         "(stage again from offset 0)" % (offset, total, expect, server._stage_total))
    start = wire.HEADER_SIZE + 8
    server._stage[offset:offset + size] = server._fmv[start:start + size]
    server._stage_len = offset + size
    server._verified = None
    return wire.OK, wire.pack_fields(wire.PROG_STAGE_RESP, {"staged_len": server._stage_len})


def verify(server):
    if not server._stage_total:
        return server._err(wire.ERR_STAGE, 0, "nothing staged")
    if server._stage_len != server._stage_total:
        return server._err(wire.ERR_STAGE, 0, "staged %d of %d bytes: upload incomplete" % (
            server._stage_len, server._stage_total))
    data = bytes(server._stage[0:server._stage_len])
    try:
        program = server.controller.decode_program(data)
    except Exception as exc:
        return server._err(wire.ERR_PROGRAM, 0, "staged program does not decode: %s" % exc)
    if program.encode() != data:
        return server._err(wire.ERR_PROGRAM, 0, "staged bytes are not the canonical encoding of the "
                         "program they decode to")
    reason = server.controller.check_program(program)
    if reason:
        return server._err(wire.ERR_PROGRAM, 0, "staged program refused: %s" % reason)
    server._verified = program
    server._verified_crc = crc32(data)
    return wire.OK, wire.pack_fields(wire.PROG_VERIFY_RESP, {
        "length": len(data), "crc": server._verified_crc})


def read_program(server, which, part, offset):
    if which == wire.PROG_WHICH_RUNNING:
        program = server.controller.running_program()
    elif which == wire.PROG_WHICH_STAGED:
        program = server._verified
        if program is None:
            return server._err(wire.ERR_STAGE, 0, "no verified staged program to read")
    else:
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "which = %d: 0 (running) or 1 (staged)" % which)
    if part not in (wire.PROG_PART_ENCODED, wire.PROG_PART_DESCRIBE):
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "part = %d: 0 (encoded) or 1 (describe)" % part)
    if program is None:
        data = b""
        crc = 0
    else:
        enc = program.encode()
        crc = crc32(enc)
        if part == wire.PROG_PART_ENCODED:
            data = enc
        else:
            data = "\n".join(program.describe()).encode()
    if offset > len(data):
        return server._err(wire.ERR_BAD_PAYLOAD, 0, "offset = %d: beyond total_len %d" % (offset, len(data)))
    head = wire.pack_fields(wire.PROG_READ_RESP, {"total_len": len(data), "crc": crc, "offset": offset})
    return wire.OK, head + data[offset:offset + wire.MAX_READ_CHUNK]
