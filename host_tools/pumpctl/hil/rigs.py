"""Rigs the HIL suite runs on, behind one interface: the virtual rig (image deployed once, a fresh clone per test) and a bench Pico on a serial port.

A `Rig` gives the suite what it cannot get through the pump's own protocol: the rig's time
(sim time on the virtual rig, host time on a bench rig), fault injection through a side channel
(or the operator), the boot count and reset causes, and a balance read-out where the rig has
one. Everything the suite checks about the pump itself goes through `pumpctl.pump.Pump`.

Other rig kinds (the emulated Pico, `--rig emu`) plug in through the `pytest_pumprig_make_rig` hook
(see hooks.py): they return an object with the same methods.
Units: rig time in seconds (float), off times and gaps in ms, volumes in nL, masses in grams.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import PumpError, RigTimeout, UsageError

# fault name -> (what it does, what the operator of a bench rig is asked to do, or "" when a
# bench rig cannot produce it even with an operator)
FAULTS: dict[str, tuple[str, str]] = {
    "occlude": ("close the outlet line", "Clamp the outlet tubing shut (pinch clamp) and press Enter."),
    "clear_occlusion": ("open the outlet line again", "Remove the clamp from the outlet tubing and press Enter."),
    "stall": ("driver error (DIAG high)", "Tie the TMC2209 DIAG line high (1 kOhm to 3V3) and press Enter."),
    "clear_stall": ("driver error cleared", "Remove the DIAG tie and press Enter."),
    # StallGuard is off (rp2hw writes SGTHRS = TCOOLTHRS = 0): DIAG says nothing of these two
    "jam": ("screw jammed: the motor skips, DIAG silent", "Block the syringe carriage by hand (jam the lead screw) and press Enter."),
    "clear_jam": ("screw free again", "Free the carriage and press Enter."),
    "slip": ("coupling slips: the motor turns, the screw does not", "Loosen the motor coupling's set screws and press Enter."),
    "clear_slip": ("coupling tight again", "Tighten the coupling's set screws and press Enter."),
    "empty_reservoir": ("plunger at the end stop", "Hold the reservoir end-stop switch closed and press Enter."),
    "clear_empty": ("release the end stop", "Release the end-stop switch and press Enter."),
    "press_button": ("press the patient bolus button", "Press the patient bolus button ONCE, then press Enter."),
    "power_cut": ("cut power at this instant", "Unplug the Pico's USB cable, wait 5 s, plug it back in, then press Enter."),
    "hang": ("stop the main loop so the watchdog must act", ""),
    "corrupt_state": ("overwrite both stored state slots with garbage", ""),
}

SIM_IMAGE_KEEP = ("main.py", "mechanism.json", "pinmap.json", "rigkey.bin", "build.json")
SIM_STATE_PREFIXES = ("state_", "prog_", "ev")


class FaultUnavailable(PumpError):
    """This rig cannot produce the fault on demand (the reason says why)."""


def _clean_rig_id(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
    return out.strip("-._")[:32] or "hil"


@dataclass
class DeployInfo:
    """What the plugin's deploy did (for the deploy test and the report)."""

    ok: bool
    error: str = ""
    log: list[str] = field(default_factory=list)
    files: int = 0
    verified: int = 0
    compiled: bool = False
    reason: str = ""
    rig_id: str = ""
    key_created: bool = False
    digest: str = ""          # sha256 over the deployed files' (path, sha256) pairs: the build id
    wall_s: float = 0.0
    report: Any = field(default=None, repr=False)   # pumpctl.deploy.DeployReport when ok


