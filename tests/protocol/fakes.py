"""Fake Controller and Program for protocol tests; MicroPython-compatible (runs in both)."""
from pumpcore import wire
from pumpfw.controller import Controller

KEY = bytes(range(32))          # the test rig's key
RIG = "rig-test-01"

MUTATING = ("set_time", "commit_program", "bolus", "suspend", "resume", "refill", "prime",
            "ack_alarm", "set_calibration", "accept_counter")

REFUSE_LOCKOUT = 3


class FakeProgram:
    """Stands in for pumpcore.program.Program: encoding b"FP" + rate u32 LE + name."""

    def __init__(self, rate_ng_day, name="fake"):
        self.rate_ng_day = rate_ng_day
        self.name = name

    def encode(self):
        r = self.rate_ng_day
        return b"FP" + bytes((r & 255, (r >> 8) & 255, (r >> 16) & 255, (r >> 24) & 255)) + self.name.encode()

    @classmethod
    def decode(cls, buf):
        if len(buf) < 6 or buf[0:2] != b"FP":
            raise ValueError("program: not a fake program (magic %r)" % (bytes(buf[0:2]),))
        r = buf[2] | (buf[3] << 8) | (buf[4] << 16) | (buf[5] << 24)
        return cls(r, bytes(buf[6:]).decode())

    def describe(self):
        return ["Program %s" % self.name, "Continuous %d ng/day" % self.rate_ng_day]


class FakeController(Controller):
    """Records every call that would change delivery in `calls` (name, args)."""

    def __init__(self, key=KEY, rig=RIG, records=100):
        self.calls = []
        self.key = key
        self.rig = rig
        self.counter = 0
        self.program = None
        self.suspended = False
        self.pl = 3051
        self.day = 9000
        self.ms = 0
        self.alarm_list = [
            {"alarm_id": 7, "code": 12, "priority": 2, "flags": 3, "day": 9000, "ms_of_day": 5000},
        ]
        self.log = []
        for i in range(records):
            self.log.append(bytes([i & 255]) * 32)
        self.refuse_bolus = False

    def _rec(self, name, *args):
        self.calls.append((name,) + args)

    def hello_info(self):
        return "0.1.0-test", "deadbeef"

    def rig_id(self):
        return self.rig

    def rig_key(self):
        return self.key

    def auth_counter(self):
        return self.counter

    def accept_counter(self, counter):
        self._rec("accept_counter", counter)
        self.counter = counter

    def status(self):
        return {
            "program_crc": 0 if self.program is None else _crc(self.program.encode()),
            "mode": 1, "flex_step": wire.NONE_U8,
            "flags": wire.STATUS_FLAG_SUSPENDED if self.suspended else wire.STATUS_FLAG_MOTOR_ON,
            "alarm_count": len(self.alarm_list), "top_alarm": 12 if self.alarm_list else 0,
            "rate_ng_day": 0 if self.suspended else 186000, "basal_ng_day": 186000,
            "delivered_today_ng": 77500, "delivered_total_ng": 5000000000,
            "rolling_24h_ng": 186000, "reservoir_nl": 18000000, "low_in_min": 120000,
            "empty_in_min": wire.NONE_U32, "day": self.day, "ms_of_day": self.ms,
            "missed_steps": 0, "uncertain_ng": 0, "bridge_left_nl": 0, "line_conc_ug_ml": 2000, "trapped_nl": 0, "queued_steps": 0,
        }

    def running_program(self):
        return self.program

    def alarms(self):
        return self.alarm_list

    def log_bounds(self):
        return 0, len(self.log)

    def read_log(self, first_seq, max_count):
        return self.log[first_seq:first_seq + max_count]

    def calibration(self):
        return self.pl, wire.CAL_SOURCE_DERIVED

    def limits(self):
        return {"max_rate_ng_day": 1500000, "max_24h_ng": 2000000, "max_bolus_ng": 200000,
                "max_flow_ng_day": 30000000, "min_conc_ug_ml": 50, "max_conc_ug_ml": 2000, "max_reservoir_nl": 20000000}

    def decode_program(self, buf):
        return FakeProgram.decode(buf)

    def check_program(self, program):
        if program.rate_ng_day > 1500000:
            return "rate_ng_day = %d: above the hard limit max_rate_ng_day 1500000" % program.rate_ng_day
        return None

    def commit_program(self, program):
        self._rec("commit_program", program.encode())
        self.program = program

    def set_time(self, day, ms_of_day):
        self._rec("set_time", day, ms_of_day)
        self.day = day
        self.ms = ms_of_day

    def bolus(self, kind, dose_ng, duration_ms):
        self._rec("bolus", kind, dose_ng, duration_ms)
        if self.refuse_bolus:
            return REFUSE_LOCKOUT
        return None

    def suspend(self):
        self._rec("suspend")
        self.suspended = True

    def resume(self):
        self._rec("resume")
        self.suspended = False

    def refill(self, volume_nl, conc_ug_ml):
        self._rec("refill", volume_nl, conc_ug_ml)

    def prime(self, volume_nl):
        self._rec("prime", volume_nl)

    def ack_alarm(self, alarm_id):
        self._rec("ack_alarm", alarm_id)
        for a in self.alarm_list:
            if a["alarm_id"] == alarm_id:
                self.alarm_list.remove(a)
                return None
        return (9, "alarm_id = %d: no such alarm" % alarm_id)

    def set_calibration(self, pl_per_step):
        self._rec("set_calibration", pl_per_step)
        self.pl = pl_per_step

    def maintenance(self, window_ms):
        self._rec("maintenance", window_ms)

    def refusal_text(self, code):
        if code == REFUSE_LOCKOUT:
            return "patient bolus refused: lockout 3 h not over"
        return "refused (code %d)" % code


def _crc(data):
    from pumpcore.crc import crc32
    return crc32(data)
