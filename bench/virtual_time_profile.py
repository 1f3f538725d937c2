"""Where a simulated second goes on the virtual rig at `--time-scale max` (186 ug/day delivering).

    .venv/bin/python bench/virtual_time_profile.py [--iterations 6000]

A fresh rig gets the firmware deployed and the scripted run's program (bench/virtual_time.py);
then its main.py is replaced by one that boots the same app and runs `--iterations` loop
iterations of the real PumpApp.step() with time.ticks_us around each method it calls (wrapped
on the instance), around each round trip to the supervisor, each state save (its encode and its file
write) and each log append; the supervisor runs under cProfile and counts its answers by op.
Prints, per loop iteration: the host microseconds of each part, the round trips and their
wall time, and the supervisor's own CPU; then the top of the supervisor's profile.

The figures are host wall time of the unix port on a shared machine: quote them as shares of
the iteration, not as absolute speeds (the bare-loop line gives the machine's pace then).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import virtual_time as vt  # noqa: E402  (setup: the scripted run's program)

from pumpctl.pump import Pump  # noqa: E402
from pumpctl.rigs.simsession import start_deployed_rig  # noqa: E402
from pumpctl.rigs.virtualrig import VirtualRig  # noqa: E402

PROFILE_MAIN = r'''
import sys
try:
    import profiled
except BaseException as exc:
    with open("profile.err", "w") as f:
        sys.print_exception(exc, f)
    raise
'''

PROFILED = r'''
import gc
try:
    gc.threshold(8192)          # as main.py
except AttributeError:
    pass
import time
import pumphw
from pumpfw import app as appmod
from pumpfw import store as storemod
from pumpcore import statecodec
us = time.ticks_us
d = time.ticks_diff
hw = pumphw.make_hardware()
A = appmod.PumpApp(hw)
A.crashes = 0
A.lock_link(True)
A.boot()
for code in A.alarm_set.active():
    A.ack_alarm(code)           # the boot's reset alarm: unacknowledged, the loop never sleeps quiet
appmod.loop_gc_threshold()      # as app.run before its loop
N = NITER
# [round trips, their us, saves, their us, encodes, their us, file writes, their us, logs, their us]
c = [0] * 10
def timed(fn, k):
    def w(*a):
        t = us()
        r = fn(*a)
        c[k] += 1
        c[k + 1] += d(us(), t)
        return r
    return w
hw._link.call = timed(hw._link.call, 0)
A.save = timed(A.save, 2)
statecodec.encode = timed(statecodec.encode, 4)
storemod._write_file = timed(storemod._write_file, 6)
A._log = timed(A._log, 8)
# the parts of PumpApp.step(), timed where they are: the real step() calls them through these
names = ("_deliver", "_sense", "_bookkeeping", "serial_read", "_sleep")
acc = [0] * len(names)
def part(fn, k):
    def w(*a):
        t = us()
        r = fn(*a)
        acc[k] += d(us(), t)
        return r
    return w
for k, name in enumerate(names):
    obj = hw if name == "serial_read" else A
    setattr(obj, name, part(getattr(obj, name), k))
def cpu_s():
    # this process's user + system CPU (Linux /proc, clock ticks of 10 ms)
    try:
        with open("/proc/self/stat") as f:
            x = f.read().rsplit(")", 1)[1].split()
        return (int(x[11]) + int(x[12])) / 100
    except OSError:
        return 0.0
s0 = hw._clock.t_us
c0 = cpu_s()
w0 = us()
for i in range(N):
    A.step()
wall = d(us(), w0)
cpu = cpu_s() - c0
sim_s = (hw._clock.t_us - s0) / 1e6
t = us()
n = 0
while n < 100000:
    n += 1
bare = d(us(), t) / 100000
with open("profile.txt", "w") as f:
    f.write("iterations %d over %.0f sim s: %.1f us of host time per iteration, %.1f us of it CPU"
            " (bare loop pass %.3f us)\n" % (N, sim_s, wall / N, cpu * 1e6 / N, bare))
    for k, v in zip(names + ("the rest",), acc + [wall - sum(acc)]):
        f.write("  %-14s %8.1f us/iteration  %5.1f %%\n" % (k, v / N, 100.0 * v / wall))
    f.write("  round trips    %8.3f per iteration, %.0f us each (in idle and the calls above)\n"
            % (c[0] / N, c[1] / max(1, c[0])))
    f.write("  state saves    %8.4f per iteration, %.0f us each (encode %.0f us, file write %.0f us; in _bookkeeping)\n"
            % (c[2] / N, c[3] / max(1, c[2]), c[5] / max(1, c[4]), c[7] / max(1, c[6])))
    f.write("  log appends    %8.4f per iteration, %.0f us each\n" % (c[8] / N, c[9] / max(1, c[8])))
A.loop()
'''

SUPERVISOR = r'''
import cProfile, collections, pstats, sys
from pumpctl.rigs import virtualrig, virtualrig_supervisor as vs
from pumpsim import twinport
ops = collections.Counter()
orig = vs.Supervisor._answer
def _answer(self, tp, op, r0, r1, r2):
    ops[twinport.OP_NAMES.get(op, op)] += 1
    return orig(self, tp, op, r0, r1, r2)
vs.Supervisor._answer = _answer
prof = cProfile.Profile()
prof.enable()
try:
    virtualrig.main(sys.argv[2:])
finally:
    prof.disable()
    with open(sys.argv[1], "w") as f:
        f.write("answers by op: %s\n" % dict(ops))
        st = pstats.Stats(prof, stream=f)
        f.write("supervisor: %.2f s in its loop\n" % st.total_tt)
        st.sort_stats("tottime").print_stats(12)
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=6000, help="loop iterations profiled")
    args = ap.parse_args()
    os.environ.setdefault("PUMPCTL_HOME", tempfile.mkdtemp(prefix="vtime-prof-"))
    home = Path(os.environ["PUMPCTL_HOME"])
    d = home / "profile"
    rig = start_deployed_rig(d, "max", "profile", log=lambda s: None)
    try:
        with Pump.open(rig.port) as pump:
            vt.setup(pump)
    finally:
        rig.stop()
    (d / "flash" / "main.py").write_text(PROFILE_MAIN)
    (d / "flash" / "profiled.py").write_text(PROFILED.replace("NITER", str(args.iterations)))
    sup_py = d / "supervisor_profile.py"
    sup_py.write_text(SUPERVISOR)
    sup_out = d / "supervisor_profile.txt"
    proc = subprocess.Popen([sys.executable, str(sup_py), str(sup_out), "serve", str(d),
                             "--time-scale", "max", "--name", "profile", "--parent-pid", str(os.getpid())],
                            stdout=subprocess.DEVNULL, stderr=open(d / "supervisor.log", "ab"))
    try:
        deadline = time.monotonic() + 30
        while not (d / "rig.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                print("the profiled supervisor did not start: see", d / "supervisor.log")
                return 1
            time.sleep(0.05)
        out = d / "flash" / "profile.txt"
        err = d / "flash" / "profile.err"
        deadline = time.monotonic() + 1200
        while not out.exists() or not out.read_text().rstrip().endswith("each"):
            if err.exists():
                time.sleep(0.5)
                print("the profiled firmware failed:\n" + err.read_text(), end="")
                return 1
            if time.monotonic() > deadline:
                print("no profile after 1200 s: see", d / "firmware.log")
                return 1
            time.sleep(0.2)
        print(out.read_text(), end="")
    finally:
        VirtualRig(d).stop()
        proc.wait(timeout=30)
    print(sup_out.read_text()[:3000], end="")
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
