"""The HIL plugin itself, without a rig: report rendering, figure checks, bench-rig skip reasons, --rig KIND through the hook, sim_only skips."""
import subprocess
import sys

import pytest

from pumpctl.hil.report import HilReport, Series
from pumpctl.hil.rigs import BenchRig, FaultUnavailable


def _entry_point_installed() -> bool:
    """pytest loads the plugin itself when the package's pytest11 entry point is installed."""
    from importlib.metadata import entry_points
    return any(ep.name == "pumprig" for ep in entry_points(group="pytest11"))


def test_report_markdown_and_plot(tmp_path):
    rep = HilReport()
    rep.rig.update({"kind": "virtual rig", "rig_id": "hil-1"})
    rep.firmware["deploy"] = "ok"
    rep.record("tests/hil/x.py::test_a", "time to alarm", 6.25, "min")
    rep.add_series("tests/hil/x.py::test_a", Series("basal", [0, 1, 2], {"balance": [0, 3.9, 7.8]}, "h", "mg"))
    rep.outcome("tests/hil/x.py::test_a", "call", "passed", 1.5, "")
    rep.outcome("tests/hil/x.py::test_b", "setup", "skipped", 0.0, "bench rig: stall needs the operator")
    rep.outcome("tests/hil/x.py::test_c", "call", "failed", 0.2, "assert 1 == 2")
    out = rep.write(tmp_path / "r.md")
    text = out.read_text()
    assert "| test_a | passed | time to alarm = 6.25 min |" in text
    assert "| test_b | skipped |" in text and "needs the operator" in text
    assert "| test_c | FAILED |" in text and "assert 1 == 2" in text
    assert "hil-1" in text and "1 failed, 1 passed, 1 skipped" in text
    pngs = list((tmp_path / "r_plots").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert "r_plots/%s" % pngs[0].name in text


def test_record_rejects_bad_figures():
    rep = HilReport()
    with pytest.raises(ValueError, match="figure x value = None"):
        rep.record("t", "x", None)
    with pytest.raises(ValueError, match="figure name = ''"):
        rep.record("t", "", 1)
    with pytest.raises(ValueError, match="2 y values for 3 x values"):
        rep.add_series("t", Series("s", [0, 1, 2], {"y": [1, 2]}, "h", "mg"))


def test_bench_rig_without_operator_names_the_reason():
    rig = BenchRig("/dev/ttyACM9", None, None, "bench-1")
    assert "--operator" in rig.can("occlude")
    assert rig.can("corrupt_state") == "" and rig.can("hang") == ""
    with pytest.raises(FaultUnavailable, match="stall needs the operator"):
        rig.fault("stall")
    with pytest.raises(Exception, match="fault = 'melt': unknown"):
        rig.can("melt")


def test_bench_rig_asks_the_operator():
    asked = []
    rig = BenchRig("/dev/ttyACM9", asked.append, None, "bench-1")
    rig.fault("occlude")
    assert asked and "Clamp the outlet" in asked[0]


HOOK_CONFTEST = '''
class FakeRig:
    kind = "fake"
    port = "/dev/null"
    rig_id = "fake-1"
    time_scale = 1.0
    deploy = None
    def describe(self):
        return {"kind": "fake"}
    def stop(self):
        pass

def pytest_pumprig_make_rig(config, kind, base):
    if kind == "fake":
        return FakeRig()
'''

HOOK_TEST = '''
import pytest

def test_uses_hook_rig(rig):
    assert rig.kind == "fake" and rig.rig_id == "fake-1"

@pytest.mark.sim_only("needs the physical model")
def test_sim_only():
    pass
'''


def _run_pytest(tmp_path, conftest, test, *args):
    """Run pytest with the plugin (-p, as the entry point loads it) on a scratch test dir."""
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_h.py").write_text(test)
    load = [] if _entry_point_installed() else ["-p", "pumpctl.hil.plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", *load, "-q", "-rs",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_rig_kind_from_the_hook_and_sim_only_skip(tmp_path):
    res = _run_pytest(tmp_path, HOOK_CONFTEST, HOOK_TEST, "--rig", "fake", "--rig-report", str(tmp_path / "rep.md"))
    assert "1 passed, 1 skipped" in res.stdout, res.stdout + res.stderr
    assert "--rig fake: needs the physical model" in res.stdout
    assert "test_uses_hook_rig | passed" in (tmp_path / "rep.md").read_text()


MECH_CONFTEST = HOOK_CONFTEST.split("def pytest_pumprig_make_rig")[0] + '''
class MechRig(FakeRig):
    shared = True
    def __init__(self, mechanism):
        self.mechanism = mechanism
        self.hello_build = "v9 build " + mechanism
        self.flash_source = "cached flash of " + mechanism
    def describe(self):
        return {"kind": "fake", "mechanism": self.mechanism, "flash": "fake flash " + self.mechanism}

def pytest_pumprig_make_rig(config, kind, base, mechanism):
    if kind == "fake":
        return MechRig(mechanism or "20ml")
'''

MECH_TEST = '''
import pytest

@pytest.mark.mechanism("precision")
def test_precision(rig):
    assert rig.mechanism == "precision"

def test_unmarked(rig):
    assert rig.mechanism == "20ml"
'''


def test_the_hook_is_told_the_tests_mechanism(tmp_path):
    """A rig kind that can be made for either mechanism (the emulated Pico) is asked for the one
    the test is marked for, and a rig that says which it runs is not asked its hello."""
    res = _run_pytest(tmp_path, MECH_CONFTEST, MECH_TEST, "--rig", "fake", "--rig-report", str(tmp_path / "rep.md"))
    assert "2 passed" in res.stdout, res.stdout + res.stderr
    report = (tmp_path / "rep.md").read_text()
    # both rigs in the report's rig table: the first as it is, the other by its mechanism
    assert "| flash | fake flash precision |" in report and "| 20ml: flash | fake flash 20ml |" in report, report
    # and both chips' builds in the firmware table (it was empty for a hook-made rig)
    firmware = report.split("## Firmware build")[1].split("## Checks")[0]
    first, other = ("precision", "20ml") if "| hello reports | v9 build precision |" in firmware else ("20ml", "precision")
    assert "| hello reports | v9 build %s |" % first in firmware, firmware
    assert "| %s: hello reports | v9 build %s |" % (other, other) in firmware, firmware
    assert "| flash | cached flash of %s |" % first in firmware and "| deploy | none by this session" in firmware, firmware


def test_emu_items_are_grouped_by_mechanism_default_first():
    """One emulated chip at a time, made per mechanism: the collection runs each mechanism's
    tests together (the default's and the unmarked first, each group in collected order)."""
    import types
    from pumpctl.hil.plugin import mechanism_order

    def item(name, mech):
        mark = types.SimpleNamespace(args=(mech,)) if mech else None
        return types.SimpleNamespace(name=name, get_closest_marker=lambda n, m=mark: m if n == "mechanism" else None)

    items = [item("a", "20ml"), item("b", "precision"), item("c", None), item("d", "precision"),
             item("e", "20ml")]
    mechanism_order(items)
    assert [i.name for i in items] == ["a", "c", "e", "b", "d"]


def test_unknown_rig_kind_is_a_usage_error(tmp_path):
    res = _run_pytest(tmp_path, "", "def test_x(rig):\n    pass\n", "--rig", "nosuchkind")
    assert "--rig nosuchkind: not 'sim', not a serial port, and no plugin makes that rig kind" in res.stdout + res.stderr
    assert res.returncode != 0


def test_figures_go_to_junit_and_the_report_counts_every_test(tmp_path):
    """record() figures land in the JUnit XML as properties; the Markdown report counts what pytest counts."""
    import xml.etree.ElementTree as ET
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_fig(record):\n    record('time to alarm', 6.7, 'min')\n"
        "def test_plain():\n    assert True\n"
        "def test_bad():\n    assert 1 == 2\n"
        "@pytest.mark.skip(reason='no')\ndef test_skip():\n    pass\n")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_x.py"),
            "--junitxml", str(tmp_path / "j.xml"), "--rig-report", str(tmp_path / "r.md"), "-o", "addopts="]
    if not _entry_point_installed():
        args[3:3] = ["-p", "pumpctl.hil.plugin"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "1 failed, 2 passed, 1 skipped" in proc.stdout, proc.stdout + proc.stderr
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "j.xml").iter("property")}
    assert props.get("hil:time to alarm") == "6.7 min", props
    assert "1 failed, 2 passed, 1 skipped" in (tmp_path / "r.md").read_text()


