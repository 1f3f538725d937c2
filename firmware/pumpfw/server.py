"""Protocol server on the device: serial bytes -> frames -> Controller calls -> response frames.

The server calls a controller: the methods of `pumpfw.controller.Controller`, which say what each
returns and in which units. The application (pumpfw.app.PumpApp) defines them all itself and does
not subclass it, so the Pico does not carry the interface (issue 16's RAM budget);
tests/protocol/test_controller.py holds PumpApp to it. The app calls, every loop::

    if server.feed(hw.serial_read()):
        raise KeyboardInterrupt   # only on a keyless rig (break_enabled): 0x03 drops to the REPL

Control bytes are never part of a frame: a 0x03 abandons a frame in progress and any other
(0x01 raw REPL, 0x02, 0x04 soft reset ...) makes the frame fail its strict base64 check, so
they are noise that costs at most the frame they fell into (the host retransmits). Only with
`break_enabled` (a keyless rig, where nothing needs protecting) does feed() report a 0x03.

`ProtocolServer` never raises on any input. Invalid lines are dropped by rule (see
pumpcore.wire); valid frames are answered with a status and, on error, a reason. A request
retransmitted with the same sequence number and the same bytes is answered from a small cache
of recent responses WITHOUT being executed again. Per byte it allocates nothing: each base64
quad is decoded as its fourth character arrives (pumpcore.wire.b64_quad_into, the strict rule
the host's whole-line decoder applies too) into a preallocated frame buffer, and no line of
text is kept; allocation happens once per complete frame.
"""
import struct

from pumpcore import wire
from pumpcore import auth, call_once
from pumpcore.fixed import const
from pumpfw import text

_CACHE_SIZE = const(4)   # responses kept for retransmitted requests
MS_PER_DAY = const(86400000)
_SMALL = const(0x3FFFFFFF)

# body length (bytes before the auth trailer) of each authenticated command: fixed layouts
_AUTH_BODY = {
    wire.CMD_TIME_SYNC: 6,
    wire.CMD_PROG_COMMIT: 4,
    wire.CMD_BOLUS: 8,
    wire.CMD_PATIENT_BOLUS: 0,
    wire.CMD_SUSPEND: 0,
    wire.CMD_RESUME: 0,
    wire.CMD_REFILL: 8,
    wire.CMD_PRIME: 4,
    wire.CMD_ALARM_ACK: 2,
    wire.CMD_CAL_WRITE: 4,
    wire.CMD_MAINTENANCE: 4,
}

# refusals of a signed request that say who is knocking: logged by the controller
_AUTH_REFUSALS = (wire.ERR_WRONG_RIG, wire.ERR_NO_KEY, wire.ERR_BAD_MAC, wire.ERR_REPLAY)

_STATUS_FLAGS_OFFSET = const(6)  # byte of "flags" in wire.STATUS_RESP

# the reads served by pumpfw.readreply, loaded for the call (issue 16): none changes delivery
_READS = (wire.CMD_HELLO, wire.CMD_ALARMS, wire.CMD_LOG_READ, wire.CMD_CAL_READ, wire.CMD_LIMITS_READ)


def _printable(raw):
    """Bytes from the wire as text for a reason: non-printable bytes shown as "?"."""
    return "".join([chr(b) if 0x20 <= b < 0x7F else "?" for b in raw])


