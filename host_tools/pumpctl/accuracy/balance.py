"""Balances for gravimetric runs: the `Balance` interface, an MT-SICS lab balance, the virtual rig's.

`MtSicsBalance` speaks the Mettler-Toledo Standard Interface Command Set (MT-SICS level 0/1, as
also emulated by many other lab balances) over a serial port: commands are ASCII lines ended by
CR LF, each answered by one line ``<command> <status> [value unit]``:

=========  ==============================================================================
``S``      stable weight: ``S S  12.34567 g``; ``S I`` not executable (busy, or no stability
           within the balance's timeout); ``S +`` overload; ``S -`` underload
``SI``     weight immediately: ``S S ...`` stable or ``S D ...`` dynamic (not yet stable);
           ``S I``/``S +``/``S -`` as for ``S``
``Z``      zero: ``Z A`` done; ``Z I`` not executable; ``Z +``/``Z -`` above/below the zero range
``T``      tare: ``T S  1.23456 g`` tare weight; ``T I``; ``T +``/``T -`` outside the tare range
``I2``     balance type and capacity: ``I2 A "XPR225 220 g"``
``I3``     software version: ``I3 A "1.2.3"``
``I4``     serial number: ``I4 A "B123456789"``
``@``      reset: answered like ``I4``
=========  ==============================================================================

and any command may be answered by one of the general errors ``ES`` (syntax error: command not
recognised), ``ET`` (transmission error: parity or framing) or ``EL`` (logical error: command
cannot be executed, e.g. wrong parameter). Each of those replies becomes its own exception
below, with the command and the reply in the message.
"""
from __future__ import annotations

import time
from typing import Callable

from ..errors import PumpError

UNIT_TO_G: dict[str, float] = {"g": 1.0, "mg": 1e-3, "kg": 1e3, "ug": 1e-6}
DEFAULT_BAUD = 9600
DEFAULT_TIMEOUT_S = 2.0


class BalanceError(PumpError):
    """A balance failed or answered something unusable (message names command and reply)."""


class BalanceTimeout(BalanceError):
    """The balance did not answer within the timeout."""


class BalanceBusy(BalanceError):
    """``<cmd> I``: the balance cannot execute the command now (busy or not stable in time)."""


class BalanceOverload(BalanceError):
    """``<cmd> +``: the load is above the weighing (or zero/tare) range."""


class BalanceUnderload(BalanceError):
    """``<cmd> -``: the load is below the weighing (or zero/tare) range (pan missing?)."""


class BalanceCommandError(BalanceError):
    """``ES``/``ET``/``EL``: syntax, transmission or logical error."""

    def __init__(self, command: str, code: str, meaning: str) -> None:
        super().__init__(f"balance refused {command!r}: {code} ({meaning})")
        self.command = command
        self.code = code


class BalanceProtocolError(BalanceError):
    """The reply is not valid MT-SICS for the command sent."""


GENERAL_ERRORS = {
    "ES": "syntax error: the balance did not recognise the command",
    "ET": "transmission error: parity or framing error on the serial line",
    "EL": "logical error: the command cannot be executed",
}


class Reading:
    """One weighing: `mass_g` net (g), `stable` flag, `t_s` time of the reading (s, the clock
    of whoever made it: the virtual rig's time for SimBalance, host monotonic time otherwise)."""

    __slots__ = ("mass_g", "stable", "t_s")

    def __init__(self, mass_g: float, stable: bool, t_s: float) -> None:
        self.mass_g = mass_g
        self.stable = stable
        self.t_s = t_s

    def __repr__(self) -> str:
        return f"Reading(mass_g={self.mass_g!r}, stable={self.stable}, t_s={self.t_s!r})"