def test_a_failing_test_gets_the_rig_build_and_event_log():
    import types
    from pumpcore import logrec
    from pumpctl.hil.plugin import attach_rig_evidence
    recs = [logrec.encode(1, 9460, 1000, logrec.EV_ALARM_RAISED, 2, 3, 0, 0),
            logrec.encode(2, 9460, 2000, logrec.EV_SUSPEND, 1, 0, 0, 0)]

    class FakePump:
        def hello(self):
            return types.SimpleNamespace(firmware_version="0.1.0", build_hash="abc123")

        def read_log(self, first, n):
            return types.SimpleNamespace(oldest_seq=1, next_seq=3)

        def iter_log(self, first):
            return [(i + 1, r) for i, r in enumerate(recs) if i + 1 >= first]
    item = types.SimpleNamespace(funcargs={"rig": types.SimpleNamespace(port="x"), "pump": FakePump()})
    rep = types.SimpleNamespace(sections=[], user_properties=[])
    attach_rig_evidence(item, rep)
    sections = dict(rep.sections)
    assert sections["pumprig: firmware build"] == "0.1.0 build abc123"
    log = sections["pumprig: rig event log (last 40 records)"]
    assert "alarm-raised" in log and "alarm motor-stall" in log and "reason alarm" in log
    assert ("rig_build", "0.1.0 build abc123") in rep.user_properties


