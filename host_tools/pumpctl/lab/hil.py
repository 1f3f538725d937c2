"""The HIL plugin on labgrid places: `--rig labgrid:PLACE` / `--rig labgrid:KEY=VALUE,...` (we reserve and acquire), or `--rig labgrid --lg-env ENV` (labgrid's own environment).

One place per pytest process (each xdist worker its own, through its own reservation): taken at
the first test that needs a rig, brought to `ready` by PumpRigStrategy (pumpctl deploy, clock
set), shared by that process's tests like a bench rig, and given back (released, reservation
cancelled) when a test fails on it (the next test takes a place afresh: a rig that failed a
check is not trusted with the next one) and at the session's end. If the process dies, its
guard gives the place back (places.py). Every take and give-back is a line in the hold log
(`--rig-lab-log PATH` or $PUMPRIG_LAB_LOG).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import PumpError, RigTimeout
from ..hil.rigs import BenchRig, DeployInfo
from .places import HoldLog, Hold, LabClient, parse_rig_spec

ENV_TEMPLATE = """\
# written by pumpctl.lab.hil for place {place}
targets:
  main:
    resources:
      RemotePlace:
        name: {place}
    drivers:
      PumpRigDriver: {{}}
      PumpRigStrategy:
        deploy_timeout: {deploy_timeout}
options:
  coordinator_address: {coordinator}
imports:
  - pumpctl.lab.driver
"""


class LabRig(BenchRig):
    """A rig on a labgrid place: a bench rig (no side channel, no operator) reached through the
    place's serial resource, with its place and build in the report."""

    kind = "lab"

    def __init__(self, port: str, deploy: DeployInfo | None, rig_id: str, place: str,
                 build: dict[str, str]) -> None:
        super().__init__(port, None, deploy, rig_id)
        self.place = place
        self.build = build

    def can(self, fault: str) -> str:
        why = super().can(fault)
        if not why and fault in ("hang", "corrupt_state"):
            return ""
        return why.replace("bench rig", "lab rig %s" % self.place).replace(
            "; run with --operator to be asked", " (no operator at a lab place)") if why else ""

    def wait_boot(self, boots: int, timeout_s: float = 20.0) -> None:
        """Wait until the firmware answers hello again (the link is a URL: no device to appear)."""
        from ..pump import Pump
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                Pump.open(self.port, timeout_s=2.0, retries=0).close()
                return
            except PumpError:
                if time.monotonic() > deadline:
                    raise RigTimeout("lab rig %s on %s did not answer within %.0f s of its reset"
                                     % (self.place, self.port, timeout_s)) from None
                time.sleep(0.3)

    def describe(self) -> dict[str, str]:
        d = super().describe()
        d["kind"] = "lab rig (labgrid place %s on %s)" % (self.place, self.port)
        d["place"] = self.place
        d.update({"build " + k: v for k, v in self.build.items()})
        return d


class LabSession:
    """This pytest process's place: taken on demand, given back on a failure and at the end."""

    def __init__(self, spec: str, coordinator: str | None, log_path: str | None, lg_env: Any = None,
                 deploy: bool = True, deploy_timeout_s: float = 180.0) -> None:
        self.spec = spec
        self.lg_env = lg_env
        self.filters: dict[str, str] = {} if lg_env is not None and spec == "labgrid" else parse_rig_spec(spec)
        self.coordinator = coordinator
        self.log = HoldLog(log_path or os.environ.get("PUMPRIG_LAB_LOG"))
        self.deploy = deploy
        self.deploy_timeout_s = deploy_timeout_s
        self.client: LabClient | None = None
        self.hold: Hold | None = None
        self.env: Any = None
        self.rig: LabRig | None = None
        self.takes = 0

    def get(self) -> LabRig:
        if self.rig is None:
            self.rig = self._take()
        return self.rig

    def _take(self) -> LabRig:
        from labgrid import Environment
        env: Any = None
        owned = False
        try:
            if self.lg_env is not None and not self.filters:
                env = self.lg_env
            else:
                if self.client is None:
                    self.client = LabClient(self.coordinator)
                self.hold = self.client.take(self.filters, log=self.log)
                path = Path(tempfile.mkdtemp(prefix="pumprig-lab-")) / ("env-%s.yaml" % self.hold.place)
                path.write_text(ENV_TEMPLATE.format(place=self.hold.place, coordinator=self.client.coordinator,
                                                    deploy_timeout=self.deploy_timeout_s))
                env, owned = Environment(str(path)), True
            target = env.get_target("main")
            if target is None:
                raise PumpError("labgrid environment %s has no target 'main'" % env.config_file)
            strategy = target.get_driver("PumpRigStrategy")
            if self.deploy:
                strategy.transition("ready")
            else:
                strategy.force("deployed")
                strategy.transition("ready")
            self.env = env if owned else None
            self.takes += 1
            build = dict(strategy.build)
            place = self.hold.place if self.hold is not None else str(build.get("port"))
            return LabRig(strategy.rig.port, strategy.deploy_info, build.get("rig_id", ""), place, build)
        except BaseException as exc:
            if owned:
                env.cleanup()
            self._give_back("bringing the rig to ready failed: %s: %s" % (type(exc).__name__, exc))
            raise

    def release(self, reason: str) -> None:
        """Give the place back (no-op without one, or with labgrid's own environment)."""
        self.rig = None
        if self.env is not None:
            self.env.cleanup()
            self.env = None
        self._give_back(reason)

    def _give_back(self, reason: str) -> None:
        hold, self.hold = self.hold, None
        if hold is not None and self.client is not None:
            self.client.give_back(hold, reason, log=self.log)
