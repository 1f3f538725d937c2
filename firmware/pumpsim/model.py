"""Physical model of the bench pump: lead screw + syringe, line pressure, stall, reservoir, balance.

Pure Python, integers only, so CPython and the micropython unix port give bit-identical results
for the same seed and the same inputs. Nothing here reads a clock: the caller moves model time
on with `advance_to(t_us)` (sim microseconds since the world was made).

The model, stated:
- Mechanism: one microstep moves the plunger lead_um / (full_steps_per_rev * microsteps) um and
  displaces `pl_per_step` pL (syringe bore area x travel; pi as 355/113, rounded to 1 pL).
  `true_pl_per_step` may differ from the nominal to play a mis-calibrated syringe.
- Reservoir: the syringe holds `reservoir_pl`. The end stop closes when less than one step's
  volume is left; an infuse pulse there cannot move the plunger (the driver stalls).
- Line: a single compliance C (pL per kPa) ahead of an outlet resistance R. Each step pushes its
  volume into the compliance; stored volume V gives pressure P = V / C and drains through R with
  time constant tau = R*C: V(t + 1 ms) = V(t) * exp(-1 ms / tau), applied at every whole
  sim millisecond (fixed-point factors, see `_Decay`). What drains leaves the outlet onto the
  balance. Occluded: nothing drains, so every step raises P by step_volume / C.
- Driver (TMC2209 as pumphw.rp2hw configures it: GCONF and CHOPCONF only, so SGTHRS = 0 and
  TCOOLTHRS = 0). The step generator (PIO) emits every pulse it is given whatever the motor
  does: it has no feedback. The motor cannot move the plunger when the force P * bore area
  reaches `stall_force_mn`, at the end stop, at the back stop, or while the screw is jammed
  (`jam` fault): the rotor skips, the pulse counts as emitted, the plunger stays. DIAG does NOT
  report it: the TMC2209 signals a StallGuard stall on DIAG only while TSTEP <= TCOOLTHRS
  (with TCOOLTHRS = 0 never) and SG_RESULT <= 2 * SGTHRS, in StealthChop, and StallGuard is
  unreliable at low velocity anyway (at 186 ug/day one microstep every 16.7 s). With StallGuard
  off DIAG goes high only on a driver error (over-temperature, short to GND or supply; datasheet
  DIAG pin: "high upon driver error"), played by `set_driver_error` (the `stall` fault): the
  outputs switch off, pulses are emitted but move nothing, DIAG stays high until the driver is
  disabled (ENN high resets the error). A slipping coupling (`slip` fault): the motor turns
  (`motor_steps` counts), the screw and plunger do not. Only the screw encoder sees jam, slip or
  a skip: `screw_steps` is the screw's travel in microsteps (= plunger_steps).
  Pulses while the driver is disabled are emitted but do not move the plunger.
- Balance: weighs (volume out) x density - evaporation - tare, plus noise that is a function of
  (seed, balance update slot) only (xorshift32 hash, Irwin-Hall sum of four uniforms, so reading
  twice in one slot gives the same value), quantised to the readability.
- Bolus button: a press is a burst of contact bounce (1..4 flips, 0.1..2 ms apart, from the
  seeded PRNG), a stable hold, then release bounce. `button_edges` lists the raw edges.
"""
from pumpcore.fixed import const
from pumpcore import pressure as _pressure
from pumpsim import sensorout

_Q = const(30)            # fixed-point fraction bits of the decay factors
_ONE = const(1 << 30)

DIR_RETRACT = const(0)
DIR_INFUSE = const(1)

_MASK32 = const(0xFFFFFFFF)


def nominal_pl_per_step(lead_um, full_steps_per_rev, microsteps, syringe_id_um):
    """pL displaced by one microstep: lead * pi * id^2 / (4 * steps/rev * microsteps) um^3 / 1000.

    The firmware's own derivation (pumpcore.calibration) so model and scheduler agree on the
    nominal; pi = 355/113 in the fallback, rounded to the nearest pL.
    """
    try:
        from pumpcore import calibration
        return calibration.pl_per_step_from_mechanism({
            "lead_um": lead_um, "full_steps_per_rev": full_steps_per_rev,
            "microsteps": microsteps, "syringe_id_um": syringe_id_um})
    except ImportError:
        pass
    num = lead_um * 355 * syringe_id_um * syringe_id_um
    den = 113 * 4 * full_steps_per_rev * microsteps * 1000
    return (2 * num + den) // (2 * den)


