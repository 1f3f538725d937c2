"""Host Pump API against the firmware ProtocolServer and a fake Controller over the loopback link."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pumpcore import wire, wirehost
from pumpctl import keys
from pumpctl.errors import AuthError, ProtocolError, RefusedError, RigTimeout, UsageError, VersionError
from pumpctl.pump import Alarm, Calibration, HelloInfo, Limits, Pump, Status
from pumpctl.transport import LoopbackTransport
from tests.protocol.fakes import KEY, RIG, FakeController, FakeProgram


def test_result_types_follow_the_wire_layouts() -> None:
    names = lambda cls: [f.name for f in dataclasses.fields(cls)]  # noqa: E731
    assert names(Status) == list(wire.STATUS_RESP[1])
    assert names(Alarm) == list(wire.ALARM_ENTRY[1])
    assert names(Calibration) == list(wire.CAL_RESP[1])
    assert names(Limits) == list(wire.LIMITS_RESP[1])
    assert names(HelloInfo) == list(wire.HELLO_RESP[1]) + list(wire.HELLO_STRINGS)


def test_reads(pump: Pump, controller: FakeController) -> None:
    h = pump.hello()
    assert (h.rig_id, h.firmware_version, h.build_hash, h.table_crc) == (RIG, "0.1.0-test", "deadbeef", wire.TABLE_CRC)
    st = pump.status()
    assert st.delivered_total_ng == 5_000_000_000 and st.empty_in_min == wire.NONE_U32 and not st.suspended
    assert pump.alarms() == [Alarm(7, 12, 2, 3, 9000, 5000)]
    assert pump.calibration() == Calibration(3051, wire.CAL_SOURCE_DERIVED)
    assert pump.limits().max_rate_ng_day == 1_500_000
    assert controller.calls == []


def test_delivery_changes_signed_with_increasing_counters(pump: Pump, controller: FakeController) -> None:
    pump.bolus(50_000, 600_000)
    pump.patient_bolus()
    pump.suspend()
    assert pump.status().suspended
    pump.resume()
    pump.refill(20_000_000, 2000)
    pump.prime(50_000)
    pump.ack_alarm(7)
    pump.set_calibration(3000)
    pump.time_sync(9500, 1000)
    counters = [c[1] for c in controller.calls if c[0] == "accept_counter"]
    assert counters == list(range(1, 10))
    assert [c[0] for c in controller.calls if c[0] != "accept_counter"] == [
        "bolus", "bolus", "suspend", "resume", "refill", "prime", "ack_alarm", "set_calibration", "set_time"]


def test_lost_answer_retransmitted_bolus_delivered_once(pump: Pump, controller: FakeController) -> None:
    link = pump.link
    assert isinstance(link, LoopbackTransport)
    link.drop_responses = 2
    pump.bolus(50_000)
    assert pump.retransmissions == 2
    assert [c for c in controller.calls if c[0] == "bolus"] == [("bolus", wire.BOLUS_CLINICIAN, 50_000, 0)]


def test_refusals_and_caller_errors(pump: Pump, controller: FakeController) -> None:
    controller.refuse_bolus = True
    with pytest.raises(RefusedError, match="rig rig-test-01 refused patient_bolus: patient bolus refused: lockout") as ei:
        pump.patient_bolus()
    assert ei.value.status == wire.ERR_REFUSED
    with pytest.raises(UsageError, match=r"dose_ng = 0 ng: outside 1..1073741823"):
        pump.bolus(0)
    with pytest.raises(UsageError, match=r"ms_of_day = 86400000 ms: outside 0..86399999"):
        pump.time_sync(1, 86_400_000)
    with pytest.raises(UsageError, match="program length = 5000 bytes: outside 1..4096"):
        pump.stage_program(bytes(5000))


def test_upload_program_review_and_commit(pump: Pump, controller: FakeController) -> None:
    old = FakeProgram(100_000, "old")
    controller.program = old
    new = FakeProgram(186_000, "n" * 3000)      # three stage chunks, multi-chunk describe read
    seen = []
    review = pump.upload_program(new.encode(), lambda r: seen.append(r) or False)
    assert not review.committed and controller.program is old
    assert seen[0].staged_lines == new.describe() and seen[0].running_lines == old.describe()
    assert pump.status().program_staged
    review = pump.upload_program(new.encode(), lambda r: True)
    assert review.committed and controller.program.encode() == new.encode()
    data = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_ENCODED)
    assert data.data == new.encode() and data.crc == review.crc
    with pytest.raises(RefusedError, match="staged program refused: rate_ng_day = 2000000: above the hard limit"):
        pump.upload_program(FakeProgram(2_000_000).encode(), lambda r: True)
    with pytest.raises(RefusedError, match="no verified staged program"):
        pump.commit_program(review.crc)
    assert controller.program.encode() == new.encode()


def test_log_iteration(pump: Pump, controller: FakeController) -> None:
    got = list(pump.iter_log(3))
    assert [s for s, _ in got] == list(range(3, 100))
    assert all(r == bytes([s]) * 32 for s, r in got)
    chunk = pump.read_log(0, 0)
    assert (chunk.oldest_seq, chunk.next_seq, chunk.records) == (0, 100, [])


def test_wrong_key_wrong_rig_no_key(controller: FakeController, state_dir: Path) -> None:
    with Pump.open(LoopbackTransport(controller), key=bytes(32), timeout_s=0.05) as p:
        with pytest.raises(AuthError, match="HMAC does not match: wrong key for rig 'rig-test-01'"):
            p.suspend()
    with pytest.raises(AuthError, match="wrong rig: expected rig-9, the rig on loopback is rig-test-01"):
        Pump.open(LoopbackTransport(controller), rig_id="rig-9", timeout_s=0.05)
    with Pump.open(LoopbackTransport(controller), timeout_s=0.05) as p:
        with pytest.raises(AuthError, match="no key for rig rig-test-01 on this host"):
            p.suspend()
    assert [c for c in controller.calls if c[0] != "accept_counter"] == []


def test_key_store_and_counters_persist_across_sessions(controller: FakeController, state_dir: Path) -> None:
    keys.save_key(RIG, KEY)
    with Pump.open(LoopbackTransport(controller), timeout_s=0.05) as p:
        p.suspend()
        p.resume()
    assert keys.load_counter(RIG) == 2
    # a rig that has seen higher counters (another host): the next session starts above them
    controller.counter = 40
    with Pump.open(LoopbackTransport(controller), timeout_s=0.05) as p:
        p.suspend()
    assert controller.counter == 41 and keys.load_counter(RIG) == 41


def test_stale_counter_caught_up_once_on_first_transmission(pump: Pump, controller: FakeController) -> None:
    pump.suspend()
    controller.counter = 100        # another host used the rig meanwhile
    pump.resume()
    assert controller.counter == 101
    assert [c[0] for c in controller.calls if c[0] != "accept_counter"] == ["suspend", "resume"]


def test_replay_refusal_after_retransmission_is_reported_as_probably_executed(
        pump: Pump, controller: FakeController) -> None:
    link = pump.link
    assert isinstance(link, LoopbackTransport)
    link.drop_responses = 1
    # evict the cache between transmissions: the retransmission is then refused as a replay
    real_write = link.write
    sent = []

    def write(data: bytes) -> None:
        sent.append(data)
        if len(sent) == 2:
            for s in range(4):
                link.server.feed(wire.encode_frame(0, 60000 + s, wire.CMD_STATUS, 0, b""))
            link._rx.clear()
        real_write(data)
    link.write = write  # type: ignore[method-assign]
    with pytest.raises(ProtocolError, match="most likely executed; check `pumpctl status`"):
        pump.bolus(50_000)
    assert len([c for c in controller.calls if c[0] == "bolus"]) == 1


class OldFirmwareLink(LoopbackTransport):
    """A rig whose hello reports another protocol version / command table CRC."""

    def __init__(self, controller: FakeController, version: int, table_crc: int) -> None:
        super().__init__(controller)
        self.version = version
        self.table_crc = table_crc

    def _answer(self, line: bytes) -> None:
        v, kind, seq, cmd, status, payload = wirehost.decode_line(line)
        if cmd == wire.CMD_HELLO:
            payload = bytes([self.version]) + self.table_crc.to_bytes(4, "little") + payload[5:]
        super()._answer(wire.encode_frame(kind, seq, cmd, status, payload))


def test_version_and_table_mismatch(controller: FakeController) -> None:
    with pytest.raises(VersionError, match=r"rig rig-test-01 on loopback speaks protocol 1 \(table crc [0-9a-f]{8}\), "
                       r"this pumpctl speaks 1 \(table crc [0-9a-f]{8}\): deploy matching firmware"):
        Pump.open(OldFirmwareLink(controller, 1, wire.TABLE_CRC ^ 1), key=KEY, timeout_s=0.05)
    with pytest.raises(VersionError, match="speaks protocol 2"):
        Pump.open(OldFirmwareLink(controller, 2, wire.TABLE_CRC), key=KEY, timeout_s=0.05)


def test_silent_rig_times_out_with_a_clear_message(controller: FakeController) -> None:
    link = LoopbackTransport(controller)
    link.drop_responses = 10
    with pytest.raises(RigTimeout, match=r"no answer from rig on loopback to hello after 3 tries of 0.0 s"):
        Pump.open(link, key=KEY, timeout_s=0.02)
    assert link.closed


def test_sync_time_converts_local_wall_time(pump: Pump, controller: FakeController) -> None:
    import datetime
    assert pump.sync_time(datetime.datetime(2026, 11, 25, 8, 30, 15, 250_000)) == (9825, 30_615_250)
    assert controller.calls[-1] == ("set_time", 9825, 30_615_250)
