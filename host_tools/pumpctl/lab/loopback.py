"""A whole labgrid lab on 127.0.0.1 for the suite and the bench: coordinator, N virtual rigs behind RFC 2217 bridges, an exporter, one tagged place per rig.

    with LoopbackLab(work_dir, rigs=4, lab_venv=REPO / ".venv-lab") as lab:
        subprocess.run(lab.pytest_argv("tests/hil/test_deploy_program.py", "-n", "4"), env=lab.env())

Runs from the main `.venv` (the farm needs the micropython unix port); labgrid's programs come
from the lab environment `lab_venv` (scripts/bootstrap --lab). Every process it starts is
stopped on exit, in reverse order, by its own pid.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .farm import GROUP_PREFIX

REPO = Path(__file__).resolve().parents[3]
PLACE_PREFIX = "rig"
PLACE_TAGS = {"mechanism": "precision", "kind": "virtual"}


class LabStartError(RuntimeError):
    """A process of the loopback lab did not come up; the message has its log's tail."""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started the lab dies (Linux prctl
    PR_SET_PDEATHSIG), so a killed test run leaves no coordinator, exporter or farm behind."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def places_yaml(places: dict[str, tuple[str, str]], tags: dict[str, str]) -> str:
    """The coordinator's places.yaml: each place (name -> (exporter, group)) matching every
    resource of that exporter's group, with `tags`."""
    lines = []
    for name, (exporter, group) in places.items():
        lines += ["%s:" % name, "  aliases: []", "  comment: ''", "  tags:"]
        lines += ["    %s: %s" % kv for kv in sorted(tags.items())] or ["    {}"]
        lines += ["  matches:", "  - exporter: %s" % exporter, "    group: %s" % group, "    cls: '*'",
                  "    name: null", "    rename: null"]
    return "\n".join(lines) + "\n"


class LoopbackLab:
    def __init__(self, work_dir: Path, rigs: int = 4, lab_venv: Path | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.rigs = rigs
        self.lab_venv = Path(lab_venv or REPO / ".venv-lab")
        self.tags = dict(tags or PLACE_TAGS)
        self.coordinator = "127.0.0.1:%d" % free_port()
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.farm_rigs: list[dict[str, Any]] = []
        self.places: list[str] = []
        self.hold_log = self.work_dir / "holds.jsonl"

    # ---- helpers for callers
    def bin(self, name: str) -> str:
        return str(self.lab_venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"LG_COORDINATOR": self.coordinator, "PUMPRIG_LAB_LOG": str(self.hold_log)})
        for k in ("LG_TOKEN", "LG_PLACE", "LG_ENV", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "PUMPCTL_HOME"):
            env.pop(k, None)
        env.update(extra)
        return env

    def pytest_argv(self, *args: str, spec: str | None = None) -> list[str]:
        """The lab venv's pytest on the HIL plugin with this lab's places (by tag by default)."""
        spec = spec or "labgrid:" + ",".join("%s=%s" % kv for kv in sorted(self.tags.items()))
        return [self.bin("python"), "-m", "pytest", "-p", "no:cacheprovider", "--rig", spec,
                "--lg-coordinator", self.coordinator, "--rig-lab-log", str(self.hold_log)] + list(args)

    def client(self, *args: str, place: str | None = None, check: bool = True) -> str:
        argv = [self.bin("labgrid-client"), "-x", self.coordinator] + (["-p", place] if place else []) + list(args)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self.env(),
                              stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise LabStartError("labgrid-client %s: %s" % (" ".join(args), (done.stderr or done.stdout).strip()[-500:]))
        return done.stdout

    # ---- life cycle
    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.work_dir / ("%s.log" % name), "wb")
        proc = subprocess.Popen(argv, cwd=str(cwd or self.work_dir), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if name == "farm" else log, stderr=log,
                                env=self.env(), start_new_session=True, preexec_fn=_die_with_parent)
        self.procs.append((name, proc, log))
        return proc

    def _tail(self, name: str) -> str:
        try:
            return (self.work_dir / ("%s.log" % name)).read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def start(self) -> "LoopbackLab":
        for exe in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client"):
            if not Path(self.bin(exe)).exists():
                raise LabStartError("%s not in %s: make the lab environment first (scripts/bootstrap --lab)"
                                    % (exe, self.lab_venv))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.hold_log.write_text("")
        self.places = ["%s%d" % (PLACE_PREFIX, i) for i in range(1, self.rigs + 1)]
        # the places are the coordinator's saved state (it reads places.yaml from its working
        # directory at start): no labgrid-client create / add-match / set-tags round trips
        (self.work_dir / "places.yaml").write_text(places_yaml(
            {p: ("loopback", "%s%d" % (GROUP_PREFIX, i)) for i, p in enumerate(self.places, 1)}, self.tags))
        try:
            self._spawn("coordinator", [self.bin("labgrid-coordinator"), "--listen", self.coordinator])
            farm = self._spawn("farm", [sys.executable, "-m", "pumpctl.lab.farm", "--rigs", str(self.rigs),
                                        "--dir", str(self.work_dir / "rigs"), "--exporter-config",
                                        str(self.work_dir / "exporter.yaml")])
            assert farm.stdout is not None
            line = farm.stdout.readline().decode()
            if not line.strip():
                raise LabStartError("the virtual-rig farm ended before it was ready:\n" + self._tail("farm"))
            self.farm_rigs = json.loads(line)["rigs"]
            self._wait_coordinator()
            self._spawn("exporter", [self.bin("labgrid-exporter"), "-c", self.coordinator, "-n", "loopback",
                                     "--hostname", "127.0.0.1", str(self.work_dir / "exporter.yaml")])
            self._wait_resources()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_coordinator(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        host, port = self.coordinator.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise LabStartError("labgrid-coordinator did not listen on %s within %.0f s:\n%s"
                                        % (self.coordinator, timeout_s, self._tail("coordinator")))
                time.sleep(0.1)

    def _wait_resources(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.client("resources", check=False)
            if sum(1 for line in out.splitlines() if "NetworkSerialPort" in line) >= self.rigs:
                return
            exporter = [p for n, p, _ in self.procs if n == "exporter"]
            if exporter and exporter[0].poll() is not None:
                raise LabStartError("labgrid-exporter exited with status %s:\n%s"
                                    % (exporter[0].returncode, self._tail("exporter")))
            if time.monotonic() > deadline:
                raise LabStartError("the exporter did not export %d rigs within %.0f s:\n%s"
                                    % (self.rigs, timeout_s, self._tail("exporter")))
            time.sleep(0.3)

    def stop(self) -> None:
        for name, proc, log in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15.0 if name == "farm" else 5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5.0)
            log.close()
        self.procs.clear()

    def __enter__(self) -> "LoopbackLab":
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
