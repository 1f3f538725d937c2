"""pytest plugin `pumprig`: --rig sim|PORT|labgrid:PLACE|KIND, --rig-report, --balance, --operator; the HIL fixtures; the run report.

Registered through the entry point `[project.entry-points.pytest11] pumprig = "pumpctl.hil.plugin"`
(or `pytest_plugins = ["pumpctl.hil.plugin"]` in a conftest.py). Tests that need a rig carry the
marker `rig`; without `--rig` they run on a virtual rig the plugin starts itself.
"""
from __future__ import annotations

from typing import Any

import pytest

from . import fixtures, hooks
from .fixtures import hil_report


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("pumprig", "pump hardware-in-the-loop rig")
    g.addoption("--rig", default="sim", metavar="sim|PORT|labgrid:PLACE|KIND",
                help="rig under test: 'sim' (default: virtual rigs started by the plugin), a serial "
                     "port of a bench Pico (e.g. /dev/ttyACM0, rfc2217://HOST:PORT), a labgrid place "
                     "(labgrid:PLACE, labgrid:KEY=VALUE[,...] by tags, or labgrid with --lg-env), "
                     "or a kind a plugin provides (e.g. emu)")
    g.addoption("--rig-time-scale", default=None, metavar="X|max",
                help="virtual rig time scale: a ceiling of sim seconds per real second (1..5000), "
                     "or 'max', as fast as the firmware runs (the default)")
    g.addoption("--rig-report", default=None, metavar="PATH",
                help="write a Markdown report with plots to PATH (plots in <stem>_plots/)")
    g.addoption("--balance", default=None, metavar="PORT",
                help="bench rig: serial port of an MT-SICS laboratory balance under the outlet")
    g.addoption("--operator", action="store_true",
                help="bench rig: ask the operator (on this terminal) for faults the rig cannot make itself")
    g.addoption("--no-deploy", action="store_true",
                help="do not run pumpctl deploy first (the firmware on the rig is used as it is)")
    g.addoption("--rig-lab-log", default=None, metavar="PATH",
                help="--rig labgrid:...: append one JSON line per place taken and given back to PATH "
                     "(default $PUMPRIG_LAB_LOG)")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    rig = config.getoption("rig", "sim") or "sim"
    if rig == "labgrid" or rig.startswith("labgrid:"):
        if rig.startswith("labgrid:"):
            from ..lab.places import parse_rig_spec
            try:
                parse_rig_spec(rig)
            except Exception as exc:
                raise pytest.UsageError(str(exc)) from None
        try:
            import labgrid  # noqa: F401
        except ImportError:
            raise pytest.UsageError("--rig %s needs labgrid, which is only in the lab environment: run "
                                    "scripts/bootstrap --lab, then .venv-lab/bin/python -m pytest ..." % rig) from None
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "pumprig-fixtures")
    config.addinivalue_line("markers", "rig: needs a rig (virtual by default; --rig PORT for a bench Pico)")
    config.addinivalue_line("markers", "mechanism(name): the rig runs that mechanism (pumpctl.mechanisms): a "
                                       "virtual rig is made for it, another rig that runs another is skipped")
    config.addinivalue_line("markers", "sim_only(reason): the check needs the virtual rig (skipped on "
                                       "other rigs with the reason)")


def pytest_report_header(config: pytest.Config) -> str | None:
    """`--rig emu`: which MicroPython image the emulated Pico boots, official or self-built."""
    if (config.getoption("rig", "sim") or "sim") != "emu":
        return None
    from ..rigs.emu.image import ImageUnavailable, find_image
    try:
        return "pumprig emu: " + find_image()[1].label()
    except ImageUnavailable as exc:
        return "pumprig emu: no image (%s)" % exc


_EMU_RIGS: dict[int, Any] = {}


@pytest.hookimpl(trylast=True)
def pytest_pumprig_make_rig(config: pytest.Config, kind: str, base: Any, mechanism: str | None) -> Any:
    """`--rig emu`: the emulated Pico for the test's mechanism (None: the default), made (and
    deployed, or booted from the flash cache) once per mechanism and shared by the tests of that
    mechanism. One chip at a time: a test of another mechanism stops the running one first
    (the emulator takes a core); the collection is ordered so that happens at most once per
    mechanism. The last one is stopped at the session's end."""
    if kind != "emu":
        return None
    from .. import mechanisms
    want = mechanism or mechanisms.DEFAULT
    key = id(config)
    rig = _EMU_RIGS.get(key)
    if rig is not None and rig.mechanism != want:
        rig.stop()
        del _EMU_RIGS[key]
        rig = None
    if rig is None:
        from .rigs import EmuHilRig
        if key not in _EMU_STOPPERS:
            _EMU_STOPPERS.add(key)
            config.add_cleanup(lambda: _stop_emu(key))
        rig = EmuHilRig(base, deploy=not config.getoption("no_deploy", False), mechanism=want)
        _EMU_RIGS[key] = rig
    return rig


