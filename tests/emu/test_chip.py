"""The emulated chip itself, through the rig: REPL over the pty, flash, watchdog, power cut, pins."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pumpctl import deploy
from pumpctl.rigs.emu.rig import EmuRig
from pumpctl.rigs.emu.rigdir import load_pinmap

from .conftest import FIRMWARE, mpremote

pytestmark = pytest.mark.emu
PINS = load_pinmap()


def rp2hw_pressure(raw_u16: int) -> int:
    """The firmware's own transfer function (pumphw.rp2hw reads through pumpcore.pressure with
    the deployed hw/mechanism.json sensor), evaluated on the host."""
    from pumpcore.pressure import load_sensor
    return load_sensor(str(FIRMWARE.parent / "hw" / "mechanism.json")).kpa_x10_from_u16(raw_u16)


def test_repl_and_fs_over_the_pty(emu: EmuRig, tmp_path: Path) -> None:
    assert mpremote(emu.port, "exec", "import sys; print(sys.implementation._mpy & 0xff)").strip() == "6"
    src = tmp_path / "probe.py"
    src.write_text("VALUE = 12345\n")
    mpremote(emu.port, "fs", "cp", str(src), ":probe.py")
    assert mpremote(emu.port, "exec", "import probe; print(probe.VALUE)").strip() == "12345"


def test_files_survive_a_power_cut_mid_run(emu: EmuRig, tmp_path: Path) -> None:
    src = tmp_path / "keep.txt"
    src.write_text("kept across power\n")
    mpremote(emu.port, "fs", "cp", str(src), ":keep.txt")
    boots = emu.request("status")["boots"]
    reply = emu.request("power_cut", after_ms=37, off_ms=3_600_000)
    assert reply["boots"] == boots + 1 and len(reply["power_cuts"]) >= 1
    # an hour without power passes on the rig's clock at once (no wall time)
    assert reply["t_ns"] >= reply["cut_ns"] + 3_600_000 * 1_000_000
    out = mpremote(emu.port, "exec", "import machine; print(open('keep.txt').read().strip()); "
                                     "print(machine.reset_cause() == machine.PWRON_RESET)")
    assert out.split() == ["kept", "across", "power", "True"]


def test_unfed_watchdog_resets_the_chip_with_wdt_reset(emu: EmuRig) -> None:
    before = len(emu.request("status")["chip_resets"])
    mpremote(emu.port, "exec", "import machine; w = machine.WDT(timeout=200)")
    status = emu.request("wait", ms=300)
    assert len(status["chip_resets"]) == before + 1
    out = mpremote(emu.port, "exec", "import machine; print(machine.reset_cause() == machine.WDT_RESET)")
    assert out.strip() == "True"


def test_inputs_reach_the_pins_and_adc(emu: EmuRig) -> None:
    """DIAG, end stop and the pressure sensor as the firmware's own rp2hw conversion reads them."""
    probe = ("from machine import Pin, ADC\n"
             f"print(Pin({PINS['diag']}, Pin.IN).value(), Pin({PINS['end_stop_n']}, Pin.IN).value(), "
             f"ADC({PINS['pressure_adc']['channel']}).read_u16())")
    for kpa_x10 in (0, 517, 1000):
        emu.request("pressure", kpa_x10=kpa_x10)
        emu.request("stall", on=kpa_x10 == 517)
        emu.request("empty", on=kpa_x10 == 517)
        emu.request("wait", ms=3)
        diag, end_n, raw = map(int, mpremote(emu.port, "exec", probe).split())
        assert (diag, end_n) == ((1, 0) if kpa_x10 == 517 else (0, 1))
        # 12-bit quantisation of a 103.4 kPa span over 80 % of 4095 counts: 0.32 kPa x 10 per count
        assert abs(rp2hw_pressure(raw) - kpa_x10) <= 1, (kpa_x10, raw, rp2hw_pressure(raw))
    emu.request("pressure", kpa_x10=None)
    emu.request("stall", on=False)
    emu.request("empty", on=False)