class Balance:
    """What a gravimetric run needs from a balance. Subclasses implement every method."""

    name = "balance"

    def read(self) -> Reading:
        """The weight now, stable or not (MT-SICS ``SI``)."""
        raise NotImplementedError

    def read_stable(self) -> Reading:
        """The next stable weight (MT-SICS ``S``); BalanceBusy when none within the timeout."""
        raise NotImplementedError

    def zero(self) -> None:
        """Set the current load as zero."""
        raise NotImplementedError

    def tare(self) -> float:
        """Tare the current load; returns the tare weight (g)."""
        raise NotImplementedError

    def identify(self) -> str:
        """Model and serial number, for the report."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the port."""

    def __enter__(self) -> "Balance":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_weight_reply(command: str, line: str) -> tuple[float, bool]:
    """Parse the reply to ``S``/``SI`` into (mass g, stable); raise the matching BalanceError."""
    _raise_general(command, line)
    parts = line.split()
    if len(parts) < 2 or parts[0] != "S":
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: expected 'S <status> ...'")
    status = parts[1]
    _raise_status(command, line, status)
    if status not in ("S", "D") or (status == "D" and command != "SI"):
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: status {status!r} "
                                   f"is not a weight status")
    return _parse_value(command, line, parts[2:]), status == "S"


def parse_tare_reply(line: str) -> float:
    """Parse the reply to ``T`` into the tare weight (g)."""
    _raise_general("T", line)
    parts = line.split()
    if len(parts) < 2 or parts[0] != "T":
        raise BalanceProtocolError(f"balance reply to 'T' is {line!r}: expected 'T <status> ...'")
    _raise_status("T", line, parts[1])
    if parts[1] != "S":
        raise BalanceProtocolError(f"balance reply to 'T' is {line!r}: unknown status {parts[1]!r}")
    return _parse_value("T", line, parts[2:])


def parse_ack_reply(command: str, line: str) -> None:
    """Parse an acknowledge-only reply such as ``Z A``."""
    _raise_general(command, line)
    parts = line.split()
    if len(parts) != 2 or parts[0] != command:
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: expected '{command} A'")
    _raise_status(command, line, parts[1])
    if parts[1] != "A":
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: unknown status {parts[1]!r}")


def parse_text_reply(command: str, line: str) -> str:
    """Parse ``I2 A "text"`` style replies into the quoted text."""
    _raise_general(command, line)
    expect = "I4" if command == "@" else command
    parts = line.split(None, 2)
    if len(parts) == 2 and parts[0] == expect:
        _raise_status(command, line, parts[1])
    if (len(parts) == 3 and parts[0] == expect and parts[1] == "A" and len(parts[2]) >= 2
            and parts[2][0] == '"' and parts[2][-1] == '"'):
        return parts[2][1:-1]
    raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: expected "
                               f"'{expect} A \"...\"'")


def _raise_general(command: str, line: str) -> None:
    code = line.strip()
    if code in GENERAL_ERRORS:
        raise BalanceCommandError(command, code, GENERAL_ERRORS[code])


def _raise_status(command: str, line: str, status: str) -> None:
    what = {"Z": "zero", "ZI": "zero", "T": "tare", "TI": "tare"}.get(command, "weighing")
    if status == "I":
        raise BalanceBusy(f"balance cannot execute {command!r} now (reply {line!r}): busy, or the "
                          f"weight did not settle within the balance's stability timeout")
    if status == "+":
        raise BalanceOverload(f"balance overload on {command!r} (reply {line!r}): the load is above "
                              f"the balance's {what} range; remove weight")
    if status == "-":
        raise BalanceUnderload(f"balance underload on {command!r} (reply {line!r}): the load is below "
                               f"the balance's {what} range; is the weighing pan in place?")


def _parse_value(command: str, line: str, fields: list[str]) -> float:
    if len(fields) != 2:
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: expected "
                                   f"'<value> <unit>'")
    value, unit = fields
    if unit not in UNIT_TO_G:
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: unit {unit!r} is not "
                                   f"one of {', '.join(UNIT_TO_G)}")
    try:
        return float(value) * UNIT_TO_G[unit]
    except ValueError:
        raise BalanceProtocolError(f"balance reply to {command!r} is {line!r}: {value!r} is not "
                                   f"a number") from None


