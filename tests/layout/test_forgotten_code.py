"""Code the device loads for one call and lets go after (issue 16's RAM budget): the program
checks (`pumpcore.programcheck`) are in the RP2040's heap only while a program is validated or
decoded, the refusal texts (`pumpcore.refusaltext`) only while one is rendered, the state parser
(`pumpcore.statedecode`) only while the boot reads the saved state, the pressure-sensor
description's checks (`pumpcore.sensorcheck`) only while a sensor is built. Run in the real MicroPython, where `pumpcore.forget` is active as on a Pico."""
from __future__ import annotations

from pumpcore.program import Program, ProgramError
from tests.support.mpy import run_micropython

SCRIPT = """import sys, gc
from pumpcore.program import Program, ProgramError
p = Program(mode=1, rate_ng_day=186000)
print('LOADED0', 'pumpcore.programcheck' in sys.modules)
p.validate()
print('LOADED1', 'pumpcore.programcheck' in sys.modules)
q = Program.decode(p.encode())
print('SAME', q.encode() == p.encode(), 'LOADED2', 'pumpcore.programcheck' in sys.modules)
try:
    Program(mode=1, rate_ng_day=0).validate()
except ProgramError as e:
    print('ERR', e)
print('LOADED3', 'pumpcore.programcheck' in sys.modules)
try:
    Program.decode(b'XP' + p.encode()[2:])
except ProgramError as e:
    print('ERR', e)
print('LOADED4', 'pumpcore.programcheck' in sys.modules)
import pumpcore
print('ATTR', hasattr(pumpcore, 'programcheck'))
"""


def _cpython_error(fn) -> str:
    try:
        fn()
    except ProgramError as exc:
        return str(exc)
    raise AssertionError("no ProgramError")


def test_program_checks_run_and_are_let_go_on_micropython() -> None:
    out = run_micropython(SCRIPT).split("\n")
    p = Program(mode=1, rate_ng_day=186000)
    assert out[:3] == ["LOADED0 False", "LOADED1 False", "SAME True LOADED2 False"]
    # the same one-line errors as on the host (which keeps the module: forget is a no-op there)
    assert out[3] == "ERR " + _cpython_error(lambda: Program(mode=1, rate_ng_day=0).validate())
    assert out[4] == "LOADED3 False"
    assert out[5] == "ERR " + _cpython_error(lambda: Program.decode(b"XP" + p.encode()[2:]))
    assert out[6:8] == ["LOADED4 False", "ATTR False"]


REFUSALS = """import sys
from pumpcore import scheduler
for code in (scheduler.REFUSE_LOCKOUT, 99):
    print('TEXT', scheduler.refusal_text(code))
    print('LOADED', 'pumpcore.refusaltext' in sys.modules)
"""


def test_refusal_texts_are_rendered_and_let_go_on_micropython() -> None:
    from pumpcore import scheduler
    out = run_micropython(REFUSALS).split("\n")
    assert out[:4] == ["TEXT " + scheduler.refusal_text(scheduler.REFUSE_LOCKOUT), "LOADED False",
                       "TEXT unknown refusal code 99", "LOADED False"]
    assert scheduler.refusal_text(scheduler.REFUSE_LOCKOUT) == "patient bolus locked out (lockout interval running)"


STATE = """import sys
from pumpcore import statecodec
st = statecodec.PersistentState()
st.set(statecodec.F_BOOT_COUNT, 7)
st.sections[statecodec.SEC_APP] = (1, (2, 3), 4)
back = statecodec.decode(statecodec.encode(st, 5))
print('BACK', back.seq, back.get(statecodec.F_BOOT_COUNT), back.sections[statecodec.SEC_APP])
print('LOADED', 'pumpcore.statedecode' in sys.modules)
try:
    statecodec.decode(b'PS' + bytes(20))
except statecodec.StateError as e:
    print('ERR', e.code, e)
print('LOADED', 'pumpcore.statedecode' in sys.modules)
"""


def test_the_state_parser_runs_and_is_let_go_on_micropython() -> None:
    from pumpcore import statecodec
    out = run_micropython(STATE).split("\n")
    assert out[:2] == ["BACK 5 7 (1, (2, 3), 4)", "LOADED False"]
    try:
        statecodec.decode(b"PS" + bytes(20))
    except statecodec.StateError as exc:
        assert out[2] == "ERR %d %s" % (exc.code, exc)
    else:
        raise AssertionError("no StateError on CPython")
    assert out[3] == "LOADED False"


