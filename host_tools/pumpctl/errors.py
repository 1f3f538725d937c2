"""Host-side exception hierarchy: every failure a user can meet, each with a one-line message."""
from __future__ import annotations


class PumpError(Exception):
    """Base of every error `pumpctl` reports as `pumpctl: <message>` with exit status 1."""


class UsageError(PumpError):
    """The caller asked for something invalid (bad file, bad value, missing option)."""


class PortError(PumpError):
    """No port, port busy, port vanished (rig unplugged)."""


class RigTimeout(PumpError):
    """The rig did not answer in time."""


class ProtocolError(PumpError):
    """The rig answered with something that is not a valid frame or not the expected answer."""


class RefusedError(PumpError):
    """The rig understood the request and refused it (status code and the rig's reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AuthError(PumpError):
    """Wrong rig, wrong or missing key, replayed counter."""


class VersionError(PumpError):
    """Firmware too old or protocol table mismatch."""
