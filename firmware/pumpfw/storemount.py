"""The boot's read of the flash store, loaded for the call (issue 16's RAM budget: this code
is in the RP2040's heap only while a store loads or the event log mounts; pumpfw.store's
methods of the same jobs run it through `pumpcore.call_once`):

- slot_load: a two-slot record's newest valid slot (seq and CRC checked by `decode`), the
  status and a line of detail per slot;
- decode_program_record: a committed program's envelope checked (magic, version, length,
  CRC-32, seq) and its blob;
- mount and repair: the event log's segments scanned (next_seq, bad records noted) and a torn
  tail cut off by a rename over the segment (docs/persistence.md).
Sizes in bytes; seq counts records.
"""
import struct

from pumpcore import logrec
from pumpcore.crc import crc32
from pumpfw.store import (LOAD_CORRUPT, LOAD_MISSING, LOAD_OK, LOAD_READ_ERROR, REC, _PROG_HDR,
                          PROG_HDR_SIZE, _PROG_MAGIC, PROG_VERSION, _join, _read_all, _write_file)


def slot_load(slots, decode):
    """decode(bytes) -> (seq, value) or raise ValueError. Returns value of the newest valid
    slot or None; fills status/detail per slot."""
    best = None
    best_seq = 0
    slots.current = -1
    for i in range(2):
        path = slots.paths[i]
        if not slots.fs.exists(path):
            slots.status[i] = LOAD_MISSING
            slots.detail[i] = "%s: missing" % path
            continue
        try:
            data = _read_all(slots.fs, path)
        except OSError as e:
            slots.status[i] = LOAD_READ_ERROR
            slots.detail[i] = "%s: read error %s" % (path, e)
            continue
        try:
            seq, value = decode(data)
        except ValueError as e:
            slots.status[i] = LOAD_CORRUPT
            slots.detail[i] = "%s: %s" % (path, e)
            continue
        slots.status[i] = LOAD_OK
        slots.detail[i] = "%s: ok, seq %d, %d bytes" % (path, seq, len(data))
        if seq > best_seq:
            best_seq = seq
            best = value
            slots.current = i
    slots.seq = best_seq
    return best


def decode_program_record(data):
    """(seq, blob) from an envelope, or ValueError saying what is wrong."""
    n = len(data)
    if n < PROG_HDR_SIZE + 4:
        raise ValueError("record length = %d: too short (at least %d)" % (n, PROG_HDR_SIZE + 4))
    magic, version, _, seq, length = struct.unpack_from(_PROG_HDR, data, 0)
    if magic != _PROG_MAGIC:
        raise ValueError("magic = %r: expected %r" % (bytes(magic), _PROG_MAGIC))
    if version != PROG_VERSION:
        raise ValueError("version = %d: this firmware reads version %d" % (version, PROG_VERSION))
    if length != n - PROG_HDR_SIZE - 4:
        raise ValueError("length = %d: but the file holds %d blob bytes (torn or truncated)"
                         % (length, n - PROG_HDR_SIZE - 4))
    stored = struct.unpack_from("<I", data, n - 4)[0]
    computed = crc32(memoryview(data)[:n - 4])
    if stored != computed:
        raise ValueError("crc = 0x%08x: computed 0x%08x over the record" % (stored, computed))
    if seq < 1:
        raise ValueError("seq = %d: must be >= 1" % seq)
    return seq, bytes(data[PROG_HDR_SIZE:n - 4])


def mount(log):
    """Scan the segment files; set next_seq. Returns the list of notes (torn tails, bad
    records) found; never raises on bad data."""
    log.notes = []
    names = []
    plen = len(log.prefix)
    for name in log.fs.listdir(log.root):
        if name.startswith(log.prefix) and name.endswith(".log"):
            try:
                names.append(int(name[plen:-4]))
            except ValueError:
                pass
        elif name.startswith(log.prefix) and name.endswith(".log.tmp"):
            try:
                log.fs.remove(_join(log.root, name))  # a repair cut short: the .log is intact
            except OSError:
                pass
    names.sort()
    log.segments = []
    last_seq = 0
    for segno in names:
        path = log._path(segno)
        try:
            data = _read_all(log.fs, path)
        except OSError as e:
            log.notes.append("%s: unreadable (%s)" % (path, e))
            continue
        n = len(data) // REC
        first = 0
        good = 0
        bad = 0
        for i in range(n):
            try:
                rec = logrec.decode(memoryview(data)[i * REC:(i + 1) * REC])
            except ValueError as e:
                bad += 1
                log.notes.append("%s: record %d: %s" % (path, i, e))
                continue
            if first == 0:
                first = rec[0] - i
            if rec[0] > last_seq:
                last_seq = rec[0]
            good += 1
        torn = len(data) % REC
        if torn:
            log.notes.append("%s: torn tail of %d bytes after %d records (not committed)"
                              % (path, torn, n))
            if not bad:
                torn = not repair(log, path, data[:n * REC])
        log.segments.append([segno, first, n, torn != 0 or bad > 0])
    log.next_seq = last_seq + 1
    if log.segments:
        last = log.segments[-1]
        log.sealed = last[3] or last[2] >= log.seg_records
        if last[2] == 0 and not last[3]:
            last[1] = log.next_seq  # an empty segment: appends continue in it
            log.sealed = False
    else:
        log.sealed = True
    return log.notes


def repair(log, path, good):
    """Drop a torn tail: write the committed records to a temporary file, sync it, and
    rename it over the segment (atomic on littlefs and on a host directory), so a cut
    leaves the old file (torn tail still there) or the repaired one. Returns True if
    repaired; on failure the segment is sealed instead."""
    tmp = path + ".tmp"
    try:
        _write_file(log.fs, tmp, good)
        log.fs.rename(tmp, path)
        return True
    except OSError as e:
        log.notes.append("%s: repair failed (%s); segment sealed" % (path, e))
        return False
