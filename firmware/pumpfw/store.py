"""Flash persistence: two-slot StateStore and ProgramStore, and the EventLog ring of 32-byte records.

Everything goes through an `fs` object (default `Fs`: builtins open + os), so the same code runs
on the Pico's littlefs, on the virtual rig's host directory, and on tests/support/tornflash.py's
simulated flash that cuts power at any byte or operation. Only these calls are used:
fs.open(path, "rb" | "wb" | "ab") -> file with read/write/seek/flush/close, fs.remove,
fs.listdir, fs.size, fs.mkdir, fs.exists, fs.sync(file).

Power-cut argument (details and the wear budget in docs/persistence.md):
- Two slots: a save writes the whole record to the slot that does NOT hold the newest valid
  record, flushes and closes it. A cut during that write can only damage the slot being
  written; the other slot still holds the previous record; load() takes the valid record with
  the highest seq (CRC and length checked), so the result is the old or the new state.
- Event log: append = open("ab") + write 32 bytes + flush + close. A cut leaves every earlier
  record untouched; at most the record being written is torn (posix) or absent (littlefs). A torn
  tail (posix only) is cut off at the next mount by writing the committed records to a
  temporary file and renaming it over the segment (rename is atomic on both filesystems), so
  appends never land after garbage. Committed records are never rewritten in place; only the
  oldest segment is deleted when the ring is full.
"""

from pumpcore import call_once, logrec, statecodec
from pumpcore.alarms import ALARM_PROGRAM_CORRUPT, ALARM_STATE_CORRUPT
from pumpcore.crc import crc32
from pumpcore.fixed import const
from pumpfw import text
from pumphw.base import Fs  # the stores' default filesystem (kept importable here)
import struct

# Per-slot load status
LOAD_OK = const(0)
LOAD_MISSING = const(1)
LOAD_CORRUPT = const(2)
LOAD_READ_ERROR = const(3)
LOAD_NAMES = ("ok", "missing", "corrupt", "read error")

SAVE_WRITTEN = const(1)
SAVE_DEFERRED = const(0)


class StoreError(OSError):
    """A flash write that failed (not a power cut): names the file and the cause."""


def _join(root, name):
    if not root or root == ".":
        return name
    if root.endswith("/"):
        return root + name
    return root + "/" + name


def _read_all(fs, path):
    f = fs.open(path, "rb")
    try:
        return f.read()
    finally:
        f.close()


def _write_file(fs, path, data):
    f = fs.open(path, "wb")
    try:
        n = f.write(data)
        if n is not None and n != len(data):
            raise StoreError("%s: wrote %d of %d bytes" % (path, n, len(data)))
        fs.sync(f)
    finally:
        f.close()


class _TwoSlot:
    """Two files holding alternate versions of one record, each self-checking (seq + CRC)."""

    def __init__(self, fs, root, name_a, name_b):
        self.fs = fs
        self.paths = (_join(root, name_a), _join(root, name_b))
        self.status = [LOAD_MISSING, LOAD_MISSING]
        self.detail = ["", ""]
        self.current = -1   # slot index holding the newest valid record, -1 none
        self.seq = 0        # seq of that record (0 none)

    def load(self, decode):
        """decode(bytes) -> (seq, value) or raise ValueError. Returns value of the newest valid
        slot or None; fills status/detail per slot (pumpfw.storemount, loaded for the call)."""
        from pumpfw import storemount
        return call_once(storemount, "slot_load", self, decode)

    def write(self, make):
        """make(seq) -> bytes. Writes to the slot not holding the newest record. Returns seq."""
        seq = self.seq + 1
        data = make(seq)
        target = 1 if self.current == 0 else 0
        path = self.paths[target]
        try:
            _write_file(self.fs, path, data)
        except OSError as e:
            self.status[target] = LOAD_CORRUPT
            self.detail[target] = "%s: write failed: %s" % (path, e)
            raise StoreError("%s: write of %d bytes failed: %s" % (path, len(data), e))
        self.status[target] = LOAD_OK
        self.detail[target] = "%s: ok, seq %d, %d bytes" % (path, seq, len(data))
        self.current = target
        self.seq = seq
        return seq

    def alarm_needed(self):
        """True when no slot is valid but at least one slot existed (damaged, not fresh)."""
        return self.current < 0 and (self.status[0] != LOAD_MISSING or self.status[1] != LOAD_MISSING)