def deploy_rig(port: str, rig_id: str | None, do_restart: bool, timeout_s: float = 60.0,
               hw_dir: Path | None = None, mechanism: str | None = None) -> DeployInfo:
    """Run `pumpctl deploy` (pumpctl.deploy.deploy) on `port` and summarise it; never raises
    a PumpError (the failure is in `error`, for the deploy test to report)."""
    from .. import deploy as deploymod
    info = DeployInfo(ok=False)
    t0 = time.monotonic()
    try:
        rep = deploymod.deploy(port, hw_dir=hw_dir or deploymod.DEFAULT_HW_DIR, do_restart=do_restart,
                               rig_id=rig_id, timeout_s=timeout_s,
                               log=lambda line: info.log.append("%6.1f s  %s" % (time.monotonic() - t0, line)),
                               mechanism=mechanism)
    except PumpError as exc:
        info.error = "%s: %s" % (type(exc).__name__, exc)
        info.wall_s = time.monotonic() - t0
        return info
    info.ok = True
    info.report = rep
    info.files = len(rep.files)
    info.verified = rep.verified
    info.compiled = rep.compiled
    info.reason = rep.reason
    info.rig_id = rep.rig_id
    info.key_created = rep.key_created
    h = hashlib.sha256()
    for f in sorted(rep.files, key=lambda f: f.remote):
        h.update(("%s %s\n" % (f.remote, f.sha256())).encode())
    info.digest = h.hexdigest()[:16]
    info.wall_s = time.monotonic() - t0
    return info


class Rig:
    """Interface of a rig under test. Subclasses: SimRig, BenchRig (and any hook's rig)."""

    kind = "?"
    port = ""
    rig_id = ""
    time_scale = 1.0
    deploy: DeployInfo | None = None
    pump_timeout_s = 5.0
    """Wall seconds a Pump on this rig waits for each answer before it retransmits (fixtures
    and helpers open every Pump with it)."""

    def now_s(self) -> float:
        """The rig's time in seconds (same clock as its firmware's ticks, any origin)."""
        raise NotImplementedError

    def can(self, fault: str) -> str:
        """'' if `fault` can be produced on demand, else the reason it cannot (UsageError for a
        name not in FAULTS). Rigs with a side channel for every fault keep this."""
        if fault not in FAULTS:
            raise UsageError("fault = %r: unknown (one of %s)" % (fault, ", ".join(FAULTS)))
        return ""

    def fault(self, fault: str, **args: Any) -> None:
        """Produce `fault` (a key of FAULTS); FaultUnavailable when this rig cannot."""
        raise NotImplementedError

    def boots(self) -> int:
        """How many times the firmware has booted (0 if the rig cannot tell)."""
        return 0

    def pass_time(self, rig_s: float, wall_s: float) -> None:
        """Let about `rig_s` of rig time pass before the next poll; `wall_s` is what that is
        in wall time at the rig's pace. A rig that can wait on its own clock does (an emulated
        Pico runs at 0.1-3x real time depending on load and what the firmware does, so a wall
        sleep polled it far more often, in rig time, than the check asked); others sleep."""
        time.sleep(wall_s)

    def reset_causes(self) -> list[int]:
        """pumphw.base RESET_* of every boot the rig saw, oldest first ([] if unknown)."""
        return []

    def wait_boot(self, boots: int, timeout_s: float = 20.0) -> None:
        """Wait until the firmware has booted `boots` times and runs."""
        raise NotImplementedError

    def held(self) -> Any:
        """A context in which the rig's clock stands still while the host talks to it (a
        virtual rig: its requests land at one sim time; other rigs: their clock runs on)."""
        import contextlib
        return contextlib.nullcontext()

    def balance_reading(self) -> tuple[float, float] | None:
        """(rig time s, gross mass g) from a balance built into the rig, or None."""
        return None

    def world(self) -> dict[str, Any]:
        """Physical read-outs (pulses, pressure ...) where the rig has them, else {}."""
        return {}

    @contextlib.contextmanager
    def still(self) -> Iterator[None]:
        """Reads inside the block see one instant of the rig where it can stop its clock (a
        virtual rig holds it: a status and a world() read then agree, at any time scale; the
        firmware answers at the held time plus its own modelled costs). A bench rig runs on."""
        yield

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "port": self.port, "rig_id": self.rig_id,
                "time_scale": "max" if self.time_scale == "max" else "%g" % self.time_scale}

    def stop(self) -> None:
        """Release the rig (stop a virtual rig; a bench rig stays powered)."""


