"""The protocol controller: what pumpfw.server.ProtocolServer calls on the application.

The interface only: pumpfw.app.PumpApp defines every method with the same arguments and does not
subclass it, so the Pico never imports this module (issue 16's RAM budget). The tests' fake
controllers subclass it, and tests/protocol/test_controller.py holds PumpApp to it, method by
method, read from the sources.
"""
from pumpfw import text


class Controller:
    """What the protocol server calls on the application. pumpfw.app.PumpApp defines every method
    itself (the device does not import this module); the tests' fakes subclass it.

    Result convention for commands that change something: return None (or 0) when done; an int
    refusal code (the app's own code, 1..255, explained by `refusal_text(code)`) or a tuple
    (code, reason text) when refused. A method that raises is reported to the host as
    ERR_INTERNAL with the exception text; the server itself never raises.
    Units: ng, ng/day, ug/mL, nL, pL per microstep, ms, wall time (day, ms_of_day).
    """

    # identity and authentication ------------------------------------------------------
    def hello_info(self):
        """(firmware_version str, build_hash str) of the running firmware."""
        raise NotImplementedError("hello_info")

    def mechanism_name(self):
        """Name of the mechanism the controller doses for (hello's "mechanism")."""
        from pumpcore.calibration import DEFAULT_MECHANISM
        return DEFAULT_MECHANISM

    def rig_id(self):
        """This rig's id (str, 1..32 printable ASCII)."""
        raise NotImplementedError("rig_id")

    def rig_key(self):
        """The 32-byte rig key provisioned at deploy (e.g. read from /rigkey.bin), or None."""
        return None

    def auth_counter(self):
        """The highest authentication counter accepted so far (0 if none); persisted."""
        raise NotImplementedError("auth_counter")

    def auth_refused(self, cmd, status):
        """A signed request `cmd` was refused with wire status `status` (wrong rig, no key, bad
        MAC, replay) before anything ran: the app logs it. Default: nothing."""
        return None

    def accept_counter(self, counter):
        """Record `counter` as accepted, durably, BEFORE the request executes. Returns None when
        done, or a refusal (like the change methods below) when it cannot be made durable: the
        request is then refused with that reason and not executed."""
        raise NotImplementedError("accept_counter")

    # reads --------------------------------------------------------------------------------
    def status(self):
        """Object or dict with every field of wire.STATUS_RESP (see there for units)."""
        raise NotImplementedError("status")

    def running_program(self):
        """The running pumpcore.program.Program, or None."""
        return None

    def alarms(self):
        """List of alarms, each a dict/object with the fields of wire.ALARM_ENTRY."""
        return []

    def log_bounds(self):
        """(oldest_seq, next_seq): sequence numbers of the oldest stored record and the next."""
        raise NotImplementedError("log_bounds")

    def read_log(self, first_seq, max_count):
        """Up to `max_count` 32-byte records (bytes), consecutive from sequence `first_seq`.

        The server only asks for oldest_seq <= first_seq < next_seq (see log_bounds)."""
        raise NotImplementedError("read_log")

    def calibration(self):
        """(pl_per_step, source) with source wire.CAL_SOURCE_DERIVED or CAL_SOURCE_MEASURED."""
        raise NotImplementedError("calibration")

    def limits(self):
        """Object or dict with every field of wire.LIMITS_RESP (hard limits)."""
        raise NotImplementedError("limits")

    # programs -------------------------------------------------------------------------------
    def decode_program(self, buf):
        """Decode a staged program (bytes) -> Program; raises on malformed input."""
        from pumpcore.program import Program
        return Program.decode(buf)

    def check_program(self, program):
        """None if `program` may be committed here, else the reason (str), e.g. str(ProgramError)."""
        return None

    def commit_program(self, program):
        """Make `program` (verified, CRC confirmed by the host) the running program."""
        raise NotImplementedError("commit_program")

    # changes to delivery (authenticated) ------------------------------------------------
    def set_time(self, day, ms_of_day):
        """Set the wall clock: day since 2000-01-01, ms since midnight."""
        raise NotImplementedError("set_time")

    def bolus(self, kind, dose_ng, duration_ms):
        """Start a bolus: kind wire.BOLUS_CLINICIAN (dose over duration) or wire.BOLUS_PATIENT
        (dose 0 and duration 0: the program's patient bolus, subject to lockout and cap)."""
        raise NotImplementedError("bolus")

    def suspend(self):
        raise NotImplementedError("suspend")

    def resume(self):
        raise NotImplementedError("resume")

    def refill(self, volume_nl, conc_ug_ml):
        """Reservoir refilled with `volume_nl` nL at `conc_ug_ml` (bridge bolus if needed)."""
        raise NotImplementedError("refill")

    def prime(self, volume_nl):
        raise NotImplementedError("prime")

    def ack_alarm(self, alarm_id):
        raise NotImplementedError("ack_alarm")

    def set_calibration(self, pl_per_step):
        raise NotImplementedError("set_calibration")

    def maintenance(self, window_ms):
        """Signed maintenance for `window_ms` (wire.MAINT_MIN_MS..MAINT_MAX_MS, checked by the
        server): stop delivery, log, alarm, save; the app leaves its loop for the REPL after
        the answer is sent."""
        raise NotImplementedError("maintenance")

    def refusal_text(self, code):
        """Human-readable text of a refusal code returned by one of the methods above."""
        return text("refused", code)
