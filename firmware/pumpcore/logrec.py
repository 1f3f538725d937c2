"""Event-log record codec: fixed 32-byte records (sequence, wall time, event code, 4 args, CRC-32).

Layout (little-endian, 32 bytes):

    offset size field
    0      4    seq          u32, monotonic per rig, first record is 1
    4      2    day          u16, days since 2000-01-01 (pumpcore.clock)
    6      4    ms           u32, ms of day, < 86_400_000
    10     1    code         u8, EV_* below
    11     1    version      u8, _RECORD_VERSION
    12     16   args         4 x i32, meaning per code in pumpcore.logtext.EVENT_ARGS
    28     4    crc          u32, CRC-32 of bytes 0..27

Erased flash (all 0xFF) and zero-filled bytes never decode (the CRC does not match), so a
torn or never-written slot is always recognised. Used by pumpfw.store (device) and by the
host (pumpctl log read); the codes live here, their names and argument names in
pumpcore.logtext, which only the host imports (issue 16's RAM budget).
"""
from pumpcore.fielderror import FieldError
import struct

from pumpcore.crc import crc32
from pumpcore.fixed import const
from pumpcore import text

RECORD_SIZE = const(32)
_RECORD_VERSION = const(1)
_FMT = "<IHIBB4i"  # 28 bytes, CRC follows
_BODY = const(28)
MS_PER_DAY = const(86400000)
_DAY_MAX = const(65535)
ARG_MIN = -(1 << 31)
ARG_MAX = (1 << 31) - 1
SEQ_MAX = (1 << 32) - 1

# Event codes. Arguments are named in pumpcore.logtext.EVENT_ARGS (units in the names).
EV_RESET = const(1)             # reset_cause (pumphw.base RESET_*), boot_count, down_ms (-1: unknown until the clock is synced; then missed-volume gives it), state_status
EV_STATE_RESTORED = const(2)    # state_seq, slot (0=A 1=B), delivered_steps, program_crc16
EV_STATE_LOST = const(3)        # status_a, status_b (store.LOAD_*), 0, 0
EV_MISSED_VOLUME = const(4)     # missed_nl, missed_steps, down_ms, rate_ng_day
EV_PROGRAM_COMMIT = const(5)    # program_crc_hi16, program_crc_lo16, mode, basal_rate_ng_day
EV_PROGRAM_LOST = const(6)      # status_a, status_b, 0, 0
EV_BOLUS_START = const(7)       # kind, dose_ng, duration_ms, bolus_serial
EV_BOLUS_END = const(8)         # kind, delivered_ng, bolus_serial, queued_steps: microsteps already in the
                                #   rig's total (bolus or basal) still queued in the step generator or owed
                                #   to it at the end; they reach the pin after this record (an upper bound)
EV_BOLUS_DENIED = const(9)      # kind, dose_ng, refusal_code, 0
EV_BOLUS_ABORTED = const(10)    # kind, dose_ng, delivered_ng_at_last_save, bolus_serial
EV_SUSPEND = const(11)          # reason (0=command, 1=alarm), 0, 0, 0
EV_RESUME = const(12)           # suspended_ms, 0, 0, 0
EV_REFILL = const(13)           # volume_nl, concentration_ug_ml, bridge_left_nl (old drug still in the catheter), 0
EV_PRIME = const(14)            # volume_nl, duration_ms, dose_ng, bolus_serial (a bolus of kind prime)
EV_ALARM_RAISED = const(15)     # alarm code, priority, detail, restored (1: active before the reset, carried over by the boot)
EV_ALARM_ACK = const(16)        # alarm code, priority, 0, 0
EV_ALARM_CLEARED = const(17)    # alarm code, priority, active_ms, 0
EV_HOURLY_TOTAL = const(18)     # hour (0..23), delivered_ng_in_hour, delivered_steps_in_hour, missed_steps_in_hour
EV_TIME_SET = const(19)         # old_day, old_ms, new_day, new_ms
_EV_LIMIT_REFUSED = const(20)    # command code, refusal_code, value, limit
EV_CALIBRATION = const(21)      # old_pl_per_step, new_pl_per_step, 0, 0
EV_WATCHDOG_ARMED = const(22)   # timeout_ms, 0, 0, 0
EV_STORAGE_FAULT = const(23)    # what (0=state 1=program 2=log), errno, 0, 0
EV_MAINTENANCE = const(24)      # reason, exits_in_a_row, backoff_ms, 0: the app left its loop unsigned:
                                #   reason 0 = Ctrl-C on a keyless rig (REPL, motor off, watchdog off);
                                #   1 = unexpected exception on a keyed rig (motor off, then reset: never
                                #   a REPL; the next boot waits backoff_ms first, pumpfw.app crash back-off)
EV_HEAP = const(25)             # alloc_after_gc_bytes, free_bytes, 0, 0: at boot and hourly (RAM margin, soak)
EV_MAINT_START = const(26)      # window_ms, auth_counter, rate_ng_day, dropped_steps: signed maintenance
                                #   entered (delivery suspended, alarm maintenance raised, REPL for the window)
EV_MAINT_END = const(27)        # missed_nl, missed_steps, maintenance_ms, rate_ng_day: back in the app;
                                #   logged at boot from the watchdog scratch record, else at the next time sync