# ------------------------------------------------------------------------------------ virtual rig
class SimImage:
    """The firmware image deployed once per session with `pumpctl deploy` to a virtual rig at
    time scale 1 (a Pico's pace), then copied to a fresh flash directory for every test rig.

    Deploying at scale 1 matters: the app arms the watchdog at boot and an mpremote session
    stops the main loop, so the rig resets after the watchdog time (5 s); at 1000x that is
    the supervisor's 300 ms real-time floor, too short for any mpremote session.
    """

    def __init__(self, base: Path, deploy: bool = True) -> None:
        from ..rigs.virtualrig import VirtualRig
        self.base = base
        self.flash = base / "image"
        self.rig_id = _clean_rig_id("hil-image-%d" % os.getpid())
        rig_dir = base / "deploy-rig"
        rig = VirtualRig.start(rig_dir, time_scale=1.0, fresh=True, name=self.rig_id)
        try:
            rig.wait_firmware(1, timeout_s=20)
            if deploy:
                self.deploy = deploy_rig(rig.port, self.rig_id, do_restart=False)
            else:
                self.deploy = DeployInfo(ok=False, error="deploy skipped (--no-deploy)")
        finally:
            rig.stop()
        shutil.copytree(rig_dir / "flash", self.flash, ignore=shutil.ignore_patterns("__pycache__"))
        for p in self.flash.iterdir():
            if p.is_file() and p.name.startswith(SIM_STATE_PREFIXES):
                p.unlink()
        from .. import keys
        key_file = self.flash / "rigkey.bin"
        self.key = keys.load_key(self.rig_id)
        if self.key is None or not key_file.exists():
            # deploy failed: provision the key as deploy would, so the rest of the suite runs;
            # the deploy test reports the failure
            self.key = os.urandom(32)
            key_file.write_bytes(self.key)
            keys.save_key(self.rig_id, self.key)


