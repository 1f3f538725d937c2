"""Alarm codes, priorities, patterns, latching/ack/clear rules, delivery reactions and AlarmSet.

Every alarm has, in one table (pumpcore.alarmtable.ALARM_TABLE):
- a priority (PRIO_CRITICAL > HIGH > MEDIUM > LOW > INFO), which picks the buzzer/LED pattern;
- a kind: CONDITION (raised while a detector sees the condition, cleared when it ends) or
  EVENT (a moment: a reset, a refusal; there is nothing to clear, only to acknowledge);
- LATCH: the alarm stays active after its condition ended until someone acknowledges it
  (used where the condition is dangerous: the clinician must see that it happened);
- a delivery reaction: REACT_STOP (motor stopped: no basal, no bolus), REACT_NO_BOLUS (basal
  continues, every bolus is stopped and refused) or REACT_NONE (delivery unaffected).

Rules (AlarmSet):
- raise_(code): active, unacknowledged. Raising an active alarm again changes nothing (an
  acknowledged condition alarm stays silent while its condition lasts).
- clear(code): the condition ended. A non-latching alarm goes away at once; a latching one goes
  away at once if already acknowledged, otherwise it stays until ack.
- ack(code): silences it. An EVENT alarm goes away on ack; a CONDITION alarm goes away on ack
  if its condition has ended, otherwise it stays active (silent, LED only) until clear().
- INFO alarms never latch: they go away on ack or after INFO_SHOW_MS.
- Sound: an unacknowledged CRITICAL/HIGH alarm sounds continuously; an unacknowledged
  MEDIUM/LOW alarm sounds a burst when raised and a reminder burst every REMIND_MS until
  acknowledged; INFO sounds one burst. Acknowledged-but-active alarms show the LED only.
- motor_allowed() is False while any active alarm has REACT_STOP (acknowledged or not);
  bolus_allowed() is False while any active alarm has REACT_STOP or REACT_NO_BOLUS.

The table is its own module for the RP2040's RAM (issue 16): the AlarmSet copies the columns it
needs when it is built (at boot), and the table is loaded again only for an alarm's name in a
text, each time let go after (pumpcore.call_once). The device asks its AlarmSet for an alarm's
priority and latch; the functions below read the table, for the host and the tests.

Going away is remembered until the app has looked (gone_count, gone_ms, looked): an alarm
that goes away (clear, ack, INFO expiry) and is raised again before the app next logs the
changes is two occurrences, not one, and the log shows each (a cleared and a raised record),
never a silent re-raise whose age restarts under the old raised record.

tick(dt_ms), update(), pattern(), motor_allowed() and bolus_allowed() allocate nothing (they
run every main-loop tick). Times in ms.
"""
from pumpcore.fixed import const
from pumpcore import call_once, text

PRIO_INFO = const(0)
PRIO_LOW = const(1)
PRIO_MEDIUM = const(2)
PRIO_HIGH = const(3)
PRIO_CRITICAL = const(4)

REACT_NONE = const(0)
REACT_NO_BOLUS = const(1)
REACT_STOP = const(2)

KIND_CONDITION = const(0)
KIND_EVENT = const(1)

# Alarm codes (1..ALARM_MAX; the bit (1 << code) is used in the persisted masks).
ALARM_OCCLUSION = const(1)
ALARM_STALL = const(2)
ALARM_RESERVOIR_EMPTY = const(3)
ALARM_RESERVOIR_LOW_VOLUME = const(4)
ALARM_RESERVOIR_LOW_DAYS = const(5)
ALARM_FLOW_LOW = const(6)
ALARM_FLOW_HIGH = const(7)
ALARM_RESET_POWER = const(8)
ALARM_RESET_WATCHDOG = const(9)
ALARM_STATE_CORRUPT = const(10)
ALARM_PROGRAM_CORRUPT = const(11)
ALARM_CLOCK_LOST = const(12)
ALARM_LIMIT_REFUSED = const(13)
ALARM_BOLUS_DENIED = const(14)
ALARM_STORAGE_FAULT = const(15)
ALARM_NO_PROGRAM = const(16)
ALARM_SENSOR_FAULT = const(17)
ALARM_MAINTENANCE = const(18)
ALARM_PROGRAM_UNCONFIRMED = const(19)
ALARM_MISSED_STEPS = const(20)   # screw encoder behind the commanded microsteps (encoder helper)
ALARM_MAX = const(20)

