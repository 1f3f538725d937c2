"""Scenario generator and the exact Fraction reference the dose-core property tests check against."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

DAY = 86_400_000
QPN = 86_400_000          # dose quanta per ng
PL = 17_964
ALL = 0x7F
# Generous limits so that periodic boluses are never refused at run time in generated
# scenarios (the reference does not model limit refusals of periodic boluses).
# Worst case of any generated run: basal 2 x 1.5 mg + periodic 2 x 0.6 mg + patient 2.4 mg +
# 20 clinician boluses x 0.1 mg + single 0.3 mg < 10 mg.
LIMITS = [1_500_000, 10_000_000, 1_000_000, 200_000_000, 100, 2000, 20_000_000]
CONCS = [100, 500, 1000, 2000]


def _times(r, n: int, lo: int, hi: int) -> list[int]:
    out: set[int] = set()
    while len(out) < n:
        out.add(r.randint(lo, hi))
    return sorted(out)


def gen_rate(r) -> int:
    return r.choice([0, 1, 186_000, 1_500_000, r.randint(1, 1_500_000), r.randint(1, 400_000)])


def gen_program(r, conc: int | None = None, allow_stopped: bool = True) -> dict[str, Any]:
    """A valid program (under LIMITS) as the runner's JSON dict (may use every feature)."""
    from pumpcore.limits import HardLimits
    from pumpcore.program import ProgramError
    from tests.core.scenario_runner import program_from_json
    for _ in range(50):
        d = _gen_program(r, conc, allow_stopped)
        try:
            program_from_json(d).validate(HardLimits(*LIMITS))
        except ProgramError:
            continue
        return d
    return {"mode": 1, "conc": conc or 2000, "rate": 186_000, "catheter": 180_000}


def _gen_program(r, conc: int | None, allow_stopped: bool) -> dict[str, Any]:
    modes = [1, 1, 2, 2, 3] + ([0] if allow_stopped else [])
    mode = r.choice(modes)
    if conc is None:
        conc = r.choice(CONCS + [r.randint(100, 2000)])
    d: dict[str, Any] = {"mode": mode, "conc": conc, "catheter": r.choice([0, 180_000, r.randint(1, 500_000)])}
    if mode == 1:
        d["rate"] = max(1, gen_rate(r))
    if mode == 2:
        days = list(range(7))
        r.shuffle(days)
        groups = r.randint(1, 3)
        masks = [0] * groups
        for i, day in enumerate(days):
            masks[i % groups if i < groups else r.randrange(groups)] |= 1 << day
        pats = []
        for m in masks:
            n = r.choice([1, 4, 10, 24, r.randint(1, 24)])
            starts = [0] + _times(r, n - 1, 1, DAY - 1)
            pats.append([m, [[s, gen_rate(r)] for s in starts]])
        d["patterns"] = pats
    if mode == 3:
        d["single"] = [r.randint(1, 300_000), r.choice([1000, 60_000, r.randint(1, 7_200_000)])]
    if mode in (1, 2) and r.random() < 0.5:
        n = r.randint(1, 3)
        ts = _times(r, n, 0, DAY - 1)
        per = []
        for i, t in enumerate(ts):
            nxt = ts[i + 1] if i + 1 < n else ts[0] + DAY
            dur = r.randint(1, max(1, min(nxt - t, 7_200_000)))
            per.append([t, r.randint(1, 200_000), dur])
        d["periodic"] = per
    if mode in (1, 2) and r.random() < 0.5:
        dur = r.randint(1000, 3_600_000)
        d["patient"] = [r.randint(1, 100_000), dur, r.randint(dur, DAY), r.randint(1, 24)]
    return d


def gen_events(r, n_max: int = 20) -> list[list[Any]]:
    """An event sequence: time advances of every size, boluses, suspends, refills, loads..."""
    evs: list[list[Any]] = []
    for _ in range(r.randint(1, n_max)):
        k = r.random()
        if k < 0.35:
            evs.append(["adv", r.choice([1, r.randint(1, 1000), r.randint(1, 3_600_000), r.randint(1, 2 * DAY)])])
        elif k < 0.5:
            evs.append(["run", r.randint(1, 4 * 3_600_000), r.randint(1, 60)])
        elif k < 0.65:
            kind = r.choice([1, 1, 2, 2, 3, 4, 5])
            if kind == 2 and r.random() < 0.8:
                evs.append(["bolus", 2, 0, 0])
            else:
                dose = r.choice([r.randint(1, 100_000), r.randint(1, 100_000), 2_000_000])
                evs.append(["bolus", kind, dose, r.choice([1, 60_000, r.randint(1, 3_600_000)])])
        elif k < 0.72:
            evs.append(["suspend"])
        elif k < 0.79:
            evs.append(["resume"])
        elif k < 0.85:
            evs.append(["refill", r.randint(0, 20_000_000), r.choice(CONCS + [2000, 50])])
        elif k < 0.9:
            evs.append(["missed", r.randint(0, 5)])
        elif k < 0.95:
            evs.append(["prime", r.randint(1, 500_000), r.randint(1, 3_600_000)])
        else:
            evs.append(["load", None])   # filled by gen_scenario with a program at the right conc
    return evs


def gen_scenario(r, n_max: int = 20) -> dict[str, Any]:
    """A whole scenario. `load` events get a program whose concentration is the reservoir's."""
    prog = gen_program(r)
    conc = prog["conc"]
    evs = gen_events(r, n_max)
    for ev in evs:
        if ev[0] == "refill":
            conc = ev[2]
        if ev[0] == "load":
            ev[1] = gen_program(r, conc=conc if r.random() < 0.9 else 1000)
    return {"pl": r.choice([PL, PL, r.randint(3000, 40_000)]), "limits": LIMITS,
            "start": [r.randint(0, 9000), r.randint(0, DAY - 1)], "program": prog, "events": evs}