def _decode_state(data):
    st = statecodec.decode(data)
    return st.seq, st


class _SlotStore:
    """What StateStore and ProgramStore share: read-outs of their two slots (`self.slots`) and
    the alarm to raise (CORRUPT_ALARM) when a record existed but none is readable."""

    CORRUPT_ALARM = 0

    @property
    def seq(self):
        return self.slots.seq

    def status(self):
        return (self.slots.status[0], self.slots.status[1])

    def report(self):
        return [self.slots.detail[0], self.slots.detail[1]]

    def alarm(self):
        return self.CORRUPT_ALARM if self.slots.alarm_needed() else 0


class StateStore(_SlotStore):
    """Persistent state in two slots (state_a.bin / state_b.bin) with write-rate limiting.

    Rate limit: a routine save is written only if min_interval_ms passed since the last write;
    an urgent save (state that authorises or records delivery: auth counter, bolus start,
    program commit, suspend/resume, refill) spends a token from a bucket of `burst` tokens
    refilled one per refill_ms. A save not written is kept as `dirty` and written by the next
    allowed save; an urgent save that returns SAVE_DEFERRED means the action must be refused.
    Worst-case write rate: 86_400_000 / min_interval_ms + 86_400_000 / refill_ms per day.
    """

    CORRUPT_ALARM = ALARM_STATE_CORRUPT

    def __init__(self, fs=None, root=".", min_interval_ms=60000, burst=10, refill_ms=30000):
        self.fs = fs if fs is not None else Fs()
        self.root = root
        self.slots = _TwoSlot(self.fs, root, "state_a.bin", "state_b.bin")
        if min_interval_ms < 0 or burst < 1 or refill_ms < 1:
            raise ValueError(text("rate_limit", min_interval_ms, burst, refill_ms))
        self.min_interval_ms = min_interval_ms
        self.burst = burst
        self.refill_ms = refill_ms
        self._since_ms = min_interval_ms  # a first routine save is allowed at once
        self._tokens = burst
        self._refill_acc = 0
        self.dirty = False
        self.writes = 0
        self.deferred = 0

    def load(self):
        """Newest valid PersistentState, or None. After it: `status()` per slot, `report()`
        lines saying what was wrong with each, and `alarm()` = ALARM_STATE_CORRUPT when state
        existed but none is readable (0 on a fresh flash or when a slot loaded)."""
        return self.slots.load(_decode_state)


    def tick(self, dt_ms):
        """Advance the rate limiter by dt_ms (allocates nothing)."""
        s = self._since_ms + dt_ms
        self._since_ms = s if s < 0x20000000 else 0x20000000
        if self._tokens < self.burst:
            self._refill_acc += dt_ms
            while self._refill_acc >= self.refill_ms and self._tokens < self.burst:
                self._refill_acc -= self.refill_ms
                self._tokens += 1
            if self._tokens >= self.burst:
                self._refill_acc = 0

    def allowed(self, urgent=False):
        if self._since_ms >= self.min_interval_ms:
            return True
        return urgent and self._tokens > 0

    def save(self, state, urgent=False):
        """Write `state` if the rate limit allows; returns SAVE_WRITTEN (the record is on
        flash, `state.seq` set) or SAVE_DEFERRED (`dirty` stays True). Raises StoreError when
        the write itself fails (the previous record is still intact in the other slot)."""
        if not self.allowed(urgent):
            self.dirty = True
            self.deferred += 1
            return SAVE_DEFERRED
        if self._since_ms < self.min_interval_ms:
            self._tokens -= 1
        self.dirty = True
        seq = self.slots.write(lambda s: statecodec.encode(state, s))
        state.seq = seq
        self._since_ms = 0
        self.dirty = False
        self.writes += 1
        return SAVE_WRITTEN