EV_PROGRAM_AT_BOOT = const(28)  # running_crc_hi16, running_crc_lo16, confirmed_crc_hi16, confirmed_crc_lo16
EV_HOURLY_PARTIAL = const(29)   # hour (0..23), delivered_ng, delivered_steps, missed_steps: the hour of a reset, to the cut
EV_LEDGER_RESTORED = const(30)  # certain_total_ng, possibly_ng, possibly_steps, uncertain_total_ng
EV_AUTH_REFUSED = const(31)     # command code, status (wire ERR_*), refusals not logged since the last record, 0
EV_LOG_BACKLOG = const(32)      # late_records, lost_alarm, lost_bolus, lost_other: the flash failed appends and
                                #   works again: late_records were appended just before this record with their own
                                #   (earlier) times, the lost ones (queue full, or waiting at a reset) are gone
EV_LOCKOUT_RESTORED = const(33) # bolus_serial, lockout_left_ms, patient_boluses_24h, 0: at boot, a patient bolus
                                #   the log shows started after the last save (the save was cut): its lockout
                                #   and allotment count, as if it had run
EV_LOG_APPLIED = const(34)      # event_code, record_seq, 0, 0: at boot, an operator action the log shows after the
                                #   last save (refill, alarm ack, suspend/resume by command; its save was cut):
                                #   the state did not hold it, the boot applies it as the record at record_seq says
EV_CODE_MAX = const(34)

# The names of the codes and of their arguments, which only the host renders, are in
# pumpcore.logtext (EVENT_NAMES, EVENT_ARGS, event_name, describe): the device does not import it.

# Reasons decode() refuses a record (LogRecordError.reason_code)
_BAD_LENGTH = const(1)
BAD_CRC = const(2)
_BAD_VERSION = const(3)
_BAD_CODE = const(4)
_BAD_TIME = const(5)


class LogRecordError(FieldError):
    """A record that cannot be encoded or decoded: names the field, the value and the limit."""

    def __init__(self, field, value, reason, reason_code=0):
        FieldError.__init__(self, field, value, reason)
        self.reason_code = reason_code


def _check_range(field, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise LogRecordError(field, repr(value), text("an_int"))
    if value < lo or value > hi:
        raise LogRecordError(field, value, text("range", lo, hi))


def encode_into(buf, seq, day, ms, code, a0=0, a1=0, a2=0, a3=0):
    """Pack one record into `buf` (a bytearray or memoryview of RECORD_SIZE bytes).

    seq >= 1; (day, ms) wall time (ms of day); code an EV_* value; a0..a3 signed 32-bit args.
    Raises LogRecordError naming the field, the value and the limit.
    """
    _check_range("seq", seq, 1, SEQ_MAX)
    _check_range("day", day, 0, _DAY_MAX)
    _check_range("ms", ms, 0, MS_PER_DAY - 1)
    _check_range("code", code, 1, EV_CODE_MAX)
    _check_range("args[0]", a0, ARG_MIN, ARG_MAX)
    _check_range("args[1]", a1, ARG_MIN, ARG_MAX)
    _check_range("args[2]", a2, ARG_MIN, ARG_MAX)
    _check_range("args[3]", a3, ARG_MIN, ARG_MAX)
    if len(buf) != RECORD_SIZE:
        raise LogRecordError("buffer length", len(buf), text("n_bytes", RECORD_SIZE))
    struct.pack_into(_FMT, buf, 0, seq, day, ms, code, _RECORD_VERSION, a0, a1, a2, a3)
    struct.pack_into("<I", buf, _BODY, crc32(memoryview(buf)[:_BODY]))
    return buf


def encode(seq, day, ms, code, a0=0, a1=0, a2=0, a3=0):
    """Return one record as 32 bytes (see encode_into for the arguments)."""
    buf = bytearray(RECORD_SIZE)
    encode_into(buf, seq, day, ms, code, a0, a1, a2, a3)
    return bytes(buf)


def decode(buf):
    """Decode 32 bytes into (seq, day, ms, code, a0, a1, a2, a3).

    Raises LogRecordError (reason_code _BAD_LENGTH, BAD_CRC, _BAD_VERSION, _BAD_CODE, _BAD_TIME)
    saying what is wrong with the stored bytes.
    """
    if len(buf) != RECORD_SIZE:
        raise LogRecordError("record length", len(buf), text("n_bytes", RECORD_SIZE), _BAD_LENGTH)
    stored = struct.unpack_from("<I", buf, _BODY)[0]
    computed = crc32(memoryview(buf)[:_BODY])
    if stored != computed:
        raise LogRecordError("crc", "0x%08x" % stored, text("rec_crc", computed), BAD_CRC)
    seq, day, ms, code, version, a0, a1, a2, a3 = struct.unpack_from(_FMT, buf, 0)
    if version != _RECORD_VERSION:
        raise LogRecordError("version", version, text("rec_ver", _RECORD_VERSION),
                             _BAD_VERSION)
    if code < 1 or code > EV_CODE_MAX:
        raise LogRecordError("code", code, text("rec_code", EV_CODE_MAX), _BAD_CODE)
    if ms >= MS_PER_DAY or seq < 1:
        raise LogRecordError("ms", ms, text("rec_time", MS_PER_DAY), _BAD_TIME)
    return (seq, day, ms, code, a0, a1, a2, a3)


def peek_seq(buf):
    """The seq field of a record without checking it (for locating records in a segment)."""
    return struct.unpack_from("<I", buf, 0)[0]
