"""Benchmark of the dose core: 30 simulated days of a mixed program on CPython and in micropython.

Prints: seconds to simulate 30 days (flex steps, periodic and patient boluses, suspends),
jumping event to event with ms_to_next_due(); advance() calls per second for a 10-ms tick;
peak heap (gc.mem_alloc) in micropython. Run from the repository root:

    python bench/bench_core.py

The same file runs inside `micropython` (it starts itself there with MICROPYPATH=firmware),
so it uses no typing or f-strings.
"""
import sys
import time
import gc

H = 3600000
DAY = 86400000
IS_MPY = sys.implementation.name == "micropython"


def now_s():
    """Seconds of CPU time on CPython (immune to other jobs on the machine); wall time in micropython."""
    if IS_MPY:
        return time.ticks_ms() / 1000.0
    return time.process_time()


def mixed_program():
    from pumpcore.program import Program, MODE_FLEX
    weekday = [(0, 200000), (2 * H, 210000), (5 * H, 190000), (6 * H + 1800000, 170000), (8 * H, 160000),
               (11 * H, 150000), (14 * H, 155000), (17 * H, 170000), (20 * H, 190000), (22 * H + 1800000, 205000)]
    weekend = [(0, 180000), (9 * H, 160000), (21 * H, 190000)]
    return Program(mode=MODE_FLEX, concentration_ug_ml=2000, patterns=[(0x1F, weekday), (0x60, weekend)],
                   periodic=[(7 * H, 20000, 900000), (19 * H, 20000, 900000)],
                   patient=(10000, 600000, 3 * H, 4), low_volume_nl=2000000, low_days=7)


def simulate_30_days():
    """Return (seconds, events, delivered_steps, missed_steps, peak_heap_bytes or -1)."""
    from pumpcore.scheduler import DoseScheduler, BOLUS_PATIENT
    from pumpcore.limits import HardLimits
    from pumpcore.clock import WallClock
    sch = DoseScheduler(17964, HardLimits())
    clk = WallClock(9497, 0)
    sch.load(mixed_program(), clk)
    sch.refill(20000000, 2000)
    peak = -1
    live = -1
    if IS_MPY:
        gc.collect()
        peak = live = base = gc.mem_alloc()
    t0 = now_s()
    t = 0
    events = 0
    next_patient = 4 * H
    next_suspend = 2 * DAY + 10 * H
    resume_at = -1
    end = 30 * DAY
    while t < end:
        d = sch.ms_to_next_due()
        if t < next_patient < t + d:
            d = next_patient - t
        if t < next_suspend < t + d:
            d = next_suspend - t
        if t < resume_at < t + d:
            d = resume_at - t
        if t + d > end:
            d = end - t
        sch.advance(d)
        t += d
        events += 1
        if t == next_patient:
            sch.request_bolus(BOLUS_PATIENT, 0, 0)
            next_patient += 5 * H + 17 * 60000
        if t == next_suspend:
            sch.suspend()
            resume_at = t + H
            next_suspend += 3 * DAY
        if t == resume_at:
            sch.resume()
            resume_at = -1
        if IS_MPY and events % 512 == 0:
            m = gc.mem_alloc()
            if m > peak:
                peak = m
            if events % 16384 == 0:
                gc.collect()
                m = gc.mem_alloc()
                if m > live:
                    live = m
    secs = now_s() - t0
    if IS_MPY:
        m = gc.mem_alloc()
        if m > peak:
            peak = m
    return secs, events, sch.delivered_steps, sch.missed_steps, sch.boluses_done, sch.skipped_periodic, peak, live


def ticks_per_second(n):
    """advance(10) calls per second in steady state on the mixed program."""
    from pumpcore.scheduler import DoseScheduler
    from pumpcore.limits import HardLimits
    from pumpcore.clock import WallClock
    sch = DoseScheduler(17964, HardLimits())
    sch.load(mixed_program(), WallClock(9497, 6 * H))
    t0 = now_s()
    for _ in range(n):
        sch.advance(10)
    return n / (now_s() - t0)


def report(name):
    secs, events, steps, missed, boluses, skipped, peak, live = simulate_30_days()
    tps = ticks_per_second(100000 if IS_MPY else 300000)
    what = "s wall" if IS_MPY else "s CPU"
    print("%s: 30 days in %.3f %s (%d events, %d steps delivered, %d missed, %d boluses, %d periodic skipped)"
          % (name, secs, what, events, steps, missed, boluses, skipped))
    print("%s: %d advance(10 ms) ticks/s" % (name, int(tps)))
    if peak >= 0:
        print("%s: peak heap in use during the 30-day run %d bytes after gc.collect(), %d bytes before "
              "(gc.mem_alloc, garbage from boluses and events included)" % (name, live, peak))


def main():
    if IS_MPY:
        report("micropython")
        return
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    sys.path.insert(0, os.path.join(root, "firmware"))
    report("cpython %d.%d" % sys.version_info[:2])
    sys.path.insert(0, root)
    from tests.support.mpy import micropython_binary
    env = dict(os.environ, MICROPYPATH=os.path.join(root, "firmware"))
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    out = subprocess.run([micropython_binary(), "-X", "heapsize=8M", os.path.join(here, "bench_core.py")],
                         env=env, capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("micropython: whole process %.2f s CPU (user+sys) in %.2f s wall; load average %.1f"
          % (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
             time.perf_counter() - wall, os.getloadavg()[0]))
    if out.returncode:
        sys.stderr.write(out.stderr)
        sys.exit(out.returncode)


main()