# Patterns handed to hw.alarm_output(pattern). Sound patterns per priority, then LED-only
# (acknowledged or between reminders) per priority.
PATTERN_OFF = const(0)
PATTERN_SOUND_INFO = const(1)
_PATTERN_SOUND_LOW = const(2)
PATTERN_SOUND_MEDIUM = const(3)
PATTERN_SOUND_HIGH = const(4)
PATTERN_SOUND_CRITICAL = const(5)
PATTERN_LED_INFO = const(6)
_PATTERN_LED_LOW = const(7)
PATTERN_LED_MEDIUM = const(8)
PATTERN_LED_HIGH = const(9)
_PATTERN_LED_CRITICAL = const(10)
PATTERN_MAX = const(10)

# (buzzer_on_ms, buzzer_off_ms, beeps per burst (0 = silent), burst repeat ms (0 = once),
#  LED colour, LED blink period ms (0 = steady))
PATTERN_SPEC = (
    (0, 0, 0, 0, "off", 0),
    (100, 0, 1, 0, "yellow", 0),
    (150, 150, 1, 0, "yellow", 4000),
    (200, 200, 3, 0, "yellow", 1000),
    (150, 100, 5, 2500, "red", 500),
    (100, 60, 10, 1200, "red", 250),
    (0, 0, 0, 0, "yellow", 0),
    (0, 0, 0, 0, "yellow", 4000),
    (0, 0, 0, 0, "yellow", 1000),
    (0, 0, 0, 0, "red", 500),
    (0, 0, 0, 0, "red", 250),
)

REMIND_MS = const(300000)      # reminder burst period for unacknowledged medium/low alarms
BURST_MS = const(5000)         # how long a raise/reminder burst of a medium/low/info alarm sounds
INFO_SHOW_MS = const(60000)    # an info alarm disappears by itself after this long

_ACTIVE = const(1)
_ACKED = const(2)
_COND = const(4)
_NONE_ACTIVE = bytes(ALARM_MAX + 1)   # _flags with no alarm active (a flag byte is 0 iff inactive)


class AlarmError(ValueError):
    """Bad alarm code or snapshot: names the field, the value and the limit."""


def _check_code(code):
    if not isinstance(code, int) or code < 1 or code > ALARM_MAX:
        raise AlarmError(text("alarm_code", code, ALARM_MAX))


def _row(code):
    """(name, priority, kind, latch, reaction) of `code`: pumpcore.alarmtable, loaded for the call."""
    _check_code(code)
    from pumpcore import alarmtable
    return call_once(alarmtable, "row", code)


def alarm_name(code):
    """The alarm's short name ("clock-lost"), or "alarm <code>" when the table cannot be loaded
    now (no heap or no flash for it on the device: the text that names the alarm is still
    made, as pumpcore.text makes its own)."""
    _check_code(code)
    try:
        return _row(code)[0]
    except Exception:
        return "alarm %d" % code


def priority(code):
    return _row(code)[1]


def reaction(code):
    return _row(code)[4]


def latches(code):
    return _row(code)[3]


def is_event(code):
    return _row(code)[2] == KIND_EVENT


