"""Wire protocol shared by firmware and host: frame codec, command table, status codes, payloads.

One module, imported by the firmware (pumpfw.server) and the host (pumpctl.pump), so the two
sides cannot disagree. Runs unchanged on CPython and MicroPython.

Line frame (ASCII, so no control byte such as the REPL's Ctrl-C 0x03 is ever part of a frame)::

    "~" + base64(binary frame) + "\\n"

Anything outside "~ ... \\n" is ignored; a "~" inside a frame restarts the frame (resync after
a torn frame); a line that is too long, not strict base64, too short, of the wrong length or
with a bad CRC is dropped without an answer.

Binary frame (little-endian)::

    offset size field
    0      1    version     PROTOCOL_VERSION
    1      1    kind        KIND_REQUEST / KIND_RESPONSE
    2      2    seq         sequence number chosen by the host, echoed in the response
    4      1    cmd         command code (CMD_*)
    5      1    status      0 in requests; OK or ERR_* in responses
    6      2    length      payload length in bytes, <= MAX_PAYLOAD
    8      n    payload
    8+n    4    crc32       CRC-32 of bytes 0 .. 8+n-1

Authenticated requests (commands with FLAG_AUTH) end their payload with a trailer::

    rig_id_len u8, rig_id (ASCII), counter u32, hmac (32 bytes)

where hmac = HMAC-SHA256(rig key, binary frame bytes 0 .. up to and including counter). See
pumpcore.auth. Error responses carry `detail u8` + a UTF-8 reason as their payload.

Payload layouts are (struct format, field names) pairs below: `pack_fields` / `unpack_fields`
are the only way either side turns them into bytes. `TABLE_CRC` is a CRC-32 over the command
table, statuses and layouts: `hello` reports it and the host refuses a mismatch.

Versioning rule: a change to a command, a status or a payload layout (a field added, removed,
renamed or resized) changes TABLE_CRC by itself, and host and firmware must then be deployed
together (the host's refusal says so). PROTOCOL_VERSION is the version of the binary frame
above (header, CRC, trailer) and changes only when the frame itself does; a frame of another
version is answered with ERR_VERSION.
"""
import struct
import binascii

from pumpcore.crc import crc32
from pumpcore.fixed import const
from pumpcore import text

PROTOCOL_VERSION = const(1)

KIND_REQUEST = const(0)
KIND_RESPONSE = const(1)

HEADER_FMT = "<BBHBBH"
HEADER_SIZE = const(8)
CRC_SIZE = const(4)
MAX_PAYLOAD = const(1024)            # bytes of payload in one frame
MAX_FRAME = const(1036)              # HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
MAX_LINE = const(1384)               # base64 characters of the largest frame: 4 * ceil(MAX_FRAME / 3)
_SYNC = const(0x7E)                   # "~" starts a frame
_EOL = const(0x0A)                    # "\n" ends it
_CTRL_C = const(0x03)                 # REPL interrupt: never part of a frame

MAX_PROGRAM_BYTES = const(4096)      # largest encoded program that can be staged
HMAC_SIZE = const(32)
MAX_RIG_ID = const(32)               # characters in a rig id
COUNTER_LIMIT = const(0x3FFFFFFF)    # auth counters stay RP2040 small ints: 1 .. 2**30 - 1
NONE_U32 = 0xFFFFFFFF                # "not applicable / never" in u32 fields (days to empty ...)
NONE_U8 = const(0xFF)

# ---- commands -------------------------------------------------------------------------------
FLAG_AUTH = const(1)     # changes delivery: rig id + counter + HMAC required

CMD_HELLO = const(0x01)
CMD_STATUS = const(0x02)
CMD_TIME_SYNC = const(0x03)
CMD_PROG_STAGE = const(0x10)
CMD_PROG_VERIFY = const(0x11)
CMD_PROG_COMMIT = const(0x12)
CMD_PROG_READ = const(0x13)
CMD_BOLUS = const(0x20)
CMD_PATIENT_BOLUS = const(0x21)
CMD_SUSPEND = const(0x22)
CMD_RESUME = const(0x23)
CMD_REFILL = const(0x24)
CMD_PRIME = const(0x25)
CMD_ALARMS = const(0x30)
CMD_ALARM_ACK = const(0x31)
CMD_LOG_READ = const(0x40)
CMD_CAL_READ = const(0x50)
CMD_CAL_WRITE = const(0x51)
CMD_LIMITS_READ = const(0x52)
CMD_MAINTENANCE = const(0x60)

