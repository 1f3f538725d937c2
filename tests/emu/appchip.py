"""The application tier's chip: this firmware tree deployed to an emulated Pico with `pumpctl
deploy` (or booted from the cached flash image of the same tree), reset into the app, answering
hello. Prepared in a background thread from collection on (`WARMUP`), taken by test_app.py."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from pumpctl.deploy import Mpremote, deploy, pumpctl_home, reset_without_follow
from pumpctl.emurig import FLASH_FILE, REPO, EmuRig, write_emu_hw_dir
from pumpctl import programfile
from pumpctl.pump import Pump
from pumpctl.simsession import prepare_for_delivery

CONC_UG_ML = 2000


def tree_hash(hw_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "firmware").rglob("*.py")):
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    for p in sorted(hw_dir.glob("*.json")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


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
    cached = pumpctl_home() / "emu-flash" / (tree_hash(hw_dir) + ".img")
    t0 = time.monotonic()
    if cached.exists():
        shutil.copyfile(cached, rig_dir / FLASH_FILE)
        rig = EmuRig.start(rig_dir)
    else:
        rig = EmuRig.start(rig_dir, fresh=True)
        try:
            report = deploy(rig.port, hw_dir=hw_dir, timeout_s=900, log=lambda s: None, do_restart=False)
            rig.request("save_flash")
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            shutil.copyfile(rig_dir / FLASH_FILE, tmp)
            os.replace(tmp, cached)
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
    def __init__(self) -> None:
        self.figures: dict[str, float] = {}
        # 10 ug over 60 s (14.4 mg/day, 77x the basal); PUMP_EMU_LONG=1: the 50 ug screening bolus
        long = os.environ.get("PUMP_EMU_LONG") == "1"
        self.story: dict[str, Any] = {"dose_ng": 50_000 if long else 10_000, "duration_ms": 60_000}
        self._thread: threading.Thread | None = None
        self._rig: EmuRig | None = None
        self._error: BaseException | None = None
        self._dir: Path | None = None
        self._taken = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._dir = Path(tempfile.mkdtemp(prefix="emuapp-"))
        self._thread = threading.Thread(target=self._run, name="emu-app-chip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            assert self._dir is not None
            self._rig = prepare_chip(self._dir, self.figures, self.story)
        except BaseException as exc:      # handed to the fixture, which raises it
            self._error = exc

    def take(self) -> EmuRig:
        """The prepared chip (waits for it); raises what preparing it raised."""
        self.start()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._rig is not None
        self._taken = True
        if "deploy_note" in self.figures:
            warnings.warn("emu app tier: deployed this firmware tree (%s) in %.0f s wall; flash image cached"
                          % (self.figures.pop("deploy_note"), self.figures["deploy_wall_s"]))
        return self._rig

    def discard(self) -> None:
        """Session end: stop a chip no test took (e.g. -k deselected after collection)."""
        if self._thread is not None:
            self._thread.join(timeout=600)
        if self._rig is not None and not self._taken:
            self._rig.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


WARMUP = Warmup()
