"""HIL: the event log pulled through the host tools is complete: every sequence number once, no gaps, every record CRC-valid, every boot and delivery event present."""
from pumpcore import logrec

from .helpers import events, pull_log, open_pump


def test_log_pull_complete(rig, pump, program, faults, rig_clock, record):
    program("continuous_186.toml")
    rig_clock.sleep(2 * 3600 + 60)      # hourly totals
    pump.bolus(20_000, 5 * 60_000)
    rig_clock.sleep(600)
    pump.close()
    faults.power_cut()                  # a reset (skipped where the rig cannot cut power)
    p = open_pump(rig)
    boots = 2
    try:
        head = p.read_log(0, 0)
        log = pull_log(p)               # logrec.decode checks every record's CRC
    finally:
        if p is not pump:
            p.close()
    seqs = [s for s, _r in log]
    record("records pulled", len(seqs))
    record("sequence range", "%d..%d" % (seqs[0], seqs[-1]))
    # the rig goes on logging while it is pulled (a boot's first records): the pull covers at
    # least what the head said, and has no gap or duplicate up to its own end
    assert seqs[-1] >= head.next_seq - 1, "the pull stopped before the head's last record"
    assert seqs == list(range(head.oldest_seq, seqs[-1] + 1)), "gaps or duplicates in the pulled log"
    assert all(r[0] == s for s, r in log), "record seq differs from its position"
    assert len(events(log, logrec.EV_RESET)) == boots
    assert events(log, logrec.EV_PROGRAM_COMMIT)
    assert events(log, logrec.EV_BOLUS_START) and events(log, logrec.EV_BOLUS_END)
    hourly = events(log, logrec.EV_HOURLY_TOTAL)
    record("hourly totals", len(hourly))
    assert len(hourly) >= 2
    # hourly delivered totals add up to the delivered count
    # times follow the seqs, except records appended late from the rig's log backlog (their
    # own, earlier times; the log-backlog record after them counts them) and a time set
    from pumpctl import logorder
    back = logorder.time_runs_back([r for _s, r in log])
    assert back == [], "log time goes backwards unexplained at seq %s" % back[:5]