def bore_area_um2(syringe_id_um):
    """Syringe bore area in um^2 (pi = 355/113), rounded."""
    return (355 * syringe_id_um * syringe_id_um + 226) // 452


_MECH_FIELDS = (("lead_um", 1, 100000), ("full_steps_per_rev", 1, 100000),
                ("microsteps", 1, 256), ("syringe_id_um", 100, 100000),
                ("syringe_capacity_nl", 1, 1000000000))


DIR_SETUP_US = 3   # pumphw.steppio: DIR settles 3 us before the first STEP edge of a segment

class Mechanism:
    """Lead screw + syringe geometry (lengths in um, capacity in nL) and the line pressure
    sensor (a pumpcore.pressure.PressureSensor; None: the BOM's), from hw/mechanism.json."""

    def __init__(self, lead_um, full_steps_per_rev, microsteps, syringe_id_um, syringe_capacity_nl,
                 pressure_sensor=None):
        vals = (lead_um, full_steps_per_rev, microsteps, syringe_id_um, syringe_capacity_nl)
        for (name, lo, hi), v in zip(_MECH_FIELDS, vals):
            if not isinstance(v, int) or v < lo or v > hi:
                raise ValueError("mechanism.%s = %r: must be an integer in %d..%d" % (name, v, lo, hi))
        self.lead_um = lead_um
        self.full_steps_per_rev = full_steps_per_rev
        self.microsteps = microsteps
        self.syringe_id_um = syringe_id_um
        self.syringe_capacity_nl = syringe_capacity_nl
        self.pl_per_step = nominal_pl_per_step(lead_um, full_steps_per_rev, microsteps, syringe_id_um)
        self.area_um2 = bore_area_um2(syringe_id_um)
        if pressure_sensor is None:
            pressure_sensor = _pressure.PressureSensor(None)
        self.pressure_sensor = pressure_sensor

    @classmethod
    def from_dict(cls, d):
        """Build from the parsed hw/mechanism.json; a missing field is named in the error, and
        so is a wrong "pressure_sensor" (absent: the BOM's sensor, as the firmware does)."""
        args = []
        for name, _lo, _hi in _MECH_FIELDS:
            if name not in d:
                raise ValueError("mechanism.%s missing" % name)
            args.append(d[name])
        return cls(*args, pressure_sensor=_pressure.sensor_from_mechanism(d))

    @classmethod
    def load(cls, path):
        """Read a mechanism.json file."""
        import json
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _exp_neg_q(num, den, bits):
    """round(2**bits * exp(-num/den)) for 0 <= num/den <= 1, by integer Taylor series."""
    scale = 1 << (bits + 8)
    term = scale
    total = scale
    n = 1
    while term:
        term = term * num // (den * n)
        if n & 1:
            total -= term
        else:
            total += term
        n += 1
    return (total + (1 << 7)) >> 8


class _Decay:
    """Fixed-point factors exp(-2**k ms / tau) (Q30) for k = 0..40: V * exp(-dt/tau) in O(log dt)."""

    def __init__(self, tau_ms):
        # square in Q62 (big ints, set-up only), keep Q30: relative error stays ~1e-9
        hq = 62
        f = _exp_neg_q(1, tau_ms, hq)
        self.factors = []
        for _ in range(41):
            self.factors.append((f + (1 << (hq - _Q - 1))) >> (hq - _Q))
            f = (f * f + (1 << (hq - 1))) >> hq

    def apply(self, v, dt_ms):
        """v (pL, any sign) after dt_ms whole milliseconds of relaxation."""
        neg = v < 0
        if neg:
            v = -v
        k = 0
        factors = self.factors
        while dt_ms and v:
            if dt_ms & 1:
                if k > 40:
                    v = 0
                    break
                v = (v * factors[k] + (1 << (_Q - 1))) >> _Q
            dt_ms >>= 1
            k += 1
        return -v if neg else v