# (code, name, flags) - the one table; order is the order of TABLE_CRC.
COMMANDS = (
    (CMD_HELLO, "hello", 0),
    (CMD_STATUS, "status", 0),
    (CMD_TIME_SYNC, "time_sync", FLAG_AUTH),
    (CMD_PROG_STAGE, "program_stage", 0),
    (CMD_PROG_VERIFY, "program_verify", 0),
    (CMD_PROG_COMMIT, "program_commit", FLAG_AUTH),
    (CMD_PROG_READ, "program_read", 0),
    (CMD_BOLUS, "bolus", FLAG_AUTH),
    (CMD_PATIENT_BOLUS, "patient_bolus", FLAG_AUTH),
    (CMD_SUSPEND, "suspend", FLAG_AUTH),
    (CMD_RESUME, "resume", FLAG_AUTH),
    (CMD_REFILL, "refill", FLAG_AUTH),
    (CMD_PRIME, "prime", FLAG_AUTH),
    (CMD_ALARMS, "alarms", 0),
    (CMD_ALARM_ACK, "alarm_ack", FLAG_AUTH),
    (CMD_LOG_READ, "log_read", 0),
    (CMD_CAL_READ, "calibration_read", 0),
    (CMD_CAL_WRITE, "calibration_write", FLAG_AUTH),
    (CMD_LIMITS_READ, "limits_read", 0),
    (CMD_MAINTENANCE, "maintenance", FLAG_AUTH),
)


def command_flags(cmd):
    """Flags of command code `cmd`, or -1 if the code is not in the table."""
    for code, _name, flags in COMMANDS:
        if code == cmd:
            return flags
    return -1


def command_name(cmd):
    """Name of command code `cmd` ("cmd 0x7f" when unknown)."""
    for code, name, _flags in COMMANDS:
        if code == cmd:
            return name
    return "cmd 0x%02x" % cmd


# ---- status codes ---------------------------------------------------------------------------
OK = const(0)
ERR_VERSION = const(1)          # frame version not spoken by this firmware
ERR_UNKNOWN_COMMAND = const(2)  # command code not in the table
ERR_BAD_PAYLOAD = const(3)      # payload length or a field out of range
ERR_WRONG_RIG = const(4)        # authenticated request names another rig
ERR_NO_KEY = const(5)           # this rig has no key provisioned
ERR_BAD_MAC = const(6)          # HMAC does not match (wrong key or forged/altered request)
ERR_REPLAY = const(7)           # counter not above the last one accepted
ERR_REFUSED = const(8)          # the controller refused (limit, lockout, state); detail = its code
ERR_PROGRAM = const(9)          # staged program does not decode or validate
ERR_STAGE = const(10)           # staging out of order, nothing staged, CRC named does not match
ERR_INTERNAL = const(11)        # the controller raised: a firmware bug, reported not hidden

STATUS_NAMES = (
    "ok", "version", "unknown-command", "bad-payload", "wrong-rig", "no-key", "bad-mac",
    "replay", "refused", "program", "stage", "internal",
)




# ---- payload layouts: (struct format, field names) ------------------------------------------
# Units follow docs/ARCHITECTURE.md: ng, ng/day, ug/mL, nL, pL/step, (day, ms_of_day), ms.
HELLO_RESP = ("<BIIH", ("protocol_version", "table_crc", "auth_counter", "max_payload"))
HELLO_STRINGS = ("firmware_version", "build_hash", "rig_id", "mechanism")   # follow HELLO_RESP, u8 len + UTF-8
# mechanism: the deployed mechanism's name (/mechanism.json "name", pumpcore.calibration.mechanism_name).
# build_hash: the deployed build's id (pumpcore.buildrec: 16 hex digits of the deployed files'
# digest), or "unknown: <reason>" when the build record is missing or corrupt.

STATUS_FLAG_SUSPENDED = const(1)
STATUS_FLAG_BOLUS_ACTIVE = const(2)
STATUS_FLAG_MOTOR_ON = const(4)
STATUS_FLAG_CLOCK_SET = const(8)
STATUS_FLAG_PROGRAM_STAGED = const(16)

