"""Per-rig key store on the host: 32-byte HMAC keys and auth counters, files mode 0600.

Layout under $PUMPCTL_HOME (default ~/.local/state/pumpctl)::

    keys/<rig id>.key       the rig key, hex, mode 0600 (directory 0700)
    keys/<rig id>.counter   the highest auth counter this host has used with that rig

The device keeps its copy in DEVICE_KEY_FILE on its root (written by `pumpctl deploy`).
A key file readable by group or others is refused, as ssh refuses such a private key.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import AuthError, UsageError

KEY_BYTES = 32
DEVICE_KEY_FILE = "/rigkey.bin"
_RIG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


def home() -> Path:
    """The pumpctl state directory: $PUMPCTL_HOME, else ~/.local/state/pumpctl."""
    env = os.environ.get("PUMPCTL_HOME")
    return Path(env) if env else Path.home() / ".local" / "state" / "pumpctl"


def _check_rig(rig_id: str) -> str:
    if not isinstance(rig_id, str) or not _RIG_RE.match(rig_id):
        raise UsageError("rig id = %r: must be 1..32 characters of A-Z a-z 0-9 . _ - (starting with a "
                         "letter or digit)" % (rig_id,))
    return rig_id


def key_path(rig_id: str, base: Path | None = None) -> Path:
    """Path of the key file of `rig_id`."""
    return (base or home()) / "keys" / (_check_rig(rig_id) + ".key")


def _counter_path(rig_id: str, base: Path | None = None) -> Path:
    return (base or home()) / "keys" / (_check_rig(rig_id) + ".counter")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp%d" % os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_key(rig_id: str, base: Path | None = None) -> bytes | None:
    """The stored key of `rig_id` (32 bytes), or None if this host has none.

    Raises AuthError when the file exists but is unsafe (group/other access) or malformed.
    """
    path = key_path(rig_id, base)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError("key file %s has mode %04o: must be 0600 (chmod 600 %s)"
                        % (path, stat.S_IMODE(st.st_mode), path))
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AuthError("key file %s: not hex text" % path) from None
    if len(key) != KEY_BYTES:
        raise AuthError("key file %s: %d bytes, a rig key is %d" % (path, len(key), KEY_BYTES))
    return key


def save_key(rig_id: str, key: bytes, base: Path | None = None) -> Path:
    """Store `key` (32 bytes) for `rig_id` with mode 0600; returns the file's path."""
    if len(key) != KEY_BYTES:
        raise UsageError("key for rig %s: %d bytes, a rig key is %d" % (rig_id, len(key), KEY_BYTES))
    path = key_path(rig_id, base)
    _write_private(path, bytes(key).hex() + "\n")
    return path


def load_counter(rig_id: str, base: Path | None = None) -> int:
    """Highest auth counter this host used with `rig_id` (0 if none recorded)."""
    path = _counter_path(rig_id, base)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise AuthError("counter file %s: %r is not an integer" % (path, text)) from None


def save_counter(rig_id: str, counter: int, base: Path | None = None) -> None:
    """Record `counter` as used with `rig_id` (never lowers the stored value)."""
    if counter > load_counter(rig_id, base):
        _write_private(_counter_path(rig_id, base), "%d\n" % counter)