SENSOR = """import sys
from pumpcore import pressure
s = pressure.PressureSensor(None)
print('SENSOR', s.occlusion_threshold_kpa_x10, s.fault_low_kpa_x10, s.rail_kpa_x10)
print('LOADED', 'pumpcore.sensorcheck' in sys.modules)
bad = dict(pressure.BOM_SENSOR)
bad['adc_ref_mv'] = 5000
try:
    pressure.PressureSensor(bad)
except pressure.SensorError as e:
    print('ERR', e)
print('LOADED', 'pumpcore.sensorcheck' in sys.modules)
"""


def test_the_sensor_checks_run_and_are_let_go_on_micropython() -> None:
    from pumpcore import pressure
    out = run_micropython(SENSOR).split("\n")
    s = pressure.PressureSensor(None)
    assert out[:2] == ["SENSOR %d %d %d" % (s.occlusion_threshold_kpa_x10, s.fault_low_kpa_x10, s.rail_kpa_x10),
                       "LOADED False"]
    bad = dict(pressure.BOM_SENSOR, adc_ref_mv=5000)
    try:
        pressure.PressureSensor(bad)
    except pressure.SensorError as exc:
        assert out[2] == "ERR %s" % exc
    else:
        raise AssertionError("no SensorError on CPython")
    assert out[3] == "LOADED False"


BOOT = """import sys, gc
from tests.support import cutrig
from pumpfw.app import PumpApp
fs = cutrig.CutFs(cutrig.LITTLEFS)
for n in range(2):           # a first boot, then one that restores what the first saved
    app = PumpApp(cutrig.CutHardware(%(root)r, [0]), fs=fs)
    app.boot()
    print('BOOT', n, app.ready, 'pumpfw.recovery' in sys.modules, 'pumpcore.buildrec' in sys.modules,
          'pumpfw.storemount' in sys.modules, 'pumpcore.calibration' in sys.modules,
          'pumpcore.alarmtable' in sys.modules, 'pumpcore.restore' in sys.modules)
    import pumpfw
    print('ATTR', hasattr(pumpfw, 'recovery'))
print('SET', app.set_time(9000, 3600000), app.refill(1000000, 2000), app.prime(0) is not None)
print('LOADED', 'pumpfw.configure' in sys.modules, hasattr(pumpfw, 'configure'),
      'pumpcore.calibration' in sys.modules)
print('CAL', app.set_calibration(app.derived_pl), app.set_calibration(1)[0],
      'pumpcore.calibration' in sys.modules, 'pumpfw.configure' in sys.modules)
"""


def test_the_boot_recovery_runs_and_is_let_go_on_micropython(tmp_path) -> None:
    """The boot's recovery (pumpfw.recovery) is in the heap only while the boot runs: after
    a first boot and after one that restores a saved state, it is out of sys.modules and its
    package, and the app is ready; so is the store's read of the flash (pumpfw.storemount). So are the configuring commands after a time set, a refill
    and a refused prime."""
    import shutil
    from tests.support.mpy import REPO
    shutil.copy(REPO / "hw" / "mechanism.json", tmp_path / "mechanism.json")
    out = run_micropython(BOOT % {"root": str(tmp_path)}, extra_path=[str(REPO)]).split("\n")
    assert out[:4] == ["BOOT 0 True False False False False False False", "ATTR False",
                       "BOOT 1 True False False False False False False", "ATTR False"], out
    # the commands that configure the pump (pumpfw.configure): done, or refused, and let go
    assert out[4:6] == ["SET None None True", "LOADED False False False"], out
    # a calibration loads pumpcore.calibration for its call too (the mechanism's pL per step
    # is accepted, 1 pL is refused) and lets it go with the configuring code
    assert out[6] == "CAL None 1 False False", out


UPLOAD = """import sys, struct
from pumpcore import wire, wirehost
from pumpfw.server import ProtocolServer
from tests.protocol.fakes import FakeController, FakeProgram
out = []
server = ProtocolServer(FakeController(), out.append)
enc = FakeProgram(186000, 'p1').encode()
server.feed(wire.encode_frame(0, 1, wire.CMD_PROG_STAGE, 0, struct.pack('<II', 0, len(enc)) + enc))
server.feed(wire.encode_frame(0, 2, wire.CMD_PROG_VERIFY, 0, b''))
server.feed(wire.encode_frame(0, 3, wire.CMD_PROG_READ, 0, struct.pack('<BBI', 1, 0, 0)))
server.feed(wire.encode_frame(0, 4, wire.CMD_PROG_STAGE, 0, struct.pack('<II', 5, 4) + b'x'))
for line in out:
    print('STATUS', wirehost.decode_line(line)[4])
print('LOADED', 'pumpfw.programlink' in sys.modules)
"""


