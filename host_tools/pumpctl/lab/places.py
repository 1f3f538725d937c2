"""Reserve, acquire and release labgrid places through `labgrid-client`, with a guard process that releases a place when its holder dies, and the hold log.

    client = LabClient("127.0.0.1:20408")
    hold = client.take({"mechanism": "precision"}, log=HoldLog(path))   # reserve by tag, wait, acquire
    ...                                                                 # hold.place, hold.token
    client.give_back(hold, "session end")                               # release + cancel the reservation

Labgrid does the scheduling (reservations by tag and priority, one place per reservation,
`acquire` refused for a place already held); this module only drives it. A released place keeps
its reservation (state `allocated`) until cancelled or expired, so give_back cancels it too:
otherwise the place stays unavailable to others for a minute.

`python -m pumpctl.lab.places guard ...` is the guard: it polls the holder's pid and, when the
holder is gone without giving the place back (a pytest worker killed, crashed, or its host run
stopped), releases the place and cancels the reservation.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PumpError, UsageError

TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")     # labgrid.remote.common.TAG_KEY, anchored
TAG_VALUE = re.compile(r"^[a-z0-9_]+$")
DEFAULT_COORDINATOR = "127.0.0.1:20408"
CLIENT_TIMEOUT_S = 60.0


class LabError(PumpError):
    """The lab (coordinator, labgrid-client) refused or failed; the message says what and why."""


def parse_rig_spec(spec: str) -> dict[str, str]:
    """`--rig labgrid:...` -> reservation filter: `labgrid:PLACE` reserves that place by name,
    `labgrid:KEY=VALUE[,KEY=VALUE]` any place with those tags. UsageError names the bad part."""
    if not spec.startswith("labgrid"):
        raise UsageError("--rig %s: a lab rig is labgrid:PLACE or labgrid:KEY=VALUE[,KEY=VALUE]" % spec)
    body = spec[len("labgrid"):]
    if not body.startswith(":") or not body[1:].strip():
        raise UsageError("--rig %s: name the place or the tags (labgrid:PLACE, labgrid:mechanism=precision)" % spec)
    body = body[1:]
    if "=" not in body:
        if not re.match(r"^[A-Za-z0-9_.-]+$", body):
            raise UsageError("--rig labgrid:%s: a place name is letters, digits, '_', '.', '-'" % body)
        return {"name": body}
    out: dict[str, str] = {}
    for pair in body.split(","):
        k, sep, v = pair.strip().partition("=")
        if not sep or not TAG_KEY.match(k) or not TAG_VALUE.match(v):
            raise UsageError("--rig labgrid:%s: tag %r must be key=value, key [a-z][a-z0-9_]+, value [a-z0-9_]+"
                             % (body, pair))
        out[k] = v
    return out


def client_executable() -> str:
    """labgrid-client of this environment (next to the running Python), else on PATH."""
    here = Path(sys.executable).parent / "labgrid-client"
    if here.exists():
        return str(here)
    found = shutil.which("labgrid-client")
    if not found:
        raise LabError("labgrid-client not found: run in the lab environment (scripts/bootstrap --lab, then "
                       ".venv-lab/bin/python -m pytest ...)")
    return found


def port_of(resource: Any) -> str:
    """The pumpctl port (device path or pyserial URL) of a labgrid serial resource (by its
    class name, so this module needs no labgrid): NetworkSerialPort -> rfc2217:// or socket://."""
    cls = type(resource).__name__
    if cls == "NetworkSerialPort":
        scheme = {"rfc2217": "rfc2217", "raw": "socket"}.get(resource.protocol)
        if scheme is None:
            raise ValueError("NetworkSerialPort protocol = %r: must be rfc2217 or raw" % resource.protocol)
        return "%s://%s:%d" % (scheme, resource.host, int(resource.port))
    port = getattr(resource, "port", None)
    if not port:
        raise ValueError("%s has no device path yet (is the Pico plugged in? udev match: %s)"
                         % (cls, getattr(resource, "match", "?")))
    return str(port)


