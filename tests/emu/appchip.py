"""The application tier's chip: this firmware tree deployed to an emulated Pico with `pumpctl
deploy` (or booted from the cached flash image of the same build, pumpctl.rigs.emu.flashcache),
reset into the app, answering hello. Prepared in a background thread from collection on (`WARMUP`), taken by test_app.py."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from pumpctl.deploy import Mpremote, deploy, pumpctl_home, reset_without_follow
from pumpctl.rigs.emu import flashcache
from pumpctl.rigs.emu.image import find_image
from pumpctl.rigs.emu.rigdir import FLASH_FILE, REPO, write_emu_hw_dir
from pumpctl.rigs.emu.rig import EmuRig
from pumpctl import programfile
from pumpctl.pump import Pump
from pumpctl.rigs.simsession import prepare_for_delivery

CONC_UG_ML = 2000


def open_pump(rig: EmuRig, timeout: float = 180.0) -> Pump:
    """Pump.open once the application answers hello (raises after `timeout` wall seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Pump.open(rig.port, timeout_s=30)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def prepare_chip(rig_dir: Path, figures: dict[str, float], story: dict[str, Any]) -> EmuRig:
    """Deploy (or boot the cached image), note what boot left (EN, alarms, status), make the
    pump ready and start the long bolus of `story` (dose_ng, duration_ms): it runs in emulated
    time while the tests collected before this tier run."""
    hw_dir = write_emu_hw_dir(rig_dir)
    image_sha = find_image(None)[1].sha256
    entry = flashcache.lookup(image_sha, hw_dir)
    t0 = time.monotonic()
    if entry is not None:
        shutil.copyfile(entry.path, rig_dir / FLASH_FILE)
        entry.provision_key()
        rig = EmuRig.start(rig_dir, owner_pid=os.getppid())   # the pytest run, not this child
    else:
        rig = EmuRig.start(rig_dir, fresh=True, owner_pid=os.getppid())
        try:
            report = deploy(rig.port, hw_dir=hw_dir, timeout_s=900, log=lambda s: None, do_restart=False)
            rig.request("save_flash")
            flashcache.store(rig_dir / FLASH_FILE, image_sha, report, time.monotonic() - t0)
            figures["deploy_wall_s"] = time.monotonic() - t0
            figures["deploy_note"] = report.reason   # type: ignore[assignment]
            t0 = time.monotonic()
            reset_without_follow(Mpremote(rig.port))
        except BaseException:
            rig.stop()
            raise
    try:
        with open_pump(rig) as pump:
            figures["reset_to_hello_wall_s"] = time.monotonic() - t0
            if entry is not None:
                flashcache.check_booted(entry, pump.hello().build_hash)
            story["boot_status"] = rig.request("status")
            story["boot_alarms"] = {a.code for a in pump.alarms()}
            story["boot_en_log"] = rig.request("en_log")["en_log"]
            ready(pump)
            story["pl"] = pump.calibration().pl_per_step
            story["s0"] = pump.status()
            story["t_start_ns"] = rig.request("status")["t_ns"]
            story["since"] = rig.request("edges", since=0)["count"]
            pump.bolus(story["dose_ng"], story["duration_ms"])
            story["bolus_sent_wall"] = time.monotonic()
    except BaseException:
        rig.stop()
        raise
    return rig


def ready(pump: Pump) -> None:
    """Alarms acknowledged, clock set, reservoir filled, the 186 ug/day program running."""
    prepare_for_delivery(pump, CONC_UG_ML, log=lambda s: None)
    program = programfile.load(REPO / "examples" / "programs" / "continuous_186.toml")
    pump.upload_program(program.encode(), confirm=lambda review: True)


class Warmup:
    """Prepares the chip in a child process (`python -m tests.emu.appchip DIR`), niced, from
    collection on. A child, not a thread: tests before the tier monkeypatch PUMPCTL_HOME, and a
    thread sharing os.environ stored the deploy's key in one test's home and looked for it in
    another's. Niced: the emulator then takes only the CPU the earlier tests leave (the virtual
    rig's sim-time watchdog must not be starved by it)."""

    def __init__(self) -> None:
        self.figures: dict[str, float] = {}
        # 10 ug over 60 s (14.4 mg/day, 77x the basal); PUMP_EMU_LONG=1: the 50 ug screening bolus
        long = os.environ.get("PUMP_EMU_LONG") == "1"
        self.story: dict[str, Any] = {"dose_ng": 50_000 if long else 10_000, "duration_ms": 60_000}
        self._proc: subprocess.Popen[bytes] | None = None
        self._rig: EmuRig | None = None
        self._dir: Path | None = None
        self._taken = False

    def start(self) -> None:
        if self._proc is not None:
            return
        self._dir = Path(tempfile.mkdtemp(prefix="emuapp-"))
        (self._dir / "story.json").write_text(json.dumps(self.story))
        with open(self._dir / "warmup.log", "wb") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "tests.emu.appchip", str(self._dir)],
                                          cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)

    def take(self) -> EmuRig:
        """The prepared chip (waits for it); raises with the child's own words if it failed."""
        self.start()
        assert self._proc is not None and self._dir is not None
        rc = self._proc.wait()
        result = self._dir / "result.json"
        if rc != 0 or not result.exists():
            tail = (self._dir / "warmup.log").read_text(errors="replace").strip().splitlines()[-15:]
            raise AssertionError("preparing the emulated Pico failed (exit %s):\n%s" % (rc, "\n".join(tail)))
        doc = json.loads(result.read_text())
        self.figures.update(doc["figures"])
        self.story.update(doc["story"])
        self._rig = EmuRig.attach(self._dir / "rig")
        self._taken = True
        if "deploy_note" in self.figures:
            warnings.warn("emu app tier: deployed this firmware tree (%s) in %.0f s wall; flash image cached"
                          % (self.figures.pop("deploy_note"), self.figures["deploy_wall_s"]))
        return self._rig

    def discard(self) -> None:
        """Session end: stop a chip no test took (e.g. -k deselected after collection)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.wait(timeout=900)
        if self._dir is not None and not self._taken and (self._dir / "rig" / "emu.json").exists():
            try:
                EmuRig.attach(self._dir / "rig").stop()
            except Exception:
                pass
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


WARMUP = Warmup()


def main(argv: list[str]) -> int:
    """Child of Warmup: prepare the chip in DIR/rig, write DIR/result.json, leave it running."""
    os.nice(10)
    base = Path(argv[0])
    story = json.loads((base / "story.json").read_text())
    figures: dict[str, Any] = {}
    (base / "rig").mkdir(exist_ok=True)
    prepare_chip(base / "rig", figures, story)
    out = dict(story)
    out["boot_alarms"] = sorted(story["boot_alarms"])
    out["s0"] = dataclasses.asdict(story["s0"])
    tmp = base / "result.json.tmp"
    tmp.write_text(json.dumps({"figures": figures, "story": out}))
    os.replace(tmp, base / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