class SimRig(Rig):
    """A virtual rig started for one test from the session image (fresh flash, fresh world)."""

    kind = "sim"

    def __init__(self, image: SimImage, rig_dir: Path, rig_id: str, time_scale: float | str,
                 mechanism: str | None = None) -> None:
        from .. import keys, mechanisms
        from ..rigs.virtualrig import VirtualRig
        self.image = image
        self.deploy = image.deploy
        self.rig_dir = rig_dir
        self.rig_id = rig_id
        self.time_scale = time_scale
        self.mechanism = mechanism or mechanisms.DEFAULT
        self._still_depth = 0              # nested still() blocks open (the clock held while > 0)
        rig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(image.flash, rig_dir / "flash")
        if self.mechanism != mechanisms.DEFAULT:
            # the session image with this mechanism's file where deploy --mechanism puts it
            # (the deploy of it is tested in tests/cli; the build record stays the image's)
            shutil.copyfile(mechanisms.path(self.mechanism), rig_dir / "flash" / mechanisms.DEVICE_FILE)
        keys.save_key(rig_id, image.key)
        self.vr = VirtualRig.start(rig_dir, time_scale=time_scale, fresh=False, name=rig_id,
                                   mechanism=self.mechanism)
        self.port = self.vr.port
        self.vr.wait_firmware(1, timeout_s=20)

    def now_s(self) -> float:
        return self.vr.world()["sim_us"] / 1e6

    def fault(self, fault: str, **args: Any) -> None:
        self.can(fault)
        vr = self.vr
        if fault == "occlude":
            vr.fault("occlude")
        elif fault == "clear_occlusion":
            vr.fault("unocclude")
        elif fault == "stall":
            vr.fault("stall")
        elif fault == "clear_stall":
            vr.fault("unstall")
        elif fault in ("jam", "slip"):
            vr.fault(fault)
        elif fault in ("clear_jam", "clear_slip"):
            vr.fault("un" + fault[6:])
        elif fault == "empty_reservoir":
            vr.fault("empty")
        elif fault == "clear_empty":
            # a full syringe of this rig's mechanism unless told (20 mL, or 1 mL on the precision drive)
            nl = args.get("nl")
            vr.fault("reservoir", **({} if nl is None else {"nl": int(nl)}))
        elif fault == "press_button":
            vr.fault("button", count=int(args.get("count", 1)), gap_ms=int(args.get("gap_ms", 1000)))
        elif fault == "power_cut":
            boots = self.boots()
            vr.power_cut(off_ms=int(args.get("off_ms", 0)))
            if args.get("wait", True):
                self.wait_boot(boots + 1)
        elif fault == "hang":
            vr.fault("hang")
        elif fault == "corrupt_state":
            boots = self.boots()
            vr.hold(vr.sim_us())                  # the clock waits (a 'max' rig would run on)
            vr.power_cut(off_ms=10 * 86_400_000)  # down until restarted below
            for name in ("state_a.bin", "state_b.bin"):
                p = vr.flash_dir / name
                if p.exists():
                    data = bytearray(p.read_bytes())
                    for i in range(0, len(data), 7):
                        data[i] ^= 0x5A
                    p.write_bytes(bytes(data))
            vr.restart()
            vr.hold(None)
            self.wait_boot(boots + 1)

    def boots(self) -> int:
        return int(self.vr.world()["boots"])

    def reset_causes(self) -> list[int]:
        return [int(r["cause"]) for r in self.vr.world()["reset_log"]]

    def wait_boot(self, boots: int, timeout_s: float = 20.0) -> None:
        self.vr.wait_firmware(boots, timeout_s=timeout_s)

    def held(self) -> Any:
        return self.still()

    def balance_reading(self) -> tuple[float, float]:
        sim_ms, grams = self.vr.balance()
        return sim_ms / 1000.0, grams

    def world(self) -> dict[str, Any]:
        return self.vr.world()

    @contextlib.contextmanager
    def still(self) -> Iterator[None]:
        """The clock held for the block, nested blocks inside the outermost one (the program
        fixture holds it too). Inside, the rig's time moves only by the test's waits on the rig
        clock (pass_time: run to exactly that time, held again), so a check reads the rig at
        the times it names at any pace: unpaced, a free-running rig ran on by up to a minute
        of sim time in each host round trip."""
        if not self._still_depth:
            self.vr.hold(self.vr.sim_us())     # lands at the firmware's time, never in its past
        self._still_depth += 1
        try:
            yield
        finally:
            self._still_depth -= 1
            if not self._still_depth:
                self.vr.hold(None)

    def pass_time(self, rig_s: float, wall_s: float) -> None:
        """Held (inside still()): let exactly rig_s of sim time pass and hold again; else a
        wall-time sleep while the clock runs free."""
        if not self._still_depth:
            time.sleep(wall_s)
            return
        from ..rigs.virtualrig import poll_scale
        w = self.vr.world()
        t = max(int(w["sim_us"]), int(w["hold_us"])) + max(1, int(rig_s * 1e6))
        self.vr.run_until(t, timeout_s=120.0 + 3 * rig_s / poll_scale(self.time_scale))

    def describe(self) -> dict[str, str]:
        d = super().describe()
        w = self.vr.world()
        d.update({"kind": "virtual rig (micropython unix port on a pty)", "rig_dir": str(self.rig_dir),
                  "true_pl_per_step": str(w.get("pl_per_step", "?"))})
        return d

    def stop(self) -> None:
        self.vr.stop()