STATUS_RESP = ("<IBBBBBIIIQIIIIHIIIIHII", (
    "program_crc",          # CRC-32 of the running program's encoding (0: none)
    "mode",                 # pumpcore.program MODE_*
    "flex_step",            # index of the active flex step, NONE_U8 if not flex
    "flags",                # STATUS_FLAG_*
    "alarm_count",          # active or unacknowledged alarms
    "top_alarm",            # code of the highest-priority alarm, 0 if none
    "rate_ng_day",          # current delivery rate including any bolus, ng/day
    "basal_ng_day",         # programmed basal rate now, ng/day
    "delivered_today_ng",   # since local midnight, ng
    "delivered_total_ng",   # since the program was started / counters reset, ng
    "rolling_24h_ng",       # last 24 h, ng
    "reservoir_nl",         # estimated volume left, nL
    "low_in_min",           # minutes until the low-reservoir threshold, NONE_U32 if never
    "empty_in_min",         # minutes until empty, NONE_U32 if never
    "day",                  # wall time: days since 2000-01-01
    "ms_of_day",            # wall time: ms since midnight
    "missed_steps",         # microsteps due but not made (stall/occlusion)
    "uncertain_ng",         # part of delivered_total_ng only possibly delivered: write-ahead
                            # reservations counted at resets (pumpfw/ledger.py); certain = total - this
    "bridge_left_nl",       # old drug still to push out of the catheter after a drug change, nL (0: none)
    "line_conc_ug_ml",      # concentration of the drug now leaving the catheter, ug/mL
    "trapped_nl",           # during an occlusion: volume pushed against the block since the line was
                            # last at rest, released at once when it clears (an upper bound), nL; else 0
    "queued_steps",         # microsteps counted delivered but not yet at the STEP pin: handed to the
                            # step generator and not emitted, plus those owed (due, not yet handed);
                            # the pins have made the count less these (EV_BOLUS_END's queued_steps)
))

TIME_SYNC_REQ = ("<HI", ("day", "ms_of_day"))
PROG_STAGE_REQ = ("<II", ("offset", "total_len"))       # followed by the chunk bytes
PROG_STAGE_RESP = ("<I", ("staged_len",))
PROG_VERIFY_RESP = ("<II", ("length", "crc"))
PROG_COMMIT_REQ = ("<I", ("crc",))
PROG_WHICH_RUNNING = const(0)
PROG_WHICH_STAGED = const(1)
PROG_PART_ENCODED = const(0)    # Program.encode() bytes
PROG_PART_DESCRIBE = const(1)   # Program.describe() lines joined with "\n", UTF-8
PROG_READ_REQ = ("<BBI", ("which", "part", "offset"))
PROG_READ_RESP = ("<III", ("total_len", "crc", "offset"))   # followed by the chunk bytes
BOLUS_CLINICIAN = const(1)
BOLUS_PATIENT = const(2)
BOLUS_REQ = ("<II", ("dose_ng", "duration_ms"))
REFILL_REQ = ("<II", ("volume_nl", "conc_ug_ml"))
PRIME_REQ = ("<I", ("volume_nl",))
ALARMS_RESP = ("<B", ("count",))                          # followed by count ALARM_ENTRY
ALARM_FLAG_ACTIVE = const(1)      # condition still present
ALARM_FLAG_LATCHED = const(2)     # stays until acknowledged
ALARM_FLAG_ACKED = const(4)
ALARM_ENTRY = ("<HBBBHI", ("alarm_id", "code", "priority", "flags", "day", "ms_of_day"))
ALARM_ACK_REQ = ("<H", ("alarm_id",))
LOG_RECORD_SIZE = const(32)       # pumpcore.logrec records, carried as opaque bytes
LOG_READ_REQ = ("<IB", ("first_seq", "max_count"))
# first_seq in the response = max(requested first_seq, oldest_seq): records are consecutive from it
LOG_READ_RESP = ("<IIIB", ("oldest_seq", "next_seq", "first_seq", "count"))  # + count records
CAL_SOURCE_DERIVED = const(0)
CAL_SOURCE_MEASURED = const(1)
CAL_RESP = ("<IB", ("pl_per_step", "source"))
CAL_WRITE_REQ = ("<I", ("pl_per_step",))
LIMITS_RESP = ("<IIIIIII", (     # pumpcore.limits.HardLimits as the rig enforces them
    "max_rate_ng_day",      # highest programmed basal rate, ng/day
    "max_24h_ng",           # most drug in any rolling 24 h, ng
    "max_bolus_ng",         # largest single bolus, ng
    "max_flow_ng_day",      # highest instantaneous flow, basal + bolus, ng/day
    "min_conc_ug_ml", "max_conc_ug_ml",   # drug concentration range, ug/mL
    "max_reservoir_nl",     # reservoir capacity, nL
))
ERROR_RESP = ("<B", ("detail",))                          # followed by the UTF-8 reason
# maintenance (signed): delivery suspended, alarm "maintenance" raised, state saved, answered,
# then the application hands the link to the REPL for `window_ms`; the watchdog is kept fed
# until the window ends, then it resets the rig back into the application.
MAINTENANCE_REQ = ("<I", ("window_ms",))
MAINT_MIN_MS = const(60000)          # 1 min
MAINT_MAX_MS = const(1800000)        # 30 min
MAINT_DEFAULT_MS = const(600000)     # 10 min

