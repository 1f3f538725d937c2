"""Fault detectors fed by the app each tick: occlusion, stall, flow, reservoir (pure, integers).

Each detector keeps a level (`active` and the named flags) and has `report(alarm_set)` that
feeds those levels into a pumpcore.alarms.AlarmSet (raise while present, clear when ended).
update() and report() allocate nothing: they run every main-loop tick. All parameters are
checked at construction; a bad one raises DetectError naming the field, value and limit.

Time to alarm (worst case, from the moment the condition starts, given ticks of at most
`tick_ms`; the app ticks at most 1 s while steps run, an alarm sounds or a confirm timer counts;
when all is quiet it sleeps to the next step (up to 60 s: pumpfw.app._sleep_ms) and that wake
reads the sensors before it steps, so a condition that starts in a quiet sleep is first read at
the next step's time at the latest, with no step made in between; a first reading above the
threshold or in the fault band counts less than confirm_ms, so the pressure and sensor-fault
criteria still need a second reading, 1 s later):
- OcclusionDetector: pressure criterion `confirm_ms + tick_ms` after the pressure crosses
  `threshold_kpa_x10` (a sensor railed above its range reads above it); sensor fault
  `confirm_ms + tick_ms` after the reading drops below `fault_low_kpa_x10`; decay criterion after at most trend_samples * steps_per_sample delivered
  microsteps that do not decay (missed_steps_bound()), provided the line's pressure rise over
  the ring span clears trend_rise_kpa_x10 (figures per line compliance: docs/persistence.md,
  bench/occlusion_time_to_alarm.py).
- StallDetector: DIAG `diag_confirm_ms + tick_ms`; missing steps `no_progress_ms + tick_ms`
  after the step generator stops emitting with steps owed, or at once when more than
  `max_lag_steps` are owed while it is idle.
- FlowDetector: window_ms + bucket_ms after the flow leaves tolerance (the window mean must be
  out of tolerance), default 5 min + 30 s.
- ReservoirDetector: on the first update after the volume/days cross their threshold or the
  end stop closes (end stop confirmed over `end_stop_confirm` consecutive updates).
"""
from pumpcore.fixed import const
from pumpcore import text
from pumpcore import alarms as _alarms
from pumpcore import pressure as _pressure

_CAP = const(0x20000000)  # timers saturate here (< 2**30, small int)


class DetectError(ValueError):
    """A detector parameter out of range: names the field, the value and the limit."""


