"""Persistent-state record codec: versioned, CRC-32 protected, fixed named ints + int sections + blobs.

Record layout (little-endian):

    offset size  field
    0      2     magic b"PS"
    2      1     version (STATE_VERSION)
    3      1     n_fixed: number of fixed i32 fields that follow the header
    4      4     seq (u32): save sequence number, 1.. (the store's slot order)
    8      2     total_len: bytes in the record including the CRC
    10     1     n_sections
    11     1     n_blobs
    12     4*n   fixed fields, i32 each, in FIELDS order
    ..           sections: id u8, shape_len u16, shape, count u16, count x i32
                 (a nested tuple of ints, e.g. DoseScheduler.snapshot(); `shape` is its
                 bracket structure, run-length coded: (1, (2, 3), 4) -> b"(i(2i)i)")
    ..           blobs:    id u8, len u16, len bytes
    end-4  4     CRC-32 of every byte before it

Meaning of the fixed fields (FIELDS); their limits are FIELD_LIMITS:
- save_day, save_ms: wall time (pumpcore.clock) when the record was built; with the wall time
  after a reset gives the time the pump was down (missed volume) when the clock survived.
- clock_valid: 1 if save_day/save_ms came from a set clock.
- boot_count: resets so far.
- auth_counter: the highest authentication counter the firmware accepted (replays refused).
  Saved BEFORE the command it authorises takes effect, so a retransmission after a reset is a
  replay and is refused.
- alarm_active, alarm_acked: AlarmSet.snapshot() masks.
- bolus_active, bolus_kind, bolus_serial, bolus_dose_ng, bolus_delivered_ng: bolus in progress.
  bolus_active = 1 is written BEFORE the motor starts the bolus and means "this bolus started";
  after a reset it is never resumed or repeated (see abort_bolus()); bolus_serial counts every
  bolus ever started, so a bolus that reappears with the same serial is recognisably the same.
- program_crc_hi, program_crc_lo: CRC-32 of the committed program this state belongs to (halves,
  to stay small ints); a mismatch with the stored program means the cut fell between program
  commit and state save.
- suspended: 1 while delivery is suspended by command.
- log_seq: last event-log seq at save time (diagnostic).
Sections and blobs are owned by their modules (scheduler, bolus gate, reservoir, clock); this
codec only carries them (nested tuples of ints come back as the same nested tuples) and bounds
their size.
"""
from pumpcore.fielderror import FieldError
import struct

from pumpcore.crc import crc32
from pumpcore.fixed import const
from pumpcore import call_once, text

STATE_VERSION = const(1)
MAGIC = b"PS"
_HDR = "<2sBBIHBB"
HEADER_SIZE = const(12)
MAX_RECORD = const(4096)
MAX_SECTION_INTS = const(1024)
_MAX_SHAPE = const(1024)
MAX_DEPTH = const(8)
_MAX_BLOB = const(1024)
SEQ_MAX = const(0x3FFFFFFF)

FIELDS = (
    "save_day", "save_ms", "clock_valid", "boot_count", "auth_counter", "alarm_active",
    "alarm_acked", "bolus_active", "bolus_kind", "bolus_serial", "bolus_dose_ng",
    "bolus_delivered_ng", "program_crc_hi", "program_crc_lo", "suspended", "log_seq",
)
F_SAVE_DAY = const(0)
F_SAVE_MS = const(1)
F_CLOCK_VALID = const(2)
F_BOOT_COUNT = const(3)
F_AUTH_COUNTER = const(4)
F_ALARM_ACTIVE = const(5)
F_ALARM_ACKED = const(6)
F_BOLUS_ACTIVE = const(7)
_F_BOLUS_KIND = const(8)
F_BOLUS_SERIAL = const(9)
_F_BOLUS_DOSE_NG = const(10)
F_BOLUS_DELIVERED_NG = const(11)
_F_PROGRAM_CRC_HI = const(12)
_F_PROGRAM_CRC_LO = const(13)
F_SUSPENDED = const(14)
F_LOG_SEQ = const(15)
_N_FIELDS = const(16)