# ------------------------------------------------------------------------------------ bench rig
class BenchRig(Rig):
    """A real Pico on a serial port. Faults it cannot make itself go to the operator (when
    `operator` is given: a function showing an instruction and waiting for Enter) or are
    unavailable. `hang` and `corrupt_state` are made through mpremote (they need no hands)."""

    kind = "bench"

    def __init__(self, port: str, operator: Callable[[str], None] | None, deploy: DeployInfo | None,
                 rig_id: str) -> None:
        self.port = port
        self.operator = operator
        self.deploy = deploy
        self.rig_id = rig_id
        self.time_scale = 1.0
        self._boots_seen = 0

    def now_s(self) -> float:
        return time.monotonic()

    def can(self, fault: str) -> str:
        super().can(fault)
        if fault in ("hang", "corrupt_state"):
            return ""
        if self.operator is None:
            return ("bench rig: %s needs the operator (%s); run with --operator to be asked"
                    % (fault, FAULTS[fault][0]))
        return ""

    def _mpremote(self, code: str, what: str, timeout_s: float = 30.0) -> None:
        from ..deploy import Mpremote
        try:
            Mpremote(self.port, timeout_s).exec(code, what)
        except (PumpError, RigTimeout):
            pass   # the reset drops the USB link before mpremote sees the end of the exec

    def fault(self, fault: str, **args: Any) -> None:
        why = self.can(fault)
        if why:
            raise FaultUnavailable(why)
        if fault == "hang":
            # stop the application (Ctrl-C to the REPL) and block: nothing feeds the watchdog
            self._mpremote("import time\ntime.sleep(30)", "stopping the main loop (watchdog test)", 20.0)
            time.sleep(3.0)
            return
        if fault == "corrupt_state":
            self._mpremote(BENCH_CORRUPT_CODE, "corrupting the stored state")
            time.sleep(3.0)
            return
        assert self.operator is not None
        self.operator(FAULTS[fault][1])
        if fault == "power_cut":
            time.sleep(2.0)

    def wait_boot(self, boots: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.port):
            if time.monotonic() > deadline:
                raise RigTimeout("bench rig on %s did not come back within %.0f s" % (self.port, timeout_s))
            time.sleep(0.2)
        time.sleep(1.0)

    def describe(self) -> dict[str, str]:
        d = super().describe()
        d["kind"] = "bench rig (Raspberry Pi Pico on %s)" % self.port
        d["operator"] = "yes" if self.operator else "no (faults needing hands are skipped)"
        return d


def python_info() -> str:
    return "Python %s" % sys.version.split()[0]


# ------------------------------------------------------------------------------------ emulated Pico
EMU_NO_FLASH_CACHE = "PUMPCTL_EMU_NO_FLASH_CACHE"
"""Set to 1: `--rig emu` deploys to a fresh chip even when a cached flash image of the build exists."""