@dataclass
class Hold:
    """A place this process reserved and acquired."""

    place: str
    token: str
    filters: dict[str, str]
    acquired_at: float
    guard: subprocess.Popen[bytes] | None = None


class HoldLog:
    """Append-only JSON lines, one per acquire and release: who (worker, pid), which place, when
    (time.time()), why. Lines are written with one O_APPEND write each, so workers can share it."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def write(self, event: str, place: str, **extra: Any) -> None:
        if self.path is None:
            return
        rec = {"t": time.time(), "event": event, "place": place,
               "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "pid": os.getpid()}
        rec.update(extra)
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class LabClient:
    """labgrid-client against one coordinator (HOST:PORT)."""

    def __init__(self, coordinator: str | None = None) -> None:
        self.coordinator = coordinator or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR
        self.exe = client_executable()

    def run(self, *args: str, place: str | None = None, timeout_s: float = CLIENT_TIMEOUT_S) -> str:
        """Run one labgrid-client command; its stdout, or LabError with its own message."""
        argv = [self.exe, "-x", self.coordinator] + (["-p", place] if place else []) + list(args)
        env = dict(os.environ)
        env.pop("LG_TOKEN", None)
        env.pop("LG_PLACE", None)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LabError("labgrid-client %s: no answer from the coordinator %s within %.0f s"
                           % (" ".join(args), self.coordinator, timeout_s)) from None
        if done.returncode != 0:
            msg = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise LabError("labgrid-client %s%s: %s" % ("-p %s " % place if place else "", " ".join(args),
                                                        msg[-1] if msg else "exit status %d" % done.returncode))
        return done.stdout

    # ---- the lab's layout (an administrator's job; the test and the bench do it on loopback)
    def define_place(self, name: str, match: str, tags: dict[str, str]) -> None:
        """Create place `name` holding the resources `match` names (exporter/group/class/name
        with wildcards, e.g. `*/pumprig1/*`), tagged with `tags`."""
        self.run("create", place=name)
        self.run("add-match", match, place=name)
        if tags:
            self.run("set-tags", *["%s=%s" % kv for kv in sorted(tags.items())], place=name)

    def acquired_places(self) -> dict[str, str]:
        """place -> who holds it (host/user, '' when free), from `labgrid-client show` of each place."""
        out: dict[str, str] = {}
        for name in self.run("places").split():
            text = self.run("show", place=name)
            m = re.search(r"^\s*acquired:\s*(\S+)", text, re.M)
            out[name] = "" if m is None or m.group(1) == "None" else m.group(1)
        return out

    # ---- one holder
    def take(self, filters: dict[str, str], log: HoldLog | None = None, prio: float = 0.0,
             wait_s: float = 600.0, guard: bool = True) -> Hold:
        """Reserve a place matching `filters`, wait until labgrid allocates one, acquire it, and
        start the guard that gives it back if this process dies. LabError if none comes in `wait_s`."""
        pairs = ["%s=%s" % kv for kv in sorted(filters.items())]
        out = self.run("reserve", "--shell", "--prio", "%g" % prio, *pairs)
        m = re.search(r"LG_TOKEN=(\S+)", out)
        if m is None:
            raise LabError("labgrid-client reserve %s: no token in its answer (%r)" % (" ".join(pairs), out[-200:]))
        token = m.group(1)
        try:
            self.run("wait", token, timeout_s=wait_s)
            out = self.run("acquire", place="+" + token)
            m = re.search(r"acquired place (\S+)", out)
            if m is None:
                raise LabError("labgrid-client acquire +%s: no place named in its answer (%r)" % (token, out[-200:]))
        except BaseException:
            self._quiet("cancel-reservation", token)
            raise
        hold = Hold(m.group(1), token, dict(filters), time.time())
        if guard:
            hold.guard = self.start_guard(hold, log.path if log is not None else None)
        if log is not None:
            log.write("acquired", hold.place, token=token, filters=filters)
        return hold

    def give_back(self, hold: Hold, reason: str, log: HoldLog | None = None) -> None:
        """Release the place and cancel its reservation (both even if one fails); stop the guard."""
        if log is not None:
            log.write("released", hold.place, token=hold.token, reason=reason)
        errors = []
        for args, place in ((("release",), hold.place), (("cancel-reservation", hold.token), None)):
            try:
                self.run(*args, place=place)
            except LabError as exc:
                errors.append(str(exc))
        if hold.guard is not None and hold.guard.poll() is None:
            hold.guard.terminate()
            try:
                hold.guard.wait(5.0)
            except subprocess.TimeoutExpired:
                hold.guard.kill()
        hold.guard = None
        if errors:
            raise LabError("giving back place %s: %s" % (hold.place, "; ".join(errors)))

    def _quiet(self, *args: str, place: str | None = None) -> None:
        try:
            self.run(*args, place=place)
        except LabError:
            pass

    def start_guard(self, hold: Hold, log_path: Path | None = None) -> subprocess.Popen[bytes]:
        """The guard process (its own session, so a signal to this process group spares it);
        it writes its release to the hold log at `log_path`."""
        argv = [sys.executable, "-m", "pumpctl.lab.places", "guard", "--pid", str(os.getpid()),
                "--place", hold.place, "--token", hold.token, "--coordinator", self.coordinator]
        if log_path is not None:
            argv += ["--log", str(log_path)]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def guard_main(args: argparse.Namespace) -> int:
    """Wait for `--pid` to end; then release `--place` and cancel `--token` (holder died)."""
    from ..rigs.virtualrig import process_alive
    stop = {"now": False}

    def on_term(*_: Any) -> None:
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_term)
    while not stop["now"]:
        if not process_alive(args.pid):
            client = LabClient(args.coordinator)
            HoldLog(args.log).write("released", args.place, token=args.token, pid_gone=args.pid,
                                    reason="holder pid %d gone: released by its guard" % args.pid)
            # the place named through our reservation (+TOKEN), not by name: once the holder has
            # cancelled its reservation (after its own release), this matches nothing, so a guard
            # late by a poll can never release a place someone else has taken since
            client._quiet("release", "--kick", place="+" + args.token)
            client._quiet("cancel-reservation", args.token)
            return 0
        time.sleep(0.3)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pumpctl.lab.places")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("guard", help="release a place when its holder's process ends")
    g.add_argument("--pid", type=int, required=True)
    g.add_argument("--place", required=True)
    g.add_argument("--token", required=True)
    g.add_argument("--coordinator", required=True)
    g.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    return guard_main(args)


if __name__ == "__main__":
    sys.exit(main())


def hold_intervals(records: list[dict[str, Any]]) -> list[tuple[str, str, float, float, str]]:
    """(place, worker, acquired t, released t, release reason) of every hold in a hold log; a
    hold never given back ends at +inf with reason 'never released'."""
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[tuple[str, str, float, float, str]] = []
    for r in sorted(records, key=lambda r: r["t"]):
        key = (r["place"], r["token"])
        if r["event"] == "acquired":
            open_[key] = r
        elif r["event"] == "released" and key in open_:
            a = open_.pop(key)
            out.append((a["place"], a["worker"], a["t"], r["t"], r.get("reason", "")))
    for a in open_.values():
        out.append((a["place"], a["worker"], a["t"], float("inf"), "never released"))
    return sorted(out, key=lambda h: h[2])


def hold_problems(records: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a hold log: a place held twice at once, a worker holding two places
    at once, a hold never given back. [] when none."""
    problems = []
    holds = hold_intervals(records)
    for i, a in enumerate(holds):
        if a[3] == float("inf"):
            problems.append("place %s taken by %s at %.3f was never given back" % (a[0], a[1], a[2]))
        for b in holds[i + 1:]:
            if b[2] >= a[3]:
                continue
            if b[0] == a[0]:
                problems.append("place %s held twice at once: by %s from %.3f and by %s from %.3f"
                                % (a[0], a[1], a[2], b[1], b[2]))
            elif b[1] == a[1]:
                problems.append("worker %s held two places at once: %s and %s" % (a[1], a[0], b[0]))
    return problems
