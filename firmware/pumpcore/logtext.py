"""Text the host renders from the codes the device logs and reports: event names and the
names of their arguments, alarm operator texts, priority and reaction names.

The device never imports this module (issue 16's RAM budget: these strings cost ~5 KB of the
RP2040 heap); it keeps the codes (pumpcore.logrec EV_*, pumpcore.alarms ALARM_*) and the short
alarm names its own refusal messages use. The host tools and the tests import the text from
here: one source of truth, beside the codes it explains. pumpcore, so the micropython
differential tests can run it too. A new code gets its line here in the same commit
(tests/persist/test_codecs.py and test_alarms.py check that every code has one).
"""
from pumpcore import alarms, logrec

# Per logrec.EV_* code (index = code): the name `pumpctl logs` shows, and the names of the
# four arguments (units in the names; "" for an unused one).
EVENT_NAMES = (
    None, "reset", "state-restored", "state-lost", "missed-volume", "program-commit",
    "program-lost", "bolus-start", "bolus-end", "bolus-denied", "bolus-aborted", "suspend",
    "resume", "refill", "prime", "alarm-raised", "alarm-ack", "alarm-cleared", "hourly-total",
    "time-set", "limit-refused", "calibration", "watchdog-armed", "storage-fault",
    "maintenance", "heap", "maintenance-start", "maintenance-end", "program-at-boot",
    "hourly-partial", "ledger-restored", "auth-refused", "log-backlog", "lockout-restored",
    "applied-from-log",
)

EVENT_ARGS = (
    None,
    ("reset_cause", "boot_count", "down_ms", "state_status"),
    ("state_seq", "slot", "delivered_steps", "program_crc16"),
    ("status_a", "status_b", "", ""),
    ("missed_nl", "missed_steps", "down_ms", "rate_ng_day"),
    ("program_crc_hi16", "program_crc_lo16", "mode", "basal_rate_ng_day"),
    ("status_a", "status_b", "", ""),
    ("kind", "dose_ng", "duration_ms", "bolus_serial"),
    ("kind", "delivered_ng", "bolus_serial", "queued_steps"),
    ("kind", "dose_ng", "refusal_code", ""),
    ("kind", "dose_ng", "delivered_ng_at_last_save", "bolus_serial"),
    ("reason", "", "", ""),
    ("suspended_ms", "", "", ""),
    ("volume_nl", "concentration_ug_ml", "bridge_left_nl", ""),
    ("volume_nl", "duration_ms", "dose_ng", "bolus_serial"),
    ("alarm", "priority", "detail", "restored"),
    ("alarm", "priority", "", ""),
    ("alarm", "priority", "active_ms", ""),
    ("hour", "delivered_ng", "delivered_steps", "missed_steps"),
    ("old_day", "old_ms", "new_day", "new_ms"),
    ("command", "refusal_code", "value", "limit"),
    ("old_pl_per_step", "new_pl_per_step", "", ""),
    ("timeout_ms", "", "", ""),
    ("what", "errno", "", ""),
    ("reason", "exits_in_a_row", "backoff_ms", ""),
    ("alloc_bytes", "free_bytes", "", ""),
    ("window_ms", "auth_counter", "rate_ng_day", "dropped_steps"),
    ("missed_nl", "missed_steps", "maintenance_ms", "rate_ng_day"),
    ("running_crc_hi16", "running_crc_lo16", "confirmed_crc_hi16", "confirmed_crc_lo16"),
    ("hour", "delivered_ng", "delivered_steps", "missed_steps"),
    ("certain_total_ng", "possibly_ng", "possibly_steps", "uncertain_total_ng"),
    ("command", "status", "not_logged", ""),
    ("late_records", "lost_alarm", "lost_bolus", "lost_other"),
    ("bolus_serial", "lockout_left_ms", "patient_boluses_24h", ""),
    ("event", "record_seq", "", ""),
)


def event_name(code):
    """Short name of an event code, or 'event-N' for an unknown one."""
    if 1 <= code <= logrec.EV_CODE_MAX:
        return EVENT_NAMES[code]
    return "event-%d" % code


def describe(rec):
    """One line of text for a decoded record: 'seq 12 day 9490 01:02:03.004 bolus-start kind=1 ...'."""
    seq, day, ms, code = rec[0], rec[1], rec[2], rec[3]
    s = ms // 1000
    parts = ["seq %d day %d %02d:%02d:%02d.%03d %s" % (seq, day, s // 3600, (s // 60) % 60, s % 60,
                                                       ms % 1000, event_name(code))]
    names = EVENT_ARGS[code] if 1 <= code <= logrec.EV_CODE_MAX else ("a0", "a1", "a2", "a3")
    for i in range(4):
        if names[i]:
            parts.append("%s=%d" % (names[i], rec[4 + i]))
    return " ".join(parts)


PRIORITY_NAMES = ("info", "low", "medium", "high", "critical")   # alarms.PRIO_*
REACTION_NAMES = ("delivery continues", "basal continues, boluses stopped", "motor stopped")  # REACT_*

# The operator text of each alarm (index = alarms.ALARM_* code).
ALARM_TEXTS = (
    None,
    "Line occluded: pressure high or not decaying. Motor stopped; check the catheter.",
    "Motor stalled or steps missing. Motor stopped; doses due meanwhile are missed.",
    "Reservoir empty or plunger at the end stop. Motor stopped; refill now.",
    "Reservoir volume below the programmed low threshold. Schedule a refill.",
    "Days of drug left below the programmed threshold. Schedule a refill.",
    "Measured flow below the commanded rate beyond tolerance (under-delivery).",
    "Measured flow above the commanded rate beyond tolerance (over-delivery). Motor stopped.",
    "Restarted after a power loss; basal resumed, doses due while off were missed.",
    "Restarted by the watchdog (software hung); basal resumed, boluses held until ack.",
    "Stored delivery state unreadable: totals, lockouts and caps unknown. Motor stopped.",
    "Stored program unreadable. Motor stopped; commit a program.",
    "Wall clock not set since restart; basal continues, boluses held until time is set.",
    "A request was refused by a hard limit.",
    "Patient bolus denied (lockout or daily cap).",
    "Writing state or log to flash failed; delivery continues, data may not persist.",
    "No committed program: nothing is delivered.",
    "Pressure sensor output below its range (open wire or short to ground): occlusion cannot "
    "be detected. Basal continues, boluses held; check the sensor wiring.",
    "Maintenance: the application handed the link to the REPL (signed command). Motor stopped, "
    "nothing is delivered; the rig returns to the application by itself when the window ends.",
    "After a reset the program running is not the one last confirmed (a commit cut short or "
    "a damaged program slot). Basal continues, boluses held; check the program and ack.",
    "Screw encoder behind the commanded steps (jammed screw, slipping coupling or skipped "
    "steps). Motor stopped; doses due meanwhile are missed; check the drive.",
)


def alarm_text(code):
    """The operator text of an alarm code (raises alarms.AlarmError for a code outside 1..ALARM_MAX)."""
    alarms.alarm_name(code)   # the same check, the same one-line error
    return ALARM_TEXTS[code]


def priority_name(prio):
    """'high' for alarms.PRIO_HIGH; 'priority-N' for a value outside the table."""
    if 0 <= prio < len(PRIORITY_NAMES):
        return PRIORITY_NAMES[prio]
    return "priority-%d" % prio
