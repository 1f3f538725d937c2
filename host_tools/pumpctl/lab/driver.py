"""labgrid driver and strategy of a pump rig: PumpRigDriver (the rig's serial link as a pumpctl port) and PumpRigStrategy (deployed, ready, clock set).

Use them in a labgrid environment file (`imports: [pumpctl.lab.driver]`, see docs/lab/). The
driver binds to the place's serial resource:

- `NetworkSerialPort` (a virtual rig behind pumpctl.lab.bridge, or a real Pico that a remote
  exporter serves through ser2net): the port is `rfc2217://HOST:PORT` (`socket://` for raw);
- `USBSerialPort` / `RawSerialPort` on this host (a real Pico, matched by udev: VID:PID
  2E8A:0005, ID_SERIAL_SHORT): the device path.

The strategy's states: `unknown` -> `deployed` (`pumpctl deploy`: compile, copy, verify by
sha256, provision the key, restart, hello answered) -> `ready` (the rig's clock set from this
host, status read back with the clock-set flag, build reported).
"""
from __future__ import annotations

import enum
import logging
from typing import Any

import attr
from labgrid.driver import Driver
from labgrid.factory import target_factory
from labgrid.strategy import Strategy, StrategyError

from ..errors import PumpError
from .places import port_of

LOG = logging.getLogger("pumpctl.lab")


@target_factory.reg_driver
@attr.s(eq=False)
class PumpRigDriver(Driver):
    """The pump rig's serial link: `port` is what `pumpctl --port` and Pump.open take."""

    bindings = {"serial": {"NetworkSerialPort", "USBSerialPort", "RawSerialPort"}}

    @property
    def port(self) -> str:
        return port_of(self.serial)

    @Driver.check_active
    def hello(self) -> Any:
        """The firmware's hello (version, build, rig id); PumpError if it does not answer."""
        from ..pump import Pump
        with Pump.open(self.port, timeout_s=5.0, retries=2) as p:
            return p.hello()


class Status(enum.Enum):
    unknown = 0
    deployed = 1
    ready = 2


@target_factory.reg_driver
@attr.s(eq=False)
class PumpRigStrategy(Strategy):
    """Brings a pump rig to `deployed` (pumpctl deploy) and `ready` (clock set); `build` and
    `deploy_info` report what runs on it."""

    bindings = {"rig": "PumpRigDriver"}

    deploy_timeout = attr.ib(default=180.0, validator=attr.validators.instance_of((int, float)))
    hw_dir = attr.ib(default=None, validator=attr.validators.optional(attr.validators.instance_of(str)))
    status = attr.ib(default=Status.unknown)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.deploy_info: Any = None
        self.build: dict[str, str] = {}

    def transition(self, status: Any) -> None:
        if not isinstance(status, Status):
            try:
                status = Status[status]
            except KeyError:
                raise StrategyError("state %r: must be one of %s" % (status, ", ".join(s.name for s in Status))) from None
        if status is Status.unknown:
            raise StrategyError("can not transition to unknown")
        if status is self.status:
            return
        if status is Status.ready and self.status is not Status.deployed:
            self.transition(Status.deployed)
        self.target.activate(self.rig)
        if status is Status.deployed:
            self._deploy()
        else:
            self._set_clock()
        self.status = status

    def force(self, status: Any) -> None:
        """Take the rig as being in `status` without acting (firmware already deployed)."""
        self.status = status if isinstance(status, Status) else Status[status]

    def _deploy(self) -> None:
        from pathlib import Path

        from ..hil.rigs import deploy_rig
        port = self.rig.port
        LOG.info("pump rig %s: pumpctl deploy", port)
        info = deploy_rig(port, None, do_restart=True, timeout_s=float(self.deploy_timeout),
                          hw_dir=Path(self.hw_dir) if self.hw_dir else None)
        self.deploy_info = info
        if not info.ok:
            raise StrategyError("pumpctl deploy to %s failed: %s" % (port, info.error))

    def _set_clock(self) -> None:
        from ..pump import Pump
        from pumpcore import wire
        port = self.rig.port
        try:
            with Pump.open(port, timeout_s=5.0, retries=2) as p:
                p.sync_time()
                st = p.status()
                h = p.hello()
        except PumpError as exc:
            raise StrategyError("pump rig %s: setting the clock failed: %s" % (port, exc)) from None
        if not st.flags & wire.STATUS_FLAG_CLOCK_SET:
            raise StrategyError("pump rig %s: clock set, but the status does not say so (flags %#x)" % (port, st.flags))
        digest = self.deploy_info.digest if self.deploy_info is not None else "-"
        self.build = {"port": port, "rig_id": h.rig_id, "firmware": h.firmware_version, "build": h.build_hash,
                      "deployed_files_digest": digest}
        LOG.info("pump rig %s ready: rig %s, firmware %s build %s", port, h.rig_id, h.firmware_version, h.build_hash)
