"""The texts of the application's refusals and errors (pumpfw.server, pumpfw.app, pumpfw.store),
by key: `pumpfw.text(key, *args)` is `TEXTS[key] % args` (pumpcore.render).

Its own module for the RP2040's RAM (issue 16): `pumpfw.text` loads it for the call and lets
it go after (`pumpcore.render`), so these texts are in the heap only while one is made; the
device sends the text it made, as before. Keys are at most 10 characters (an interned name on
the device, not a string object: tests/layout/test_texts.py holds that and that every key a
caller names is here, with the number of values its text takes).
"""

TEXTS = {
    # the protocol server (pumpfw.server)
    "version": "protocol version %d not supported: this firmware speaks %d",
    "internal": "internal error in %s: %s %s",
    "encoding": "internal error encoding %s response: %s",
    "bad_len": "%s payload length = %d: needs %d bytes",
    "no_reason": "refused by the firmware (no reason given)",
    "refused": "refused (code %d)",
    "trailer": "%s: authentication trailer malformed (payload %d bytes, body %d + rig id + counter + HMAC)",
    "wrong_rig": "request is for rig %r, this is rig %r",
    "no_key": "rig %r has no key provisioned (deploy writes it)",
    "bad_mac": "HMAC does not match: wrong key for rig %r or the request was altered",
    "ctr_limit": "counter = %d: above the limit %d",
    "replay": "counter = %d: already used (last accepted %d); replayed request refused",
    "ms_of_day": "ms_of_day = %d: must be below %d",
    "unverified": "no verified staged program: stage and verify first",
    "crc_stage": "commit names CRC 0x%08x but the staged program's CRC is 0x%08x: running program unchanged",
    "outside": "%s = %d: outside 1..%d",
    "above": "%s = %d: above %d",
    "window": "window_ms = %d: outside %d..%d (1 to 30 min)",
    "unknown": "unknown command code 0x%02x",
    "no_handler": "command %s has no handler",
    "log_count": "read_log returned %d records, asked for %d",
    "log_rec": "log record of %d bytes, must be %d",
    # the application (pumpfw.app)
    "budget": "flash write budget for urgent saves is spent (%d, one more every %d s): not executed, retry in %d s",
    "mt_budget": "flash write budget for urgent saves is spent: maintenance not entered, delivery continues; retry in %d s",
    "conc_other": "concentration_ug_ml = %d: the reservoir holds %d ug/mL (refill with the new drug first)",
    "bolus_held": "boluses are held while alarm %s is active",
    "no_alarm": "no alarm with id %d",
    "ack_queued": "alarm %d (%s) stays while %d event records wait for the flash (retried every %d s at most)",
    "ack_none": "alarm %d (%s) is not active and unacknowledged",
    # the stores (pumpfw.store)
    "rate_limit": "rate limit min_interval_ms=%d burst=%d refill_ms=%d: need >= 0, >= 1, >= 1",
    "prog_len": "program length = %d: at most %d bytes",
    "log_shape": "seg_records = %d, max_segments = %d: need >= 1 and >= 2",
}