def test_the_program_upload_is_served_and_let_go_on_micropython() -> None:
    """Stage, verify and read (pumpfw.programlink) are in the heap only while one is served:
    each answered (the last stage out of order, refused), and the module gone after."""
    from pumpcore import wire
    from tests.support.mpy import REPO
    out = run_micropython(UPLOAD, extra_path=[str(REPO)]).split("\n")
    ok, bad = "STATUS %d" % wire.OK, "STATUS %d" % wire.ERR_BAD_PAYLOAD
    assert out[:5] == [ok, ok, ok, bad, "LOADED False"], out


ALARM_TABLE_LOADS = """import sys
from pumpcore import alarms
s = alarms.AlarmSet()
print('LOADED', 'pumpcore.alarmtable' in sys.modules)
print('ROWS', [(s.priority(c), s.latches(c)) for c in range(1, alarms.ALARM_MAX + 1)])
print('NAME', alarms.alarm_name(alarms.ALARM_CLOCK_LOST), 'pumpcore.alarmtable' in sys.modules)
"""


def test_the_alarm_table_is_copied_at_boot_and_let_go_on_micropython() -> None:
    """The AlarmSet copies the table's columns when built and keeps no table; the device reads an
    alarm's priority and latch from its AlarmSet, the same as the host's table says."""
    from pumpcore import alarms
    out = run_micropython(ALARM_TABLE_LOADS).split("\n")
    want = [(alarms.priority(c), alarms.latches(c)) for c in range(1, alarms.ALARM_MAX + 1)]
    assert out[:3] == ["LOADED False", "ROWS %r" % (want,), "NAME clock-lost False"]


READS = """import sys, struct
from pumpcore import wire, wirehost
from pumpfw.server import ProtocolServer
from tests.protocol.fakes import FakeController
out = []
server = ProtocolServer(FakeController(), out.append)
for seq, cmd, body in ((1, wire.CMD_HELLO, b''), (2, wire.CMD_ALARMS, b''), (3, wire.CMD_LOG_READ, struct.pack('<IB', 0, 3)),
                       (4, wire.CMD_CAL_READ, b''), (5, wire.CMD_LIMITS_READ, b''), (6, wire.CMD_CAL_READ, b'x')):
    server.feed(wire.encode_frame(0, seq, cmd, 0, body))
    print('LOADED', 'pumpfw.readreply' in sys.modules)
for line in out:
    f = wirehost.decode_line(line)
    print('ANSWER', f[2], f[4], len(f[5]))
"""


def test_the_reads_are_served_and_let_go_on_micropython() -> None:
    """Hello, alarms, log, calibration and limits (pumpfw.readreply) are in the heap only while
    one is served: each answered as on the host, the module gone after each."""
    import struct
    import sys
    from tests.support.mpy import FIRMWARE
    sys.path.insert(0, str(FIRMWARE))
    from pumpcore import wire, wirehost
    from pumpfw.server import ProtocolServer
    from tests.protocol.fakes import FakeController
    from tests.support.mpy import REPO
    out = run_micropython(READS, extra_path=[str(REPO)]).split("\n")
    host: list[bytes] = []
    server = ProtocolServer(FakeController(), host.append)
    for seq, cmd, body in ((1, wire.CMD_HELLO, b""), (2, wire.CMD_ALARMS, b""), (3, wire.CMD_LOG_READ, struct.pack("<IB", 0, 3)),
                           (4, wire.CMD_CAL_READ, b""), (5, wire.CMD_LIMITS_READ, b""), (6, wire.CMD_CAL_READ, b"x")):
        server.feed(wire.encode_frame(0, seq, cmd, 0, body))
    want = ["ANSWER %d %d %d" % (f[2], f[4], len(f[5])) for f in map(wirehost.decode_line, host)]
    assert out[:6] == ["LOADED False"] * 6, out
    assert out[6:12] == want and len(want) == 6, out
    assert want[2] == "ANSWER 3 %d %d" % (wire.OK, 13 + 3 * 32) and want[5].startswith("ANSWER 6 %d" % wire.ERR_BAD_PAYLOAD)