class Reference:
    """Exact ideal volume (Fraction pL) of everything that flowed, by the rules in scheduler.py.

    V is the ideal volume through the line while delivering, Vm the ideal basal volume that
    fell due while suspended. Concentration switches round V's sub-pL fraction up to the new
    unit 1/(432*C), as documented in scheduler.py.
    """

    def __init__(self, scn: dict[str, Any]) -> None:
        self.pl = scn["pl"]
        self.T = scn["start"][0] * DAY + scn["start"][1]
        self.V = Fraction(0)
        self.Vm = Fraction(0)
        self.conc = scn["program"]["conc"]
        self.res_conc = self.conc
        self.susp = False
        self.bolus: list[int] | None = None    # [rate ng/day, total quanta A, quanta done]
        self.bridge: list[int] | None = None   # [target floor(V), new conc]
        self.stall = 0
        self.prog = scn["program"]

    # --- program lookups written independently of pumpcore.program ---
    def _steps_for(self, wd: int) -> list[list[int]]:
        p = self.prog
        if p["mode"] == 1:
            return [[0, p["rate"]]]
        if p["mode"] == 2:
            for m, steps in p["patterns"]:
                if m >> wd & 1:
                    return steps
        return [[0, 0]]

    def basal(self) -> int:
        steps = self._steps_for((self.T // DAY + 5) % 7)
        ms = self.T % DAY
        return [rate for s, rate in steps if s <= ms][-1]

    def next_change(self) -> int:
        ms = self.T % DAY
        later = [s for s, _ in self._steps_for((self.T // DAY + 5) % 7) if s > ms]
        return (later[0] if later else DAY) - ms

    def next_periodic(self) -> int | None:
        per = self.prog.get("periodic") or []
        if not per:
            return None
        ms = self.T % DAY
        later = [t for t, _, _ in per if t > ms]
        return (later[0] - ms) if later else DAY - ms + per[0][0]

    def start_bolus(self, total_quanta: int, duration_ms: int) -> None:
        rate = -(-total_quanta // duration_ms)
        self.bolus = [rate, total_quanta, 0]

    def _switch_conc(self, new: int) -> None:
        def conv(v: Fraction) -> Fraction:
            whole = v.numerator // v.denominator
            frac = v - whole
            units = frac * 432 * self.conc           # exact integer: acc in old units
            assert units.denominator == 1
            return whole + Fraction(-(-int(units) * new // self.conc), 432 * new)
        self.V = conv(self.V)
        self.Vm = conv(self.Vm)
        self.conc = new

    def advance(self, dt: int) -> None:
        while dt > 0:
            c = min(dt, self.next_change())
            brate = 0
            if self.bolus is not None:
                rate, a, done = self.bolus
                full = (a - done) // rate
                if full > 0:
                    brate = rate
                    c = min(c, full)
                else:
                    brate = a - done
                    c = 1
            np_ = self.next_periodic()
            if np_ is not None:
                c = min(c, np_)
            den = 432 * self.conc
            s5 = 5 * (self.basal() + brate)
            if self.bridge is not None and not self.susp and s5 > 0:
                need = self.bridge[0] - self.V
                tb = max(1, -(-(need * den) // s5)) if need > 0 else 1
                c = min(c, int(tb))
            if self.susp:
                self.Vm += Fraction(s5 * c, den)
            else:
                self.V += Fraction(s5 * c, den)
            if self.bolus is not None:
                self.bolus[2] += brate * c
            self.T += c
            dt -= c
            if self.bolus is not None and self.bolus[2] >= self.bolus[1]:
                self.bolus = None
            if self.bridge is not None and not self.susp and int(self.V) >= self.bridge[0]:
                self._switch_conc(self.bridge[1])
                self.bridge = None
            if np_ is not None and c == np_:
                ms = self.T % DAY
                for t, dose, dur in self.prog["periodic"]:
                    if t == ms and not self.susp and self.bolus is None:
                        self.start_bolus(dose * QPN, dur)

    def steps(self) -> int:
        return int(self.V // self.pl)

    def missed(self) -> int:
        return int(self.Vm // self.pl)

    # --- events, applied only as the scheduler reported them ---
    def on_event(self, ev: list[Any], out: str, delivered_before: int) -> None:
        name = ev[0]
        if name == "bolus" and out == "bolus 0":
            if ev[1] == 2:
                dose, dur = self.prog["patient"][0], self.prog["patient"][1]
            else:
                dose, dur = ev[2], ev[3]
            self.start_bolus(dose * QPN, dur)
        elif name == "prime" and out == "prime 0":
            self.start_bolus(ev[1] * self.conc * 86_400, ev[2])
        elif name == "suspend" and not self.susp:
            self.susp = True
            self.bolus = None
        elif name == "resume":
            self.susp = False
        elif name == "missed":
            self.stall += min(ev[1], delivered_before)
        elif name == "refill" and out == "refill 0":
            old = self.res_conc
            self.res_conc = ev[2]
            if old != ev[2] or self.bridge is not None:
                cath = self.prog.get("catheter", 180_000)
                if cath > 0:
                    self.bridge = [int(self.V) + cath * 1000, ev[2]]
                else:
                    self.bridge = None
                    self._switch_conc(ev[2])
        elif name == "load" and not out.startswith("load error"):
            self.prog = ev[1]
            self.bolus = None
            if self.prog["mode"] == 3 and out == "load 0":
                self.start_bolus(self.prog["single"][0] * QPN, self.prog["single"][1])