def xorshift32(x):
    """One step of Marsaglia's xorshift32 (nonzero 32-bit state in, next state out)."""
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    x ^= (x << 5) & _MASK32
    return x & _MASK32


def _hash32(seed, n):
    """Deterministic 32-bit value for (seed, n): mixes and runs xorshift32 three times."""
    x = ((seed * 0x9E3779B1) ^ (n * 0x85EBCA6B) ^ 0x6A09E667) & _MASK32
    if x == 0:
        x = 1
    x = xorshift32(x)
    x = xorshift32(x)
    return xorshift32(x)


class Prng:
    """Seeded xorshift32 stream (same sequence on both interpreters)."""

    def __init__(self, seed):
        self.state = (seed & _MASK32) or 0x2545F491

    def next(self):
        self.state = xorshift32(self.state)
        return self.state

    def below(self, n):
        """Integer in 0..n-1."""
        return self.next() % n


class Params:
    """Tunable constants of the world. Units in the names; every value an int.

    Defaults: compliance 20 nL/kPa (bench tubing + syringe), tau 1 s (hw/mechanism.json "line":
    tubing, filter and needle of an open bench outlet; a 50 ug/min bolus holds ~21 kPa), stall at 250 N
    (about 870 kPa on a 20 mL BD syringe), the RP2040's 12-bit ADC reading the mechanism's
    pressure sensor (hw/mechanism.json "pressure_sensor": it rails at 116.3 kPa, see
    pressure_adc_kpa_x10),
    balance readability 10 ug (0.01 mg, a 5-digit analytical balance) with noise sd ~20 ug,
    updated every 100 ms, evaporation 50 ug/h (beaker with an oil layer), density 1.000 g/mL.
    Other balances (pumpctl.accuracy.balances, from their datasheets) set the balance_* fields;
    the evaporation rate may drift linearly (evaporation_drift_ng_per_h_per_day); a load above
    balance_capacity_ng reads as the capacity plus one readability step (overload, shown).
    """

    FIELDS = (
        ("compliance_pl_per_kpa", 20000, 1, 10 ** 9),
        ("tau_ms", 1000, 1, 10 ** 9),
        ("stall_force_mn", 250000, 1, 10 ** 9),
        ("adc_bits", 12, 8, 16),
        ("balance_readability_ng", 10000, 1, 10 ** 9),
        ("balance_noise_ng", 20000, 0, 10 ** 9),
        ("balance_update_ms", 100, 1, 100000),
        ("evaporation_ng_per_h", 50000, 0, 10 ** 9),
        ("evaporation_drift_ng_per_h_per_day", 0, -10 ** 6, 10 ** 6),
        ("balance_capacity_ng", 220 * 10 ** 9, 1, 10 ** 12),
        ("density_mg_per_ml", 1000, 500, 3000),
        ("button_hold_ms", 150, 1, 100000),
        ("seed", 1, 0, 0xFFFFFFFF),
    )

    # parameters of older worlds that the model no longer has: ignored when a saved world
    # (world.json) is loaded. sensor_full_scale_kpa: the sensor is the mechanism's now.
    RETIRED = ("sensor_full_scale_kpa",)

    def __init__(self, **kw):
        for name in self.RETIRED:
            kw.pop(name, None)
        for name, default, lo, hi in self.FIELDS:
            v = kw.pop(name, default)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
                raise ValueError("params.%s = %r: must be an integer in %d..%d" % (name, v, lo, hi))
            setattr(self, name, v)
        for name in kw:
            raise ValueError("params.%s: unknown parameter" % name)

    def as_dict(self):
        d = {}
        for name, _d, _lo, _hi in self.FIELDS:
            d[name] = getattr(self, name)
        return d


# Fields of World that make up its persistent state (plain ints/bools, see state()/from_state()).
_STATE = ("t_us", "plunger_steps", "reservoir_pl", "line_pl", "out_pl", "occluded",
          "forced_stall", "pulses", "enabled", "direction", "stalled", "tare_ng",
          "seg_steps", "seg_period_us", "seg_dir", "next_pulse_us", "button_n")