def test_one_bouncy_press_shows_bounce_at_the_pin(emu: EmuRig) -> None:
    """The button really bounces (several falling edges), so a debouncer has work to do."""
    setup = ("from machine import Pin\n"
             "falls = [0]\n"
             "def _irq(p):\n falls[0] += 1\n"
             f"btn = Pin({PINS['bolus_button_n']}, Pin.IN, Pin.PULL_UP)\n"
             "btn.irq(_irq, Pin.IRQ_FALLING)\n")
    mpremote(emu.port, "exec", setup)
    reply = emu.request("press", count=1, hold_ms=20, gap_ms=20)
    emu.request("wait", ms=(reply["settled_ns"] - reply["t_ns"]) // 1_000_000 + 2)
    falls = int(mpremote(emu.port, "exec", "print(falls[0]); btn.irq(None)"))
    assert falls >= 3, f"bouncy press gave {falls} falling edges"
    assert emu.request("status")["presses"] >= 1


def test_side_channel_refuses_bad_values_naming_field_value_limit(emu: EmuRig) -> None:
    with pytest.raises(Exception, match=r"press count = 0: must be 1\.\.20"):
        emu.request("press", count=0)
    with pytest.raises(Exception, match=r"kpa_x10 = -5: must be an integer 0\.\.100000"):
        emu.request("pressure", kpa_x10=-5)
    with pytest.raises(Exception, match=r"off_ms = 604800001 \(0\.\.604800000 emulated ms\)"):
        emu.request("power_cut", off_ms=7 * 86_400_000 + 1)
    with pytest.raises(Exception, match=r"unknown cmd 'nope'"):
        emu.request("nope")
    assert json.loads(json.dumps(emu.request("status")))["powered"] is True


def test_stream_cut_short_leaves_the_old_file_whole(emu: EmuRig, tmp_path: Path) -> None:
    """A deploy copy that stops mid-file (cable, host crash) must not leave half a module: the
    chip writes <path>.part and renames only a complete file over the old one, and the next
    mpremote's Ctrl-C still stops the receiver (base64 never carries it; the rp2 USB stack
    turns it into KeyboardInterrupt)."""
    import base64

    from mpremote.transport_serial import SerialTransport

    mp = deploy.Mpremote(emu.port, 120)
    old = b"OLD = 1\n"
    mp.exec("with open('victim.py', 'wb') as f:\n f.write(%r)" % old, "writing the old file")
    new = bytes(range(256)) * 40                       # 10 KB: several base64 chunks
    t = SerialTransport(emu.port, baudrate=115200)
    try:
        t.enter_raw_repl(soft_reset=False)
        t.exec_raw_no_follow(deploy.RECEIVE_CODE % ([("victim.py", len(new))], deploy.STREAM_RAW_CHUNK))
        t.serial.write(base64.b64encode(new[:deploy.STREAM_RAW_CHUNK]))   # then the host goes away
        time.sleep(0.3)
    finally:
        t.close()
    mp.exec("print(1)", "interrupting the receiver")    # Ctrl-C still works: base64 never carries it
    assert _device_bytes(mp, "victim.py") == old
    # the next deploy's preparation removes the leftover, and a whole copy then lands
    whole = deploy.DeployFile(local=_write(tmp_path / "v.py", new), remote="victim.py", kind="config")
    mp.exec(deploy.prepare_code([whole]), "preparing")
    assert _device_bytes(mp, "victim.py.part") is None
    deploy.stream_files(mp, [whole])
    assert _device_bytes(mp, "victim.py") == new


def _device_bytes(mp: deploy.Mpremote, path: str) -> bytes | None:
    out = mp.exec("import binascii\ntry:\n print('HEX', binascii.hexlify(open(%r, 'rb').read()).decode())\n"
                  "except OSError:\n print('HEX -')" % path, "reading " + path)
    value = out.split("HEX", 1)[1].strip()
    return None if value == "-" else bytes.fromhex(value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_chip_has_its_flashs_unique_id(emu: EmuRig) -> None:
    """machine.unique_id() is the flash's own ID (rigs/emu/flashid.py), not rp2040py's 0xFF for
    an unmodelled command, and it stays the same across a power cut (the same flash)."""
    from pumpctl.rigs.emu.flashid import FLASH_ID_FILE
    probe = "import machine, binascii; print(binascii.hexlify(machine.unique_id()).decode())"
    want = (emu.dir / FLASH_ID_FILE).read_text().strip()
    assert mpremote(emu.port, "exec", probe).strip() == want != "f" * 16
    emu.request("power_cut", after_ms=5, off_ms=1000)
    assert mpremote(emu.port, "exec", probe).strip() == want