class MtSicsBalance(Balance):
    """A laboratory balance speaking MT-SICS on a serial port (device, pty or pyserial URL)."""

    name = "MT-SICS balance"

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD,
                 timeout_s: float = DEFAULT_TIMEOUT_S, stable_timeout_s: float = 30.0) -> None:
        import serial  # pyserial: imported here so the analysis needs no serial port

        self.port = port
        self.timeout_s = timeout_s
        self.stable_timeout_s = stable_timeout_s
        try:
            self._ser = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise BalanceError(f"cannot open balance port {port}: {exc}") from None

    def close(self) -> None:
        self._ser.close()

    def command(self, cmd: str, timeout_s: float | None = None) -> str:
        """Send one MT-SICS command, return its reply line (without CR LF)."""
        self._ser.reset_input_buffer()  # a stale line from an earlier timeout must not answer us
        self._ser.write(cmd.encode("ascii") + b"\r\n")
        self._ser.flush()
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        buf = b""
        while time.monotonic() < deadline:
            buf += self._ser.readline()
            if buf.endswith(b"\n"):
                break
        if not buf.endswith(b"\n"):
            raise BalanceTimeout(f"balance on {self.port} did not answer {cmd!r} within "
                                 f"{timeout_s or self.timeout_s:g} s"
                                 + (f" (partial reply {buf!r})" if buf else ""))
        try:
            return buf.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BalanceProtocolError(f"balance reply to {cmd!r} is not ASCII: {buf!r} "
                                       f"(wrong baud rate?)") from None

    def read(self) -> Reading:
        t = time.monotonic()
        mass, stable = parse_weight_reply("SI", self.command("SI"))
        return Reading(mass, stable, t)

    def read_stable(self) -> Reading:
        mass, stable = parse_weight_reply("S", self.command("S", self.stable_timeout_s))
        return Reading(mass, stable, time.monotonic())

    def zero(self) -> None:
        parse_ack_reply("Z", self.command("Z", self.stable_timeout_s))

    def tare(self) -> float:
        return parse_tare_reply(self.command("T", self.stable_timeout_s))

    def identify(self) -> str:
        model = parse_text_reply("I2", self.command("I2"))
        serial_no = parse_text_reply("I4", self.command("I4"))
        return f"{model} (serial {serial_no}) on {self.port}"


class SimBalance(Balance):
    """The virtual rig's simulated balance, read through the rig's side channel.

    `read_fn()` returns ``(rig_time_s, gross_mass_g)``: for a `VirtualRig` pass
    ``rig.balance`` (see `from_rig`). Zero and tare are kept here, as a real balance keeps them.
    The noise and evaporation are the simulated balance's own (pumpsim.model).
    """

    name = "virtual rig balance"

    def __init__(self, read_fn: Callable[[], tuple[float, float]], label: str = "virtual rig") -> None:
        self._read_fn = read_fn
        self._offset_g = 0.0
        self._label = label

    @classmethod
    def from_rig(cls, rig: object) -> "SimBalance":
        """Wrap a VirtualRig: its ``balance()`` answer is adapted to (rig time s, mass g)."""
        balance = getattr(rig, "balance", None)
        if balance is None:
            raise BalanceError(f"{type(rig).__name__} has no balance() side channel")
        return cls(lambda: _rig_balance_answer(balance()), label=f"{type(rig).__name__}")

    def _gross(self) -> tuple[float, float]:
        t, m = self._read_fn()
        return float(t), float(m)

    def read(self) -> Reading:
        t, m = self._gross()
        return Reading(m - self._offset_g, True, t)

    def read_stable(self) -> Reading:
        return self.read()

    def zero(self) -> None:
        self._offset_g = self._gross()[1]

    def tare(self) -> float:
        gross = self._gross()[1]
        self._offset_g = gross
        return gross

    def identify(self) -> str:
        return f"simulated balance of the {self._label}"


def _rig_balance_answer(answer: object) -> tuple[float, float]:
    """Accept the rig's balance answer as (t_s, mass_g), or a dict/object with those fields."""
    if isinstance(answer, tuple) and len(answer) == 2:
        return float(answer[0]), float(answer[1])
    get = answer.get if isinstance(answer, dict) else (lambda k, d=None: getattr(answer, k, d))
    t = get("t_s", get("rig_time_s"))
    if get("mass_g") is not None:
        mass = float(get("mass_g"))
    elif get("mass_ug") is not None:
        mass = float(get("mass_ug")) * 1e-6
    elif get("mass_mg") is not None:
        mass = float(get("mass_mg")) * 1e-3
    else:
        mass = None
    if t is None or mass is None:
        raise BalanceProtocolError(f"virtual rig balance answer {answer!r}: expected the rig time "
                                   f"and a mass")
    return float(t), mass
