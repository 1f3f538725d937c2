"""Scenario runner for differential tests: JSON scenarios in (stdin, one per line), schedules out.

Runs unchanged under CPython and the `micropython` binary over the firmware's own modules.
Each scenario is {"pl": pL per step, "limits": [7 ints] or null, "start": [day, ms_of_day],
"program": {...}, "events": [[name, args...], ...]}. Events: ["adv", ms] (one advance call),
["run", ms, max_jumps] (jump event to event with ms_to_next_due, printing each due time and
count), ["bolus", kind, dose_ng, duration_ms], ["suspend"], ["resume"], ["refill", nl, ug_ml],
["missed", steps], ["load", program], ["prime", nl, ms]. Output: one line per event, then the
final counters, then "END". Only ints are printed, so both interpreters print identical text.
"""
import sys
import json

from pumpcore import program as programmod
from pumpcore.program import Program, ProgramError
from pumpcore.limits import HardLimits
from pumpcore.clock import WallClock
from pumpcore.scheduler import DoseScheduler


def program_from_json(d):
    """Program from the scenario's JSON dict (lists for tuples)."""
    pats = []
    for mask, steps in d.get("patterns", []):
        pats.append((mask, [tuple(s) for s in steps]))
    per = [tuple(b) for b in d.get("periodic", [])]
    pat = d.get("patient")
    sb = d.get("single")
    return Program(mode=d["mode"], concentration_ug_ml=d["conc"], rate_ng_day=d.get("rate", 0),
                   patterns=pats, periodic=per, patient=tuple(pat) if pat else None,
                   single_bolus=tuple(sb) if sb else None, catheter_nl=d.get("catheter", 180000))


def make(scn):
    """(scheduler, clock, load code) for a scenario."""
    lim = HardLimits(*scn["limits"]) if scn.get("limits") else HardLimits()
    sch = DoseScheduler(scn["pl"], lim)
    clk = WallClock(scn["start"][0], scn["start"][1])
    code = sch.load(program_from_json(scn["program"]), clk)
    return sch, clk, code


def counters(sch):
    """Final counters as a list of ints."""
    return [sch.delivered_steps, sch.missed_steps, sch.prime_steps, sch.total_ng, sch.day_ng,
            sch.missed_ng, sch.rolling_24h_ng(), sch.conc, sch.clock.day, sch.clock.ms, sch.pool,
            sch.acc, sch.mpool, sch.macc, sch.skipped_periodic, sch.refusals, sch.boluses_done,
            sch.reservoir.volume_nl, sch.reservoir.rem_pl, sch.br_pl, sch.bolus_active()]


def do_event(sch, ev):
    """Apply one event; return its output line."""
    name = ev[0]
    if name == "adv":
        return "adv %d" % sch.advance(ev[1])
    if name == "run":
        left = ev[1]
        jumps = ev[2]
        out = ["run"]
        t = 0
        while left > 0 and jumps > 0:
            d = sch.ms_to_next_due()
            if d > left:
                d = left
            n = sch.advance(d)
            t += d
            left -= d
            jumps -= 1
            if n:
                out.append("%d:%d" % (t, n))
        out.append("t=%d" % t)
        return " ".join(out)
    if name == "bolus":
        return "bolus %d" % sch.request_bolus(ev[1], ev[2], ev[3])
    if name == "suspend":
        sch.suspend()
        return "suspend"
    if name == "resume":
        sch.resume()
        return "resume"
    if name == "refill":
        return "refill %d" % sch.refill(ev[1], ev[2])
    if name == "missed":
        sch.record_missed(ev[1])
        return "missed %d" % sch.missed_steps
    if name == "prime":
        return "prime %d" % sch.prime(ev[1], ev[2])
    if name == "load":
        try:
            return "load %d" % sch.load(program_from_json(ev[1]), sch.clock)
        except ProgramError as e:
            return "load error %s" % e.field
    raise ValueError("scenario event %r: unknown event name" % (name,))


def run_scenario(scn):
    """Run one scenario; return its output lines."""
    sch, clk, code = make(scn)
    lines = ["load %d" % code]
    for ev in scn["events"]:
        lines.append(do_event(sch, ev))
    lines.append("final " + " ".join([str(v) for v in counters(sch)]))
    return lines


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        for out in run_scenario(json.loads(line)):
            print(out)
        print("END")


if __name__ == "__main__":
    main()
