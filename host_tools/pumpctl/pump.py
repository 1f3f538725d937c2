"""The host's Python API to a rig: `with Pump.open(port) as pump: pump.status()`; typed results.

Every request is one frame of pumpcore.wire; the answer is matched by sequence number. A lost
answer is retransmitted with the same sequence number and bytes, which the rig answers from its
cache without executing again (a repeated bolus never delivers twice). Commands that change
delivery are signed (pumpcore.auth) with the rig's key from pumpctl.keys and a counter above
every counter the rig accepted. Failures raise pumpctl.errors exceptions with one-line messages.
Units: ng, ng/day, ug/mL, nL, pL per microstep, ms, wall time (day since 2000-01-01, ms_of_day).
"""
from __future__ import annotations

import datetime
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from pumpcore import authhost, wire, wirehost
from pumpcore.crc import crc32

from . import keys
from .errors import AuthError, PortError, ProtocolError, RefusedError, RigTimeout, UsageError, VersionError
from .transport import Transport, TracingTransport, open_transport

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_RETRIES = 2
_SMALL = wire.COUNTER_LIMIT
_EPOCH = datetime.date(2000, 1, 1)


# ---- typed results (field names are the wire layouts' names; a test checks they agree) -----
@dataclass(frozen=True)
class HelloInfo:
    protocol_version: int
    table_crc: int
    auth_counter: int       # highest counter the rig has accepted
    max_payload: int        # bytes
    firmware_version: str
    build_hash: str
    rig_id: str
    mechanism: str          # the deployed mechanism's name (hw/mechanism*.json "name")


@dataclass(frozen=True)
class Status:
    program_crc: int
    mode: int
    flex_step: int          # wire.NONE_U8 if not flex
    flags: int              # wire.STATUS_FLAG_*
    alarm_count: int
    top_alarm: int
    rate_ng_day: int
    basal_ng_day: int
    delivered_today_ng: int
    delivered_total_ng: int
    rolling_24h_ng: int
    reservoir_nl: int
    low_in_min: int         # wire.NONE_U32 if never
    empty_in_min: int       # wire.NONE_U32 if never
    day: int
    ms_of_day: int
    missed_steps: int
    uncertain_ng: int       # part of delivered_total_ng only possibly delivered (resets)
    bridge_left_nl: int     # old drug still in the catheter after a drug change (0: none)
    line_conc_ug_ml: int    # concentration now leaving the catheter
    trapped_nl: int = 0     # during an occlusion: volume held back by the block, released when it clears
    queued_steps: int = 0   # microsteps counted delivered, not yet at the STEP pin (generator queue + owed)

    @property
    def certain_total_ng(self) -> int:
        """Delivered total known for certain: the total less what resets left uncertain."""
        return self.delivered_total_ng - self.uncertain_ng

    @property
    def suspended(self) -> bool:
        return bool(self.flags & wire.STATUS_FLAG_SUSPENDED)

    @property
    def bolus_active(self) -> bool:
        return bool(self.flags & wire.STATUS_FLAG_BOLUS_ACTIVE)

    @property
    def program_staged(self) -> bool:
        return bool(self.flags & wire.STATUS_FLAG_PROGRAM_STAGED)


@dataclass(frozen=True)
class Alarm:
    alarm_id: int
    code: int
    priority: int
    flags: int              # wire.ALARM_FLAG_*
    day: int
    ms_of_day: int


@dataclass(frozen=True)
class LogChunk:
    oldest_seq: int         # oldest record still on the rig
    next_seq: int           # sequence number the next record will get
    first_seq: int          # sequence number of records[0] (max(requested, oldest_seq))
    records: list[bytes] = field(default_factory=list)   # 32-byte pumpcore.logrec records


@dataclass(frozen=True)
class Calibration:
    pl_per_step: int
    source: int             # wire.CAL_SOURCE_*


@dataclass(frozen=True)
class Limits:
    max_rate_ng_day: int
    max_24h_ng: int
    max_bolus_ng: int
    max_flow_ng_day: int    # basal + bolus, the limit the rig's bolus checks use
    min_conc_ug_ml: int
    max_conc_ug_ml: int
    max_reservoir_nl: int