class AlarmSet:
    """The live set of alarms. Per code: flags (active, acked, condition present) and the ms
    since it was raised or last reminded (capped at 2**29, small int)."""

    def __init__(self):
        self._flags = bytearray(ALARM_MAX + 1)
        self._age_ms = [0] * (ALARM_MAX + 1)     # ms since raised (for INFO expiry, active_ms)
        self._remind_ms = [0] * (ALARM_MAX + 1)  # ms since the last burst started
        self._prio = bytearray(ALARM_MAX + 1)
        self._react = bytearray(ALARM_MAX + 1)
        self._latch = bytearray(ALARM_MAX + 1)
        self._event = bytearray(ALARM_MAX + 1)
        # went away since the app last looked: how often (saturating), the age at the first and
        # at the last time (pumpfw.app logs each cleared + raised pair from these)
        self._gone_n = bytearray(ALARM_MAX + 1)
        self._gone_first = [0] * (ALARM_MAX + 1)
        self._gone_last = [0] * (ALARM_MAX + 1)
        from pumpcore import alarmtable
        call_once(alarmtable, "fill", self._prio, self._event, self._latch, self._react)
        self.changes = 0  # incremented on every raise/clear/ack that changed something
        # motor_allowed() as of `changes` (it reads only the active bits, and every change of
        # one counts a change): the loop asks once an iteration, alarms rarely change
        self._motor_at = -1
        self._motor_ok = True
        self._quiet_at = -1     # quiet() as of `changes`, kept the same way
        self._quiet_ok = True

    # state changes -----------------------------------------------------------------------
    def raise_(self, code):
        """The condition is present (or the event happened). Returns True if this is a new
        occurrence the app should log (EV_ALARM_RAISED)."""
        _check_code(code)
        return self._raise(code)

    def _raise(self, code):
        f = self._flags[code]
        if f & _ACTIVE:
            new = False
        else:
            f = _ACTIVE
            new = True
            self._age_ms[code] = 0
            self._remind_ms[code] = 0
            self.changes += 1
        if not self._event[code]:
            f |= _COND
        self._flags[code] = f
        return new

    def clear(self, code):
        """The condition ended. Returns True if the alarm went away (log EV_ALARM_CLEARED).
        Event alarms have no condition: clear() leaves them (only ack or expiry ends them)."""
        _check_code(code)
        return self._clear(code)

    def _clear(self, code):
        f = self._flags[code]
        if not (f & _ACTIVE) or self._event[code]:
            return False
        if (f & _ACKED) or not self._latch[code]:
            self._went(code)
            self._flags[code] = 0
            self.changes += 1
            return True
        self._flags[code] = f & ~_COND
        return False

    def update(self, code, present):
        """Feed a detector's level each tick: raise_ if present, clear otherwise. Returns
        1 if newly raised, -1 if it went away, 0 if nothing changed. Allocates nothing."""
        if present:
            return 1 if self._raise(code) else 0
        if not self._flags[code]:
            return 0          # inactive and absent: the usual tick of every detector, no call
        return -1 if self._clear(code) else 0

    def ack(self, code):
        """Acknowledge one alarm. Returns True if it was active and unacknowledged (log
        EV_ALARM_ACK). The alarm goes away if it is an event or its condition has ended."""
        _check_code(code)
        f = self._flags[code]
        if not (f & _ACTIVE) or (f & _ACKED):
            return False
        if self._event[code] or not (f & _COND):
            self._went(code)
            self._flags[code] = 0
        else:
            self._flags[code] = f | _ACKED
        self.changes += 1
        return True

    def ack_all(self):
        """Acknowledge every active alarm; returns the list of codes acknowledged."""
        done = []
        for c in range(1, ALARM_MAX + 1):
            if self.ack(c):
                done.append(c)
        return done

    def tick(self, dt_ms):
        """Advance alarm timers by dt_ms: reminders, INFO expiry. Returns the number of alarms
        that expired (INFO alarms shown for INFO_SHOW_MS). Allocates nothing."""
        expired = 0
        flags = self._flags
        if flags == _NONE_ACTIVE:
            return 0                  # nothing active: no timer runs (bytes compare, no allocation)
        if dt_ms < 0:
            dt_ms = 0
        ages = self._age_ms
        reminds = self._remind_ms
        prio = self._prio
        for c in range(1, ALARM_MAX + 1):
            if not (flags[c] & _ACTIVE):
                continue
            a = ages[c] + dt_ms
            ages[c] = a if a < 0x20000000 else 0x20000000
            r = reminds[c] + dt_ms
            if r >= REMIND_MS:
                r %= REMIND_MS
            reminds[c] = r
            if prio[c] == PRIO_INFO and a >= INFO_SHOW_MS:
                self._went(c)
                self._flags[c] = 0
                self.changes += 1
                expired += 1
        return expired

    def _went(self, code):
        """The active alarm `code` goes away now: remembered until looked(code)."""
        n = self._gone_n[code]
        if n == 0:
            self._gone_first[code] = self._age_ms[code]
        self._gone_last[code] = self._age_ms[code]
        self._gone_n[code] = n + 1 if n < 255 else 255

    def gone_count(self, code):
        """How often the alarm went away since looked(code) (at most 255). With is_active()
        and what the app saw at its last look this gives every occurrence in between: if it
        was seen active, the first time ends that one, and each later time ends one raised
        after it."""
        return self._gone_n[code]

    def gone_ms(self, code, first=True):
        """The alarm's age (active_ms) when it first (or last) went away since looked(code)."""
        return self._gone_first[code] if first else self._gone_last[code]

    def looked(self, code):
        """The app has logged the alarm's changes up to now."""
        self._gone_n[code] = 0

    # read-outs ---------------------------------------------------------------------------
    def priority(self, code):
        """The alarm's priority (PRIO_*), from the table's copy (no load: the device's path)."""
        _check_code(code)
        return self._prio[code]

    def latches(self, code):
        """True when the alarm stays active after its condition ends until acknowledged."""
        _check_code(code)
        return self._latch[code] == 1

    def is_active(self, code):
        _check_code(code)
        return bool(self._flags[code] & _ACTIVE)

    def is_acked(self, code):
        _check_code(code)
        return bool(self._flags[code] & _ACKED)

    def condition_present(self, code):
        _check_code(code)
        return bool(self._flags[code] & _COND)

    def active_ms(self, code):
        """ms since the alarm was raised (capped at 2**29)."""
        _check_code(code)
        return self._age_ms[code]

    def ages(self):
        """ms since each alarm was raised, codes 1..ALARM_MAX (0 for inactive ones): persisted so
        the raised time survives a reset."""
        return tuple(self._age_ms[c] if self._flags[c] & _ACTIVE else 0 for c in range(1, ALARM_MAX + 1))

    def restore_ages(self, ages):
        """Put back ages() after restore(); a tuple of another length (other firmware) is ignored."""
        if not isinstance(ages, tuple) or len(ages) != ALARM_MAX:
            return
        for c in range(1, ALARM_MAX + 1):
            a = ages[c - 1]
            if (self._flags[c] & _ACTIVE) and isinstance(a, int) and 0 <= a <= 0x20000000:
                self._age_ms[c] = a

    def active(self):
        """Active codes, highest priority first, then by code."""
        out = []
        for p in range(PRIO_CRITICAL, -1, -1):
            for c in range(1, ALARM_MAX + 1):
                if (self._flags[c] & _ACTIVE) and self._prio[c] == p:
                    out.append(c)
        return out

    def unacknowledged(self):
        return [c for c in self.active() if not (self._flags[c] & _ACKED)]

    def motor_allowed(self):
        """False while any active alarm stops the motor."""
        if self._motor_at == self.changes:
            return self._motor_ok
        ok = True
        for c in range(1, ALARM_MAX + 1):
            if (self._flags[c] & _ACTIVE) and self._react[c] == REACT_STOP:
                ok = False
                break
        self._motor_ok = ok
        self._motor_at = self.changes
        return ok

    def quiet(self):
        """True when every active alarm is acknowledged (or none is active): nothing sounds, no
        burst or reminder is timed and no INFO alarm runs its show time (an acknowledged INFO
        alarm is gone), so the app may sleep past its 1 s tick (pumpfw.app._sleep_ms).
        Allocates nothing; kept until the next change, like motor_allowed()."""
        flags = self._flags
        if flags == _NONE_ACTIVE:
            return True
        if self._quiet_at == self.changes:
            return self._quiet_ok
        ok = True
        for c in range(1, ALARM_MAX + 1):
            if (flags[c] & _ACTIVE) and not (flags[c] & _ACKED):
                ok = False
                break
        self._quiet_ok = ok
        self._quiet_at = self.changes
        return ok

    def bolus_allowed(self):
        """False while any active alarm stops the motor or holds boluses."""
        for c in range(1, ALARM_MAX + 1):
            if (self._flags[c] & _ACTIVE) and self._react[c] != REACT_NONE:
                return False
        return True

    def highest_priority(self):
        """Priority of the most urgent active alarm, or -1 when none."""
        best = -1
        for c in range(1, ALARM_MAX + 1):
            if (self._flags[c] & _ACTIVE) and self._prio[c] > best:
                best = self._prio[c]
        return best

    def pattern(self):
        """The buzzer/LED pattern to show now (PATTERN_*): the most urgent sounding alarm's
        sound pattern if any sounds, else the LED pattern of the most urgent active alarm."""
        flags = self._flags
        if flags == _NONE_ACTIVE:
            return PATTERN_OFF
        prio = self._prio
        sound = -1
        led = -1
        for c in range(1, ALARM_MAX + 1):
            f = flags[c]
            if not (f & _ACTIVE):
                continue
            p = prio[c]
            if p > led:
                led = p
            if f & _ACKED:
                continue
            if p >= PRIO_HIGH:
                sounding = True
            elif p == PRIO_INFO:
                sounding = self._age_ms[c] < BURST_MS
            else:
                sounding = self._remind_ms[c] < BURST_MS
            if sounding and p > sound:
                sound = p
        if sound >= 0:
            return PATTERN_SOUND_INFO + sound
        if led >= 0:
            return PATTERN_LED_INFO + led
        return PATTERN_OFF

    # persistence -------------------------------------------------------------------------
    def snapshot(self):
        """(active_mask, acked_mask) of the alarms that must survive a reset: latching and
        event alarms (conditions that do not latch are re-detected after the reset). Bit
        (1 << code); both < 2**30."""
        act = 0
        acked = 0
        for c in range(1, ALARM_MAX + 1):
            f = self._flags[c]
            if (f & _ACTIVE) and (self._latch[c] or self._event[c]) and self._prio[c] != PRIO_INFO:
                act |= 1 << c
                if f & _ACKED:
                    acked |= 1 << c
        return (act, acked)

    def restore(self, active_mask, acked_mask):
        """Re-create alarms from snapshot(). An unacknowledged alarm comes back active and
        unacknowledged with its condition taken as ended (so a latched one stays until
        acknowledged, and sounds again); an acknowledged condition alarm comes back silent with
        its condition taken as present (it stops the motor, if it did, until the detector
        reports the condition ended)."""
        limit = 1 << (ALARM_MAX + 1)
        if not isinstance(active_mask, int) or active_mask < 0 or active_mask >= limit or active_mask & 1:
            raise AlarmError(text("alarm_mask", active_mask, ALARM_MAX))
        if not isinstance(acked_mask, int) or acked_mask & ~active_mask:
            raise AlarmError(text("alarm_ack", acked_mask, active_mask))
        for c in range(1, ALARM_MAX + 1):
            self._flags[c] = 0
            self._gone_n[c] = 0
            if active_mask & (1 << c):
                if acked_mask & (1 << c):
                    if self._event[c]:
                        continue  # an acknowledged event is over
                    # acknowledged, condition taken as present: stays silent, and goes away
                    # at the first tick whose detector reports the condition ended
                    self._flags[c] = _ACTIVE | _ACKED | _COND
                else:
                    self._flags[c] = _ACTIVE
                self._age_ms[c] = 0
                self._remind_ms[c] = 0
        self.changes += 1
