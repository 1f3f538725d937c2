"""Test firmware for the virtual rig: answers one-letter queries about the twin; 0x03 -> REPL."""
from pumphw.simhw import make_sim_hardware

hw = make_sim_hardware()
wdt = 0
try:
    with open("wdt_ms") as f:
        wdt = int(f.read())
except OSError:
    pass
if wdt:
    hw.watchdog_start(wdt)
hw.serial_write(b"boot cause=%d rig=%s\n" % (hw.reset_cause(), hw.rig_id().encode()))
presses = 0
run = True
while run:
    data = hw.serial_read()
    for c in data:
        if c == 3:
            run = False
            break
        if c == ord("t"):
            hw.serial_write(b"t=%d\n" % hw.ticks_ms())
        elif c == ord("p"):
            hw.serial_write(b"p=%d\n" % hw.pressure_kpa_x10())
        elif c == ord("e"):
            hw.serial_write(b"e=%d\n" % hw.end_stop())
        elif c == ord("s"):
            hw.serial_write(b"s=%d done=%d pending=%d\n" % (hw.stepper.stall(), hw.stepper.steps_done(),
                                                           hw.stepper.pending()))
        elif c == ord("b"):
            presses += hw.bolus_button_presses()
            hw.serial_write(b"b=%d\n" % presses)
        elif c == ord("q"):
            hw.stepper.enable(True)
            hw.serial_write(b"q=%d\n" % hw.stepper.queue(100, 5000, 1))
        elif c == ord("a"):
            hw.serial_write(b"a=%d\n" % hw.stepper.abort())
    presses += hw.bolus_button_presses()
    if wdt:
        hw.watchdog_feed()
    hw.idle(5)           # wakes on host bytes, like the app (sleep_ms would not, under a hold)