_EMU_STOPPERS: set[int] = set()


def _stop_emu(key: int) -> None:
    rig = _EMU_RIGS.pop(key, None)
    _EMU_STOPPERS.discard(key)
    if rig is not None:
        rig.stop()


def mechanism_order(items: list[pytest.Item]) -> None:
    """Order `items` in place by the mechanism they are marked for, the default's (and the
    unmarked) first, each group in its collected order: a rig made per mechanism (the emulated
    Pico) is then made once per mechanism, not once per switch."""
    from .. import mechanisms

    def group(item: pytest.Item) -> tuple[bool, str]:
        mark = item.get_closest_marker("mechanism")
        name = str(mark.args[0]) if mark else mechanisms.DEFAULT
        return name != mechanisms.DEFAULT, name

    items.sort(key=group)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kind = config.getoption("rig", "sim") or "sim"
    if kind == "sim":
        return
    if kind == "emu":
        mechanism_order(items)
    for item in items:
        m = item.get_closest_marker("sim_only")
        if m is not None:
            reason = m.args[0] if m.args else m.kwargs.get("reason", "needs the virtual rig")
            item.add_marker(pytest.mark.skip(reason="--rig %s: %s" % (kind, reason)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when == "call":
        item.stash[fixtures.FAILED_KEY] = True
    if rep.failed and rep.when == "call" and "rig" in getattr(item, "funcargs", {}):
        attach_rig_evidence(item, rep)
    message = ""
    if rep.failed:
        message = str(rep.longrepr.reprcrash.message) if hasattr(rep.longrepr, "reprcrash") and \
            rep.longrepr.reprcrash is not None else str(rep.longrepr)[-1500:]
    elif rep.skipped and isinstance(rep.longrepr, tuple):
        message = str(rep.longrepr[2])
    hil_report(item.config).outcome(item.nodeid, rep.when, rep.outcome, rep.duration, message)


EVIDENCE_RECORDS = 40


def attach_rig_evidence(item: pytest.Item, rep: Any) -> None:
    """A failing test's report gets the rig's firmware build and the last EVIDENCE_RECORDS records
    of its event log (decoded), as a report section and JUnit properties; never raises."""
    rig = item.funcargs["rig"]  # type: ignore[attr-defined]
    lines: list[str] = []
    try:
        from ..cli.cmd_logs import decode_record, decoded_fields
        from ..pump import Pump
        pump = item.funcargs.get("pump")  # type: ignore[attr-defined]
        opened = None
        if pump is None:
            opened = pump = Pump.open(rig.port, timeout_s=max(10.0, fixtures.pump_timeout_s(rig)))
        try:
            h = pump.hello()
            build = "%s build %s" % (h.firmware_version, h.build_hash)
            chunk = pump.read_log(0, 0)
            start = max(int(chunk.oldest_seq), int(chunk.next_seq) - EVIDENCE_RECORDS)
            for _, raw in pump.iter_log(start):
                r = decode_record(raw)
                text = decoded_fields(r.code, r.detail)[1] if r.crc_ok else str(r.detail)
                lines.append("%6d  %s  %-16s %s" % (r.seq, r.time_text(), r.event, text))
        finally:
            if opened is not None:
                opened.close()
    except Exception as exc:  # evidence is best effort: the test's own failure is what matters
        build = "unknown (%s)" % exc
        lines.append("event log not readable: %s" % exc)
    rep.sections.append(("pumprig: firmware build", build))
    rep.sections.append(("pumprig: rig event log (last %d records)" % EVIDENCE_RECORDS, "\n".join(lines)))
    rep.user_properties.append(("rig_build", build))
    rep.user_properties.append(("rig_event_log", "\n".join(lines)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("rig_report", None)
    if not path:
        return
    report = hil_report(session.config)
    if not report.checks:
        return
    written = report.write(path)
    tr = session.config.pluginmanager.getplugin("terminalreporter")
    if tr is not None:
        tr.write_line("HIL report written to %s" % written)
