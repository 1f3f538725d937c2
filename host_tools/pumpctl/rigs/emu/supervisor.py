"""The emulated Pico rig: the MicroPython RP2040 image (official, or self-built by opt-in) in rp2040py, wired to the pump.

A supervisor process (`python -m pumpctl.rigs.emu.supervisor serve`, started by `pumpctl emu start`) boots the
official image in the cycle-level RP2040 emulator, serves its USB-CDC console on a pseudo-
terminal that stays the same across resets and power cuts (the port to give `pumpctl` and
`mpremote`), keeps the chip's littlefs flash in `<rig dir>/flash.img`, and wires the pins of
`hw/pinmap.json` to the pump: STEP/DIR/EN into a driver model (every STEP edge is counted with
its DIR level, EN level and emulated time), DIAG out of it, the reservoir end stop, the patient
bolus button (pressed with contact bounce), the pressure sensor on its ADC channel, buzzer and
LEDs observed. Physics comes from `pumpsim.model` through `emuphys.EmuPhysics`.

Faults and observations go through a side channel (JSON lines on the UNIX socket
`<rig dir>/ctl.sock`), never through the pump's own serial protocol. Host code uses `EmuRig`.
Times on the side channel are emulated: `t_ns` is nanoseconds of emulated chip time since the
supervisor's first boot (the clock restarts at 0 for each boot; `boot_ns` says where).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..virtualrig import process_alive
from .flashid import answer_unique_id, flash_id
from .image import ImageInfo, check_image
from .rigdir import (
    BOOT_TIMEOUT_S,
    FLASH_FILE,
    PINMAP_PATH,
    SOCKET_FILE,
    STATE_FILE,
    _write_state,
    default_rig_dir,
    emu_mechanism_path,
    load_pinmap,
)
from .usb import _PtyBridge
from .wiring import EmuWiring, PioPacer, RealTimeCeiling

HANG_ADDR = 0x20040000
"""SRAM address (SCRATCH_X, core 1's stack: unused by single-core MicroPython) of the `hang`
fault's endless `wfi; b` loop."""

POWER_OFF_MAX_MS = 7 * 86_400_000
"""Longest emulated time without power a power_cut may stand for (7 days)."""


class EmuSupervisor:
    """Owns the emulated chip, its flash image, the pty and the side channel."""

    def __init__(self, rig_dir: Path, image: Path, info: ImageInfo, pinmap: Path = PINMAP_PATH) -> None:
        from .physics import EmuPhysics

        self.dir = rig_dir
        self.image = image
        self.info = info
        # the physics of the mechanism this chip's hw/ holds (the file its deploy copies)
        self.wiring = EmuWiring(load_pinmap(pinmap), EmuPhysics.create(emu_mechanism_path(rig_dir)))
        self.device: Any = None
        self.pacer: PioPacer | None = None
        self.ceiling: RealTimeCeiling | None = None
        self.ceiling_slept_before = 0.0  # wall s the ceilings of chips that lost power slept
        self.pio_drops_before = 0      # PIO backlog write-offs of chips that lost power since
        self.boots = 0
        self.chip_resets: list[dict[str, Any]] = []
        self.power_cuts: list[int] = []
        self.hangs: list[int] = []
        self.powered = False
        self.started_wall = time.monotonic()
        self.boot_wall_s: list[float] = []
        self._stop = asyncio.Event()
        self._cut_pending: Any = None

    # -- flash -------------------------------------------------------------------------------
    @property
    def flash_path(self) -> Path:
        return self.dir / FLASH_FILE

    def save_flash(self) -> None:
        """Write the chip's littlefs region to flash.img atomically (tmp + rename)."""
        if self.device is None:
            return
        tmp = self.flash_path.with_suffix(".tmp")
        self.device.dump_flash_image(tmp)
        os.replace(tmp, self.flash_path)

    # -- power -------------------------------------------------------------------------------
    async def power_on(self) -> None:
        from rp2040py.boards import BOARDS, resolve_firmware
        from rp2040py.device import MicroPythonDevice

        board = resolve_firmware(BOARDS["pico"], "micropython", str(self.image))
        flash = self.flash_path if self.flash_path.exists() else None
        wall0 = time.monotonic()
        device = MicroPythonDevice(board=board, filesystem=flash)
        self.device = device
        # machine.unique_id(): the flash's own ID, read by the SDK at boot (rigs/emu/flashid.py)
        answer_unique_id(device.mcu.ssi, flash_id(self.dir))
        original_trigger = device.mcu.watchdog.on_watchdog_trigger

        def on_trigger() -> None:
            reason = device.mcu.watchdog.read_uint32(0x08) if hasattr(device.mcu.watchdog, "read_uint32") else 0
            self.chip_resets.append({"t_ns": self.wiring.now_ns(), "reason": reason})
            self.wiring.en_log.append((self.wiring.now_ns(), False))
            original_trigger()

        device.mcu.watchdog.on_watchdog_trigger = on_trigger
        self.wiring.attach(device.mcu)
        self.pacer = PioPacer(device.mcu)
        self.ceiling = RealTimeCeiling(device.mcu)
        self.bridge.bind(device.cdc, device.mcu.clock)
        await device.astart(timeout=BOOT_TIMEOUT_S)
        self.boots += 1
        self.powered = True
        self.boot_wall_s.append(time.monotonic() - wall0)

    def power_off(self) -> None:
        """Cut power now: flash keeps what the chip had written, RAM and pins are lost."""
        if self.device is None:
            return
        self.save_flash()
        if self.pacer is not None:
            self.pio_drops_before += self.pacer.backlog_drops()
            self.pacer.cancel()
            self.pacer = None
        if self.ceiling is not None:
            self.ceiling_slept_before += self.ceiling.slept_s
            self.ceiling.cancel()
            self.ceiling = None
        self.device.stop()
        self.wiring.detach()
        self.bridge.bind(None, None)
        self.device = None
        self.powered = False

    # -- side channel ----------------------------------------------------------------------
    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        w = self.wiring
        if cmd == "status":
            return self.status()
        if cmd == "edges":
            return w.edges(int(req.get("since", 0)))
        if cmd == "en_log":
            return {"en_log": w.en_log}
        if cmd == "outputs":
            return {"outputs": w.outputs}
        if cmd == "occlude":
            if w.physics is not None and w.physics.has_model:
                w.physics.occlude(bool(req.get("on", True)))
            else:
                w.pressure_override = int(req.get("kpa_x10", 1500)) if req.get("on", True) else None
            return self.status()
        if cmd == "pressure":
            value = req.get("kpa_x10")
            if value is not None and not (isinstance(value, int) and 0 <= value <= 100_000):
                raise UsageError(f"pressure kpa_x10 = {value!r}: must be an integer 0..100000 or null")
            w.pressure_override = value
            return self.status()
        if cmd == "stall":
            w.stall_forced = bool(req.get("on", True))
            return self.status()
        if cmd in ("jam", "slip"):
            # invisible to DIAG (StallGuard off as rp2hw configures the TMC2209): the model only
            if w.physics is None or not w.physics.has_model:
                raise UsageError(f"{cmd}: needs the physical model (pumpsim) on the emulated rig")
            getattr(w.physics, cmd)(bool(req.get("on", True)))
            return self.status()
        if cmd == "magnet":
            w.magnet = bool(req.get("on", True))
            if w.encoder is not None:
                w.encoder.magnet = w.magnet
            return self.status()
        if cmd == "empty":
            on = bool(req.get("on", True))
            nl = req.get("nl")
            if w.physics is not None and w.physics.has_model:
                try:
                    w.physics.empty(on, None if on or nl is None else int(nl))
                except ValueError as exc:
                    raise UsageError(f"empty: {exc}") from None
            w.end_stop_forced = on
            return self.status()
        if cmd == "press":
            count = int(req.get("count", 1))
            hold = int(req.get("hold_ms", 150))
            gap = int(req.get("gap_ms", 300))
            if not 1 <= count <= 20:
                raise UsageError(f"press count = {count}: must be 1..20")
            if not 1 <= hold <= 10_000 or not 1 <= gap <= 60_000:
                raise UsageError(f"press hold_ms = {hold} (1..10000), gap_ms = {gap} (1..60000)")
            done = w.press_button(count, hold, gap, bool(req.get("bounce", True)))
            return {"settled_ns": done, **self.status()}
        if cmd == "hang":
            if self.device is None:
                raise UsageError("hang: the emulated Pico is powered off")
            self.hang()
            return self.status()
        if cmd == "wait":
            ms = int(req.get("ms", 0))
            if not 0 <= ms <= 600_000:
                raise UsageError(f"wait ms = {ms}: must be 0..600000 (emulated ms)")
            await self.wait_emulated(ms * 1_000_000)
            return self.status()
        if cmd == "power_cut":
            after = int(req.get("after_ms", 0))
            off = float(req.get("off_s", 0.0))
            off_ms = int(req.get("off_ms", 0))
            if not 0 <= after <= 600_000 or not 0 <= off <= 60 or not 0 <= off_ms <= POWER_OFF_MAX_MS:
                raise UsageError(f"power_cut after_ms = {after} (0..600000), off_s = {off} (0..60 wall s), "
                                 f"off_ms = {off_ms} (0..{POWER_OFF_MAX_MS} emulated ms)")
            if after:
                await self.wait_emulated(after * 1_000_000)
            cut_ns = w.now_ns()
            self.power_off()
            self.power_cuts.append(cut_ns)
            # the world's time goes on while the chip is off: the rig's clock (t_ns) and the
            # model move on by off_ms at once, without the wall time it would take
            w.time_base_ns += off_ms * 1_000_000
            if off:
                await asyncio.sleep(off)
            if not req.get("stay_off", False):
                await self.power_on()
            return {"cut_ns": cut_ns, **self.status()}
        if cmd == "power_on":
            if not self.powered:
                await self.power_on()
            return self.status()
        if cmd == "save_flash":
            self.save_flash()
            return self.status()
        if cmd == "stop":
            self._stop.set()
            return {"stopping": True}
        raise UsageError(f"side channel: unknown cmd {cmd!r}")

    def hang(self) -> None:
        """Hang the firmware where it stands, as a C-level deadlock would: the core is sent to a
        two-instruction loop (`wfi; b wfi`) in SRAM and never comes back to the application.
        Interrupts (USB, timers) still run; the watchdog stays exactly as the application left
        it, so only its own arming can bring the chip back. (A Ctrl-C would not do: the app
        takes Ctrl-C as maintenance and disarms its watchdog on purpose.) The loop lives in
        SCRATCH_X (`HANG_ADDR`), core 1's stack, which single-core MicroPython leaves unused."""
        mcu = self.device.mcu
        mcu.write_uint16(HANG_ADDR, 0xBF30)        # wfi
        mcu.write_uint16(HANG_ADDR + 2, 0xE7FD)    # b HANG_ADDR  (pc+4-6)
        mcu.core.waiting = False
        mcu.core.pc = HANG_ADDR
        self.hangs.append(self.wiring.now_ns())

    async def wait_emulated(self, nanos: int) -> None:
        """Return after `nanos` of emulated time (or when the chip loses power)."""
        if self.device is None or nanos <= 0:
            return
        done = asyncio.get_running_loop().create_future()

        def fire() -> None:
            if not done.done():
                done.set_result(None)

        self.device.mcu.clock.create_alarm(fire).schedule(nanos)
        ceiling = self.ceiling
        if ceiling is not None:
            ceiling.waits += 1                 # nobody talks to the chip: let it run ahead
        try:
            while not done.done() and self.device is not None and self.device.simulator.executing:
                await asyncio.wait([done], timeout=0.2)
        finally:
            if ceiling is not None:
                ceiling.waits -= 1
                ceiling.anchor()

    def status(self) -> dict[str, Any]:
        w = self.wiring
        enabled = w.en_log[-1][1] if w.en_log else False
        return {"pid": os.getpid(), "port": self.bridge.path, "image": str(self.image),
                "version": self.info.version, "mpy": list(self.info.mpy), **_image_fields(self.info),
                "mechanism": w.physics.mechanism if w.physics is not None else None,
                "powered": self.powered,
                "boots": self.boots, "chip_resets": self.chip_resets, "power_cuts": self.power_cuts,
                "t_ns": w.now_ns(), "wall_s": round(time.monotonic() - self.started_wall, 3),
                "boot_wall_s": [round(x, 3) for x in self.boot_wall_s], "enabled": enabled,
                "steps": w.counts(), "inputs": w.state(), "presses": w.presses,
                "hangs": self.hangs, "watchdog": self._watchdog_state(),
                "pio_backlog_drops": self.pio_drops_before + (self.pacer.backlog_drops() if self.pacer else 0),
                "pio_pacer_wakes": self.pacer.wakes if self.pacer else 0,
                "real_time_ceiling_slept_s": round(self.ceiling_slept_before
                                                   + (self.ceiling.slept_s if self.ceiling else 0.0), 3),
                "step_sm": self._step_sm_state(),
                "flash": str(self.flash_path)}

    def _step_sm_state(self) -> dict[str, Any] | None:
        """The step generator's state machine (rp2hw.STEP_SM_ID 0: PIO0 SM0) as the chip holds
        it: TX words not yet pulled (two per segment), RX completion reports not yet read, Y
        (pulses still to make in the loaded segment), and whether it waits on its `pull`
        (stalled for a new segment). `idle`: nothing queued is left to reach the STEP pin."""
        if self.device is None:
            return None
        sm = self.device.mcu.pio[0].machines[0]
        tx, rx, waiting = int(sm.tx_fifo.item_count), int(sm.rx_fifo.item_count), bool(sm.waiting)
        return {"enabled": bool(sm.enabled), "tx": tx, "rx": rx, "y": int(sm.y), "pc": int(sm.pc),
                "waiting": waiting, "idle": (not sm.enabled) or (tx == 0 and waiting)}

    def _watchdog_state(self) -> dict[str, Any] | None:
        """The chip's watchdog as the firmware left it: armed or not, and the emulated ms left
        before it fires (the RP2040 counts down twice per us, erratum RP2040-E1)."""
        if self.device is None:
            return None
        wd = self.device.mcu.watchdog
        armed = bool(getattr(wd, "_enable", False))
        left = int(wd.timer.counter) // 2000 if armed else None
        return {"armed": armed, "ms_left": left}

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, **await self.handle(json.loads(line))}
                except (UsageError, ValueError, TypeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.bridge = _PtyBridge()
        self.bridge.start(loop)
        sock_path = self.dir / SOCKET_FILE
        sock_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_client, path=str(sock_path))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        state = {"pid": os.getpid(), "port": self.bridge.path, "socket": str(sock_path),
                 "image": str(self.image), "version": self.info.version, **_image_fields(self.info),
                 "ready": False}
        _write_state(self.dir, state)
        await self.power_on()
        os.symlink(self.bridge.path, self.dir / "port.tmp")
        os.replace(self.dir / "port.tmp", self.dir / "port")
        _write_state(self.dir, {**state, "ready": True, "boot_wall_s": self.boot_wall_s[0]})
        try:
            await self._stop.wait()
        finally:
            self.power_off()
            server.close()
            sock_path.unlink(missing_ok=True)
            (self.dir / STATE_FILE).unlink(missing_ok=True)
            (self.dir / "port").unlink(missing_ok=True)


