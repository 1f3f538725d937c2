"""The lab on loopback: labgrid-coordinator, an exporter with 4 virtual rigs, a HIL subset with -n 4 in .venv-lab; every worker its own place, none held twice, a failing test gives its place back.

Makes the lab environment first (scripts/bootstrap --lab: a no-op when it is current). If it
cannot be made (no network, no pip cache), the test fails and says so: it never passes silently.
"""
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pumpctl.lab.loopback import REPO, LoopbackLab
from pumpctl.lab.places import HoldLog, hold_intervals, hold_problems

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RIGS = 4
# the HIL subset: as many checks as workers, so xdist gives each worker one (and each takes a
# place: a place is taken at a worker's first rig test) and the suite's time is one deploy
SUBSET = ["tests/hil/test_deploy_program.py", "-k", "deploy_verified or unconfirmed or flex_4step or deliberately",
          "tests/lab/lab_failing_check.py"]
FAILING = "tests/lab/lab_failing_check.py::test_deliberately_fails_and_gives_its_place_back"


def make_lab_venv() -> float:
    t0 = time.monotonic()
    done = subprocess.run([str(REPO / "scripts" / "bootstrap"), "--lab"], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    if done.returncode != 0:
        tail = "\n".join(l for l in done.stderr.splitlines() if not l.startswith("WARNING: Location"))[-1500:]
        pytest.fail("the lab environment .venv-lab could not be made (scripts/bootstrap --lab, exit %d): it needs "
                    "PyPI or a pip cache holding labgrid 26. pip said:\n%s" % (done.returncode, tail), pytrace=False)
    return time.monotonic() - t0


def test_four_workers_four_places_and_a_failing_test_gives_its_place_back(tmp_path):
    t0 = time.monotonic()
    venv_s = make_lab_venv()
    with LoopbackLab(tmp_path / "lab", rigs=RIGS) as lab:
        up_s = time.monotonic() - t0 - venv_s
        check_a_dead_holder_loses_its_place(lab)
        junit = tmp_path / "junit.xml"
        t1 = time.monotonic()
        done = subprocess.run(lab.pytest_argv(*SUBSET, "-n", str(RIGS), "-q", "--junitxml", str(junit)),
                              capture_output=True, text=True, timeout=600, cwd=REPO, env=lab.env())
        run_s = time.monotonic() - t1
        out = done.stdout[-4000:] + done.stderr[-2000:]
        holders_left = lab.client("who")
        print("lab test: venv %.1f s, lab up %.1f s, HIL subset on %d rigs %.1f s" % (venv_s, up_s, RIGS, run_s))

    # exactly the deliberate failure failed; every other check of the subset passed
    assert junit.exists(), out
    cases = ET.parse(junit).getroot().iter("testcase")
    failed, passed = [], []
    for c in cases:
        node = "%s::%s" % (c.get("classname", "").replace(".", "/") + ".py", c.get("name"))
        bad = c.find("failure") is not None or c.find("error") is not None
        (failed if bad else passed).append(node)
    assert done.returncode == 1, out
    assert failed == [FAILING], out
    assert len(passed) == RIGS - 1, out

    recs = HoldLog(lab.hold_log).read()
    holds = hold_intervals(recs)
    # no place held twice at once, no worker with two places at once, every hold given back
    assert hold_problems(recs) == [], holds
    # every worker held a place, each a different one
    first: dict[str, tuple] = {}
    for h in holds:
        first.setdefault(h[1], h)
    assert sorted(first) == ["gw%d" % i for i in range(RIGS)], holds
    assert len({h[0] for h in first.values()}) == RIGS, holds
    # the failing test's worker gave its place back right after the failure, not at the end
    gave_back = [h for h in holds if h[4] == "test failed: " + FAILING]
    assert len(gave_back) == 1, holds
    place, worker, acquired_t, released_t, _ = gave_back[0]
    assert worker.startswith("gw") and released_t > acquired_t, holds
    # and the coordinator agrees: nothing is held after the run
    assert holders_left.strip().splitlines()[1:] == [], holders_left


HOLDER = """
import sys, time
from pumpctl.lab.places import HoldLog, LabClient
hold = LabClient(sys.argv[1]).take({"name": "rig1"}, log=HoldLog(sys.argv[2]))
print(hold.place, flush=True)
time.sleep(600)
"""


def check_a_dead_holder_loses_its_place(lab: LoopbackLab) -> None:
    """A holder killed with SIGKILL (no teardown runs) loses its place through its guard."""
    import signal
    log = lab.work_dir / "dead-holder.jsonl"
    proc = subprocess.Popen([lab.bin("python"), "-c", HOLDER, lab.coordinator, str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=lab.env(), cwd=REPO)
    try:
        line = proc.stdout.readline().decode().strip()
        assert line == "rig1", proc.stderr.read().decode()[-1500:] if proc.poll() is not None else line
        assert "rig1" in lab.client("who")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 30
    while "rig1" in lab.client("who"):
        assert time.monotonic() < deadline, "the guard did not release rig1 within 30 s of its holder's death"
        time.sleep(0.3)
    recs = HoldLog(log).read()
    assert [r["event"] for r in recs] == ["acquired", "released"], recs
    assert "released by its guard" in recs[1]["reason"], recs
    # and its reservation is gone too: rig1 can be reserved again at once (the subset below needs it)
    assert "rig1" not in lab.client("reservations")