def _param(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
        raise DetectError(text("param", name, value, lo, hi))
    return value


def occlusion_steps_per_sample(pl_per_step, compliance_pl_per_kpa, trend_rise_kpa_x10=80,
                               trend_samples=8):
    """OcclusionDetector steps_per_sample for a mechanism: the microsteps over which a blocked
    line rises 2 * trend_rise / (trend_samples - 1) (twice the per-interval minimum), rounded up.
    A step raises a blocked line by pl_per_step / compliance kPa: 0.90 kPa on the 20 mL rig
    (17,964 pL into 20 nL/kPa: 3 steps), 0.033 kPa on the precision drive (652 pL: 71 steps).
    With the default 3 the precision drive's decay criterion could never fire (3 steps rise
    0.1 kPa per sample, under the 0.5 kPa minimum) and only the pressure threshold caught a
    block: 27 min and 1.8 uL at 186 ug/day (bench/occlusion_time_to_alarm.py)."""
    _param("pl_per_step", pl_per_step, 1, 10 ** 9)
    _param("compliance_pl_per_kpa", compliance_pl_per_kpa, 1, 10 ** 9)
    num = 2 * trend_rise_kpa_x10 * compliance_pl_per_kpa
    den = (trend_samples - 1) * pl_per_step * 10
    n = (num + den - 1) // den
    return n if n >= 1 else 1


class OcclusionDetector:
    """Occlusion from the line pressure (kPa x 10), and the pressure sensor's open-wire fault.

    The thresholds come from the sensor (pumpcore.pressure, hw/mechanism.json
    "pressure_sensor"): `for_sensor(sensor, ...)`; the defaults are the BOM sensor's
    (threshold 85 % of its range = 87.9 kPa, below its 116.3 kPa rail; fault below -5.2 kPa).
    Two criteria, either raises `active`:
    - pressure: pressure >= threshold_kpa_x10 continuously for confirm_ms. The threshold must
      lie inside what the sensor can report: above its range the output rails at the supply
      (rail_kpa_x10), and that reading, like a short to the supply, counts as over-threshold;
    - decay: the delivered steps do not show in the pressure decay. Every steps_per_sample
      delivered microsteps, the floor (minimum pressure) seen since the previous sample is
      recorded in a ring of trend_samples samples. In a patent line the floor returns to the
      baseline between steps (or settles on a steady-flow plateau during a bolus); in an
      occluded line every step adds to it. The decay criterion holds when the newest floor is
      at least trend_rise_kpa_x10 above the oldest in the ring and every one of the ring's
      intervals rose by at least trend_rise / (2 * (trend_samples - 1)) (a steady climb: a
      patent line ramping up to its flow plateau rises fast and then stops). A floor falling
      more than noise_kpa_x10 below its predecessor restarts the trend. Samples are at least
      min_sample_ms apart: set it to about the patent line's time constant so that at fast
      rates the ring spans the ramp. Choose steps_per_sample so that the line's rise per step
      (pl_per_step / compliance) times steps_per_sample is about 2 * trend_rise /
      (trend_samples - 1), which keeps each interval clear of the noise.
    Missed volume at alarm (decay criterion), worst case: (trend_samples + 1) * steps_per_sample
    steps (missed_steps_bound()) when steps come at least min_sample_ms apart per sample,
    provided each interval's rise clears the per-interval minimum (else only the pressure
    criterion can fire); at faster rates, (trend_samples + 1) * min_sample_ms of delivery.
    Defaults suit the bench/virtual rig's line (hw/mechanism.json: 20 nL/kPa, 1 s decay; the
    BOM sensor on the 12-bit ADC: 0.9 kPa per microstep, 0.03 kPa quantum): figures from
    bench/occlusion_time_to_alarm.py in docs/persistence.md.
    Sensor fault (`sensor_fault`, ALARM_SENSOR_FAULT): the reading stayed below
    fault_low_kpa_x10 (the sensor's open-wire band) for confirm_ms; it ends once the reading
    was back in band for confirm_ms. A dead reading enters no floor of the decay trend (it
    would look like a drain and clear an occlusion); the trend and the trapped count go on.
    The pressure criterion clears once pressure stayed below threshold - hysteresis_kpa_x10 for
    confirm_ms; the decay criterion clears when a floor decays (the line drains), including
    with the motor stopped (pressure falls trend_rise_kpa_x10 below the last floor).
    Trapped volume (`trapped_steps()`): the microsteps pushed into the line since it was last
    seen at rest: since the last sample whose floor stood within noise_kpa_x10 of the ring's
    oldest floor (a patent line's baseline or a steady flow's plateau), that sample's own steps
    and the previous sample's included (a rise within the noise may be a block's first step),
    plus those since the last sample; after a drain, from the drain's sample. In an occluded
    line nothing drains, so this is the volume a clearing releases at once as a bolus. It errs
    high: a patent ramp up to a plateau counts, and whole samples are counted where the rest
    was seen. It can err low only when a block's rise stays within the noise for more than one
    sample.
    """

    def __init__(self, threshold_kpa_x10=None, confirm_ms=2000, trend_samples=8,
                 steps_per_sample=3, trend_rise_kpa_x10=80, noise_kpa_x10=10,
                 hysteresis_kpa_x10=200, min_sample_ms=30000, fault_low_kpa_x10=None):
        if threshold_kpa_x10 is None or fault_low_kpa_x10 is None:
            bom = _pressure.PressureSensor(None)
            if threshold_kpa_x10 is None:
                threshold_kpa_x10 = bom.occlusion_threshold_kpa_x10
            if fault_low_kpa_x10 is None:
                fault_low_kpa_x10 = bom.fault_low_kpa_x10
        self.threshold_kpa_x10 = _param("threshold_kpa_x10", threshold_kpa_x10, 1, 100000)
        self.fault_low_kpa_x10 = _param("fault_low_kpa_x10", fault_low_kpa_x10, -100000, 0)
        self.confirm_ms = _param("confirm_ms", confirm_ms, 0, 600000)
        self.trend_samples = _param("trend_samples", trend_samples, 2, 64)
        self.steps_per_sample = _param("steps_per_sample", steps_per_sample, 1, 100000)
        self.trend_rise_kpa_x10 = _param("trend_rise_kpa_x10", trend_rise_kpa_x10, 1, 100000)
        self.noise_kpa_x10 = _param("noise_kpa_x10", noise_kpa_x10, 0, 100000)
        self.hysteresis_kpa_x10 = _param("hysteresis_kpa_x10", hysteresis_kpa_x10, 0, threshold_kpa_x10)
        self.min_sample_ms = _param("min_sample_ms", min_sample_ms, 0, 3600000)
        self._min_inc = trend_rise_kpa_x10 // (2 * (trend_samples - 1))
        self._floors = [0] * trend_samples
        self.reset()

    @classmethod
    def for_sensor(cls, sensor, **kw):
        """A detector whose pressure threshold and fault band are the sensor's
        (pumpcore.pressure.PressureSensor); other parameters as keywords."""
        if kw.get("threshold_kpa_x10") is None:
            kw["threshold_kpa_x10"] = sensor.occlusion_threshold_kpa_x10
        if kw.get("fault_low_kpa_x10") is None:
            kw["fault_low_kpa_x10"] = sensor.fault_low_kpa_x10
        if kw["threshold_kpa_x10"] >= sensor.rail_kpa_x10:
            raise DetectError(text("threshold", kw["threshold_kpa_x10"], sensor.rail_kpa_x10, sensor.part))
        return cls(**kw)

    def missed_steps_bound(self, step_period_ms=0):
        """Worst-case delivered-but-blocked microsteps before the decay criterion fires, at a
        delivery of one microstep every step_period_ms (0: slower than min_sample_ms)."""
        per = self.steps_per_sample
        if step_period_ms > 0 and self.min_sample_ms > 0:
            by_time = (self.min_sample_ms + step_period_ms - 1) // step_period_ms
            if by_time > per:
                per = by_time
        return (self.trend_samples + 1) * per

    def reset(self):
        """Forget history (after a cleared occlusion, a refill, a prime)."""
        for i in range(self.trend_samples):
            self._floors[i] = 0
        self._n = 0          # samples in the ring (<= trend_samples)
        self._head = 0       # next ring slot
        self._steps = 0      # steps since the last sample
        self._since_ms = 0   # ms since the last sample
        self._floor = 0x3FFFFFFF
        self._since_base = 0     # microsteps sampled since the line was last seen at rest
        self._at_rest = True     # no sample since a reset or a drain
        self._last_steps = 0     # microsteps of the previous sample
        self._above_ms = 0
        self._below_ms = 0
        self._fault_ms = 0
        self._ok_ms = 0
        self.by_pressure = False
        self.by_decay = False
        self.active = False
        self.sensor_fault = False
        self.pressure_kpa_x10 = 0

    def update(self, dt_ms, pressure_kpa_x10, steps_delivered):
        """One tick: dt_ms since the last update, the pressure now, and the microsteps
        delivered since the last update. Returns `active`."""
        self.pressure_kpa_x10 = pressure_kpa_x10
        dead = pressure_kpa_x10 < self.fault_low_kpa_x10
        if dead:
            # the reading fell into the band somewhere in dt_ms: a first reading there counts
            # less than confirm_ms of it, so one reading never confirms by itself (after the
            # app's longer quiet sleep as after its 1 s tick)
            t = self._fault_ms + (dt_ms if self._fault_ms or dt_ms < self.confirm_ms or not self.confirm_ms
                                  else self.confirm_ms - 1)
            self._fault_ms = t if t < _CAP else _CAP
            self._ok_ms = 0
            if self._fault_ms >= self.confirm_ms:
                self.sensor_fault = True
        else:
            self._fault_ms = 0
            t = self._ok_ms + dt_ms
            self._ok_ms = t if t < _CAP else _CAP
            if self._ok_ms >= self.confirm_ms:
                self.sensor_fault = False
        if not dead and pressure_kpa_x10 < self._floor:
            self._floor = pressure_kpa_x10  # a dead reading is no floor: it would look like a drain
        if pressure_kpa_x10 >= self.threshold_kpa_x10:
            # as for the fault band: a first reading above counts less than confirm_ms
            t = self._above_ms + (dt_ms if self._above_ms or dt_ms < self.confirm_ms or not self.confirm_ms
                                  else self.confirm_ms - 1)
            self._above_ms = t if t < _CAP else _CAP
            self._below_ms = 0
            if self._above_ms >= self.confirm_ms:
                self.by_pressure = True
        else:
            self._above_ms = 0
            if pressure_kpa_x10 < self.threshold_kpa_x10 - self.hysteresis_kpa_x10:
                t = self._below_ms + dt_ms
                self._below_ms = t if t < _CAP else _CAP
                if self._below_ms >= self.confirm_ms:
                    self.by_pressure = False
        t = self._since_ms + dt_ms
        self._since_ms = t if t < _CAP else _CAP
        if steps_delivered > 0:
            s = self._steps + steps_delivered
            if s >= self.steps_per_sample and self._since_ms >= self.min_sample_ms:
                self._sample(self._floor, s)
                self._floor = 0x3FFFFFFF if dead else pressure_kpa_x10
                self._since_ms = 0
                s = 0
            self._steps = s if s < _CAP else _CAP
        elif self.by_decay and not dead:
            last = self._floors[(self._head - 1) % self.trend_samples]
            if pressure_kpa_x10 < last - self.trend_rise_kpa_x10:
                self._n = 0  # pressure drained with the motor stopped: the line is open again
                self.by_decay = False
                self._since_base = 0
                self._steps = 0
                self._at_rest = True
        self.active = self.by_pressure or self.by_decay
        return self.active

    def timing(self):
        """True while the last reading stands at or above the threshold or in the sensor's fault
        band: a confirm timer runs (or has raised). The app then keeps its 1 s tick, so
        confirm_ms is sampled as with the 1 s tick (a first reading with dt 0 counts no time)."""
        p = self.pressure_kpa_x10
        return p >= self.threshold_kpa_x10 or p < self.fault_low_kpa_x10

    def trapped_steps(self):
        """Microsteps pushed into the line since it last stood at its patent baseline (an upper
        bound of the volume an occlusion holds back; see the class docstring)."""
        t = self._since_base + self._steps
        return t if t < _CAP else _CAP

    def _sample(self, floor, steps):
        n = self.trend_samples
        if floor == 0x3FFFFFFF:  # no live reading in the interval: no evidence, steps still count
            t = self._since_base + steps
            self._since_base = t if t < _CAP else _CAP
            return
        rest = self._at_rest  # fresh detector, or the line drained with the motor stopped
        if self._n and floor < self._floors[(self._head - 1) % n] - self.noise_kpa_x10:
            self._n = 0  # the floor decayed: the line drains, the trend restarts here
            rest = True
        # the line at rest (its baseline, or a patent flow's plateau): no rise beyond the noise
        # over the whole ring. Then only this sample's steps can be held back.
        self._at_rest = False
        if rest:
            self._since_base = steps
        elif self._n and floor <= self._floors[(self._head - self._n) % n] + self.noise_kpa_x10:
            # a rise within the noise may be a block's first step: the previous sample counts too
            t = steps + self._last_steps
            self._since_base = t if t < self._since_base + steps else self._since_base + steps
        else:
            t = self._since_base + steps
            self._since_base = t if t < _CAP else _CAP
        self._last_steps = steps
        self._floors[self._head] = floor
        self._head = (self._head + 1) % n
        if self._n < n:
            self._n += 1
        if self._n < n:
            self.by_decay = False
            return
        oldest = self._floors[self._head]  # next slot to overwrite holds the oldest
        if floor - oldest < self.trend_rise_kpa_x10:
            self.by_decay = False
            return
        # a steady rise, not a patent line settling on its flow plateau: every interval of
        # the ring rose by at least half the average rise the criterion needs
        prev = oldest
        i = self._head
        for _ in range(n - 1):
            i = (i + 1) % n
            if self._floors[i] - prev < self._min_inc:
                self.by_decay = False
                return
            prev = self._floors[i]
        self.by_decay = True

    def report(self, alarm_set):
        """Feed the levels into an AlarmSet (occlusion, pressure-sensor fault). Returns
        AlarmSet.update's result for the occlusion, else for the sensor fault."""
        a = alarm_set.update(_alarms.ALARM_OCCLUSION, self.active)
        b = alarm_set.update(_alarms.ALARM_SENSOR_FAULT, self.sensor_fault)
        return a or b


class StallDetector:
    """Motor stall: the driver's DIAG output, or the step generator emitting fewer steps than
    commanded.

    - DIAG high continuously for diag_confirm_ms;
    - steps owed (queued - emitted) > 0 while no step was emitted for no_progress_ms, counted
      from the first update that sees them owed: the dt of that update passed before they were
      handed over (the app queues, then senses), and the PIO generator reports a segment only
      after its last pulse's full low time (pumphw/steppio.py), up to a whole loop tick later;
    - more than max_lag_steps owed while the generator reports idle (it stopped early).
    """

    def __init__(self, diag_confirm_ms=50, no_progress_ms=1000, max_lag_steps=0):
        self.diag_confirm_ms = _param("diag_confirm_ms", diag_confirm_ms, 0, 60000)
        self.no_progress_ms = _param("no_progress_ms", no_progress_ms, 1, 600000)
        self.max_lag_steps = _param("max_lag_steps", max_lag_steps, 0, 100000)
        self.reset()

    def reset(self):
        """Forget history (after the motor was stopped and the queue aborted)."""
        self._diag_ms = 0
        self._stuck_ms = 0
        self._owed_before = False
        self.by_diag = False
        self.by_steps = False
        self.active = False
        self.lag_steps = 0

    def update(self, dt_ms, diag, owed_steps, emitted_steps, generator_busy):
        """One tick: DIAG level, steps queued but not yet emitted, steps emitted since the last
        update, whether the generator is still running. Returns `active`."""
        if diag:
            t = self._diag_ms + dt_ms
            self._diag_ms = t if t < _CAP else _CAP
            if self._diag_ms >= self.diag_confirm_ms:
                self.by_diag = True
        else:
            self._diag_ms = 0
        self.lag_steps = owed_steps
        if owed_steps > 0 and emitted_steps == 0:
            if self._owed_before:
                t = self._stuck_ms + dt_ms
                self._stuck_ms = t if t < _CAP else _CAP
                if self._stuck_ms >= self.no_progress_ms:
                    self.by_steps = True
        else:
            self._stuck_ms = 0
        self._owed_before = owed_steps > 0
        if owed_steps > self.max_lag_steps and not generator_busy:
            self.by_steps = True
        self.active = self.by_diag or self.by_steps
        return self.active

    def report(self, alarm_set):
        return alarm_set.update(_alarms.ALARM_STALL, self.active)


class FlowDetector:
    """Measured vs commanded flow over a sliding window (needs a balance or an encoder).

    The window (window_ms) is n_buckets buckets; at the end of each bucket, once the window is
    full, the window's measured volume is compared with the commanded volume. Out of tolerance
    means |measured - commanded| > commanded * tolerance_pct / 100 + abs_tolerance_nl.
    `low` / `high` say which way; each needs `persist` consecutive out-of-tolerance windows.
    Without a measurement (available False) the detector forgets its window and says nothing.
    """

    def __init__(self, window_ms=300000, n_buckets=10, tolerance_pct=10, abs_tolerance_nl=200,
                 persist=1):
        self.window_ms = _param("window_ms", window_ms, 1000, 86400000)
        self.n_buckets = _param("n_buckets", n_buckets, 1, 120)
        self.tolerance_pct = _param("tolerance_pct", tolerance_pct, 0, 100)
        self.abs_tolerance_nl = _param("abs_tolerance_nl", abs_tolerance_nl, 0, 10000000)
        self.persist = _param("persist", persist, 1, 1000)
        self.bucket_ms = window_ms // n_buckets
        if self.bucket_ms * n_buckets != window_ms:
            raise DetectError(text("buckets", window_ms, n_buckets))
        self._cmd = [0] * n_buckets
        self._meas = [0] * n_buckets
        self.reset()

    def reset(self):
        for i in range(self.n_buckets):
            self._cmd[i] = 0
            self._meas[i] = 0
        self._i = 0
        self._filled = 0
        self._t = 0
        self._bad_low = 0
        self._bad_high = 0
        self.low = False
        self.high = False
        self.active = False
        self.window_commanded_nl = 0
        self.window_measured_nl = 0

    def update(self, dt_ms, commanded_nl, measured_nl, available):
        """One tick: volume commanded and volume measured (nL) since the last update, and
        whether a measurement exists. dt_ms may span several buckets. Returns `active`."""
        if not available:
            if self._filled or self._t or self.active:
                self.reset()
            return False
        self._cmd[self._i] += commanded_nl
        self._meas[self._i] += measured_nl
        self._t += dt_ms
        while self._t >= self.bucket_ms:
            self._t -= self.bucket_ms
            if self._filled < self.n_buckets:
                self._filled += 1
            if self._filled == self.n_buckets:
                self._evaluate()
            self._i = (self._i + 1) % self.n_buckets
            self._cmd[self._i] = 0
            self._meas[self._i] = 0
        self.active = self.low or self.high
        return self.active

    def _evaluate(self):
        c = 0
        m = 0
        for i in range(self.n_buckets):
            c += self._cmd[i]
            m += self._meas[i]
        self.window_commanded_nl = c
        self.window_measured_nl = m
        tol = c * self.tolerance_pct // 100 + self.abs_tolerance_nl
        if m < c - tol:
            self._bad_low += 1
        else:
            self._bad_low = 0
        if m > c + tol:
            self._bad_high += 1
        else:
            self._bad_high = 0
        if self._bad_low > self.persist:
            self._bad_low = self.persist
        if self._bad_high > self.persist:
            self._bad_high = self.persist
        self.low = self._bad_low >= self.persist
        self.high = self._bad_high >= self.persist

    def report(self, alarm_set):
        a = alarm_set.update(_alarms.ALARM_FLOW_LOW, self.low)
        b = alarm_set.update(_alarms.ALARM_FLOW_HIGH, self.high)
        return a or b


class ReservoirDetector:
    """Reservoir low by volume, low by days remaining, and empty (volume or end stop).

    low_volume_nl, low_days come from the program (thresholds); empty_nl is the volume at
    which the reservoir counts as empty (the dead volume). A low alarm clears only once the
    volume is above its threshold by hysteresis_nl (a refill), so it does not chatter.
    Days remaining are compared without division: volume < low_days * rate_nl_day.
    """

    def __init__(self, low_volume_nl=2000000, low_days=7, empty_nl=100000, hysteresis_nl=100000,
                 end_stop_confirm=2):
        self.low_volume_nl = _param("low_volume_nl", low_volume_nl, 0, 100000000)
        self.low_days = _param("low_days", low_days, 0, 30)  # x 30e6 nL/day max < 2**30
        self.empty_nl = _param("empty_nl", empty_nl, 0, 100000000)
        self.hysteresis_nl = _param("hysteresis_nl", hysteresis_nl, 0, 100000000)
        self.end_stop_confirm = _param("end_stop_confirm", end_stop_confirm, 1, 1000)
        self.reset()

    def reset(self):
        self._stop_n = 0
        self.low_volume = False
        self.low_days_left = False
        self.empty = False
        self.active = False

    def confirming(self):
        """True while the end stop is seen closed but not yet over end_stop_confirm updates (the
        app keeps its 1 s tick until it is confirmed)."""
        return 0 < self._stop_n < self.end_stop_confirm

    def update(self, volume_nl, rate_nl_day, end_stop):
        """One tick: estimated volume left (nL), the current basal rate (nL/day; 0 when
        stopped), the end-stop switch. Returns `active` (any of the three)."""
        if end_stop:
            if self._stop_n < self.end_stop_confirm:
                self._stop_n += 1
        else:
            self._stop_n = 0
        by_stop = self._stop_n >= self.end_stop_confirm
        if volume_nl <= self.empty_nl or by_stop:
            self.empty = True
        elif volume_nl > self.empty_nl + self.hysteresis_nl:
            self.empty = False
        if volume_nl < self.low_volume_nl:
            self.low_volume = True
        elif volume_nl >= self.low_volume_nl + self.hysteresis_nl:
            self.low_volume = False
        if rate_nl_day > 0:
            need = self.low_days * rate_nl_day
            if volume_nl < need:
                self.low_days_left = True
            elif volume_nl >= need + self.hysteresis_nl:
                self.low_days_left = False
        else:
            self.low_days_left = False
        self.active = self.empty or self.low_volume or self.low_days_left
        return self.active

    def report(self, alarm_set):
        a = alarm_set.update(_alarms.ALARM_RESERVOIR_EMPTY, self.empty)
        b = alarm_set.update(_alarms.ALARM_RESERVOIR_LOW_VOLUME, self.low_volume)
        c = alarm_set.update(_alarms.ALARM_RESERVOIR_LOW_DAYS, self.low_days_left)
        return a or b or c
