"""The texts of the core's errors (limits, scheduler, alarms, detectors, codecs, clock, auth),
by key: `pumpcore.text(key, *args)` is `TEXTS[key] % args`.

Its own module for the RP2040's RAM (issue 16): `pumpcore.text` loads it for the call and lets
it go after (`pumpcore.render`), so these texts are in the heap only while one is made. On the
host the module simply stays loaded. Keys are at most 10 characters (an interned name on the
device, not a string object: tests/layout/test_texts.py holds that, and that every key a
caller names is here with the number of values its text takes).
"""

TEXTS = {
    # pumpcore.limits: the reason part of a LimitsError
    "int": "must be an integer",
    "int_in": "must be an integer in 1..%d",
    "abs_range": "outside the absolute range %d..%d",
    "conc_order": "above limits.max_conc_ug_ml %d",
    "daily_vol": "at min_conc_ug_ml %d that is %d nL/day, above the mechanism's %d nL/day"
                 " (step counters < 2**30 over %d days)",
    "rate_order": "above limits.max_flow_ng_day %d",
    "n_values": "expected %d values",
    "slow_mech": "its fastest flow %d ng/day at %d ug/mL is below the max rate %d ng/day",
    # pumpcore.scheduler
    "pl_range": "pl_per_step = %r: must be 100..10000000 pL per microstep",
    "pl_counts": "pl_per_step = %d: 30 days at the limits' %d nL/day would overflow the step "
                 "counters (RP2040 small ints); use a larger step or tighter limits",
    "conc_res": "does not match the reservoir's %d ug/mL (refill first)",
    "steps": "%s steps = %r: must be a non-negative integer",
    "sched_snap": "scheduler snapshot: not a version-%d snapshot of 26 fields",
    "gate_snap": "bolus gate snapshot: wrong sizes %d/%d/%d",
    # pumpcore.alarms
    "alarm_code": "alarm code = %r: must be 1..%d",
    "alarm_mask": "alarm active_mask = %r: must be a mask of codes 1..%d",
    "alarm_ack": "alarm acked_mask = %r: must be a subset of active_mask 0x%x",
    # pumpcore.detect, pumpcore.screwenc
    "param": "%s = %r: must be an int in %d..%d",
    "threshold": "threshold_kpa_x10 = %d: must be below the sensor's rail %d (%s never reads more)",
    "buckets": "window_ms = %d: must be a multiple of n_buckets %d",
    "enc_steps": "steps_per_rev = %r: must be an integer in 1..%d",
    "enc_counts": "counts_per_rev = %r: must be an integer in 2..65536",
    "enc_tol": "tol_counts = %r: must be an integer in 0..1000",
    # pumpcore.clock, pumpcore.fixed
    "clock_day": "clock.day = %r: must be 0..1000000 (days since 2000-01-01)",
    "clock_ms": "clock.ms_of_day = %r: must be 0..86399999",
    "mul_divmod": "mul_divmod needs a, b >= 0 and d > 0, got %d, %d, %d",
    # pumpcore.wire, pumpcore.auth
    "missing": "%s: missing (layout %s)",
    "not_int": "%s = %r: not an integer",
    "field_max": "%s = %d: outside 0..%d",
    "payload": "payload length = %d: above MAX_PAYLOAD %d",
    "byte_field": "%s = %r: outside 0..%d",
    "layout_n": "%d values for a layout of %d fields",
    "rig_id_len": "rig_id = %r: must be 1..%d characters",
    "rig_id_chr": "rig_id = %r: only printable ASCII without spaces",
    "counter": "counter = %r: outside 1..%d",
    "key_size": "key: %d bytes, a rig key is %d",
    # pumpcore.logrec: the reason part of a LogRecordError
    "an_int": "must be an int",
    "range": "outside %d..%d",
    "n_bytes": "must be %d bytes",
    "rec_crc": "does not match the record (computed 0x%08x)",
    "rec_ver": "this firmware reads version %d",
    "rec_code": "unknown event code (1..%d)",
    "rec_time": "ms of day must be < %d and seq >= 1",
    # pumpcore.statecodec: the reason part of a StateError
    "int_range": "must be an int in %d..%d",
    "crc32": "must be a CRC-32 (0..0xffffffff)",
    "int_tuple": "must be a tuple of ints",
    "int_or_tup": "must be an int or a tuple of ints",
    "i32": "must be a signed 32-bit int",
    "one_to": "must be 1..%d",
    "n_fields": "must hold %d fields",
    "n_sections": "at most 255 sections and 255 blobs",
    "most_ints": "at most %d ints",
    "most_bytes": "at most %d bytes",
    "most_depth": "at most %d levels",
}