_PROG_MAGIC = b"PG"
PROG_VERSION = const(1)
_PROG_HDR = "<2sBBII"   # magic, version, reserved, seq, length ; then blob ; then CRC-32
PROG_HDR_SIZE = const(12)
MAX_PROGRAM = const(16384)


def encode_program_record(blob, seq):
    """Envelope for a committed program blob: header, blob, CRC-32 of both."""
    if len(blob) > MAX_PROGRAM:
        raise ValueError(text("prog_len", len(blob), MAX_PROGRAM))
    buf = bytearray(PROG_HDR_SIZE + len(blob) + 4)
    struct.pack_into(_PROG_HDR, buf, 0, _PROG_MAGIC, PROG_VERSION, 0, seq, len(blob))
    buf[PROG_HDR_SIZE:PROG_HDR_SIZE + len(blob)] = blob
    struct.pack_into("<I", buf, len(buf) - 4, crc32(memoryview(buf)[:len(buf) - 4]))
    return bytes(buf)


class ProgramStore(_SlotStore):
    """The committed program blob (Program.encode()) in two slots (prog_a.bin / prog_b.bin).

    commit(blob) returns once the new program is on flash; a cut before that leaves the old one.
    The blob's own decoding (Program.decode) is the app's check; this store guarantees the
    bytes are exactly those committed."""

    CORRUPT_ALARM = ALARM_PROGRAM_CORRUPT

    def __init__(self, fs=None, root="."):
        self.fs = fs if fs is not None else Fs()
        self.slots = _TwoSlot(self.fs, root, "prog_a.bin", "prog_b.bin")

    def load(self):
        """The newest committed blob (bytes) or None; see status()/report()/alarm()."""
        from pumpfw import storemount
        return self.slots.load(storemount.decode_program_record)

    def commit(self, blob):
        """Write a new program blob; returns its seq. Raises StoreError on a failed write."""
        return self.slots.write(lambda s: encode_program_record(blob, s))



REC = logrec.RECORD_SIZE