def test_rig_time_scale_option_takes_max_or_a_ceiling():
    from pumpctl.hil.fixtures import parse_rig_time_scale
    assert parse_rig_time_scale(None) == "max"          # the default: checks read the rig's clock
    assert parse_rig_time_scale("MAX") == "max"
    assert parse_rig_time_scale("1000") == 1000.0
    with pytest.raises(pytest.UsageError, match=r"--rig-time-scale = 6000: must be in 1..5000 or 'max'"):
        parse_rig_time_scale("6000")
    with pytest.raises(pytest.UsageError, match=r"--rig-time-scale = 'fast': must be a number in 1..5000 or 'max'"):
        parse_rig_time_scale("fast")


def test_emulated_pico_pumps_wait_as_long_as_its_busy_code_takes() -> None:
    """A refill on the emulated Pico took 0.65 emulated s = 34 s of wall time (busy code at
    ~1/40): Pumps the HIL fixtures open there wait a minute per try, elsewhere the default."""
    from pumpctl.hil.fixtures import PUMP_TIMEOUT_S, pump_timeout_s
    from pumpctl.hil.rigs import EmuHilRig, Rig

    assert pump_timeout_s(Rig()) == PUMP_TIMEOUT_S
    assert pump_timeout_s(object()) == PUMP_TIMEOUT_S
    assert pump_timeout_s(EmuHilRig.__new__(EmuHilRig)) >= 45.0


class _ClockRig:
    """A rig whose clock moves only when the rig clock waits (as the emulated Pico's `wait`)."""

    time_scale = 1.0

    def __init__(self, with_wait: bool) -> None:
        self.t = 0.0
        self.waits: list[float] = []
        if with_wait:
            self.pass_time = self._pass_time

    def now_s(self) -> float:
        return self.t

    def _pass_time(self, rig_s: float, wall_s: float) -> None:
        self.waits.append(rig_s)
        self.t += rig_s


def test_rig_clock_polls_wait_on_the_rigs_own_clock():
    """The emulated Pico runs at 0.1-3x real time: its rig clock's polls wait `poll_rig_s` of rig
    time (pass_time), not wall seconds, so a poll every 2 rig s stays every 2 rig s."""
    from pumpctl.hil.fixtures import RigClock
    rig = _ClockRig(with_wait=True)
    clock = RigClock(rig)  # type: ignore[arg-type]
    polls: list[float] = []

    def seen() -> bool:
        polls.append(rig.t)
        return rig.t >= 9.0

    clock.wait_for(seen, 60, poll_rig_s=2)
    assert polls == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] and rig.waits == [2, 2, 2, 2, 2]
    assert clock.sleep(5) == 15.0 and rig.waits[-1] == 5
    with pytest.raises(AssertionError, match="never: not seen within 6 s of rig time"):
        clock.wait_for(lambda: False, 6, poll_rig_s=2, what="never")


def test_rig_clock_sleeps_in_wall_time_for_a_rig_without_its_own_wait(monkeypatch):
    """A hook's rig need not subclass Rig: without pass_time the polls sleep wall time."""
    import time as _time

    from pumpctl.hil.fixtures import RigClock
    rig = _ClockRig(with_wait=False)
    slept: list[float] = []

    def fake_sleep(s: float) -> None:
        slept.append(s)
        rig.t += s

    monkeypatch.setattr(_time, "sleep", fake_sleep)
    clock = RigClock(rig)  # type: ignore[arg-type]
    clock.wait_for(lambda: rig.t >= 3.0, 60, poll_rig_s=1.5)
    assert slept == [1.5, 1.5]


def test_each_made_rig_gets_its_firmware_rows_even_after_the_last_was_freed():
    """A per-test rig freed before the next is made: the next may get the same id(), and its
    firmware rows must still land in the report (they were left out when rigs were told apart
    by id)."""
    import gc
    import types
    from pumpctl.hil.fixtures import _report_made_rig_firmware
    rep = HilReport()
    for mech in ("precision", "20ml", "precision2"):
        rig = types.SimpleNamespace(mechanism=mech, hello_build="v9 build " + mech, flash_source="flash " + mech)
        _report_made_rig_firmware(rep, rig)
        del rig
        gc.collect()
    assert rep.firmware["hello reports"] == "v9 build precision", rep.firmware
    assert rep.firmware["20ml: hello reports"] == "v9 build 20ml", rep.firmware
    assert rep.firmware["precision2: flash"] == "flash precision2", rep.firmware