class ProtocolServer:
    """Byte-stream protocol endpoint. `write(bytes)` sends a response line to the host."""

    def __init__(self, controller, write):
        self.controller = controller
        self.write = write
        # a frame is decoded quad by quad as its characters arrive (wire.b64_quad_into), into
        # the frame buffer: no line of text is kept (1.4 KB of the RP2040's heap, issue 16)
        self._frame = bytearray(wire.MAX_FRAME)
        self._fmv = memoryview(self._frame)
        self._quad = bytearray(4)  # B64_TABLE values of the quad being read
        self._q = 0                # characters of it so far
        self._n = 0                # frame bytes decoded so far
        self._in_frame = False
        self._bad = False          # not strict base64, or too long: dropped at its newline
        self._ended = False        # a padded quad was read: nothing may follow it
        self._cr = False           # a CR was read: only the newline may follow it
        # the program being uploaded: a buffer of the size its first chunk announces (at most
        # wire.MAX_PROGRAM_BYTES), made then and let go by a commit or a new upload, so it is not
        # in the RP2040's heap between uploads (issue 16); None when nothing is staged
        self._stage = None
        self._stage_len = 0
        self._stage_total = 0
        self._verified = None      # decoded staged program after a successful verify
        self._verified_crc = 0
        self._cache_seq = [-1] * _CACHE_SIZE
        self._cache_crc = [0] * _CACHE_SIZE
        self._cache_line = [b""] * _CACHE_SIZE
        self._cache_next = 0
        self._key = None
        self._hmac = None
        self._counter = 0          # counter of the authenticated request being handled
        # counters (diagnostics and tests)
        self.frames_answered = 0
        self.frames_dropped = 0
        self.retransmits = 0
        self.interrupts = 0        # 0x03 bytes seen (reported by feed only with break_enabled)
        self.break_enabled = False

    # ---- byte intake ---------------------------------------------------------------------
    def feed(self, data):
        """Take bytes received from the host; answer every complete valid frame.

        Returns True if a Ctrl-C (0x03) was among the bytes and `break_enabled` is set (a
        keyless rig: the app exits to the REPL); otherwise a 0x03 is noise. Either way a 0x03
        abandons a frame in progress (it can never be part of one).
        """
        interrupted = False
        table = wire.B64_TABLE
        quad = self._quad
        for b in data:
            if b == 0x7E:             # "~": a frame starts (restarts after a torn one)
                if self._in_frame:
                    self.frames_dropped += 1
                self._in_frame = True
                self._n = 0
                self._q = 0
                self._bad = self._ended = self._cr = False
            elif b == 0x03:
                interrupted = self.break_enabled
                self.interrupts += 1
                if self._in_frame:
                    self.frames_dropped += 1
                    self._in_frame = False
            elif not self._in_frame:
                pass
            elif b == 0x0A:
                self._in_frame = False
                if self._bad or self._q or not self._n:
                    self.frames_dropped += 1
                else:
                    self._frame_done(self._n)
            elif self._bad:
                pass
            elif b == 0x0D:           # tolerate CRLF: one CR, only just before the newline
                self._bad = self._cr
                self._cr = True
            elif self._ended or self._cr:
                self._bad = True
            else:
                q = self._q
                quad[q] = table[b]
                if q < 3:
                    self._q = q + 1
                else:
                    self._q = 0
                    got = wire.b64_quad_into(self._frame, self._n, quad[0], quad[1], quad[2], quad[3])
                    if got < 0:
                        self._bad = True
                    else:
                        self._n += got
                        self._ended = got < 3
        return interrupted

    def _frame_done(self, got):
        """A frame's newline: its `got` bytes are decoded in self._frame; check and answer it."""
        parsed = wire.parse_frame(self._frame, got)
        if parsed is None or parsed[1] != wire.KIND_REQUEST:
            self.frames_dropped += 1
            return
        version, _kind, seq, cmd, _status, plen = parsed
        req_crc = struct.unpack_from("<I", self._frame, wire.HEADER_SIZE + plen)[0]
        for i in range(_CACHE_SIZE):
            if self._cache_seq[i] == seq and self._cache_crc[i] == req_crc:
                self.retransmits += 1
                self.frames_answered += 1
                self._send(self._cache_line[i])
                return
        try:
            if version != wire.PROTOCOL_VERSION:
                status, payload = self._refuse(wire.ERR_VERSION, "version", version, wire.PROTOCOL_VERSION)
            else:
                status, payload = self._dispatch(cmd, plen)
        except Exception as exc:  # the server never raises; a controller bug is reported
            status, payload = self._refuse(wire.ERR_INTERNAL, "internal", wire.command_name(cmd),
                                           type(exc).__name__, exc)
        try:
            out = wire.encode_frame(wire.KIND_RESPONSE, seq, cmd, status, payload)
        except Exception as exc:
            out = wire.encode_frame(wire.KIND_RESPONSE, seq, cmd, wire.ERR_INTERNAL, wire.error_payload(
                0, text("encoding", wire.command_name(cmd), exc)))
        i = self._cache_next
        self._cache_seq[i] = seq
        self._cache_crc[i] = req_crc
        self._cache_line[i] = out
        self._cache_next = (i + 1) % _CACHE_SIZE
        self.frames_answered += 1
        self._send(out)

    def _send(self, out):
        try:
            self.write(out)
        except Exception:
            pass  # link gone: the host retransmits and is answered from the cache

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _err(status, detail, reason):
        return status, wire.error_payload(detail, reason)

    @staticmethod
    def _refuse(status, key, *args):
        """(status, payload) of a refusal whose reason is pumpfw.fwtext's text of `key`."""
        return status, wire.error_payload(0, text(key, *args))

    def _bad_len(self, cmd, got, need):
        return self._refuse(wire.ERR_BAD_PAYLOAD, "bad_len", wire.command_name(cmd), got, need)

    def _result(self, r):
        if r is False:   # a bare "no" is a refusal, never success
            return self._refuse(wire.ERR_REFUSED, "no_reason")
        if r is None or r is True or r == 0:
            return wire.OK, b""
        if isinstance(r, tuple):
            return self._err(wire.ERR_REFUSED, int(r[0]) & 0xFF, str(r[1]))
        if isinstance(r, str):
            return self._err(wire.ERR_REFUSED, 0, r)
        return self._err(wire.ERR_REFUSED, int(r) & 0xFF, str(self.controller.refusal_text(r)))

    def _body(self, n):
        return bytes(self._fmv[wire.HEADER_SIZE:wire.HEADER_SIZE + n])

    def _check_auth(self, cmd, plen):
        """Return (status, payload) of the refusal, or None when the request is authentic.

        On success the counter is remembered in self._counter; it is accepted (persisted by the
        controller) only once the body has also been checked, just before the controller call.
        """
        body_len = _AUTH_BODY[cmd]
        t = auth.split_trailer(self._frame, plen, body_len)
        if t is None:
            return self._refuse(wire.ERR_BAD_PAYLOAD, "trailer", wire.command_name(cmd), plen, body_len)
        rid, counter = t
        ctl = self.controller
        mine = ctl.rig_id()
        if rid != mine.encode():
            return self._refuse(wire.ERR_WRONG_RIG, "wrong_rig", _printable(rid), mine)
        key = ctl.rig_key()
        if not key:
            return self._refuse(wire.ERR_NO_KEY, "no_key", mine)
        if key != self._key:
            self._key = bytes(key)
            self._hmac = auth.Hmac(self._key)
        if not auth.verify_mac(self._hmac, self._frame, plen):
            return self._refuse(wire.ERR_BAD_MAC, "bad_mac", mine)
        last = ctl.auth_counter()
        if counter > wire.COUNTER_LIMIT:
            return self._refuse(wire.ERR_BAD_PAYLOAD, "ctr_limit", counter, wire.COUNTER_LIMIT)
        if counter <= last:
            return self._refuse(wire.ERR_REPLAY, "replay", counter, last)
        self._counter = counter
        return None

    def _check_auth_body(self, cmd):
        """Range checks of an authenticated command's body, before its counter is accepted.

        Returns (status, payload) of the refusal or None. A request refused here consumes no
        counter and changes nothing.
        """
        f = self._frame
        H = wire.HEADER_SIZE
        if cmd == wire.CMD_TIME_SYNC:
            ms = struct.unpack_from("<I", f, H + 2)[0]
            if ms >= MS_PER_DAY:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "ms_of_day", ms, MS_PER_DAY)
        elif cmd == wire.CMD_PROG_COMMIT:
            crc = struct.unpack_from("<I", f, H)[0]
            if self._verified is None:
                return self._refuse(wire.ERR_STAGE, "unverified")
            if crc != self._verified_crc:
                return self._refuse(wire.ERR_STAGE, "crc_stage", crc, self._verified_crc)
        elif cmd == wire.CMD_BOLUS:
            dose, dur = struct.unpack_from(wire.BOLUS_REQ[0], f, H)
            if not 1 <= dose <= _SMALL:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "outside", "dose_ng", dose, _SMALL)
            if dur > _SMALL:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "above", "duration_ms", dur, _SMALL)
        elif cmd == wire.CMD_REFILL:
            vol, conc = struct.unpack_from(wire.REFILL_REQ[0], f, H)
            if not 1 <= vol <= _SMALL:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "outside", "volume_nl", vol, _SMALL)
            if not 1 <= conc <= _SMALL:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "outside", "conc_ug_ml", conc, _SMALL)
        elif cmd == wire.CMD_MAINTENANCE:
            w = struct.unpack_from("<I", f, H)[0]
            if not wire.MAINT_MIN_MS <= w <= wire.MAINT_MAX_MS:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "window", w, wire.MAINT_MIN_MS, wire.MAINT_MAX_MS)
        elif cmd == wire.CMD_PRIME or cmd == wire.CMD_CAL_WRITE:
            v = struct.unpack_from("<I", f, H)[0]
            name = "volume_nl" if cmd == wire.CMD_PRIME else "pl_per_step"
            if not 1 <= v <= _SMALL:
                return self._refuse(wire.ERR_BAD_PAYLOAD, "outside", name, v, _SMALL)
        return None

    # ---- dispatch --------------------------------------------------------------------------
    def _dispatch(self, cmd, plen):
        flags = wire.command_flags(cmd)
        if flags < 0:
            return self._refuse(wire.ERR_UNKNOWN_COMMAND, "unknown", cmd)
        n = plen
        ctl = self.controller
        if flags & wire.FLAG_AUTH:
            refused = self._check_auth(cmd, plen)
            if refused is not None and refused[0] in _AUTH_REFUSALS:
                ctl.auth_refused(cmd, refused[0])     # logged by the app (rate-limited)
            if refused is None:
                refused = self._check_auth_body(cmd)
            if refused is not None:
                return refused
            r = ctl.accept_counter(self._counter)   # durable before the change is made
            if r is not None and r is not True and r != 0:
                return self._result(r)              # could not make it durable: not executed
            n = _AUTH_BODY[cmd]
        H = wire.HEADER_SIZE
        f = self._frame

        if cmd in _READS:   # hello, alarms, log, calibration, limits: loaded for the call
            from pumpfw import readreply
            return call_once(readreply, "reply", self, cmd, n)

        if cmd == wire.CMD_STATUS:
            if n:
                return self._bad_len(cmd, n, 0)
            out = bytearray(wire.pack_fields(wire.STATUS_RESP, ctl.status()))
            if self._stage_total:
                out[_STATUS_FLAGS_OFFSET] |= wire.STATUS_FLAG_PROGRAM_STAGED
            return wire.OK, bytes(out)

        if cmd == wire.CMD_TIME_SYNC:
            day, ms = struct.unpack_from(wire.TIME_SYNC_REQ[0], f, H)
            return self._result(ctl.set_time(day, ms))

        if cmd == wire.CMD_PROG_STAGE:
            from pumpfw import programlink
            return call_once(programlink, "stage_chunk", self, n)

        if cmd == wire.CMD_PROG_VERIFY:
            if n:
                return self._bad_len(cmd, n, 0)
            from pumpfw import programlink
            return call_once(programlink, "verify", self)

        if cmd == wire.CMD_PROG_COMMIT:   # staged CRC checked in _check_auth_body
            status, payload = self._result(ctl.commit_program(self._verified))
            if status == wire.OK:
                self._clear_stage()
            return status, payload

        if cmd == wire.CMD_PROG_READ:
            if n != 6:
                return self._bad_len(cmd, n, 6)
            from pumpfw import programlink
            which, part, offset = struct.unpack_from(wire.PROG_READ_REQ[0], f, H)
            return call_once(programlink, "read_program", self, which, part, offset)

        if cmd == wire.CMD_BOLUS:
            dose, dur = struct.unpack_from(wire.BOLUS_REQ[0], f, H)
            return self._result(ctl.bolus(wire.BOLUS_CLINICIAN, dose, dur))

        if cmd == wire.CMD_PATIENT_BOLUS:
            return self._result(ctl.bolus(wire.BOLUS_PATIENT, 0, 0))

        if cmd == wire.CMD_SUSPEND:
            return self._result(ctl.suspend())

        if cmd == wire.CMD_RESUME:
            return self._result(ctl.resume())

        if cmd == wire.CMD_REFILL:
            vol, conc = struct.unpack_from(wire.REFILL_REQ[0], f, H)
            return self._result(ctl.refill(vol, conc))

        if cmd == wire.CMD_PRIME:
            vol = struct.unpack_from("<I", f, H)[0]
            return self._result(ctl.prime(vol))

        if cmd == wire.CMD_ALARM_ACK:
            return self._result(ctl.ack_alarm(struct.unpack_from("<H", f, H)[0]))

        if cmd == wire.CMD_CAL_WRITE:
            pl = struct.unpack_from("<I", f, H)[0]
            return self._result(ctl.set_calibration(pl))

        if cmd == wire.CMD_MAINTENANCE:
            return self._result(ctl.maintenance(struct.unpack_from("<I", f, H)[0]))

        return self._refuse(wire.ERR_UNKNOWN_COMMAND, "no_handler", wire.command_name(cmd))

    # ---- program staging -----------------------------------------------------------------
    def _clear_stage(self):
        self._stage = None
        self._stage_len = 0
        self._stage_total = 0
        self._verified = None
        self._verified_crc = 0