_I32 = 0x7FFFFFFF
_I32_MIN = -0x80000000
FIELD_LIMITS = (
    (0, 65535), (0, 86399999), (0, 1), (0, _I32), (0, _I32), (0, 0x3FFFFFFF),
    (0, 0x3FFFFFFF), (0, 1), (0, 255), (0, _I32), (0, _I32),
    (0, _I32), (0, 65535), (0, 65535), (0, 1), (0, _I32),
)

# Section ids (int tuples) and blob ids (bytes)
SEC_SCHEDULER = const(1)   # DoseScheduler.snapshot()
SEC_BOLUS_GATE = const(2)  # BolusGate snapshot (rolling-24 h ledger, lockout)
SEC_RESERVOIR = const(3)   # ReservoirTracker snapshot
_SEC_CLOCK = const(4)       # WallClock snapshot
SEC_APP = const(5)         # anything else the app keeps
SEC_LEDGER = const(6)      # write-ahead reservation and hour accumulators (pumpfw.ledger)
SEC_ALARM_AGE = const(7)   # ms since each active alarm was raised, codes 1..ALARM_MAX
SEC_SCREW = const(8)       # the screw encoder's unexplained deficit (pumpcore.screwenc.persist)
SECTION_NAMES = (None, "scheduler", "bolus_gate", "reservoir", "clock", "app", "ledger", "alarm_age",
                 "screw")
BLOB_APP = const(1)

# What went wrong (StateError.code), also reported per slot by the store
ERR_SHORT = const(1)
ERR_MAGIC = const(2)
ERR_VERSION = const(3)
ERR_LENGTH = const(4)
ERR_CRC = const(5)
ERR_FIELD = const(6)
ERR_LAYOUT = const(7)
ERR_NAMES = (None, "too short", "bad magic", "unsupported version", "length mismatch",
             "crc mismatch", "field out of range", "bad layout")


class StateError(FieldError):
    """A state record that cannot be encoded or decoded: names the field, value and limit."""

    def __init__(self, field, value, reason, code=ERR_FIELD):
        FieldError.__init__(self, field, value, reason)
        self.code = code


