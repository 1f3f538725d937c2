"""The text of each bolus/refill refusal code (pumpcore.scheduler REFUSE_*, by index), which the
device sends with the code and the host's log view prints.

Its own module for the RP2040's RAM (issue 16): `scheduler.refusal_text` loads it for the call
and lets it go after (`pumpcore.forget`).
"""

TEXTS = (
    "accepted",
    "another bolus is running",
    "bolus dose above the hard limit max_bolus_ng",
    "would exceed the hard limit max_24h_ng (rolling 24 h, worst case)",
    "basal + bolus flow above the hard limit max_flow_ng_day",
    "patient bolus locked out (lockout interval running)",
    "patient boluses allotted per 24 h already used",
    "no patient bolus in this program",
    "delivery is suspended",
    "the program is stopped (delivery off)",
    "dose or duration out of range (dose >= 1 ng, 1 ms <= duration <= 24 h)",
    "no program loaded",
    "this kind starts from refill() or prime(), not request_bolus()",
    "prime needs a stopped program (no basal flowing)",
    "concentration outside the hard limits min_conc_ug_ml..max_conc_ug_ml",
    "volume outside 0..reservoir capacity (or prime above 500 uL)",
)


def text(code):
    """Human-readable reason for a REFUSE_* code."""
    if 0 <= code < len(TEXTS):
        return TEXTS[code]
    return "unknown refusal code %d" % code