LAYOUTS = (
    ("hello", HELLO_RESP), ("status", STATUS_RESP), ("time_sync", TIME_SYNC_REQ),
    ("stage", PROG_STAGE_REQ), ("stage_resp", PROG_STAGE_RESP), ("verify", PROG_VERIFY_RESP),
    ("commit", PROG_COMMIT_REQ), ("read", PROG_READ_REQ), ("read_resp", PROG_READ_RESP),
    ("bolus", BOLUS_REQ), ("refill", REFILL_REQ), ("prime", PRIME_REQ),
    ("alarms", ALARMS_RESP), ("alarm", ALARM_ENTRY), ("ack", ALARM_ACK_REQ),
    ("log", LOG_READ_REQ), ("log_resp", LOG_READ_RESP), ("cal", CAL_RESP),
    ("cal_write", CAL_WRITE_REQ), ("limits", LIMITS_RESP), ("error", ERROR_RESP),
    ("maintenance", MAINTENANCE_REQ),
)

MAX_LOG_RECORDS = const(31)   # (MAX_PAYLOAD - 13) // LOG_RECORD_SIZE
MAX_STAGE_CHUNK = const(1016)  # MAX_PAYLOAD - PROG_STAGE_REQ size
MAX_READ_CHUNK = const(1012)   # MAX_PAYLOAD - PROG_READ_RESP size


class WireError(ValueError):
    """A payload does not fit its layout: names the field, the value and the limit."""




def _field_limit(code):
    if code in "bB":
        return 0xFF
    if code in "hH":
        return 0xFFFF
    if code in "iI":
        return 0xFFFFFFFF
    return 0xFFFFFFFFFFFFFFFF


def pack_fields(layout, values):
    """Pack `values` (dict or object with attributes named as the layout's fields) to bytes.

    Raises WireError naming the field when one is missing, not an int or out of its range.
    """
    fmt, names = layout
    codes = fmt[1:]
    out = []
    for i in range(len(names)):
        name = names[i]
        if isinstance(values, dict):
            if name not in values:
                raise WireError(text("missing", name, fmt))
            v = values[name]
        else:
            v = getattr(values, name, None)
            if v is None:
                raise WireError(text("missing", name, fmt))
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, int):
            raise WireError(text("not_int", name, v))
        limit = _field_limit(codes[i])
        if v < 0 or v > limit:
            raise WireError(text("field_max", name, v, limit))
        out.append(v)
    return struct.pack(fmt, *out)




def pack_strings(strings):
    """Pack text strings as u8 length + UTF-8 each; a string over 255 bytes is cut at 255."""
    out = bytearray()
    for s in strings:
        b = s.encode() if isinstance(s, str) else bytes(s)
        b = b[:255]
        out.append(len(b))
        out.extend(b)
    return bytes(out)




def fields(layout, values):
    """{name: value} of a layout from its values in the layout's order: the keys are the layout's
    own names, so a module that fills a layout keeps no copy of them (issue 16). WireError if
    the counts differ."""
    names = layout[1]
    if len(values) != len(names):
        raise WireError(text("layout_n", len(values), len(names)))
    return dict(zip(names, values))


def error_payload(detail, reason):
    """Payload of an error response: detail code (0..255) and the reason, cut to fit a frame."""
    b = reason.encode() if isinstance(reason, str) else bytes(reason)
    return bytes((detail & 0xFF,)) + b[:MAX_PAYLOAD - 1]




# ---- frame codec ----------------------------------------------------------------------------
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_PAD = const(64)
_BAD = const(255)


def _make_b64_table():
    t = bytearray(b"\xff" * 256)
    for i in range(64):
        t[_B64[i]] = i
    t[0x3D] = _PAD  # "="
    return bytes(t)


B64_TABLE = _make_b64_table()


