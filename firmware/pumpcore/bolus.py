"""BolusGate: rolling-24 h dose ledger (bounded buckets), patient-bolus lockout and allotment.

Memory is bounded: the ledger is N_BUCKETS = 97 buckets of 15 min (delivered ng per bucket,
the current partial bucket included), the patient history a ring of MAX_PATIENT_PER_24H
start times. rolling_24h_ng() sums all 97 buckets, i.e. everything delivered since the start
of the bucket 24 h before the current one: never less than the true rolling 24 h dose and at
most one 15-min bucket more (conservative). Times are wall times (day, ms_of_day).
"""
from pumpcore.fixed import const
from pumpcore.program import MAX_PATIENT_PER_24H

BUCKET_MS = const(900000)
_BUCKETS_PER_DAY = const(96)
N_BUCKETS = const(97)
MS_PER_DAY = const(86400000)


class BolusGate:
    """Ledger of delivered dose (ng) per 15-min bucket, patient lockout and per-24 h allotment."""

    def __init__(self):
        self.buckets = [0] * N_BUCKETS
        self.abs_bucket = -1          # absolute bucket number day*96 + ms//900000 of `cur`
        self.cur = 0                  # index into buckets of the current bucket
        self.ring_day = [0] * MAX_PATIENT_PER_24H
        self.ring_ms = [0] * MAX_PATIENT_PER_24H
        self.ring_used = 0
        self.ring_next = 0
        self.lock_day = -1            # lockout ends at (lock_day, lock_ms); -1 = none
        self.lock_ms = 0

    def roll(self, clock):
        """Make the bucket of clock's current time the current one, zeroing skipped buckets.

        If the clock was set back, nothing is forgotten: deliveries keep going into the latest
        bucket until the clock passes it again (the 24 h sum stays an upper bound).
        """
        a = clock.day * _BUCKETS_PER_DAY + clock.ms // BUCKET_MS
        if a < self.abs_bucket:
            return  # clock set back: keep counting into the latest bucket (conservative)
        if self.abs_bucket < 0 or a - self.abs_bucket >= N_BUCKETS:
            for i in range(N_BUCKETS):
                self.buckets[i] = 0
        else:
            b = self.abs_bucket
            while b < a:
                b += 1
                self.buckets[b % N_BUCKETS] = 0
        self.abs_bucket = a
        self.cur = a % N_BUCKETS

    def add_ng(self, ng):
        """Count ng delivered now (hot path: allocation-free)."""
        self.buckets[self.cur] += ng

    def take_back_ng(self, ng):
        """Steps counted now but never made: give back up to what the current bucket holds."""
        v = self.buckets[self.cur]
        self.buckets[self.cur] = v - ng if v > ng else 0

    def rolling_24h_ng(self):
        """Delivered ng over the last 24 h (conservative by at most one 15-min bucket)."""
        t = 0
        for v in self.buckets:
            t += v
        return t

    def oldest_first(self):
        """Bucket values from the oldest (24 h ago) to the current one, as a list (request time)."""
        out = []
        for k in range(N_BUCKETS):
            out.append(self.buckets[(self.cur + 1 + k) % N_BUCKETS])
        return out

    def start_lockout(self, clock, lockout_ms):
        """Patient boluses are locked out for lockout_ms from now (after a bolus, commit or refill)."""
        if lockout_ms <= 0:
            return
        ms = clock.ms + lockout_ms
        day = clock.day
        while ms >= MS_PER_DAY:
            ms -= MS_PER_DAY
            day += 1
        if self.lock_day < 0 or (day, ms) > (self.lock_day, self.lock_ms):
            self.lock_day = day
            self.lock_ms = ms

    def lockout_left_ms(self, clock):
        """ms of patient-bolus lockout still to run (0 = none)."""
        if self.lock_day < 0:
            return 0
        return clock.ms_until(self.lock_day, self.lock_ms, 2 * MS_PER_DAY)

    def patients_in_24h(self, clock):
        """Patient boluses started in the last 24 h."""
        n = 0
        for i in range(self.ring_used):
            if clock.ms_since(self.ring_day[i], self.ring_ms[i], MS_PER_DAY) < MS_PER_DAY:
                n += 1
        return n

    def record_patient(self, clock):
        """Remember a patient bolus started now (ring of the last MAX_PATIENT_PER_24H)."""
        i = self.ring_next
        self.ring_day[i] = clock.day
        self.ring_ms[i] = clock.ms
        self.ring_next = (i + 1) % MAX_PATIENT_PER_24H
        if self.ring_used < MAX_PATIENT_PER_24H:
            self.ring_used += 1

    def shift(self, clock, new_day, new_ms):
        """The wall clock is being corrected from `clock`'s time to (new_day, new_ms): move every anchor
        with it, so the lockout left, the patient boluses of the last 24 h and the rolling-24 h
        ledger keep their elapsed-time meaning (a clock correction never frees a lockout or a
        cap early). The ledger moves by whole buckets rounded toward "more recent" (conservative).
        Runs at a time sync only; may use big ints there."""
        delta = (new_day - clock.day) * MS_PER_DAY + new_ms - clock.ms
        if delta == 0:
            return
        if self.lock_day >= 0:
            self.lock_day, self.lock_ms = _moved(self.lock_day, self.lock_ms, delta)
        for i in range(self.ring_used):
            self.ring_day[i], self.ring_ms[i] = _moved(self.ring_day[i], self.ring_ms[i], delta)
        if self.abs_bucket >= 0:
            a = -(-delta // BUCKET_MS) + self.abs_bucket
            now = new_day * _BUCKETS_PER_DAY + new_ms // BUCKET_MS
            a = a if a < now else now
            # the ring's contents move with the anchor: bucket of absolute index b lives at
            # b % N_BUCKETS, so every value moves by k positions (else a clock set back makes the
            # latest buckets look like the future, and roll() zeroes them: an under-count)
            k = (a - self.abs_bucket) % N_BUCKETS
            if k:
                old = list(self.buckets)
                for i in range(N_BUCKETS):
                    self.buckets[(i + k) % N_BUCKETS] = old[i]
            self.abs_bucket = a
            self.cur = a % N_BUCKETS

    def snapshot(self):
        """Plain tuple of ints for persistence; pumpcore.restore.bolus_gate puts it back."""
        return (tuple(self.buckets), self.abs_bucket, tuple(self.ring_day), tuple(self.ring_ms),
                self.ring_used, self.ring_next, self.lock_day, self.lock_ms)


def _moved(day, ms, delta):
    """(day, ms_of_day) moved by delta ms; clamped at day 0 (before the epoch means "long ago")."""
    t = day * MS_PER_DAY + ms + delta
    if t < 0:
        return 0, 0
    return t // MS_PER_DAY, t % MS_PER_DAY
