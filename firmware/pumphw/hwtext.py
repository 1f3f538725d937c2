"""The texts of the RP2040 layer's errors (pumphw.rp2hw, pumphw.steppio), by key:
`pumphw.text(key, *args)` is `TEXTS[key] % args`.

Its own module for the RP2040's RAM (issue 16): `pumphw.text` loads it for the call and lets it
go after (`pumpcore.render`). Keys are at most 10 characters (tests/layout/test_texts.py).
"""

TEXTS = {
    # pumphw.rp2hw
    "microsteps": "microsteps = %r: must be a power of two 1..256 (TMC2209 MRES)",
    "released": "stepper.queue(%d steps): motor driver is released (EN high); enable(True) first",
    "pattern": "alarm pattern = %r: must be 0..%d (pumpcore.alarms.PATTERN_*)",
    "watchdog": "watchdog timeout_ms = %r: must be an integer 1..%d",
    "hold": "maintenance window_ms = %r: must be %d..%d",
    "uart": "UART error %r",
    "no_reply": "no or bad reply within %d ms",
    "no_confirm": "TMC2209 on UART%d did not confirm %d microsteps (%s); "
                   "motor stays released: check 12 V at VM and the PDN_UART wiring",
    # pumphw.steppio
    "seg_steps": "steps = %r: must be an integer 1..%d",
    "period": "period_us = %r: must be an integer %d..%d us",
    "direction": "direction = %r: must be 0 (retract) or 1 (infuse)",
}