def b64_quad_into(dst, o, a, b, c, d):
    """Decode one base64 quad, given as its four B64_TABLE values, into bytearray `dst` at `o`.

    Returns the bytes written: 3, or 2 or 1 for a quad padded with "=" (which must end the
    text: the caller refuses anything after it), or -1 for a quad that is not strict base64
    (a character outside the alphabet, "=" other than as 1 or 2 final pad characters, unused
    bits not zero) or that does not fit in `dst`. No allocation: the server decodes each quad
    as it arrives, into its preallocated frame buffer, and keeps no line of text.
    """
    if a >= _PAD or b >= _PAD:
        return -1
    need = 1 if c == _PAD else (2 if d == _PAD else 3)
    if o + need > len(dst):
        return -1
    if c == _PAD:
        if d != _PAD or b & 15:
            return -1
        dst[o] = (a << 2) | (b >> 4)
        return 1
    if c == _BAD:
        return -1
    if d == _PAD:
        if c & 3:
            return -1
        dst[o] = (a << 2) | (b >> 4)
        dst[o + 1] = ((b & 15) << 4) | (c >> 2)
        return 2
    if d == _BAD:
        return -1
    dst[o] = (a << 2) | (b >> 4)
    dst[o + 1] = ((b & 15) << 4) | (c >> 2)
    dst[o + 2] = ((c & 3) << 6) | d
    return 3


def parse_frame(buf, n):
    """Check binary frame `buf[0:n]`: length field and CRC-32.

    Returns (version, kind, seq, cmd, status, payload_len) or None when the frame must be
    dropped (too short, length field disagrees with n, payload over MAX_PAYLOAD, bad CRC).
    The payload is buf[HEADER_SIZE : HEADER_SIZE + payload_len]. The version is not checked
    here: a frame of another version with a good CRC is answered with ERR_VERSION.
    """
    if n < HEADER_SIZE + CRC_SIZE or n > MAX_FRAME:
        return None
    version, kind, seq, cmd, status, length = struct.unpack_from(HEADER_FMT, buf, 0)
    if length > MAX_PAYLOAD or HEADER_SIZE + length + CRC_SIZE != n:
        return None
    end = HEADER_SIZE + length
    got = struct.unpack_from("<I", buf, end)[0]
    if crc32(memoryview(buf)[0:end]) != got:
        return None
    return version, kind, seq, cmd, status, length


def build_frame(kind, seq, cmd, status, payload, version=PROTOCOL_VERSION):
    """Binary frame (header + payload + CRC-32) as bytes. Raises WireError on a bad field."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise WireError(text("payload", n, MAX_PAYLOAD))
    if not 0 <= seq <= 0xFFFF:
        raise WireError(text("byte_field", "seq", seq, 65535))
    if not 0 <= cmd <= 0xFF:
        raise WireError(text("byte_field", "cmd", cmd, 255))
    if not 0 <= status <= 0xFF:
        raise WireError(text("byte_field", "status", status, 255))
    frame = bytearray(HEADER_SIZE + n + CRC_SIZE)
    struct.pack_into(HEADER_FMT, frame, 0, version, kind, seq, cmd, status, n)
    frame[HEADER_SIZE:HEADER_SIZE + n] = payload
    struct.pack_into("<I", frame, HEADER_SIZE + n, crc32(memoryview(frame)[0:HEADER_SIZE + n]))
    return bytes(frame)


def frame_to_line(frame):
    """"~" + base64(frame) + "\\n" (the line sent on the serial link)."""
    return b"~" + binascii.b2a_base64(frame)


def encode_frame(kind, seq, cmd, status, payload, version=PROTOCOL_VERSION):
    """Build the binary frame and return its line bytes."""
    return frame_to_line(build_frame(kind, seq, cmd, status, payload, version))




def _table_text():
    parts = ["v%d;max%d;prog%d;" % (PROTOCOL_VERSION, MAX_PAYLOAD, MAX_PROGRAM_BYTES)]
    for code, name, flags in COMMANDS:
        parts.append("%d:%s:%d;" % (code, name, flags))
    for i in range(len(STATUS_NAMES)):
        parts.append("s%d:%s;" % (i, STATUS_NAMES[i]))
    for lname, layout in LAYOUTS:
        parts.append("%s=%s:%s;" % (lname, layout[0], ",".join(layout[1])))
    parts.append("hs=" + ",".join(HELLO_STRINGS))
    return "".join(parts)


TABLE_CRC = crc32(_table_text().encode())
