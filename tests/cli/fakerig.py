"""Test helper: an in-process rig (pumpfw.server.ProtocolServer over a fake Controller) for CLI tests without a process."""
from __future__ import annotations

from typing import Any

from pumpcore import logrec, wire
from pumpctl.transport import import_server

import_server()
from pumpfw.controller import Controller  # noqa: E402  (import_server put firmware/ on the path)


class FakeController(Controller):
    """Keeps just enough state to check what the CLI sent and what it printed."""

    def __init__(self, rig: str = "bench-1", key: bytes | None = None) -> None:
        self.rig = rig
        self.key = key
        self.counter = 0
        self.calls: list[tuple[Any, ...]] = []
        self.program: Any = None
        self.log: list[bytes] = []
        self.cal = (12_000, wire.CAL_SOURCE_DERIVED)
        self.max_flow_ng_day = 200_000_000   # what the rig reports in its limits read
        self.alarm_list = [{"alarm_id": 7, "code": 1, "priority": 4, "flags": wire.ALARM_FLAG_ACTIVE
                            | wire.ALARM_FLAG_LATCHED, "day": 9460, "ms_of_day": 3_600_000}]
        self.refuse_bolus: tuple[int, str] | None = None
        self.st = {"program_crc": 0, "mode": 0, "flex_step": wire.NONE_U8,
                   "flags": wire.STATUS_FLAG_CLOCK_SET, "alarm_count": 1, "top_alarm": 1,
                   "rate_ng_day": 186_000, "basal_ng_day": 186_000, "delivered_today_ng": 93_000,
                   "delivered_total_ng": 1_302_000, "rolling_24h_ng": 186_000,
                   "reservoir_nl": 19_500_000, "low_in_min": 60_000, "empty_in_min": wire.NONE_U32,
                   "day": 9460, "ms_of_day": 43_200_000, "missed_steps": 0,
                   "uncertain_ng": 0, "bridge_left_nl": 0, "line_conc_ug_ml": 2000, "trapped_nl": 0, "queued_steps": 0}

    def add_log(self, n: int) -> None:
        for _ in range(n):
            seq = len(self.log) + 1
            self.log.append(logrec.encode(seq, 9460, seq * 1000 % 86_400_000, logrec.EV_HOURLY_TOTAL,
                                          seq % 24, 7750, 3, 0))

    def hello_info(self) -> tuple[str, str]:
        return ("0.1.0-test", "f00dcafe")

    def rig_id(self) -> str:
        return self.rig

    def rig_key(self) -> bytes | None:
        return self.key

    def auth_counter(self) -> int:
        return self.counter

    def accept_counter(self, counter: int) -> None:
        self.counter = counter

    def status(self) -> dict[str, int]:
        return dict(self.st)

    def running_program(self) -> Any:
        return self.program

    def alarms(self) -> list[dict[str, int]]:
        return list(self.alarm_list)

    def log_bounds(self) -> tuple[int, int]:
        return (1, len(self.log) + 1)

    def read_log(self, first_seq: int, max_count: int) -> list[bytes]:
        return self.log[first_seq - 1:first_seq - 1 + max_count]

    def calibration(self) -> tuple[int, int]:
        return self.cal

    def limits(self) -> dict[str, int]:
        return {"max_rate_ng_day": 1_500_000, "max_24h_ng": 2_000_000, "max_bolus_ng": 200_000,
                "max_flow_ng_day": self.max_flow_ng_day, "min_conc_ug_ml": 50, "max_conc_ug_ml": 2000, "max_reservoir_nl": 20_000_000}

    def commit_program(self, program: Any) -> None:
        self.calls.append(("commit", program.crc32()))
        self.program = program
        self.st["program_crc"] = program.crc32()
        self.st["mode"] = program.mode

    def set_time(self, day: int, ms_of_day: int) -> None:
        self.calls.append(("time", day, ms_of_day))

    def bolus(self, kind: int, dose_ng: int, duration_ms: int) -> Any:
        if self.refuse_bolus:
            return self.refuse_bolus
        self.calls.append(("bolus", kind, dose_ng, duration_ms))
        return None

    def suspend(self) -> None:
        self.calls.append(("suspend",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def refill(self, volume_nl: int, conc_ug_ml: int) -> None:
        self.calls.append(("refill", volume_nl, conc_ug_ml))

    def prime(self, volume_nl: int) -> None:
        self.calls.append(("prime", volume_nl))

    def ack_alarm(self, alarm_id: int) -> Any:
        if alarm_id != 7:
            return (1, "no alarm with id %d" % alarm_id)
        self.calls.append(("ack", alarm_id))
        return None

    def set_calibration(self, pl_per_step: int) -> None:
        self.calls.append(("cal", pl_per_step))
        self.cal = (pl_per_step, wire.CAL_SOURCE_MEASURED)
