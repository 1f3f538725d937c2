"""The protocol server's reads that change nothing, loaded for the call (issue 16's RAM budget:
this code is in the RP2040's heap only while one of these requests is served;
`ProtocolServer._dispatch` runs `reply` through `pumpcore.call_once`, as it does the program
upload's pumpfw.programlink).

- HELLO: protocol version, table CRC, auth counter, largest payload, then the firmware version,
  build id, rig id and mechanism name;
- ALARMS: the controller's alarms, as many ALARM_ENTRY as one payload holds;
- LOG_READ: up to wire.MAX_LOG_RECORDS 32-byte records, consecutive from the first asked for
  (or the oldest kept);
- CAL_READ: pL per microstep and whether it is derived or measured;
- LIMITS_READ: the hard limits as the rig enforces them.
Status stays resident in the server: the host polls it, and it must answer in any heap. A load
that fails is answered ERR_INTERNAL with the reason, like any controller call that raises.
Returns (status, payload) as `_dispatch` does; sizes in bytes.
"""
import struct

from pumpcore import wire
from pumpcore.fixed import SMALL_INT_MAX, const
from pumpfw import text

_ALARM_ENTRY_SIZE = const(11)


def reply(server, cmd, n):
    """(status, payload) of read `cmd` whose request payload is `n` bytes."""
    ctl = server.controller
    H = wire.HEADER_SIZE
    f = server._frame
    if cmd == wire.CMD_HELLO:
        if n:
            return server._bad_len(cmd, n, 0)
        fw, build = ctl.hello_info()
        head = wire.pack_fields(wire.HELLO_RESP, {
            "protocol_version": wire.PROTOCOL_VERSION, "table_crc": wire.TABLE_CRC,
            "auth_counter": ctl.auth_counter(), "max_payload": wire.MAX_PAYLOAD})
        return wire.OK, head + wire.pack_strings((fw, build, ctl.rig_id(), ctl.mechanism_name()))

    if cmd == wire.CMD_ALARMS:
        if n:
            return server._bad_len(cmd, n, 0)
        items = ctl.alarms()
        room = (wire.MAX_PAYLOAD - 1) // _ALARM_ENTRY_SIZE
        count = min(len(items), room)
        out = bytearray((count,))
        for i in range(count):
            out.extend(wire.pack_fields(wire.ALARM_ENTRY, items[i]))
        return wire.OK, bytes(out)

    if cmd == wire.CMD_LOG_READ:
        if n != 5:
            return server._bad_len(cmd, n, 5)
        first, want = struct.unpack_from(wire.LOG_READ_REQ[0], f, H)
        if first > SMALL_INT_MAX:
            return server._refuse(wire.ERR_BAD_PAYLOAD, "above", "first_seq", first, SMALL_INT_MAX)
        want = min(want, wire.MAX_LOG_RECORDS)
        oldest, nxt = ctl.log_bounds()
        start = first if first > oldest else oldest
        recs = ctl.read_log(start, want) if want and start < nxt else []
        if len(recs) > want:
            raise ValueError(text("log_count", len(recs), want))
        out = bytearray(wire.pack_fields(wire.LOG_READ_RESP, {
            "oldest_seq": oldest, "next_seq": nxt, "first_seq": start, "count": len(recs)}))
        for r in recs:
            if len(r) != wire.LOG_RECORD_SIZE:
                raise ValueError(text("log_rec", len(r), wire.LOG_RECORD_SIZE))
            out.extend(r)
        return wire.OK, bytes(out)

    if cmd == wire.CMD_CAL_READ:
        if n:
            return server._bad_len(cmd, n, 0)
        pl, source = ctl.calibration()
        return wire.OK, wire.pack_fields(wire.CAL_RESP, {"pl_per_step": pl, "source": source})

    if cmd == wire.CMD_LIMITS_READ:
        if n:
            return server._bad_len(cmd, n, 0)
        return wire.OK, wire.pack_fields(wire.LIMITS_RESP, ctl.limits())
    return server._refuse(wire.ERR_UNKNOWN_COMMAND, "no_handler", wire.command_name(cmd))