# fields added later: a saved world without them loads with these values
_STATE_NEW = (("jammed", False), ("slipping", False), ("skipped", 0), ("motor_steps", 0))


class World:
    """The physical pump at one instant; everything moves only through advance_to()."""

    QUEUE_DEPTH = const(4)  # segments the step generator holds (like the PIO TX FIFO)

    rec_every_us = 0   # balance recording off until record_balance()

    def __init__(self, mechanism, params=None, true_pl_per_step=None, reservoir_pl=None):
        self.mech = mechanism
        self.params = params or Params()
        self.pl_per_step = true_pl_per_step or mechanism.pl_per_step
        if self.pl_per_step <= 0:
            raise ValueError("true_pl_per_step = %r: must be > 0" % (self.pl_per_step,))
        self.capacity_pl = mechanism.syringe_capacity_nl * 1000
        p = self.params
        self._decay = _Decay(p.tau_ms)
        # stall when line_pl >= stall_line_pl (force = P * area, P = V / C)
        # P[kPa] = F[mN] * 1e6 / area_um2  (mN / um^2 = 1e9 Pa = 1e6 kPa)
        self.stall_kpa_x1000 = p.stall_force_mn * 10 ** 9 // mechanism.area_um2
        self.stall_line_pl = p.compliance_pl_per_kpa * self.stall_kpa_x1000 // 1000
        self.t_us = 0
        self.plunger_steps = 0     # net plunger travel from the full mark, microsteps
        self.reservoir_pl = self.capacity_pl if reservoir_pl is None else reservoir_pl
        self.line_pl = 0           # volume held in the line compliance (pressure = line_pl / C)
        self._relax_pl = None      # decay anchor: line volume at its last change, and its ms
        self._relax_ms = 0
        self._relax_last = 0
        self.out_pl = 0            # total volume that left the outlet (onto the balance)
        self.occluded = False
        self.forced_stall = False
        self.pulses = 0            # pulses emitted since the world began (never wraps here)
        self.enabled = False
        self.direction = DIR_INFUSE
        self.stalled = False       # the last pulse was skipped (the rotor could not move the screw)
        self.jammed = False        # jam fault: screw seized, the motor skips, DIAG silent
        self.slipping = False      # slip fault: coupling slips, the motor turns, the screw does not
        self.skipped = 0           # pulses emitted that moved no plunger (skip, jam, slip, driver error)
        self.motor_steps = 0       # rotor travel, microsteps (differs from screw travel while slipping)
        self.tare_ng = 0
        self.seg_steps = 0         # pulses left in the running segment
        self.seg_period_us = 0
        self.seg_dir = DIR_INFUSE
        self.next_pulse_us = 0
        self.queue = []            # waiting segments [steps, period_us, dir]
        self.button_n = 0
        self.button = []           # raw edges (t_us, closed) not yet consumed
        self._traj = {}            # pressure decay change points by anchor volume (pressure_change_us)

    # ---- persistence -----------------------------------------------------------------------
    def state(self):
        """Plain dict of the whole state (JSON-able) for persistence across supervisor runs."""
        d = {}
        for name in _STATE:
            d[name] = getattr(self, name)
        for name, _default in _STATE_NEW:
            d[name] = getattr(self, name)
        d["queue"] = [list(s) for s in self.queue]
        d["button"] = [list(e) for e in self.button]
        return d

    def restore(self, d):
        """Load a state() dict back (same mechanism and params)."""
        for name in _STATE:
            if name not in d:
                raise ValueError("world state field %s missing" % name)
            setattr(self, name, d[name])
        for name, default in _STATE_NEW:
            setattr(self, name, d.get(name, default))
        self.queue = [list(s) for s in d.get("queue", [])]
        self.button = [(e[0], e[1]) for e in d.get("button", [])]
        self._relax_pl = None

    # ---- derived read-outs -----------------------------------------------------------------
    def pressure_pa(self):
        """Line pressure in Pa (negative when volume was drawn back)."""
        return self.line_pl * 1000 // self.params.compliance_pl_per_kpa

    def end_stop(self):
        """True when less than one step's volume is left in the syringe."""
        return self.reservoir_pl < self.pl_per_step

    def blocked(self, direction):
        """True if a pulse in `direction` cannot move the plunger: driver error (outputs off),
        jammed screw, or the load beyond the motor's force (the rotor skips)."""
        if self.forced_stall or self.jammed:
            return True
        if not self.enabled:
            return False
        if direction == DIR_INFUSE:
            return self.reservoir_pl < self.pl_per_step or self.line_pl >= self.stall_line_pl
        return self.reservoir_pl + self.pl_per_step > self.capacity_pl

    def diag(self):
        """Driver DIAG output as configured (StallGuard off, see the module doc): high only on a
        driver error while the driver is enabled; a skipped, jammed or slipping motor leaves it low."""
        return self.forced_stall and self.enabled

    def screw_steps(self):
        """Screw (and plunger) travel from the full mark in microsteps: what an encoder on the
        screw measures."""
        return self.plunger_steps

    ENCODER_COUNTS = const(4096)   # AS5600 on the lead screw: 12-bit RAW ANGLE per revolution

    def screw_angle(self):
        """The screw encoder's RAW ANGLE (0..4095): the screw's turn, floor-quantised like the
        AS5600's 12-bit output (the magnet sits at 0 at the full mark)."""
        spr = self.mech.full_steps_per_rev * self.mech.microsteps
        return (self.plunger_steps * self.ENCODER_COUNTS // spr) % self.ENCODER_COUNTS

    def pending(self):
        """Pulses queued and not yet emitted."""
        n = self.seg_steps
        for s in self.queue:
            n += s[0]
        return n

    def pressure_adc_kpa_x10(self):
        """What the firmware reads from the pressure sensor (kPa x 10): the mechanism's sensor
        (pumpcore.pressure, the same transfer function as pumphw.rp2hw) on an adc_bits ADC.
        Like the real part it rails at its supply above the range (never more than
        pressure_sensor.rail_kpa_x10) and reads below zero for a line under suction."""
        return self._reading_of(self.line_pl)

    def _reading_of(self, line_pl):
        return sensorout.reading_kpa_x10(self.mech.pressure_sensor,
                                         line_pl * 1000 // self.params.compliance_pl_per_kpa, self.params.adc_bits)

    TRAJ_SCAN_MS = const(1000)   # most ms of decay one pressure_change_us call computes ahead
    TRAJ_KEEP = const(64)        # decay trajectories remembered (one per anchor volume)

    def pressure_change_us(self, limit_us):
        """The first sim time after now at which pressure_adc_kpa_x10() reads differently with
        no pulse and no fault in between (those are the caller's to bound), or limit_us when it
        reads the same until then. Exact: the line's decay is replayed ms by ms with `_relax`'s
        own arithmetic (from the same anchor), never estimated. The change points of a decay
        depend on its anchor volume alone, so they are computed once per volume and kept (at a
        slow rate every step starts from an empty line: one trajectory serves all of them); at
        most TRAJ_SCAN_MS ms are computed per call (the answer is then the first ms not yet known)."""
        if self.occluded or self.line_pl == 0:
            return limit_us
        if self._relax_pl is None or self.line_pl != self._relax_last:
            v0 = self.line_pl              # the next _relax anchors here, at this ms
            a = self.t_us // 1000
        else:
            v0 = self._relax_pl
            a = self._relax_ms
        d_now = self.t_us // 1000 - a
        d_lim = (limit_us - 1) // 1000 - a   # last ms whose start lies before limit_us
        if d_lim <= d_now:
            return limit_us
        tr = self._traj.get(v0)
        if tr is None:
            if len(self._traj) >= self.TRAJ_KEEP:
                self._traj = {}
            # [change ms list, readings there, last ms computed, reading then, ended (line empty)]
            tr = [[], [], 0, self._reading_of(v0), False]
            self._traj[v0] = tr
        d = self._traj_next(tr[0], d_now)
        if d < 0 and not tr[4] and tr[2] < d_lim:
            self._traj_scan(tr, v0, d_now, d_lim)
            d = self._traj_next(tr[0], d_now)
        if d >= 0:
            return (a + d) * 1000 if d <= d_lim else limit_us
        if tr[4] or tr[2] >= d_lim:
            return limit_us
        return (a + tr[2] + 1) * 1000        # known unchanged up to the last ms computed

    @staticmethod
    def _traj_next(ds, d_now):
        """The first change point after d_now in the sorted list ds, or -1."""
        lo = 0
        hi = len(ds)
        while lo < hi:
            mid = (lo + hi) // 2
            if ds[mid] <= d_now:
                lo = mid + 1
            else:
                hi = mid
        return ds[lo] if lo < len(ds) else -1

    def _traj_scan(self, tr, v0, d_now, d_lim):
        """Compute the decay of v0 further, from the last ms known up to the first change after
        d_now, d_lim or TRAJ_SCAN_MS past d_now, whichever comes first: the ms at which the
        reading changes, and whether the line empties."""
        d = tr[2]
        end = d_now + self.TRAJ_SCAN_MS
        if end > d_lim:
            end = d_lim
        r_last = tr[3]
        ds = tr[0]
        apply = self._decay.apply
        while d < end:
            d += 1
            v = apply(v0, d)
            r = self._reading_of(v)
            if v == 0:
                tr[4] = True                 # the line is empty: _relax changes nothing more
            if r != r_last:
                ds.append(d)
                tr[1].append(r)
                r_last = r
                if d > d_now:
                    break                    # what the caller asked: computed on demand
            if v == 0:
                break
        tr[2] = d
        tr[3] = r_last

    def balance_true_ng(self):
        """Exact mass on the balance pan (ng): outflow x density - evaporation - tare."""
        p = self.params
        t = self.t_us
        evap = t * p.evaporation_ng_per_h // 3600000000
        if p.evaporation_drift_ng_per_h_per_day:
            # rate e0 + k t: the integral adds k t^2 / 2 (t in h, k in ng/h per 24 h)
            evap += p.evaporation_drift_ng_per_h_per_day * t * t // (2 * 3600000000 * 86400000000)
        return self.out_pl * p.density_mg_per_ml // 1000 - evap - self.tare_ng

    def balance_reading_ng(self):
        """Displayed balance value (ng): true mass + noise of this update slot, quantised."""
        p = self.params
        slot = self.t_us // (p.balance_update_ms * 1000)
        h = _hash32(p.seed, slot)
        # Irwin-Hall of four 8-bit uniforms: mean 510, sd 147.2 counts -> scale to noise sd
        s = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255) - 510
        noise = s * p.balance_noise_ng // 147
        r = p.balance_readability_ng
        m = self.balance_true_ng() + noise
        if m + self.tare_ng > p.balance_capacity_ng:
            return p.balance_capacity_ng - self.tare_ng + r   # overload: pinned above capacity
        if m >= 0:
            return (m + r // 2) // r * r
        return -((-m + r // 2) // r * r)

    # ---- inputs from the firmware side ----------------------------------------------------------
    def enable(self, on):
        self.enabled = bool(on)
        if not self.enabled:
            self.stalled = False

    def queue_segment(self, steps, period_us, direction):
        """Queue `steps` pulses `period_us` apart; False if QUEUE_DEPTH segments already wait."""
        if steps < 0 or steps >= 1 << 30:
            raise ValueError("queue steps = %r: must be in 0..2**30-1" % (steps,))
        if period_us < 1 or period_us >= 1 << 30:
            raise ValueError("queue period_us = %r: must be in 1..2**30-1" % (period_us,))
        if direction not in (DIR_INFUSE, DIR_RETRACT):
            raise ValueError("queue direction = %r: must be 0 (retract) or 1 (infuse)" % (direction,))
        if steps == 0:
            return True
        if self.seg_steps == 0 and not self.queue:
            # like the PIO program: from idle, DIR settles DIR_SETUP_US, then the first pulse
            self._start_segment(steps, period_us, direction, self.t_us + DIR_SETUP_US - period_us)
            return True
        if len(self.queue) >= self.QUEUE_DEPTH:
            return False
        self.queue.append([steps, period_us, direction])
        return True

    def _start_segment(self, steps, period_us, direction, t_us):
        """Segment whose first pulse comes one period after t_us (the previous pulse)."""
        self.seg_steps = steps
        self.seg_period_us = period_us
        self.seg_dir = direction
        self.direction = direction
        self.next_pulse_us = t_us + period_us

    def abort(self):
        """Drop every queued pulse; returns how many were dropped."""
        n = self.pending()
        self.seg_steps = 0
        self.queue = []
        self.stalled = False
        return n

    # ---- faults and bench actions -----------------------------------------------------------
    def set_occluded(self, on):
        self.occluded = bool(on)

    def set_forced_stall(self, on):
        """Driver error (over-temperature / short): outputs off, DIAG high while enabled."""
        self.forced_stall = bool(on)

    set_driver_error = set_forced_stall

    def set_jammed(self, on):
        """Screw jammed: the motor skips every pulse, DIAG silent (StallGuard off)."""
        self.jammed = bool(on)

    def set_slipping(self, on):
        """Coupling slips: the motor turns, the screw does not, DIAG silent."""
        self.slipping = bool(on)

    def set_reservoir_nl(self, nl):
        """Bench operator swaps/empties the syringe: `nl` left in it (0 = empty, at the end stop)."""
        if nl < 0 or nl * 1000 > self.capacity_pl:
            raise ValueError("reservoir_nl = %r: must be in 0..%d" % (nl, self.capacity_pl // 1000))
        self.reservoir_pl = nl * 1000

    def tare(self):
        """Zero the balance at the current true mass."""
        self.tare_ng += self.balance_true_ng()

    def press_button(self, prng, at_us=None, hold_ms=None):
        """Add one physical press (with bounce on make and on break) starting at `at_us`."""
        t = self.t_us if at_us is None else at_us
        if self.button and self.button[-1][0] >= t:
            t = self.button[-1][0] + 1000
        hold = (self.params.button_hold_ms if hold_ms is None else hold_ms) * 1000
        level = True
        for _ in range(2 * (1 + prng.below(2)) - 1):      # odd number of flips: ends closed
            self.button.append((t, level))
            t += 100 + prng.below(1900)
            level = not level
        self.button.append((t, True))
        t += hold
        level = False
        for _ in range(2 * (1 + prng.below(2)) - 1):      # ends open
            self.button.append((t, level))
            t += 100 + prng.below(1900)
            level = not level
        self.button.append((t, False))
        self.button_n += 1
        return t

    def button_edges(self, until_us):
        """Pop and return the raw button edges (t_us, closed) up to `until_us`."""
        out = []
        while self.button and self.button[0][0] <= until_us:
            out.append(self.button.pop(0))
        return out

    # ---- time ----------------------------------------------------------------------------------
    def _relax(self, t_from, t_to):
        """Drain the line between two times: decay at every whole ms boundary crossed. The decay
        is computed from the last change of the line volume (a pulse, a fault, a restore), not
        from the previous call, so where a host's reads split the time changes nothing (the
        fixed-point factors round, and split differently they would round differently)."""
        dt_ms = t_to // 1000 - t_from // 1000
        if dt_ms <= 0:
            return
        if self.occluded or self.line_pl == 0:
            self._relax_pl = None
            return
        if self._relax_pl is None or self.line_pl != self._relax_last:
            self._relax_pl = self.line_pl
            self._relax_ms = t_from // 1000
        before = self.line_pl
        self.line_pl = self._decay.apply(self._relax_pl, t_to // 1000 - self._relax_ms)
        self._relax_last = self.line_pl
        self.out_pl += before - self.line_pl

    def _pulse(self):
        """One STEP edge now (self.t_us): the generator always emits it (True); whether the
        plunger moves is the motor's and the screw's business."""
        d = self.seg_dir
        self.pulses += 1
        blocked = self.blocked(d)
        if self.enabled and not blocked:
            self.motor_steps += 1 if d == DIR_INFUSE else -1      # the rotor turns
        if blocked or (self.enabled and self.slipping):
            self.stalled = True
            self.skipped += 1
            return True
        self.stalled = False
        if self.enabled:
            v = self.pl_per_step
            if d == DIR_INFUSE:
                self.plunger_steps += 1
                self.reservoir_pl -= v
                self.line_pl += v
            else:
                self.plunger_steps -= 1
                self.reservoir_pl += v
                self.line_pl -= v
        return True

    def record_balance(self, every_us, capacity=8192):
        """Start the balance's own timed output (like MT-SICS `SIR` streaming at a fixed interval):
        from now on every `every_us` of sim time the displayed reading is kept, exactly on the
        interval whatever the host's polling does, in a ring of `capacity` samples."""
        if every_us < 1 or capacity < 1:
            raise ValueError("record_balance every_us = %r, capacity = %r: must be >= 1" % (every_us, capacity))
        self.rec_every_us = every_us
        self.rec_next_us = self.t_us
        self.rec_capacity = capacity
        self.rec_log = []
        self.rec_count = 0

    def balance_records(self, since):
        """Recorded samples with index >= since, as [index, t_us, reading_ng] (oldest kept first)."""
        first = self.rec_count - len(self.rec_log)
        start = since - first if since > first else 0
        out = []
        for i in range(start, len(self.rec_log)):
            out.append([first + i, self.rec_log[i][0], self.rec_log[i][1]])
        return out

    def advance_to(self, t_us):
        """Move the world on to sim time t_us (earlier times are ignored), stopping at every
        balance recording instant on the way."""
        every = self.rec_every_us
        if every:
            while self.rec_next_us <= t_us:
                self._advance(self.rec_next_us)
                if len(self.rec_log) >= self.rec_capacity:
                    self.rec_log.pop(0)
                self.rec_log.append((self.rec_next_us, self.balance_reading_ng()))
                self.rec_count += 1
                self.rec_next_us += every
        self._advance(t_us)

    def _advance(self, t_us):
        while self.seg_steps and self.next_pulse_us <= t_us:
            tp = self.next_pulse_us
            self._relax(self.t_us, tp)
            self.t_us = tp
            if self._pulse():
                self.seg_steps -= 1
            self.next_pulse_us = tp + self.seg_period_us
            if self.seg_steps == 0 and self.queue:
                s = self.queue.pop(0)
                self.seg_steps = s[0]
                self.seg_period_us = s[1]
                self.seg_dir = s[2]
                self.direction = s[2]
                self.next_pulse_us = tp + s[1]
        if t_us > self.t_us:
            self._relax(self.t_us, t_us)
            self.t_us = t_us
        if self.stalled and not self.seg_steps:
            self.stalled = False

    def summary(self):
        """Read-out for hosts and tests (plain dict)."""
        return {
            "t_us": self.t_us, "plunger_steps": self.plunger_steps, "pulses": self.pulses,
            "pending": self.pending(), "reservoir_pl": self.reservoir_pl,
            "line_pl": self.line_pl, "out_pl": self.out_pl,
            "pressure_pa": self.pressure_pa(), "occluded": self.occluded,
            "forced_stall": self.forced_stall, "stall": self.diag(),
            "jammed": self.jammed, "slipping": self.slipping, "skipped": self.skipped,
            "motor_steps": self.motor_steps, "screw_steps": self.plunger_steps,
            "end_stop": self.end_stop(), "enabled": self.enabled,
            "balance_true_ng": self.balance_true_ng(), "pl_per_step": self.pl_per_step,
            "button_presses": self.button_n,
        }


class Debouncer:
    """Edge-counting debouncer over raw (t_us, closed) edges: a press counts once the contact
    has stayed closed for `stable_ms`; it re-arms once it has stayed open as long."""

    def __init__(self, stable_ms=20):
        self.stable_us = stable_ms * 1000
        self.raw = False
        self.raw_since = 0
        self.state = False
        self.count = 0

    def feed(self, edges, now_us):
        """Consume edges (sorted) then settle up to now_us."""
        for t, closed in edges:
            self._settle(t)
            if closed != self.raw:
                self.raw = closed
                self.raw_since = t
        self._settle(now_us)

    def _settle(self, t):
        if self.raw != self.state and t - self.raw_since >= self.stable_us:
            self.state = self.raw
            if self.state:
                self.count += 1

    def take(self):
        n = self.count
        self.count = 0
        return n
