"""Fixtures of the HIL plugin: rig, pump, program, balance, faults, rig_clock, record.

`rig` is a started, deployed rig with its key provisioned on this host: on the virtual rig a
fresh one per test (cloned from the image `pumpctl deploy` wrote once per session, so every test
starts from empty state and a fresh physical world); on a bench rig the one Pico on `--rig PORT`
for the whole session. Units: rig time in seconds, doses ng, rates ng/day, volumes nL.
"""
from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ..rigs.virtualrig import poll_scale
from .report import HilReport, Series
from .rigs import BenchRig, DeployInfo, FaultUnavailable, Rig, SimImage, SimRig, deploy_rig, _clean_rig_id

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "programs"
DEFAULT_TIME_SCALE = "max"     # every check reads the rig's clock: the scale only sets the wall time
PUMP_TIMEOUT_S = 5.0   # per try; a loaded CI machine can hold the virtual rig's relay for seconds
EPOCH = datetime.date(2000, 1, 1)

REPORT_KEY = pytest.StashKey[HilReport]()


def parse_rig_time_scale(text: Any) -> float | str:
    """--rig-time-scale: 'max' or a number in 1..5000 (None: the default)."""
    if text is None or text == "":
        return DEFAULT_TIME_SCALE
    if str(text).strip().lower() == "max":
        return "max"
    try:
        v = float(text)
    except ValueError:
        raise pytest.UsageError("--rig-time-scale = %r: must be a number in 1..5000 or 'max'" % (text,)) from None
    if not 1 <= v <= 5000:
        raise pytest.UsageError("--rig-time-scale = %g: must be in 1..5000 or 'max'" % v)
    return v


class HilOptions:
    """The plugin's command-line options, checked."""

    def __init__(self, config: pytest.Config) -> None:
        # defaults given: in a whole-tree run a late-loaded conftest adds the options after parsing
        self.rig: str = config.getoption("rig", "sim") or "sim"
        self.time_scale: float | str = parse_rig_time_scale(config.getoption("rig_time_scale", None))
        self.report: str | None = config.getoption("rig_report", None)
        self.balance: str | None = config.getoption("balance", None)
        self.operator: bool = bool(config.getoption("operator", False))
        self.deploy: bool = not config.getoption("no_deploy", False)

    @property
    def is_sim(self) -> bool:
        return self.rig == "sim"

    @property
    def is_lab(self) -> bool:
        """`--rig labgrid[:PLACE | :KEY=VALUE,...]`: a place of a labgrid lab (pumpctl.lab.hil)."""
        return self.rig == "labgrid" or self.rig.startswith("labgrid:")

    @property
    def is_port(self) -> bool:
        if self.is_lab:
            return False
        return "/" in self.rig or self.rig.upper().startswith("COM") or ":" in self.rig


def hil_report(config: pytest.Config) -> HilReport:
    rep = config.stash.get(REPORT_KEY, None)
    if rep is None:
        rep = config.stash[REPORT_KEY] = HilReport()
    return rep


