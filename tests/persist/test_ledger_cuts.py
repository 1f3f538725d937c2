"""Power cuts of the whole application at random moments of basal, bolus, prime, commit,
refill, suspend, alarm acknowledgement, time sync, log append and state save, in the real
micropython binary: the dose ledger never
under-counts what the plunger made (issue 12, "A ledger that never under-counts").

The rig and its checks are tests/support/cutrig.py (MicroPython-compatible): a fresh flash per
chain, random delivery and host actions, a cut at a random byte or operation of the next write
or between loop iterations, reboot, check; both flash semantics. The same seed runs in CPython
too, and both interpreters must count exactly the same (the firmware behaves the same on both).
The figures go to the power-cut table at the end of the run. A much longer run, off the suite:
bench/ledger_cuts.py (CPython, any seeds and chains, prints the figures).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import cutrig
from tests.support.mpy import REPO, run_micropython

SEED = 20261201
CHAINS = 50
CUTS_PER_CHAIN = 24       # about 1,200 cuts and 1,000 restarts


def _root(tmp_path: Path) -> str:
    root = tmp_path / "flash"
    root.mkdir()
    shutil.copy(REPO / "hw" / "mechanism.json", root / "mechanism.json")
    return str(root)


def _assert_clean(result: dict, where: str) -> dict:
    counts = result["counts"]
    assert not result["failures"], f"{where}: " + "\n".join(result["failures"])
    for key in counts:
        assert not key.startswith("fail"), f"{where}: {key} = {counts[key]}"
    return counts


@pytest.mark.micropython
def test_power_cuts_never_under_count_in_micropython(tmp_path, cut_tally, ledger_figures):
    out = run_micropython(
        "import sys, json\nsys.path.append(%r)\nimport cutrig\n"
        "print(json.dumps(cutrig.run(%d, %d, %d, root=%r)))\n"
        % (str(REPO / "tests" / "support"), SEED, CHAINS, CUTS_PER_CHAIN, _root(tmp_path)),
        heap="32M", timeout=600)
    counts = _assert_clean(json.loads(out.strip().splitlines()[-1]), "micropython")
    cuts = counts.get("cuts/littlefs", 0) + counts.get("cuts/posix", 0)
    boot_cuts = counts.get("cut during boot/littlefs", 0) + counts.get("cut during boot/posix", 0)
    assert cuts + boot_cuts >= 1000, counts
    assert counts["restarts checked"] >= 1000
    # every kind of moment was cut at least once
    for where in ("writing state save", "writing log append", "bolus/between writes",
                  "commit/between writes", "refill/between writes", "basal/between writes",
                  "hour edge/between writes", "prime/between writes", "ack/between writes",
                  "suspend/resume/between writes"):
        assert counts.get("cut in " + where, 0) > 0, (where, counts)
    # primes, and cuts while one ran (half the primes get a cut armed inside their run)
    assert counts.get("cuts while a prime ran", 0) >= 10, counts
    # the minute after an hour's record, before and after the next save (the CI bug of fd1e37b)
    assert counts.get("hour records cut after", 0) >= 100, counts
    # the exact hourly check runs at every restart (tests/support/cutrig.py: why it can)
    assert counts["hourly sums checked"] == counts["restarts checked"], counts
    assert counts["bolus records checked"] == counts["restarts checked"], counts
    assert counts.get("ack records checked", 0) > 0 and counts.get("acks taken", 0) > 0, counts
    # restarts whose log holds a patient bolus: the rig's random path sets how many (host
    # actions come per loop iteration, tests/support/cutrig.py, so the app's wake times move
    # it): 121, 105 and 67 at this seed over one session's app changes, fewer again with the
    # quiet loop's longer sleeps, 47 once the rig also primed and acknowledged alarms (a prime
    # leaves a stopped program, which takes no bolus, until the next commit);
    # test_the_lockout_check_can_fail shows the check catches the bug, so this floor only says
    # the check ran often
    assert counts.get("patient lockouts checked", 0) >= 40, counts
    for sem in ("littlefs", "posix"):
        cut_tally(f"whole app, random moment/{sem} (micropython)", counts[f"cuts/{sem}"])
        cut_tally(f"whole app, during boot/{sem} (micropython)", counts.get(f"cut during boot/{sem}", 0))
    ledger_figures.update({
        "restarts checked": counts["restarts checked"],
        "under-counts (total, rolling 24 h, reservoir)": 0,
        "double doses": 0,
        "totals reset": 0,
        "hourly sums checked (exact)": counts["hourly sums checked"],
        "cuts in the minute after an hour's record": counts["hour records cut after"],
        "bolus records checked (one start, one end each)": counts["bolus records checked"],
        "primes started": counts["primes started"],
        "cuts while a prime ran": counts["cuts while a prime ran"],
        "largest over-count (ng)": counts["max over-count ng"],
        "largest reservation counted at one reset (ng)": counts["max possibly ng at a reset"],
    })


def test_same_cuts_same_counts_in_cpython(tmp_path):
    """The first chains again in CPython: identical counts (the PRNG is the rig's own)."""
    root = _root(tmp_path)
    got = _assert_clean(cutrig.run(SEED, 6, CUTS_PER_CHAIN, root=root), "cpython")
    out = run_micropython(
        "import sys, json\nsys.path.append(%r)\nimport cutrig\n"
        "print(json.dumps(cutrig.run(%d, 6, %d, root=%r)))\n"
        % (str(REPO / "tests" / "support"), SEED, CUTS_PER_CHAIN, root), heap="32M")
    assert json.loads(out.strip().splitlines()[-1])["counts"] == got


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A ledger without the reservation (the old app) is caught: under-counts after cuts."""
    from pumpfw import ledger
    monkeypatch.setattr(ledger.Ledger, "reservation", lambda self, sched: 0)
    monkeypatch.setattr(ledger.Ledger, "room", lambda self, sched, owed: owed)
    result = cutrig.run(SEED, 4, 10, root=_root(tmp_path))
    assert result["counts"].get("fail under-count total", 0) > 0, result["counts"]


def test_the_hourly_check_can_fail(tmp_path, monkeypatch):
    """A boot that ignores the log's records after the last save (the app before fd1e37b)
    logs an hour twice after a cut in the minute after its record: the rig finds it."""
    from pumpfw import recovery
    monkeypatch.setattr(recovery, "log_after_save", lambda app, state: None)
    result = cutrig.run(SEED, 6, CUTS_PER_CHAIN, root=_root(tmp_path))
    assert result["counts"].get("fail hourly sum", 0) > 0, result["counts"]


def test_the_prime_check_can_fail(tmp_path, monkeypatch):
    """A prime that takes no serial (the app before 3e3f1fc: EV_PRIME with 0, 0, and a reset
    during it left nothing that said it was cut short) is caught by the bolus-record check."""
    from pumpcore import logrec
    from pumpcore import scheduler as schedmod
    from pumpfw import configure

    def prime_without_serial(app, volume_nl):
        duration = max(volume_nl * 6, 1000)
        code = app.sched.prime(volume_nl, duration)
        if code:
            return (code, schedmod.refusal_text(code))
        app._log(logrec.EV_PRIME, volume_nl, duration, 0, 0)
        app.save(urgent=True)
        return None

    monkeypatch.setattr(configure, "prime", prime_without_serial)
    counts = cutrig.run(SEED, 12, CUTS_PER_CHAIN, root=_root(tmp_path))["counts"]
    assert counts.get("primes started", 0) > 0, counts
    fails = {k: v for k, v in counts.items() if k.startswith("fail bolus")}
    assert fails, counts


def test_the_ack_check_can_fail(tmp_path, monkeypatch):
    """An app that loses alarm-raised records (here: never writes them) leaves acknowledgements
    of alarms the log never raised: the rig finds them."""
    from pumpfw.app import PumpApp
    monkeypatch.setattr(PumpApp, "_log_raised", lambda self, code: None)
    counts = cutrig.run(SEED, 4, 10, root=_root(tmp_path))["counts"]
    assert counts.get("fail ack before raise", 0) > 0, counts


def test_the_lockout_check_can_fail(tmp_path, monkeypatch):
    """A boot that does not restore the lockout of a patient bolus whose start save was cut
    (the app before the log backlog's commit) lets the patient have another at once: the rig
    finds it. Such a cut is rare on the rig's own random path (a few in a thousand restarts, and
    fewer since the quiet loop's longer sleeps), so this run arms a cut in the writes of every
    patient bolus it asks for (`patient_start_cuts`); seed after seed from 41, up to 8 seeds of
    12 chains (about 6 s each; 4 of seeds 41-46 catch it on this tree), and one must catch it: a
    change of trajectory moves which seed finds it, not whether the rig can."""
    from pumpfw import recovery
    monkeypatch.setattr(recovery, "restore_lockout", lambda app, serial, day, ms: None)
    tried = []
    for seed in range(41, 49):
        flash = tmp_path / ("s%d" % seed)
        flash.mkdir()
        result = cutrig.run(seed, 12, CUTS_PER_CHAIN, root=_root(flash), patient_start_cuts=1000)
        tried.append((seed, result["counts"].get("patient lockouts checked", 0)))
        if result["counts"].get("fail lockout lost", 0) > 0:
            return
    raise AssertionError("no seed's cut rig caught the forgotten lockout: %r" % (tried,))
