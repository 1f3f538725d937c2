"""Build record: which firmware build is deployed on this rig (written by `pumpctl deploy`,
read by the firmware at boot and reported in hello). Runs on CPython and MicroPython.

The record is one small JSON file at the device root, BUILD_FILE, written by the host only
after every deployed file has been verified by sha256 on the device, atomically (written to
BUILD_FILE + ".part", then renamed), and itself verified. Fields::

    schema        SCHEMA
    build         the build id: the first BUILD_HEX hex digits of `digest`
    digest        files_digest() of the deployed files (64 hex digits)
    files         how many files that digest covers
    format        "mpy 6.3" (compiled for that .mpy format) or "source"
    deployed_utc  deploy time, "YYYY-MM-DDTHH:MM:SSZ"
    pumpctl       version of the host tools that deployed it

The digest is sha256 over the sorted "<path> <sha256 hex>\\n" lines of the deployed files
(paths relative to the device root, as the host verified them): the same files give the same
build id whichever host deployed them. The record itself and the rig key are not part of it.
"""
import binascii
import hashlib
import json

BUILD_FILE = "build.json"
SCHEMA = "pump.build/1"
BUILD_HEX = 16                 # hex digits of the build id
MAX_RECORD = 1024              # bytes; a longer file is corrupt
FIELDS = ("schema", "build", "digest", "files", "format", "deployed_utc", "pumpctl")
UNKNOWN = "unknown"
_HEX = "0123456789abcdef"


def files_digest(pairs):
    """sha256 hex over the sorted (path, sha256 hex) pairs of the deployed files."""
    h = hashlib.sha256()
    for path, sha in sorted(pairs):
        h.update(("%s %s\n" % (path, sha)).encode())
    return binascii.hexlify(h.digest()).decode()


def make_record(digest, files, fmt, deployed_utc, pumpctl_version):
    """The record (dict) for a deploy whose files have `digest` (files_digest)."""
    return {"schema": SCHEMA, "build": digest[:BUILD_HEX], "digest": digest, "files": files,
            "format": fmt, "deployed_utc": deployed_utc, "pumpctl": pumpctl_version}


def encode(record):
    """Bytes of the record file (JSON, one line, keys in FIELDS order)."""
    parts = []
    for name in FIELDS:
        parts.append("%s: %s" % (json.dumps(name), json.dumps(record[name])))
    return ("{" + ", ".join(parts) + "}\n").encode()


def _is_hex(text, n):
    if not isinstance(text, str) or len(text) != n:
        return False
    for c in text:
        if c not in _HEX:
            return False
    return True


def parse(data):
    """(build id, None) from the record file's bytes, or (None, reason) when it is corrupt."""
    if data is None:
        return None, "no %s (not installed by pumpctl deploy, or a deploy was cut short)" % BUILD_FILE
    if len(data) > MAX_RECORD:
        return None, "%s is %d bytes, more than a build record (%d)" % (BUILD_FILE, len(data), MAX_RECORD)
    try:
        rec = json.loads(bytes(data).decode())
    except Exception:  # ValueError, or UnicodeError on MicroPython
        return None, "%s is not valid JSON" % BUILD_FILE
    if not isinstance(rec, dict):
        return None, "%s is not a JSON object" % BUILD_FILE
    if rec.get("schema") != SCHEMA:
        return None, "%s schema = %r: expected %r" % (BUILD_FILE, rec.get("schema"), SCHEMA)
    for name in FIELDS:
        if name not in rec:
            return None, "%s has no %s" % (BUILD_FILE, name)
    digest = rec["digest"]
    if not _is_hex(digest, 64):
        return None, "%s digest = %r: not 64 lowercase hex digits" % (BUILD_FILE, str(digest)[:80])
    if rec["build"] != digest[:BUILD_HEX]:
        return None, "%s build = %r: does not match its digest %s" % (BUILD_FILE, str(rec["build"])[:40],
                                                                      digest[:BUILD_HEX])
    return rec["build"], None


def hello_text(data):
    """What hello reports as build_hash for the record file's bytes (None: no file): the build
    id, or "unknown: <reason>"."""
    build, reason = parse(data)
    if build is None:
        return UNKNOWN + ": " + reason
    return build


def read(path):
    """hello_text() of the record file at `path` (at most MAX_RECORD + 1 bytes are read, so a
    runaway file cannot exhaust the heap); never raises."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECORD + 1)
    except OSError:
        data = None
    try:
        return hello_text(data)
    except Exception as exc:  # a firmware bug here must not stop the boot
        return UNKNOWN + ": %s unreadable (%s)" % (BUILD_FILE, type(exc).__name__)