def operator_prompt(config: pytest.Config) -> Callable[[str], None]:
    """A function that shows an instruction on the terminal (capture suspended) and waits for Enter."""
    def ask(text: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        ctx = capman.global_and_fixture_disabled() if capman else _nullcontext()
        with ctx:
            input("\n[HIL operator] %s " % text)
    return ask


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ------------------------------------------------------------------------------------ session
@pytest.fixture(scope="session")
def hil_options(pytestconfig: pytest.Config) -> HilOptions:
    return HilOptions(pytestconfig)


FLASH_DIR_ENV = "PUMPCTL_EMU_FLASH_DIR"


@pytest.fixture(scope="session")
def hil_base(hil_options: HilOptions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Scratch directory of the session. On the virtual rig, also this host's pumpctl state
    ($PUMPCTL_HOME: keys and counters), so a test run never touches the user's key store."""
    base = tmp_path_factory.mktemp("hil")
    old = os.environ.get("PUMPCTL_HOME")
    old_flash = os.environ.get(FLASH_DIR_ENV)
    if not hil_options.is_port:
        # the emulated Pico's cache of deployed flash (rigs/emu/flashcache.py) stays the user's:
        # it outlives the session, the scratch home does not
        from ..rigs.emu.flashcache import cache_dir
        os.environ[FLASH_DIR_ENV] = str(cache_dir())
        os.environ["PUMPCTL_HOME"] = str(base / "pumpctl-home")
    yield base
    if not hil_options.is_port:
        if old_flash is None:
            os.environ.pop(FLASH_DIR_ENV, None)
        else:
            os.environ[FLASH_DIR_ENV] = old_flash
        if old is None:
            os.environ.pop("PUMPCTL_HOME", None)
        else:
            os.environ["PUMPCTL_HOME"] = old


@pytest.fixture(scope="session")
def sim_image(hil_options: HilOptions, hil_base: Path, pytestconfig: pytest.Config) -> SimImage:
    """The firmware image deployed once with `pumpctl deploy` (virtual rig only)."""
    if not hil_options.is_sim:
        pytest.skip("the virtual-rig image exists only with --rig sim")
    image = SimImage(hil_base / "sim-image", deploy=hil_options.deploy)
    rep = hil_report(pytestconfig)
    rep.firmware.update(firmware_rows(image.deploy))
    return image


def firmware_rows(d: DeployInfo | None, hello_build: str = "") -> dict[str, str]:
    """The report's "Firmware build" rows for a rig's deploy (`d`, None when the session did not
    deploy) and the build its hello reported (`hello_build`, "" if not asked)."""
    rows: dict[str, str] = {}
    if d is None:
        rows["deploy"] = "none by this session (the firmware on the rig is used as it is)"
    else:
        rows.update({"deploy": "ok" if d.ok else "FAILED: " + d.error, "how": d.reason or "-",
                     "files verified by sha256": "%d of %d" % (d.verified, d.files),
                     "deployed files digest": d.digest or "-", "deploy wall time": "%.1f s" % d.wall_s})
    if hello_build:
        rows["hello reports"] = hello_build
    return rows


@pytest.fixture(scope="session")
def bench_rig(hil_options: HilOptions, pytestconfig: pytest.Config) -> Iterator[Rig]:
    """The bench Pico (`--rig PORT`), deployed once unless --no-deploy; or a hook's shared rig."""
    if hil_options.is_sim:
        pytest.skip("no bench rig with --rig sim")
    rep = hil_report(pytestconfig)
    if not hil_options.is_port:
        pytest.skip("--rig %s is not a port" % hil_options.rig)
    deploy = None
    if hil_options.deploy:
        deploy = deploy_rig(hil_options.rig, None, do_restart=True, timeout_s=180.0)
        if not deploy.ok:
            pytest.exit("pumpctl deploy to %s failed: %s" % (hil_options.rig, deploy.error), returncode=1)
        rep.firmware.update(firmware_rows(deploy))
        time.sleep(3.0)
    from ..pump import Pump
    with Pump.open(hil_options.rig) as p:
        rig_id = p.info.rig_id
    operator = operator_prompt(pytestconfig) if hil_options.operator else None
    rig = BenchRig(hil_options.rig, operator, deploy, rig_id)
    yield rig


FAILED_KEY = pytest.StashKey[bool]()   # set on an item by the plugin's makereport when its call failed


@pytest.fixture(scope="session")
def lab_session(hil_options: HilOptions, pytestconfig: pytest.Config) -> Iterator[Any]:
    """This process's labgrid place (`--rig labgrid:...`): pumpctl.lab.hil.LabSession."""
    if not hil_options.is_lab:
        pytest.skip("no labgrid place without --rig labgrid:...")
    from ..lab.hil import LabSession       # labgrid is there: the plugin's pytest_configure checked
    lg_env = None
    if pytestconfig.getoption("lg_env", None):
        from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY
        lg_env = pytestconfig.stash.get(LABGRID_ENV_KEY, None)
    if hil_options.rig == "labgrid" and lg_env is None:
        raise pytest.UsageError("--rig labgrid: give --lg-env ENV.yaml, or name the place (labgrid:PLACE) "
                                "or its tags (labgrid:mechanism=precision)")
    lab = LabSession(hil_options.rig, pytestconfig.getoption("lg_coordinator", None),
                     pytestconfig.getoption("rig_lab_log", None), lg_env=lg_env, deploy=hil_options.deploy)
    rep = hil_report(pytestconfig)
    try:
        yield lab
    finally:
        lab.release("session end")
        rep.rig.setdefault("lab places taken", str(lab.takes))


@pytest.fixture
def rig(request: pytest.FixtureRequest, hil_options: HilOptions, hil_base: Path) -> Iterator[Rig]:
    """A started, deployed rig with its key on this host (fresh per test on the virtual rig)."""
    config = request.config
    rep = hil_report(config)
    mark = request.node.get_closest_marker("mechanism")
    want = str(mark.args[0]) if mark else None
    if hil_options.is_sim:
        image: SimImage = request.getfixturevalue("sim_image")
        n = len(list((hil_base / "rigs").glob("*"))) if (hil_base / "rigs").exists() else 0
        rig_id = _clean_rig_id("hil-%d-%d" % (os.getpid() % 100000, n))
        r: Rig = SimRig(image, hil_base / "rigs" / rig_id, rig_id, hil_options.time_scale,
                        mechanism=want)
        shared = False
    elif hil_options.is_port:
        r = request.getfixturevalue("bench_rig")
        shared = True
    elif hil_options.is_lab:
        lab = request.getfixturevalue("lab_session")
        r = lab.get()
        shared = True
    else:
        made = config.hook.pytest_pumprig_make_rig(config=config, kind=hil_options.rig, base=hil_base / "rigs",
                                                   mechanism=want)
        if made is None:
            raise pytest.UsageError("--rig %s: not 'sim', not a serial port, and no plugin makes that rig kind "
                                    "(pytest_pumprig_make_rig hook)" % hil_options.rig)
        r = made
        shared = bool(getattr(r, "shared", False))
        _report_made_rig_firmware(rep, r)
    if want is not None and not hil_options.is_sim:
        # a rig made for a mechanism says so (the emulated Pico checks its hello at boot); ask
        # any other (a bench Pico, a lab place) its hello
        runs = getattr(r, "mechanism", None)
        if runs is None:
            from ..pump import Pump
            with Pump.open(r.port) as p:
                runs = getattr(p.info, "mechanism", None)
        if runs != want:
            if not shared:
                r.stop()
            pytest.skip("the check is for mechanism %s; the rig on %s runs %s" % (want, r.port, runs))
    mech = getattr(r, "mechanism", None)
    if not rep.rig:
        rep.rig.update(r.describe())
    elif mech is not None and rep.rig.get("mechanism") not in (None, mech) and not any(
            k.startswith(mech + ": ") for k in rep.rig):
        # a second rig of the session, made for another mechanism (the emulated Pico): its rows too
        rep.rig.update({"%s: %s" % (mech, k): v for k, v in r.describe().items() if k != "mechanism"})
    rep.check(request.node.nodeid).rig_id = r.rig_id
    try:
        yield r
    finally:
        if not shared:
            r.stop()
        elif hil_options.is_lab and request.node.stash.get(FAILED_KEY, False):
            # a rig that failed a check is not trusted with the next one: give the place back
            # (the next test takes a place afresh, deployed again)
            lab.release("test failed: %s" % request.node.nodeid)


def _report_made_rig_firmware(rep: HilReport, r: Any) -> None:
    """A hook-made rig's (the emulated Pico's) deploy in the report's firmware table: once per
    rig, its rows prefixed by its mechanism when a session makes more than one."""
    if any(seen is r for seen in rep.firmware_of):
        return
    rep.firmware_of.append(r)
    rows = firmware_rows(getattr(r, "deploy", None), getattr(r, "hello_build", ""))
    source = getattr(r, "flash_source", "")
    if source:
        rows["flash"] = source
    mech = getattr(r, "mechanism", None)
    if rep.firmware and mech is not None:
        rows = {"%s: %s" % (mech, k): v for k, v in rows.items()}
    rep.firmware.update(rows)


def pump_timeout_s(rig: Any) -> float:
    """Per-try answer timeout for a Pump on `rig`: its `pump_timeout_s`, else PUMP_TIMEOUT_S."""
    return float(getattr(rig, "pump_timeout_s", PUMP_TIMEOUT_S) or PUMP_TIMEOUT_S)


@pytest.fixture
def pump(rig: Rig) -> Iterator[Any]:
    """An open pumpctl.pump.Pump on the rig (key from this host's key store)."""
    from ..pump import Pump
    deadline = time.monotonic() + 10.0
    while True:
        try:
            p = Pump.open(rig.port, timeout_s=pump_timeout_s(rig), retries=2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield p
    finally:
        p.close()


# ------------------------------------------------------------------------------------ rig clock
class RigClock:
    """The rig's time (seconds): sim time on the virtual rig, host time on a bench rig."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.unpaced = rig.time_scale == "max"
        # how fast the rig's time may run, for pacing the polls (never to judge a check: every
        # wait ends on the rig's own clock); unpaced, the polls are as short as allowed
        self.scale = poll_scale(rig.time_scale)
        self._wall0 = time.monotonic()
        self._rig0 = self.now()

    def now(self) -> float:
        return self.rig.now_s()

    def _pass(self, rig_s: float, wall_s: float) -> None:
        """The rig's own wait (Rig.pass_time) where it has one, a wall-time sleep otherwise (a
        hook's rig need not subclass Rig)."""
        wait = getattr(self.rig, "pass_time", None)
        if wait is None:
            time.sleep(wall_s)
        else:
            wait(rig_s, wall_s)

    def wall_s(self, rig_s: float) -> float:
        """Real seconds that `rig_s` of rig time take: at a ceiling, rig_s / scale; unpaced,
        at the pace this rig has run so far (measured: rig time per real time since the
        fixture started)."""
        if not self.unpaced:
            return rig_s / self.scale
        ran = self.now() - self._rig0
        wall = time.monotonic() - self._wall0
        return rig_s * wall / ran if ran > 0 else float("nan")

    def sleep(self, rig_s: float) -> float:
        """Let `rig_s` seconds of rig time pass (measured on the rig's clock); returns rig time."""
        if rig_s < 0:
            raise ValueError("rig_s = %r: must be >= 0" % rig_s)
        end = self.now() + rig_s
        while True:
            now = self.now()
            if now >= end:
                return now
            self._pass(end - now, min(max((end - now) / self.scale, 0.001), 0.5))

    @staticmethod
    def basal_step_s(pump: Any, conc_ug_ml: float) -> float:
        """Rig seconds between two microsteps of the basal the pump runs now, at `conc_ug_ml`
        (ug/mL = ng/uL) and the pump's pL per microstep: 16.7 s at 186 ug/day, 2000 ug/mL on
        the 20 mL rig. A check sizes its waits in these (a number of steps, a detector's window
        in steps), so it takes as long as what it must see on every rig, not fixed minutes."""
        rate = pump.status().basal_ng_day
        if rate <= 0:
            raise ValueError("basal_step_s: no basal running (basal_ng_day = %d)" % rate)
        steps_per_day = rate * 1000.0 / conc_ug_ml * 1000.0 / pump.calibration().pl_per_step
        return 86_400.0 / steps_per_day

    @staticmethod
    def step_poll_s(period_s: float) -> float:
        """Poll interval (rig s) for a wait counted in basal step periods: a quarter period,
        at least 2 s (4.2 s at 186 ug/day). Nothing such a wait looks for (a step made, a dose
        counted missed, a detector's window of steps) changes faster than once a period; on an
        emulated Pico each poll costs ~1 s of wall time (busy firmware code), so polling every
        2 s spent about as long answering polls as running the pump."""
        return max(2.0, period_s / 4)

    def wait_steps(self, pump: Any, conc_ug_ml: float, steps: int, slack_steps: int = 2,
                   what: str = "basal microsteps") -> float:
        """Wait until the basal has made `steps` more microsteps (the pump's delivered total,
        whole steps), allowing `steps + slack_steps` step periods and 10 s; returns rig time.
        Polls every `step_poll_s` of the period."""
        ng_per_step = pump.calibration().pl_per_step * conc_ug_ml / 1e6
        start = pump.status().delivered_total_ng
        need = start + steps * ng_per_step - ng_per_step / 2
        period = self.basal_step_s(pump, conc_ug_ml)
        limit = (steps + slack_steps) * period + 10.0
        self.wait_for(lambda: pump.status().delivered_total_ng >= need, limit,
                      poll_rig_s=self.step_poll_s(period), what="%d %s" % (steps, what))
        return self.now()

    def wait_for(self, predicate: Callable[[], Any], rig_s: float, poll_rig_s: float = 1.0,
                 what: str = "condition") -> Any:
        """Poll `predicate` until it returns a true value (returned) or `rig_s` of rig time pass
        (AssertionError naming `what`). Polls every `poll_rig_s` rig seconds (at least 2 ms real)."""
        start = self.now()
        while True:
            # the clock is read before the predicate: a false answer then holds at a rig time
            # at least `now`, so a rig that runs on during the round trip (unpaced, at max)
            # never fails a condition it met in time
            now = self.now()
            got = predicate()
            if got:
                return got
            if now - start > rig_s:
                raise AssertionError("%s: not seen within %.0f s of rig time" % (what, rig_s))
            self._pass(poll_rig_s, max(poll_rig_s / self.scale, 0.002))


@pytest.fixture
def rig_clock(rig: Rig) -> RigClock:
    """The rig's own clock (RigClock): `now_s()` in rig seconds and waits in rig time, so a test
    reads the same on a virtual rig at x1000, an emulated Pico and a bench Pico in real time."""
    return RigClock(rig)


# ------------------------------------------------------------------------------------ faults
class Faults:
    """Fault injection; a fault the rig cannot produce skips the test with the reason."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def _do(self, name: str, **args: Any) -> None:
        why = self.rig.can(name)
        if why:
            pytest.skip(why)
        try:
            self.rig.fault(name, **args)
        except FaultUnavailable as exc:
            pytest.skip(str(exc))

    def require(self, *names: str) -> None:
        """Skip now (before any setup) unless the rig can produce every fault in `names`."""
        for n in names:
            why = self.rig.can(n)
            if why:
                pytest.skip(why)

    def occlude(self) -> None:
        self._do("occlude")

    def clear_occlusion(self) -> None:
        self._do("clear_occlusion")

    def stall(self) -> None:
        self._do("stall")

    def clear_stall(self) -> None:
        self._do("clear_stall")

    def jam(self) -> None:
        """Screw jammed: the motor skips, DIAG silent."""
        self._do("jam")

    def clear_jam(self) -> None:
        self._do("clear_jam")

    def slip(self) -> None:
        """Coupling slips: the motor turns, the screw does not, DIAG silent."""
        self._do("slip")

    def clear_slip(self) -> None:
        self._do("clear_slip")

    def empty_reservoir(self) -> None:
        self._do("empty_reservoir")

    def clear_empty(self, nl: int | None = None) -> None:
        """Release the end stop; the syringe then holds `nl` nL (None: full, the rig's mechanism
        file's syringe_capacity_nl: 20 mL, or 1 mL on the precision drive)."""
        if nl is None:
            self._do("clear_empty")
        else:
            self._do("clear_empty", nl=nl)

    def press_button(self, count: int = 1, gap_ms: int = 1000) -> None:
        self._do("press_button", count=count, gap_ms=gap_ms)

    def power_cut(self, off_ms: int = 0) -> None:
        """Cut power now; returns once the firmware is running again."""
        self._do("power_cut", off_ms=off_ms)

    def hang(self) -> None:
        """Stop the main loop (the watchdog must reset the rig)."""
        self._do("hang")

    def corrupt_state(self) -> None:
        """Overwrite both stored state slots, then reboot."""
        self._do("corrupt_state")


@pytest.fixture
def faults(rig: Rig) -> Faults:
    """Fault injection on the rig (Faults): occlusion, stall, empty reservoir, button presses,
    power cut, hang ...; a fault the rig cannot make itself skips the test with the reason (or,
    on a bench rig with --operator, asks the operator to make it)."""
    return Faults(rig)


# ------------------------------------------------------------------------------------ balance
@pytest.fixture
def balance(request: pytest.FixtureRequest, rig: Rig, hil_options: HilOptions) -> Iterator[Any]:
    """A pumpctl.accuracy.balance.Balance: the virtual rig's simulated balance, or the MT-SICS
    balance on `--balance PORT` beside a bench rig (skipped without one)."""
    from ..accuracy.balance import MtSicsBalance, SimBalance
    reading = rig.balance_reading()
    if reading is not None:
        yield SimBalance(rig.balance_reading, label="%s %s" % (rig.kind, rig.rig_id))
        return
    if not hil_options.balance:
        pytest.skip("bench rig without a balance: give --balance PORT (MT-SICS) to run gravimetric checks")
    with MtSicsBalance(hil_options.balance) as b:
        yield b


# ------------------------------------------------------------------------------------ program
FULL = -1   # program(fill_nl=FULL): refill the rig's whole reservoir (its mechanism's capacity)

class Uploaded:
    """A program committed on the rig: the Program, its CRC, the review shown, its source."""

    def __init__(self, program: Any, crc: int, review: Any, source: str) -> None:
        self.program = program
        self.crc = crc
        self.review = review
        self.source = source


def load_program_file(name: str | Path) -> Any:
    """A program file through pumpctl's own loader: a bare name is looked up in
    examples/programs/, then relative to the current directory."""
    from ..cli.cmd_program import load_program
    p = Path(name)
    if not p.is_absolute() and not p.exists() and (EXAMPLES / p).exists():
        p = EXAMPLES / p
    return load_program(p)


@pytest.fixture
def program(request: pytest.FixtureRequest, pump: Any, rig: Rig) -> Callable[..., Uploaded]:
    """`program(source, fill_nl=FULL, clock=None, ack_alarms=True)` uploads and confirms a program.

    source: a file name in examples/programs/, a path, or a pumpcore.program.Program. Before
    the upload, a rig whose reservoir reads empty is refilled with `fill_nl` nL at the
    program's concentration (FULL: the rig's own reservoir, its hard limit max_reservoir_nl
    derived from its mechanism file; pass None not to), and a rig whose clock is unset is synced to
    `clock` = (day, ms_of_day), default this host's local time. Stage, verify, review (both
    decodings must be shown) and commit go through Pump.upload_program; the running program's
    CRC is checked afterwards; on a virtual rig all of it happens with the rig's clock held, so
    the program starts at the `clock` given, however slow the host. With `ack_alarms`, every alarm still unacknowledged after the
    commit is then acknowledged, as the nurse does after setting up a pump (a fresh rig boots
    with reservoir-empty and no-program latched).
    """
    from pumpcore import wire

    from ..errors import RefusedError
    rep = hil_report(request.config)

    def ack_all() -> None:
        for a in pump.alarms():
            if not a.flags & wire.ALARM_FLAG_ACKED:
                try:
                    pump.ack_alarm(a.alarm_id)
                except RefusedError:
                    pass   # not acknowledgeable (e.g. cleared meanwhile)

    def upload(source: Any, fill_nl: int | None = FULL,
               clock: tuple[int, int] | None = None, ack_alarms: bool = True) -> Uploaded:
        with rig.held():
            return _upload(source, fill_nl, clock, ack_alarms)

    def _upload(source: Any, fill_nl: int | None, clock: tuple[int, int] | None,
                ack_alarms: bool) -> Uploaded:
        if isinstance(source, (str, Path)):
            prog = load_program_file(source)
            label = str(source)
        else:
            prog = source
            label = "inline program"
        st = pump.status()
        if fill_nl is not None and st.reservoir_nl == 0:
            if fill_nl == FULL:
                fill_nl = int(pump.limits().max_reservoir_nl)
            pump.refill(fill_nl, prog.concentration_ug_ml)
        if not st.flags & wire.STATUS_FLAG_CLOCK_SET:
            if clock is None:
                pump.sync_time()
            else:
                pump.time_sync(*clock)
        if ack_alarms:
            ack_all()
        encoded = bytes(prog.encode())
        seen: list[Any] = []

        def confirm(review: Any) -> bool:
            seen.append(review)
            return bool(review.staged_lines)

        review = pump.upload_program(encoded, confirm)
        assert seen, "upload_program never showed the review"
        assert review.committed, "program %s not committed (review: %s)" % (label, review.staged_lines)
        running = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_DESCRIBE)
        assert running.crc == prog.crc32(), "running program crc %08x, uploaded %08x" % (running.crc, prog.crc32())
        if ack_alarms:
            ack_all()
        rep.check(request.node.nodeid).programs.append("%s (crc %08x): %s" % (
            label, prog.crc32(), "; ".join(review.staged_lines)))
        return Uploaded(prog, prog.crc32(), review, label)

    return upload


# ------------------------------------------------------------------------------------ record
class Recorder:
    """`record(name, value, unit)` adds a measured figure to this test's row of the report and
    prints it; `record.series(name, x, {label: ys}, xlabel, ylabel)` adds a plot."""

    def __init__(self, report: HilReport, nodeid: str, node: Any = None) -> None:
        self.report = report
        self.nodeid = nodeid
        self.node = node

    def __call__(self, name: str, value: Any, unit: str = "") -> None:
        self.report.record(self.nodeid, name, value, unit)
        if self.node is not None:   # JUnit XML <property name="hil:NAME" value="VALUE UNIT"/>, for CI
            self.node.user_properties.append(("hil:" + name, ("%s %s" % (value, unit)).strip()))
        print("HIL figure: %s = %s %s" % (name, value, unit))

    def series(self, name: str, x: list[float], lines: dict[str, list[float]], xlabel: str, ylabel: str) -> None:
        self.report.add_series(self.nodeid, Series(name, list(x), {k: list(v) for k, v in lines.items()},
                                                   xlabel, ylabel))


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Recorder:
    """`record(name, value, unit)`: a measured figure, into the Markdown report (--rig-report)
    and into the JUnit XML as a property `hil:NAME` (record_property); `record.series(...)`
    adds a plot to the report."""
    return Recorder(hil_report(request.config), request.node.nodeid, request.node)


def day_ms(dt: datetime.datetime) -> tuple[int, int]:
    """(days since 2000-01-01, ms of day) of a naive local datetime."""
    return (dt.date() - EPOCH).days, ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1000 + dt.microsecond // 1000
