"""Build record (pumpcore.buildrec): the digest definition, the file the host writes and what the
firmware makes of it, on CPython and in the real MicroPython binary."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pumpcore import buildrec

PAIRS = [("pumpcore/wire.mpy", "ab" * 32), ("main.py", "01" * 32), ("pinmap.json", "ff" * 32)]


def _reference_digest(pairs: list[tuple[str, str]]) -> str:
    """The definition, written out independently: sha256 over '<path> <sha256>\\n' sorted by path."""
    text = "".join("%s %s\n" % (p, h) for p, h in sorted(pairs, key=lambda x: x[0]))
    return hashlib.sha256(text.encode()).hexdigest()


def _good() -> dict:
    return buildrec.make_record(_reference_digest(PAIRS), 3, "mpy 6.3", "2025-11-25T08:30:00Z", "0.1.0")


def test_digest_is_the_sorted_path_hash_lines() -> None:
    assert buildrec.files_digest(PAIRS) == _reference_digest(PAIRS)
    assert buildrec.files_digest(list(reversed(PAIRS))) == _reference_digest(PAIRS)
    changed = [(p, "00" * 32 if p == "main.py" else h) for p, h in PAIRS]
    assert buildrec.files_digest(changed) != buildrec.files_digest(PAIRS)


def test_a_written_record_reads_back_as_its_build_id() -> None:
    rec = _good()
    data = buildrec.encode(rec)
    assert json.loads(data) == rec and list(json.loads(data)) == list(buildrec.FIELDS)
    assert rec["build"] == _reference_digest(PAIRS)[:16]
    assert buildrec.parse(data) == (rec["build"], None)
    assert buildrec.hello_text(data) == rec["build"]


def _with(**changes: object) -> bytes:
    rec = _good()
    for k, v in changes.items():
        if v is None:
            del rec[k]
        else:
            rec[k] = v
    return json.dumps(rec).encode()


CORRUPT = [
    (None, "no build.json"),
    (b"", "not valid JSON"),
    (b"\xff\xfe garbage \x00", "not valid JSON"),
    (buildrec.encode(_good())[:40], "not valid JSON"),          # cut short
    (b"[1, 2]", "not a JSON object"),
    (b"{}" + b" " * 1100, "more than a build record"),
    (_with(schema="pump.build/0"), "schema = 'pump.build/0'"),
    (_with(digest=None), "has no digest"),
    (_with(digest="xyz"), "digest = 'xyz': not 64 lowercase hex digits"),
    (_with(build="0123456789abcdef"), "does not match its digest"),
]


@pytest.mark.parametrize("data, reason", CORRUPT)
def test_missing_or_corrupt_record_is_unknown_with_the_reason(data: bytes | None, reason: str) -> None:
    build, why = buildrec.parse(data)
    assert build is None and reason in why
    text = buildrec.hello_text(data)
    assert text.startswith("unknown: ") and reason in text and len(text.encode()) <= 255


def test_read_never_raises(tmp_path: Path) -> None:
    assert buildrec.read(str(tmp_path / "nothing.json")).startswith("unknown: no build.json")
    (tmp_path / "dir.json").mkdir()
    assert buildrec.read(str(tmp_path / "dir.json")).startswith("unknown: ")
    good = tmp_path / "build.json"
    good.write_bytes(buildrec.encode(_good()))
    assert buildrec.read(str(good)) == _good()["build"]


@pytest.mark.micropython
def test_micropython_reads_the_same(tmp_path: Path) -> None:
    from tests.support.mpy import run_micropython
    cases = [buildrec.encode(_good())] + [c[0] for c in CORRUPT if c[0] is not None]
    for i, data in enumerate(cases):
        (tmp_path / ("c%d.json" % i)).write_bytes(data)
    script = ("from pumpcore import buildrec\n"
              "print(buildrec.files_digest(%r))\n"
              "for i in range(%d):\n"
              "    print(buildrec.read(%r + '/c%%d.json' %% i))\n"
              "print(buildrec.read(%r))\n" % (PAIRS, len(cases), str(tmp_path), str(tmp_path / "none.json")))
    lines = run_micropython(script).splitlines()
    assert lines[0] == _reference_digest(PAIRS)
    want = [buildrec.read(str(tmp_path / ("c%d.json" % i))) for i in range(len(cases))]
    assert lines[1:-1] == want
    assert lines[1] == _good()["build"] and all(w.startswith("unknown: ") for w in want[1:])
    assert lines[-1].startswith("unknown: no build.json")