class EmuHilRig(Rig):
    """The official RP2040 MicroPython image in rp2040py with the pump on its pins (`--rig emu`),
    deployed once per session with `pumpctl deploy` and shared by every test (a boot costs
    ~30 s of wall time). Faults go through the emulator's side channel, so none needs hands.
    Rig time is the chip's emulated time; idle, it runs at about real time, busy code at ~1/35,
    so this rig suits seconds-to-minutes checks (select them with -k), not 24 h runs.
    """

    kind = "emu"
    shared = True
    pump_timeout_s = 60.0
    """Busy firmware code runs at ~1/35-1/45 of the chip's speed here: a refill (state save
    and log append in littlefs) took 0.65 emulated s = 34 s of wall time on the 2-core machine,
    where 3 tries of the default 5 s gave up on a healthy chip."""

    def __init__(self, base: Path, deploy: bool = True, mechanism: str | None = None) -> None:
        from .. import mechanisms
        from ..rigs.emu import flashcache
        from ..rigs.emu.image import find_image
        from ..rigs.emu.rigdir import write_emu_hw_dir
        self.mechanism = mechanism or mechanisms.DEFAULT
        # the mechanism's own chip (its own flash, hw/ and physics), deployed with that file
        self._deploy_mechanism = None if self.mechanism == mechanisms.DEFAULT else self.mechanism
        rig_dir = base / ("emu" if self._deploy_mechanism is None else "emu-" + self.mechanism)
        rig_dir.mkdir(parents=True, exist_ok=True)
        self.rig_dir = rig_dir
        self.time_scale = 1.0
        self.setup_wall_s: dict[str, float] = {}
        self.flash_source = "fresh flash (--no-deploy)"
        self.deploy: DeployInfo | None = None
        self.hello_build = ""      # what the chip's hello reported, once booted
        hw_dir = write_emu_hw_dir(rig_dir, mechanism=self._deploy_mechanism)
        image_sha = find_image(None)[1].sha256
        entry = None
        if deploy and os.environ.get(EMU_NO_FLASH_CACHE) != "1":
            t0 = time.monotonic()
            entry = flashcache.lookup(image_sha, hw_dir, mechanism=self._deploy_mechanism)
            self.setup_wall_s["cache lookup"] = time.monotonic() - t0
        if entry is not None:
            try:
                self._boot_cached(entry)
                return
            except flashcache.StaleFlash as exc:
                # evicted: the cache named a build the chip does not run; deploy as if cold
                self.flash_source = str(exc)
        self._boot_deployed(hw_dir, image_sha, deploy)

    def _start(self, fresh: bool) -> None:
        from ..rigs.emu.rig import EmuRig
        t0 = time.monotonic()
        self.emu = EmuRig.start(self.rig_dir, fresh=fresh, mechanism=self._deploy_mechanism)
        self.setup_wall_s["start"] = time.monotonic() - t0
        self.port = self.emu.port

    def _wait_hello(self, timeout_s: float = 300.0) -> Any:
        from ..pump import Pump
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            try:
                with Pump.open(self.port, timeout_s=30) as p:
                    h = p.hello()
                break
            except PumpError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.rig_id = h.rig_id
        self.hello_build = "%s build %s" % (h.firmware_version, h.build_hash)
        self.setup_wall_s["boot to hello"] = time.monotonic() - t0
        if h.mechanism != self.mechanism:
            # the rig says which mechanism it runs (the fixture trusts it): its firmware must agree,
            # deployed here or booted from a cached flash
            raise PumpError("emulated Pico made for mechanism %s answers hello with mechanism %s"
                            % (self.mechanism, h.mechanism))
        return h

    def _boot_cached(self, entry: Any) -> None:
        """Boot a copy of the flash a deploy of this very build left (rigs/emu/flashcache.py);
        StaleFlash (rig stopped) if the booted firmware reports another build."""
        from ..rigs.emu import flashcache
        from ..rigs.emu.rigdir import FLASH_FILE
        t0 = time.monotonic()
        shutil.copyfile(entry.path, self.rig_dir / FLASH_FILE)
        entry.place_flash_id(self.rig_dir)
        entry.provision_key()
        self._start(fresh=False)
        placed_s = time.monotonic() - t0
        try:
            h = self._wait_hello()
            flashcache.check_booted(entry, h.build_hash)
        except BaseException:
            self.emu.stop()
            raise
        m = entry.meta
        self.flash_source = entry.describe()
        self.deploy = DeployInfo(ok=True, files=int(m["files"]), verified=int(m["verified"]),
                                 compiled=bool(m.get("compiled")), reason=entry.describe(),
                                 rig_id=str(m["rig_id"]), digest=entry.build, wall_s=placed_s,
                                 log=["flash: " + entry.describe(), "hello reports build %s" % h.build_hash])

    def _boot_deployed(self, hw_dir: Path, image_sha: str, deploy: bool) -> None:
        """A fresh chip, `pumpctl deploy` without restart, the flash saved into the cache (no
        application state in it yet), then the reset into the application."""
        from ..deploy import Mpremote, reset_without_follow
        from ..rigs.emu import flashcache
        from ..rigs.emu.rigdir import FLASH_FILE
        self._start(fresh=True)
        try:
            if deploy:
                t0 = time.monotonic()
                self.deploy = deploy_rig(self.port, None, do_restart=False, timeout_s=900.0, hw_dir=hw_dir,
                                         mechanism=self._deploy_mechanism)
                self.setup_wall_s["deploy"] = time.monotonic() - t0
                if self.deploy.ok:
                    self.emu.request("save_flash")
                    entry = flashcache.store(self.rig_dir / FLASH_FILE, image_sha, self.deploy.report,
                                             self.deploy.wall_s)
                    self.flash_source = ("deployed to a fresh chip in %.0f s; flash cached as %s"
                                         % (self.deploy.wall_s, entry.path.name))
                    reset_without_follow(Mpremote(self.port))
                else:
                    self.flash_source = "deploy failed (not cached): " + self.deploy.error
            self._wait_hello()
        except BaseException:
            self.emu.stop()
            raise

    def _status(self) -> dict[str, Any]:
        return self.emu.request("status")

    def now_s(self) -> float:
        return self._status()["t_ns"] / 1e9

    def fault(self, fault: str, **args: Any) -> None:
        self.can(fault)
        req = self.emu.request
        if fault in ("occlude", "clear_occlusion"):
            req("occlude", on=fault == "occlude")
        elif fault in ("stall", "clear_stall"):
            req("stall", on=fault == "stall")
        elif fault in ("jam", "clear_jam", "slip", "clear_slip"):
            req(fault.replace("clear_", ""), on=not fault.startswith("clear_"))
        elif fault == "empty_reservoir":
            req("empty", on=True)
        elif fault == "clear_empty":
            # a full syringe of this rig's mechanism unless told, as on the virtual rig
            nl = args.get("nl")
            req("empty", on=False, **({} if nl is None else {"nl": int(nl)}))
        elif fault == "press_button":
            req("press", count=int(args.get("count", 1)), gap_ms=int(args.get("gap_ms", 1000)))
        elif fault == "power_cut":
            boots = self.boots()
            # off time in emulated time (the rig's clock jumps), not in wall seconds
            req("power_cut", after_ms=0, off_ms=int(args.get("off_ms", 0)))
            if args.get("wait", True):
                self.wait_boot(boots + 1)
        elif fault == "hang":
            req("hang")
        elif fault == "corrupt_state":
            boots = self.boots()
            BenchRig._mpremote(self, BENCH_CORRUPT_CODE, "corrupting the stored state")  # type: ignore[arg-type]
            self.wait_boot(boots + 1)

    def pass_time(self, rig_s: float, wall_s: float) -> None:
        """Wait on the chip's own clock (the side channel's `wait`, emulated ms): each poll of a
        check then lands every `rig_s` of rig time however fast the emulator runs, and the
        firmware spends its emulated CPU on the pump rather than on answering polls."""
        ms = int(min(max(rig_s, 0.001), 60.0) * 1000)
        self.emu.request("wait", ms=ms, timeout=ms / 1000.0 * 200 + 60)

    def boots(self) -> int:
        st = self._status()
        return int(st["boots"]) + len(st["chip_resets"])

    def reset_causes(self) -> list[int]:
        """Power-ons, then every chip reset in order (watchdog timeouts vs forced reboots)."""
        st = self._status()
        causes = [0] * int(st["boots"])
        for r in st["chip_resets"]:
            causes.append(1 if r.get("reason") == 1 else 2)    # REASON.TIMER -> watchdog, else soft
        return causes

    def wait_boot(self, boots: int, timeout_s: float = 240.0) -> None:
        """Wait until the chip has booted `boots` times and the app answers hello."""
        from ..pump import Pump
        deadline = time.monotonic() + max(timeout_s, 240.0)    # a boot is ~30 s of wall time
        while self.boots() < boots:
            if time.monotonic() > deadline:
                raise RigTimeout("emulated Pico: boot %d not seen within %.0f s" % (boots, timeout_s))
            time.sleep(0.2)
        while True:
            try:
                Pump.open(self.port, timeout_s=30).close()
                return
            except PumpError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def world(self) -> dict[str, Any]:
        st = self._status()
        out = {"steps": st["steps"], "inputs": st["inputs"], "enabled": st["enabled"],
               "pio_backlog_drops": st["pio_backlog_drops"]}
        phys = (st.get("inputs") or {}).get("physics") or {}
        for key in ("skipped", "plunger_steps"):     # the model behind the pins, as on the virtual rig
            if key in phys:
                out[key] = phys[key]
        return out

    def describe(self) -> dict[str, str]:
        d = super().describe()
        st = self._status()
        d.update({"kind": "emulated Pico (MicroPython %s in rp2040py)" % st["version"],
                  "mechanism": str(st.get("mechanism")),
                  "image": st["image_label"], "rig_dir": str(self.rig_dir), "flash": self.flash_source,
                  "setup_wall_s": ", ".join("%s %.0f" % kv for kv in self.setup_wall_s.items())})
        return d

    def stop(self) -> None:
        self.emu.stop()


BENCH_CORRUPT_CODE = ("import machine\nfor n in ('state_a.bin', 'state_b.bin'):\n"
                      "    try:\n        d = bytearray(open(n, 'rb').read())\n    except OSError:\n        continue\n"
                      "    for i in range(0, len(d), 7):\n        d[i] ^= 0x5A\n"
                      "    f = open(n, 'wb'); f.write(d); f.close()\nmachine.reset()")
