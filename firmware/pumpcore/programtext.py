"""The review screen's text of a program (`Program.describe`): the lines a clinician checks
before a commit, identical on device and host (the host's `pumpctl program show` prints the
device's, the review renders its own).

Its own module for the RP2040's RAM (issue 16): `Program.describe` loads it for the call and
lets it go after (`pumpcore.call_once`); the device builds these lines only when a host reads a
program back (pumpfw.programlink, PROG_PART_DESCRIBE).
"""
from pumpcore import program, unittext


def describe(prog):
    """Review-screen lines of `prog` (a pumpcore.program.Program), plain ASCII."""
    c = prog.concentration_ug_ml
    lines = ["Mode: %s" % program.MODE_NAMES[prog.mode],
             "Drug concentration: %s" % unittext.fmt_conc(c)]
    if prog.mode == program.MODE_CONTINUOUS:
        lines.append("Basal: %s (%s/day)" % (unittext.fmt_rate(prog.rate_ng_day),
                                              unittext.fmt_volume(prog.rate_ng_day * 1000 // c)))
    elif prog.mode == program.MODE_FLEX:
        for mask, steps in prog.patterns:
            lines.append("Pattern %s:" % ("every day" if mask == program.ALL_DAYS else program._mask_days(mask)))
            for start, rate in steps:
                lines.append("  from %s  %s" % (unittext.fmt_time_of_day(start), unittext.fmt_rate(rate)))
    elif prog.mode == program.MODE_SINGLE_BOLUS:
        lines.append("Single bolus: %s over %s, then stop" % (unittext.fmt_dose(prog.single_bolus[0]),
                                                               unittext.fmt_duration(prog.single_bolus[1])))
    for t, dose, dur in prog.periodic:
        lines.append("Periodic bolus at %s: %s over %s" % (unittext.fmt_time_of_day(t), unittext.fmt_dose(dose),
                                                          unittext.fmt_duration(dur)))
    if prog.patient is not None:
        d, dur, lock, n = prog.patient
        lines.append("Patient bolus: %s over %s, lockout %s, up to %d per 24 h" % (
            unittext.fmt_dose(d), unittext.fmt_duration(dur), unittext.fmt_duration(lock), n))
    if prog.mode != program.MODE_STOPPED:
        lines.append("Worst-case 24 h dose: %s" % unittext.fmt_dose(prog.worst_case_24h_ng()))
    lines.append("Catheter volume (bridge): %s" % unittext.fmt_volume(prog.catheter_nl))
    if prog.low_volume_nl or prog.low_days:
        lines.append("Reservoir low alarm: at %s or %d days left" % (unittext.fmt_volume(prog.low_volume_nl),
                                                                    prog.low_days))
    else:
        lines.append("Reservoir low alarm: off")
    lines.append("CRC-32: %08x" % prog.crc32())
    return lines