class PersistentState:
    """Everything that survives a reset. `ints[F_*]` are the fixed fields; `sections` maps a
    SEC_* id to a tuple of ints; `blobs` maps a BLOB_* id to bytes; `seq` is set by the store."""

    def __init__(self):
        self.seq = 0
        self.ints = [0] * _N_FIELDS
        self.sections = {}
        self.blobs = {}

    def get(self, field):
        return self.ints[field]

    def set(self, field, value):
        lo, hi = FIELD_LIMITS[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
            raise StateError(FIELDS[field], repr(value), text("int_range", lo, hi))
        self.ints[field] = value

    def copy(self):
        s = PersistentState()
        s.seq = self.seq
        s.ints = list(self.ints)
        s.sections = dict(self.sections)
        s.blobs = dict(self.blobs)
        return s

    def program_crc(self):
        return (self.ints[_F_PROGRAM_CRC_HI] << 16) | self.ints[_F_PROGRAM_CRC_LO]

    def set_program_crc(self, crc):
        if not isinstance(crc, int) or crc < 0 or crc > 0xFFFFFFFF:
            raise StateError("program_crc", repr(crc), text("crc32"))
        self.ints[_F_PROGRAM_CRC_HI] = crc >> 16
        self.ints[_F_PROGRAM_CRC_LO] = crc & 0xFFFF

    def begin_bolus(self, kind, dose_ng):
        """Mark a bolus as started (save this BEFORE the motor moves). Returns its serial."""
        self.set(_F_BOLUS_KIND, kind)
        self.set(_F_BOLUS_DOSE_NG, dose_ng)
        self.set(F_BOLUS_SERIAL, self.ints[F_BOLUS_SERIAL] + 1)
        self.ints[F_BOLUS_DELIVERED_NG] = 0
        self.ints[F_BOLUS_ACTIVE] = 1
        return self.ints[F_BOLUS_SERIAL]

    def end_bolus(self, delivered_ng):
        self.set(F_BOLUS_DELIVERED_NG, delivered_ng)
        self.ints[F_BOLUS_ACTIVE] = 0

    def bolus_in_progress(self):
        return self.ints[F_BOLUS_ACTIVE] == 1

    def abort_bolus(self):
        """After a reset: a bolus recorded as in progress is never resumed or repeated. Clears
        the flag and returns (kind, dose_ng, delivered_ng_at_last_save, serial) for the
        EV_BOLUS_ABORTED log record, or None when no bolus was in progress. The bolus keeps its
        serial; the bolus gate's ledger (its section) already counts it toward lockout and cap."""
        if not self.ints[F_BOLUS_ACTIVE]:
            return None
        self.ints[F_BOLUS_ACTIVE] = 0
        return (self.ints[_F_BOLUS_KIND], self.ints[_F_BOLUS_DOSE_NG],
                self.ints[F_BOLUS_DELIVERED_NG], self.ints[F_BOLUS_SERIAL])

    def __eq__(self, other):
        return (isinstance(other, PersistentState) and self.ints == other.ints
                and self.sections == other.sections and self.blobs == other.blobs)

    def __ne__(self, other):
        return not self.__eq__(other)


def flatten(obj, name="section"):
    """A nested tuple of ints -> (shape bytes, list of ints). Raises StateError naming `name`
    for anything that is not an int or a tuple/list of them, or beyond the size limits.
    `name` may be a section id (int): "section N" is then formatted only for an error.

    One pass, the runs of ints counted as they come (the shape's run-length code), no closure,
    no per-int string: a save flattens a few hundred ints, and what flatten allocated was most
    of a save's garbage (on the unix port the collections it set off were most of its time)."""
    if not isinstance(obj, tuple) and not isinstance(obj, list):
        raise StateError(_section_name(name), repr(obj), text("int_tuple"), ERR_LAYOUT)
    vals = []
    shape = bytearray()
    _flatten_into(obj, 0, vals, shape, name)
    if len(vals) > MAX_SECTION_INTS:
        raise StateError(_section_name(name) + " length", len(vals), text("most_ints", MAX_SECTION_INTS),
                         ERR_LAYOUT)
    if len(shape) > _MAX_SHAPE:
        raise StateError(_section_name(name) + " shape", len(shape), text("most_bytes", _MAX_SHAPE), ERR_LAYOUT)
    return bytes(shape), vals


def _section_name(name):
    return "section %d" % name if isinstance(name, int) else name


def _flatten_into(x, depth, vals, shape, name):
    """The tuple x at `depth`: its ints onto vals, its brackets and runs of ints onto shape."""
    if depth >= MAX_DEPTH:
        raise StateError(_section_name(name) + " depth", depth + 1, text("most_depth", MAX_DEPTH), ERR_LAYOUT)
    shape.append(0x28)  # "("
    # a flat tuple of in-range ints (most sections, the bolus gate's 153 of them): checked in a
    # tight loop and taken whole, one run (15x faster on the unix port than the loop below,
    # which a save ran for every int); anything else goes the general way, its errors included
    lo = _I32_MIN
    hi = _I32
    typ = type           # locals: a builtin's lookup per int costs more than the test
    i32 = int
    for y in x:
        if typ(y) is not i32 or y < lo or y > hi:
            break
    else:
        if x:
            vals.extend(x)
            _shape_run(shape, len(x))
        shape.append(0x29)  # ")"
        return
    run = 0
    for y in x:
        if isinstance(y, int) and not isinstance(y, bool):
            if y < _I32_MIN or y > _I32:
                _i32("%s[%d]" % (_section_name(name), len(vals)), y)
            vals.append(y)
            run += 1
            continue
        if run:
            _shape_run(shape, run)
            run = 0
        if not isinstance(y, tuple) and not isinstance(y, list):
            raise StateError(_section_name(name), repr(y), text("int_or_tup"), ERR_LAYOUT)
        _flatten_into(y, depth + 1, vals, shape, name)
    if run:
        _shape_run(shape, run)
    shape.append(0x29)  # ")"


def _shape_run(shape, run):
    if run > 1:
        shape += b"%d" % run
    shape.append(0x69)  # "i"


def unflatten(shape, vals, name="section"):
    """Inverse of flatten(): rebuild the nested tuple. Raises StateError on a malformed shape
    or a value count that does not match (pumpcore.statedecode, loaded for the call)."""
    from pumpcore import statedecode
    return call_once(statedecode, "unflatten", shape, vals, name)


def _i32(field, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < _I32_MIN or v > _I32:
        raise StateError(field, repr(v), text("i32"))


def encode(state, seq):
    """Serialise `state` with save sequence `seq` (1..2**30-1). Returns bytes. Raises
    StateError naming the field, the value and the limit for anything out of range."""
    if not isinstance(seq, int) or seq < 1 or seq > SEQ_MAX:
        raise StateError("seq", repr(seq), text("one_to", SEQ_MAX))
    if len(state.ints) != _N_FIELDS:
        raise StateError("ints", len(state.ints), text("n_fields", _N_FIELDS), ERR_LAYOUT)
    for i in range(_N_FIELDS):
        lo, hi = FIELD_LIMITS[i]
        v = state.ints[i]
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
            raise StateError(FIELDS[i], repr(v), text("int_range", lo, hi))
    size = HEADER_SIZE + 4 * _N_FIELDS + 4
    sec_ids = sorted(state.sections)
    blob_ids = sorted(state.blobs)
    if len(sec_ids) > 255 or len(blob_ids) > 255:
        raise StateError("sections", len(sec_ids), text("n_sections"), ERR_LAYOUT)
    packed = []
    for sid in sec_ids:
        if not isinstance(sid, int) or sid < 1 or sid > 255:
            raise StateError("section id", repr(sid), text("one_to", 255), ERR_LAYOUT)
        shape, vals = flatten(state.sections[sid], sid)
        packed.append((sid, shape, vals))
        size += 5 + len(shape) + 4 * len(vals)
    for bid in blob_ids:
        b = state.blobs[bid]
        if not isinstance(bid, int) or bid < 1 or bid > 255:
            raise StateError("blob id", repr(bid), text("one_to", 255), ERR_LAYOUT)
        if len(b) > _MAX_BLOB:
            raise StateError("blob %d length" % bid, len(b), text("most_bytes", _MAX_BLOB), ERR_LAYOUT)
        size += 3 + len(b)
    if size > MAX_RECORD:
        raise StateError("record length", size, text("most_bytes", MAX_RECORD), ERR_LENGTH)
    buf = bytearray(size)
    struct.pack_into(_HDR, buf, 0, MAGIC, STATE_VERSION, _N_FIELDS, seq, size, len(sec_ids), len(blob_ids))
    off = HEADER_SIZE
    for i in range(_N_FIELDS):
        struct.pack_into("<i", buf, off, state.ints[i])
        off += 4
    for sid, shape, vals in packed:
        struct.pack_into("<BH", buf, off, sid, len(shape))
        off += 3
        buf[off:off + len(shape)] = shape
        off += len(shape)
        struct.pack_into("<H", buf, off, len(vals))
        off += 2
        if vals:
            struct.pack_into("<%di" % len(vals), buf, off, *vals)
            off += 4 * len(vals)
    for bid in blob_ids:
        b = state.blobs[bid]
        struct.pack_into("<BH", buf, off, bid, len(b))
        off += 3
        buf[off:off + len(b)] = b
        off += len(b)
    struct.pack_into("<I", buf, off, crc32(memoryview(buf)[:off]))
    return bytes(buf)


def decode(buf):
    """Parse a record. Returns a PersistentState (with .seq) or raises StateError whose
    `code` (ERR_*) and message say exactly what is wrong. The parser is pumpcore.statedecode,
    loaded for the call and let go after: the device decodes its state only at boot (issue 16)."""
    from pumpcore import statedecode
    return call_once(statedecode, "decode", buf)