class EventLog:
    """Ring of 32-byte event records (pumpcore.logrec) in segment files ev000001.log ...

    Each segment holds up to seg_records records; at most max_segments segments are kept (the
    oldest is deleted when a new one is needed), so the log never exceeds
    max_segments * seg_records * 32 bytes and always keeps the newest
    (max_segments - 1) * seg_records records. Sequence numbers are consecutive within a
    segment, which makes read-by-seq a seek.
    """

    def __init__(self, fs=None, root=".", seg_records=128, max_segments=32, prefix="ev"):
        self.fs = fs if fs is not None else Fs()
        self.root = root
        if seg_records < 1 or max_segments < 2:
            raise ValueError(text("log_shape", seg_records, max_segments))
        self.seg_records = seg_records
        self.max_segments = max_segments
        self.prefix = prefix
        self._buf = bytearray(REC)
        self.segments = []   # [segno, first_seq, count] oldest first
        self.next_seq = 1
        self.sealed = True   # True: the next append starts a new segment
        self.notes = []      # what mount() found (torn tails, bad records)
        self.appends = 0

    def _path(self, segno):
        return _join(self.root, "%s%06d.log" % (self.prefix, segno))

    def mount(self):
        """Scan the segment files; set next_seq. Returns the list of notes (torn tails, bad
        records) found; never raises on bad data (pumpfw.storemount, loaded for the call)."""
        from pumpfw import storemount
        return call_once(storemount, "mount", self)

    def _new_segment(self):
        segno = self.segments[-1][0] + 1 if self.segments else 1
        while len(self.segments) >= self.max_segments:
            old = self.segments.pop(0)
            try:
                self.fs.remove(self._path(old[0]))
            except OSError:
                pass
        self.segments.append([segno, self.next_seq, 0, False])
        self.sealed = False

    def append(self, day, ms, code, a0=0, a1=0, a2=0, a3=0):
        """Append one record; returns its seq once it is on flash (append, flush, close all
        returned). Raises LogRecordError for bad fields, StoreError if the write fails (the
        segment is then sealed and the seq is not reused)."""
        seq = self.next_seq
        logrec.encode_into(self._buf, seq, day, ms, code, a0, a1, a2, a3)
        if self.sealed or self.segments[-1][2] >= self.seg_records:
            self._new_segment()
        seg = self.segments[-1]
        path = self._path(seg[0])
        try:
            f = self.fs.open(path, "ab")
            try:
                n = f.write(self._buf)
                if n is not None and n != REC:
                    raise OSError("short write %d of %d" % (n, REC))
                self.fs.sync(f)
            finally:
                f.close()
        except OSError as e:
            seg[3] = True
            self.sealed = True
            self.next_seq = seq + 1
            raise StoreError("%s: append of seq %d failed: %s" % (path, seq, e))
        if seg[2] == 0:
            seg[1] = seq
        seg[2] += 1
        self.next_seq = seq + 1
        self.appends += 1
        return seq

    def first_seq(self):
        """Oldest seq still stored (0 when empty)."""
        for seg in self.segments:
            if seg[2]:
                return seg[1]
        return 0

    def last_seq(self):
        return self.next_seq - 1

    def read_raw(self, first_seq, max_count):
        """Raw 32-byte records with seq >= first_seq, ascending, at most max_count, as one
        bytes object (what the wire protocol sends). Skips records that fail their CRC."""
        out = bytearray()
        want = first_seq
        count = 0
        for seg in self.segments:
            segno, first, n = seg[0], seg[1], seg[2]
            if n == 0 or first + n <= want:
                continue
            start = want - first if want > first else 0
            path = self._path(segno)
            try:
                f = self.fs.open(path, "rb")
                try:
                    f.seek(start * REC)
                    data = f.read((n - start) * REC)
                finally:
                    f.close()
            except OSError:
                continue
            for i in range(len(data) // REC):
                chunk = data[i * REC:(i + 1) * REC]
                try:
                    rec = logrec.decode(chunk)
                except ValueError:
                    continue
                if rec[0] < want:
                    continue
                out += chunk
                want = rec[0] + 1
                count += 1
                if count >= max_count:
                    return bytes(out)
        return bytes(out)

    def read(self, first_seq, max_count):
        """Decoded records (tuples, see logrec.decode) with seq >= first_seq, ascending."""
        raw = self.read_raw(first_seq, max_count)
        return [logrec.decode(raw[i:i + REC]) for i in range(0, len(raw), REC)]


# The event-log backlog: records whose append failed on a flash error (StoreError: the app runs
# on, storage-fault alarm), kept in RAM with their own times and appended later in order.
BACKLOG_RECORDS = const(8)       # records kept (fixed: 8 x 7 slots, about 250 bytes on the RP2040)
BACKLOG_FIRST_MS = const(1000)   # first retry 1 s after the failure ...
BACKLOG_MAX_MS = const(64000)    # ... doubling to at most 64 s: a dead flash costs <= 1,350 tries/day
LOST_ALARM = const(0)            # lost records counted by kind: alarm raised / ack / cleared
LOST_BOLUS = const(1)            # bolus start / end / aborted / denied
LOST_OTHER = const(2)
_FIELDS = const(7)               # day, ms, code, a0..a3


def lost_kind(code):
    """The LOST_* kind of an event code (how EV_LOG_BACKLOG counts the records it lost)."""
    if code == logrec.EV_ALARM_RAISED or code == logrec.EV_ALARM_ACK or code == logrec.EV_ALARM_CLEARED:
        return LOST_ALARM
    if logrec.EV_BOLUS_START <= code <= logrec.EV_BOLUS_ABORTED:
        return LOST_BOLUS
    return LOST_OTHER


class LogBacklog:
    """A bounded, pre-allocated queue of event records the flash refused (append raised
    StoreError), retried in order with their original (day, ms) on a back-off schedule
    (BACKLOG_FIRST_MS doubling to BACKLOG_MAX_MS, never every loop iteration: a broken flash
    must not spin the loop nor wear itself). A record that finds the queue full is dropped and
    counted by kind (`lost`); once the queue has drained, the app logs EV_LOG_BACKLOG with how
    many were appended late and how many were lost. put() and due() allocate nothing."""

    def __init__(self, size=BACKLOG_RECORDS):
        self.size = size
        self.recs = [0] * (size * _FIELDS)
        self.head = 0            # index of the oldest waiting record
        self.count = 0           # records waiting
        self.lost = [0, 0, 0]    # records dropped (queue full) by LOST_* kind since the fault
        self.late = 0            # records appended late since the fault
        self.wait_ms = 0         # ms since the last try
        self.backoff_ms = BACKLOG_FIRST_MS
        self.tries = 0           # retries made (a figure for tests and the bench)

    def waiting(self):
        """True while records wait or losses are still to be reported."""
        return self.count > 0 or self.lost[0] > 0 or self.lost[1] > 0 or self.lost[2] > 0

    def put(self, day, ms, code, a0, a1, a2, a3):
        """Keep one record for a later append; False (counted lost) if the queue is full. The
        back-off starts again from BACKLOG_FIRST_MS at the first record of a fault."""
        if self.count >= self.size:
            self.lost[lost_kind(code)] += 1
            return False
        if not self.waiting():
            self.wait_ms = 0
            self.backoff_ms = BACKLOG_FIRST_MS
        i = ((self.head + self.count) % self.size) * _FIELDS
        r = self.recs
        r[i] = day
        r[i + 1] = ms
        r[i + 2] = code
        r[i + 3] = a0
        r[i + 4] = a1
        r[i + 5] = a2
        r[i + 6] = a3
        self.count += 1
        return True

    def due(self, dt_ms):
        """Count dt_ms of loop time; True when the next try is due."""
        self.wait_ms += dt_ms
        return self.wait_ms >= self.backoff_ms

    def retry(self, log):
        """Append the waiting records to `log` (an EventLog) oldest first. Returns True once the
        queue is empty; on a flash error it stops there (the record stays first) and the next
        try waits twice as long. A record the codec refuses is dropped, counted lost."""
        self.wait_ms = 0
        self.tries += 1
        r = self.recs
        while self.count:
            i = self.head * _FIELDS
            try:
                log.append(r[i], r[i + 1], r[i + 2], r[i + 3], r[i + 4], r[i + 5], r[i + 6])
                self.late += 1
            except ValueError:
                self.lost[lost_kind(r[i + 2])] += 1
            except OSError:
                b = self.backoff_ms * 2
                self.backoff_ms = b if b < BACKLOG_MAX_MS else BACKLOG_MAX_MS
                return False
            self.head = (self.head + 1) % self.size
            self.count -= 1
        self.backoff_ms = BACKLOG_FIRST_MS
        return True

    def report(self):
        """(late, lost_alarm, lost_bolus, lost_other) since the fault began, then cleared: the
        arguments of the EV_LOG_BACKLOG record that closes the fault."""
        out = (self.late, self.lost[LOST_ALARM], self.lost[LOST_BOLUS], self.lost[LOST_OTHER])
        self.late = 0
        self.lost[0] = self.lost[1] = self.lost[2] = 0
        return out