@dataclass(frozen=True)
class Verified:
    length: int             # bytes staged
    crc: int                # CRC-32 of the staged bytes, as the rig computed it


class ProgramData(NamedTuple):
    data: bytes             # encoded program, or describe() lines joined by "\n" (UTF-8)
    crc: int                # CRC-32 of the program's encoding (0: no program)


@dataclass(frozen=True)
class Review:
    """What a clinician reviews before commit: the rig's own decoding of both programs."""
    crc: int
    length: int
    staged_lines: list[str]
    running_lines: list[str]
    running_crc: int
    committed: bool = False


def _from(cls: Any, layout: tuple, payload: bytes, offset: int = 0) -> Any:
    return cls(**wirehost.unpack_fields(layout, payload, offset))


def _check_int(name: str, value: Any, lo: int, hi: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError("%s = %r: not an integer (%s)" % (name, value, unit))
    if not lo <= value <= hi:
        raise UsageError("%s = %d %s: outside %d..%d" % (name, value, unit, lo, hi))
    return value


class Pump:
    """A connection to one rig. Use `Pump.open(...)`; close it (or use `with`)."""

    def __init__(self, link: Transport, key: bytes | None = None, rig_id: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 state_dir: Path | None = None, check_table: bool = True, probe: bool = False) -> None:
        self.link = link
        self._probe = probe
        self.timeout_s = timeout_s
        self.retries = retries
        self.state_dir = state_dir
        self._key = bytes(key) if key is not None else None
        self._key_from_store = key is None
        self._seq = random.randrange(0, 0x10000)
        self._rx = bytearray()
        self.retransmissions = 0
        self._echoed = False
        self.info = self.hello()
        self.table_matches = self.info.table_crc == wire.TABLE_CRC
        if self.info.protocol_version != wire.PROTOCOL_VERSION or (check_table and not self.table_matches):
            raise VersionError("rig %s on %s speaks protocol %d (table crc %08x), this pumpctl speaks %d "
                               "(table crc %08x): deploy matching firmware (pumpctl deploy)" % (
                                   self.info.rig_id, link.name, self.info.protocol_version,
                                   self.info.table_crc, wire.PROTOCOL_VERSION, wire.TABLE_CRC))
        if rig_id is not None and rig_id != self.info.rig_id:
            raise AuthError("wrong rig: expected %s, the rig on %s is %s" % (rig_id, link.name, self.info.rig_id))
        self.rig_id = self.info.rig_id
        stored = 0
        if self._key_from_store:
            try:
                stored = keys.load_counter(self.rig_id, state_dir)
            except UsageError:
                stored = 0
        self._counter = max(self.info.auth_counter, stored)

    @classmethod
    def open(cls, port: str | Transport, key: bytes | None = None, *, rig_id: str | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
             trace: Callable[[str], None] | None = None, state_dir: Path | None = None,
             check_table: bool = True, probe: bool = False) -> "Pump":
        """Connect to the rig on `port` (device, pty, pyserial URL, or a Transport object).

        Says hello and refuses a rig with another protocol version or command table
        (VersionError) or, when `rig_id` is given, another rig (AuthError). `key` (32 bytes)
        signs delivery changes; without it the key is read from the store (pumpctl.keys) when
        first needed. `trace` receives every chunk sent and received (debugging).
        `check_table=False` accepts a rig whose command table differs (same frame version):
        deploy uses it to put older firmware into maintenance before replacing it.
        `probe=True` gives up on the first echo of a request (a REPL, not the application).
        """
        link: Transport = open_transport(port) if isinstance(port, str) else port
        if trace is not None:
            link = TracingTransport(link, trace)
        try:
            return cls(link, key=key, rig_id=rig_id, timeout_s=timeout_s, retries=retries, state_dir=state_dir,
                       check_table=check_table, probe=probe)
        except BaseException:
            link.close()
            raise

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> "Pump":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- request machinery ---------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _key_for_rig(self) -> bytes:
        if self._key is None:
            key = keys.load_key(self.rig_id, self.state_dir)
            if key is None:
                raise AuthError("no key for rig %s on this host (looked in %s): pumpctl deploy provisions it"
                                % (self.rig_id, keys.key_path(self.rig_id, self.state_dir)))
            self._key = key
        return self._key

    def _frame(self, seq: int, cmd: int, body: bytes, signed: bool) -> bytes:
        if not signed:
            return wire.build_frame(wire.KIND_REQUEST, seq, cmd, 0, body)
        key = self._key_for_rig()
        if self._counter >= _SMALL:
            raise AuthError("rig %s: auth counter exhausted (%d); re-provision the key" % (self.rig_id, self._counter))
        self._counter += 1
        if self._key_from_store:
            keys.save_counter(self.rig_id, self._counter, self.state_dir)
        return authhost.sign_request(seq, cmd, body, self.rig_id, self._counter, key)

    def _exchange(self, frame: bytes, seq: int, cmd: int) -> tuple[int, bytes, int]:
        """Send `frame`, retransmitting on silence. Returns (status, payload, attempts used)."""
        line = wire.frame_to_line(frame)
        self._echoed = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.retransmissions += 1
            self.link.write(line)
            got = self._await(seq, cmd)
            if got is not None:
                return got[0], got[1], attempt
        hint = ""
        if self._echoed:
            hint = (": the port echoes our requests back, so the rig is probably at the MicroPython REPL "
                    "rather than running the pump firmware (reset it, or pumpctl deploy)")
        raise RigTimeout("no answer from rig on %s to %s after %d tries of %.1f s%s" % (
            self.link.name, wire.command_name(cmd), self.retries + 1, self.timeout_s, hint))

    def _await(self, seq: int, cmd: int) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            while True:
                nl = self._rx.find(b"\n")
                if nl < 0:
                    if len(self._rx) > 4 * wire.MAX_LINE:
                        del self._rx[:-wire.MAX_LINE]   # long garbage (REPL chatter): keep the tail
                    break
                line = bytes(self._rx[:nl + 1])
                del self._rx[:nl + 1]
                if b"~" not in line:
                    continue
                frame = wirehost.decode_line(line)
                if frame is None:
                    continue
                _version, kind, fseq, fcmd, status, payload = frame
                if kind == wire.KIND_RESPONSE and fseq == seq and fcmd == cmd:
                    return status, payload
                if kind == wire.KIND_REQUEST and fseq == seq:
                    self._echoed = True
                    if self._probe:
                        return None     # a REPL echoing us: no application to wait for
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._rx += self.link.read(min(left, 0.05))

    def _request(self, cmd: int, body: bytes = b"", signed: bool = False) -> bytes:
        """One request/response; raises the matching PumpError on any refusal."""
        seq = self._next_seq()
        frame = self._frame(seq, cmd, body, signed)
        status, payload, attempts = self._exchange(frame, seq, cmd)
        if status == wire.ERR_REPLAY and signed:
            if attempts:
                raise ProtocolError(
                    "rig %s did not answer the first %s request and refused the retransmission as a replay: "
                    "the request was most likely executed; check `pumpctl status` before repeating it" % (
                        self.rig_id, wire.command_name(cmd)))
            # our counter is stale (another host used the rig): catch up once, never on a retransmission
            fresh = self.hello()
            self._counter = max(self._counter, fresh.auth_counter)
            seq = self._next_seq()
            frame = self._frame(seq, cmd, body, signed)
            status, payload, attempts = self._exchange(frame, seq, cmd)
        if status == wire.OK:
            return payload
        detail, reason = wirehost.parse_error(payload)
        text = "rig %s refused %s: %s" % (getattr(self, "rig_id", "?"), wire.command_name(cmd), reason)
        if status in (wire.ERR_WRONG_RIG, wire.ERR_NO_KEY, wire.ERR_BAD_MAC, wire.ERR_REPLAY):
            raise AuthError(text)
        if status == wire.ERR_VERSION:
            raise VersionError(text + " (firmware too old or too new: pumpctl deploy)")
        exc = RefusedError(status, text)
        exc.detail = detail  # type: ignore[attr-defined]
        raise exc

    # ---- reads ------------------------------------------------------------------------------
    def hello(self) -> HelloInfo:
        """Protocol version, table CRC, auth counter, firmware version, build hash, rig id."""
        p = self._request(wire.CMD_HELLO)
        head = wirehost.unpack_fields(wire.HELLO_RESP, p)
        try:
            strings, _ = wirehost.unpack_strings(p, wirehost.layout_size(wire.HELLO_RESP), len(wire.HELLO_STRINGS))
        except (wire.WireError, UnicodeError) as exc:
            raise ProtocolError("malformed hello from %s: %s" % (self.link.name, exc)) from None
        return HelloInfo(**head, **dict(zip(wire.HELLO_STRINGS, strings)))

    def status(self) -> Status:
        return _from(Status, wire.STATUS_RESP, self._request(wire.CMD_STATUS))

    def alarms(self) -> list[Alarm]:
        p = self._request(wire.CMD_ALARMS)
        count = wirehost.unpack_fields(wire.ALARMS_RESP, p)["count"]
        size = wirehost.layout_size(wire.ALARM_ENTRY)
        base = wirehost.layout_size(wire.ALARMS_RESP)
        if len(p) != base + count * size:
            raise ProtocolError("alarm list from %s: %d bytes for %d alarms" % (self.rig_id, len(p), count))
        return [_from(Alarm, wire.ALARM_ENTRY, p, base + i * size) for i in range(count)]

    def read_log(self, first_seq: int, max_count: int = wire.MAX_LOG_RECORDS) -> LogChunk:
        """Up to `max_count` (<= 31) records from `first_seq` on (or from the oldest still kept)."""
        _check_int("first_seq", first_seq, 0, _SMALL, "sequence number")
        _check_int("max_count", max_count, 0, wire.MAX_LOG_RECORDS, "records")
        p = self._request(wire.CMD_LOG_READ, wire.pack_fields(wire.LOG_READ_REQ,
                                                              {"first_seq": first_seq, "max_count": max_count}))
        head = wirehost.unpack_fields(wire.LOG_READ_RESP, p)
        base = wirehost.layout_size(wire.LOG_READ_RESP)
        size = wire.LOG_RECORD_SIZE
        if len(p) != base + head["count"] * size:
            raise ProtocolError("log chunk from %s: %d bytes for %d records" % (self.rig_id, len(p), head["count"]))
        recs = [bytes(p[base + i * size:base + (i + 1) * size]) for i in range(head["count"])]
        return LogChunk(head["oldest_seq"], head["next_seq"], head["first_seq"], recs)

    def iter_log(self, first_seq: int = 0, progress: Callable[[int, int], None] | None = None
                 ) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, record) from `first_seq` to the newest record; `progress(done, total)`."""
        chunk = self.read_log(first_seq, 0)
        start = max(first_seq, chunk.oldest_seq)
        total = max(chunk.next_seq - start, 0)
        done = 0
        while True:
            chunk = self.read_log(start, wire.MAX_LOG_RECORDS)
            if not chunk.records:
                return
            for i, rec in enumerate(chunk.records):
                yield chunk.first_seq + i, rec
            done += len(chunk.records)
            start = chunk.first_seq + len(chunk.records)
            if progress is not None:
                progress(done, max(total, done))

    def calibration(self) -> Calibration:
        return _from(Calibration, wire.CAL_RESP, self._request(wire.CMD_CAL_READ))

    def limits(self) -> Limits:
        return _from(Limits, wire.LIMITS_RESP, self._request(wire.CMD_LIMITS_READ))

    # ---- programs ----------------------------------------------------------------------------
    def stage_program(self, encoded: bytes) -> int:
        """Upload `encoded` (Program.encode()) in chunks; returns the bytes staged."""
        n = len(encoded)
        if not 1 <= n <= wire.MAX_PROGRAM_BYTES:
            raise UsageError("program length = %d bytes: outside 1..%d" % (n, wire.MAX_PROGRAM_BYTES))
        staged = 0
        for off in range(0, n, wire.MAX_STAGE_CHUNK):
            chunk = bytes(encoded[off:off + wire.MAX_STAGE_CHUNK])
            head = wire.pack_fields(wire.PROG_STAGE_REQ, {"offset": off, "total_len": n})
            p = self._request(wire.CMD_PROG_STAGE, head + chunk)
            staged = wirehost.unpack_fields(wire.PROG_STAGE_RESP, p)["staged_len"]
        if staged != n:
            raise ProtocolError("rig %s staged %d of %d bytes" % (self.rig_id, staged, n))
        return staged

    def verify_program(self) -> Verified:
        """Have the rig decode and check the staged program; its length and CRC as it sees them."""
        return _from(Verified, wire.PROG_VERIFY_RESP, self._request(wire.CMD_PROG_VERIFY))

    def read_program(self, which: int = wire.PROG_WHICH_RUNNING,
                     part: int = wire.PROG_PART_DESCRIBE) -> ProgramData:
        """The running or staged program: its encoding or its describe() text, and its CRC."""
        data = bytearray()
        crc = 0
        while True:
            p = self._request(wire.CMD_PROG_READ, wire.pack_fields(
                wire.PROG_READ_REQ, {"which": which, "part": part, "offset": len(data)}))
            head = wirehost.unpack_fields(wire.PROG_READ_RESP, p)
            chunk = p[wirehost.layout_size(wire.PROG_READ_RESP):]
            crc = head["crc"]
            data += chunk
            if len(data) >= head["total_len"] or not chunk:
                if len(data) != head["total_len"]:
                    raise ProtocolError("program read from %s: %d of %d bytes" % (
                        self.rig_id, len(data), head["total_len"]))
                return ProgramData(bytes(data), crc)

    def commit_program(self, crc: int) -> None:
        """Make the staged, verified program with CRC-32 `crc` the running one (signed)."""
        _check_int("crc", crc, 0, 0xFFFFFFFF, "CRC-32")
        self._request(wire.CMD_PROG_COMMIT, wire.pack_fields(wire.PROG_COMMIT_REQ, {"crc": crc}), signed=True)

    def upload_program(self, encoded: bytes, confirm: Callable[[Review], bool]) -> Review:
        """Stage, verify (CRC must equal the local one), show both decodings to `confirm`, commit
        only if it returns True. The running program is untouched otherwise."""
        self.stage_program(encoded)
        ver = self.verify_program()
        local = crc32(bytes(encoded))
        if ver.length != len(encoded) or ver.crc != local:
            raise ProtocolError("staged program on rig %s does not match: rig %d bytes crc %08x, local %d bytes "
                                "crc %08x; nothing committed" % (self.rig_id, ver.length, ver.crc, len(encoded), local))
        staged = self.read_program(wire.PROG_WHICH_STAGED, wire.PROG_PART_DESCRIBE)
        running = self.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_DESCRIBE)
        review = Review(local, len(encoded), staged.data.decode().splitlines(),
                        running.data.decode().splitlines(), running.crc)
        if not confirm(review):
            return review
        self.commit_program(local)
        return Review(review.crc, review.length, review.staged_lines, review.running_lines, review.running_crc, True)

    # ---- delivery changes (signed) -----------------------------------------------------------
    def time_sync(self, day: int, ms_of_day: int) -> None:
        """Set the rig's wall clock: `day` since 2000-01-01, `ms_of_day` since midnight."""
        _check_int("day", day, 0, 0xFFFF, "days since 2000-01-01")
        _check_int("ms_of_day", ms_of_day, 0, 86_399_999, "ms")
        self._request(wire.CMD_TIME_SYNC, wire.pack_fields(wire.TIME_SYNC_REQ,
                                                           {"day": day, "ms_of_day": ms_of_day}), signed=True)

    def sync_time(self, now: datetime.datetime | None = None) -> tuple[int, int]:
        """Set the rig's clock to `now` (default: this computer's local time); returns (day, ms)."""
        now = now or datetime.datetime.now()
        day = (now.date() - _EPOCH).days
        ms = ((now.hour * 60 + now.minute) * 60 + now.second) * 1000 + now.microsecond // 1000
        self.time_sync(day, ms)
        return day, ms

    def bolus(self, dose_ng: int, duration_ms: int = 0) -> None:
        """Clinician bolus of `dose_ng` ng over `duration_ms` ms (0: as fast as allowed)."""
        _check_int("dose_ng", dose_ng, 1, _SMALL, "ng")
        _check_int("duration_ms", duration_ms, 0, _SMALL, "ms")
        self._request(wire.CMD_BOLUS, wire.pack_fields(wire.BOLUS_REQ,
                                                       {"dose_ng": dose_ng, "duration_ms": duration_ms}), signed=True)

    def patient_bolus(self) -> None:
        """The program's patient bolus (subject to lockout and daily cap)."""
        self._request(wire.CMD_PATIENT_BOLUS, signed=True)

    def suspend(self) -> None:
        self._request(wire.CMD_SUSPEND, signed=True)

    def resume(self) -> None:
        self._request(wire.CMD_RESUME, signed=True)

    def refill(self, volume_nl: int, conc_ug_ml: int) -> None:
        """Reservoir refilled with `volume_nl` nL of drug at `conc_ug_ml` ug/mL."""
        _check_int("volume_nl", volume_nl, 1, _SMALL, "nL")
        _check_int("conc_ug_ml", conc_ug_ml, 1, _SMALL, "ug/mL")
        self._request(wire.CMD_REFILL, wire.pack_fields(wire.REFILL_REQ,
                                                        {"volume_nl": volume_nl, "conc_ug_ml": conc_ug_ml}), signed=True)

    def prime(self, volume_nl: int) -> None:
        """Prime the line with `volume_nl` nL."""
        _check_int("volume_nl", volume_nl, 1, _SMALL, "nL")
        self._request(wire.CMD_PRIME, wire.pack_fields(wire.PRIME_REQ, {"volume_nl": volume_nl}), signed=True)

    def ack_alarm(self, alarm_id: int) -> None:
        _check_int("alarm_id", alarm_id, 0, 0xFFFF, "alarm id")
        self._request(wire.CMD_ALARM_ACK, wire.pack_fields(wire.ALARM_ACK_REQ, {"alarm_id": alarm_id}), signed=True)

    def maintenance(self, window_ms: int = wire.MAINT_DEFAULT_MS) -> None:
        """Signed maintenance for `window_ms` (1..30 min): the rig stops delivery, raises the
        maintenance alarm (sounding meanwhile), answers, then hands the port to the MicroPython
        REPL (mpremote `resume` works). When the window ends the watchdog resets it back into
        the application; `pumpctl maintenance end` does so earlier. Close this Pump after it."""
        _check_int("window_ms", window_ms, wire.MAINT_MIN_MS, wire.MAINT_MAX_MS, "ms")
        self._request(wire.CMD_MAINTENANCE, wire.pack_fields(wire.MAINTENANCE_REQ, {"window_ms": window_ms}),
                      signed=True)

    def key_required(self) -> bool | None:
        """Does the rig hold a key? Asks with a maintenance request signed by a random key
        (refused before its counter is looked at: nothing is consumed or changed): True if the
        rig checked the signature (keyed), False if it has no key, None if its firmware has no
        maintenance command (older firmware: Ctrl-C still stops it)."""
        import secrets
        seq = self._next_seq()
        frame = authhost.sign_request(seq, wire.CMD_MAINTENANCE,
                                  wire.pack_fields(wire.MAINTENANCE_REQ, {"window_ms": wire.MAINT_MIN_MS}),
                                  self.rig_id, min(self._counter + 1, _SMALL), secrets.token_bytes(32))
        status, _payload, _attempts = self._exchange(frame, seq, wire.CMD_MAINTENANCE)
        if status == wire.ERR_NO_KEY:
            return False
        if status == wire.ERR_UNKNOWN_COMMAND:
            return None
        if status == wire.OK:   # 2**-256: the random key was the rig's
            raise ProtocolError("rig %s accepted a request signed with a random key" % self.rig_id)
        return True

    def set_calibration(self, pl_per_step: int) -> None:
        """Measured calibration: `pl_per_step` pL per microstep."""
        _check_int("pl_per_step", pl_per_step, 1, _SMALL, "pL per microstep")
        self._request(wire.CMD_CAL_WRITE, wire.pack_fields(wire.CAL_WRITE_REQ, {"pl_per_step": pl_per_step}),
                      signed=True)


__all__ = ["Pump", "HelloInfo", "Status", "Alarm", "LogChunk", "Calibration", "Limits", "Verified",
           "ProgramData", "Review", "PortError"]