def _image_fields(info: ImageInfo) -> dict[str, Any]:
    """What every report of the rig states about its image: official or self-built, SHA-256,
    and the one-line label (ImageInfo.label) to print."""
    return {"official": info.official, "sha256": info.sha256, "image_label": info.label()}


def watch_owner(pid: int, every_s: float = 0.5, grace_s: float = 10.0) -> None:
    """A daemon thread: when process `pid` is gone, SIGTERM ourselves (the supervisor saves the
    flash and stops); if the emulation keeps the event loop from stopping within grace_s, exit
    hard. A thread, not the asyncio loop, because a busy emulator can starve the loop."""
    import threading

    def watch() -> None:
        while process_alive(pid):
            time.sleep(every_s)
        print(f"emurig: owner {pid} is gone: stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(3)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pumpctl.rigs.emu.supervisor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    serve = sub.add_parser("serve", help="run the supervisor in the foreground")
    serve.add_argument("--dir", type=Path, default=default_rig_dir())
    serve.add_argument("--image", type=Path, required=True)
    serve.add_argument("--owner-pid", type=int, default=None,
                       help="end when this process ends (a chip started for a test or a session)")
    args = parser.parse_args(argv)
    info = check_image(args.image)
    print(f"emurig: {info.label()}", file=sys.stderr, flush=True)
    if args.owner_pid is not None:
        watch_owner(args.owner_pid)
    asyncio.run(EmuSupervisor(args.dir, args.image, info).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
