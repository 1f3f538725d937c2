"""MT-SICS parsing (every reply, every error) and MtSicsBalance over the pty simulator."""
from __future__ import annotations

import os
import time

import pytest

from pumpctl.accuracy.balance import (
    BalanceBusy, BalanceCommandError, BalanceError, BalanceOverload, BalanceProtocolError,
    BalanceTimeout, BalanceUnderload, MtSicsBalance, SimBalance, parse_ack_reply,
    parse_tare_reply, parse_text_reply, parse_weight_reply)
from pumpctl.accuracy.mtsics_sim import MtSicsSimulator
from pumpctl.errors import PumpError


@pytest.mark.parametrize("cmd, line, mass, stable", [
    ("S", "S S      12.34567 g", 12.34567, True),
    ("SI", "S S      12.34567 g", 12.34567, True),
    ("SI", "S D       0.00012 g", 0.00012, False),
    ("SI", "S S     -0.00003 g", -0.00003, True),
    ("S", "S S     123.4567 mg", 0.1234567, True),
    ("S", "S S   0.1 kg", 100.0, True),
])
def test_weight_replies(cmd, line, mass, stable):
    got_mass, got_stable = parse_weight_reply(cmd, line)
    assert got_mass == pytest.approx(mass) and got_stable is stable


@pytest.mark.parametrize("status, exc, words", [
    ("I", BalanceBusy, "cannot execute"), ("+", BalanceOverload, "overload"),
    ("-", BalanceUnderload, "underload")])
@pytest.mark.parametrize("cmd", ["S", "SI"])
def test_weight_status_errors(cmd, status, exc, words):
    with pytest.raises(exc, match=words):
        parse_weight_reply(cmd, f"S {status}")


@pytest.mark.parametrize("code", ["ES", "ET", "EL"])
@pytest.mark.parametrize("parse", [
    lambda line: parse_weight_reply("S", line), lambda line: parse_weight_reply("SI", line),
    lambda line: parse_ack_reply("Z", line), parse_tare_reply,
    lambda line: parse_text_reply("I4", line), lambda line: parse_text_reply("I2", line)])
def test_general_errors_on_every_command(parse, code):
    with pytest.raises(BalanceCommandError) as info:
        parse(code)
    assert info.value.code == code and code in str(info.value)


@pytest.mark.parametrize("cmd, line, match", [
    ("S", "S D       1.00000 g", "not a weight status"),  # S must only answer stable
    ("S", "S S       1.00000 lb", "unit 'lb'"),
    ("S", "S S       1.0x000 g", "is not a number"),
    ("S", "S S", "expected '<value> <unit>'"),
    ("S", "hello", "expected 'S <status>"),
    ("SI", "", "expected 'S <status>"),
])
def test_malformed_weight_replies(cmd, line, match):
    with pytest.raises(BalanceProtocolError, match=match):
        parse_weight_reply(cmd, line)


def test_zero_tare_and_identity_replies():
    parse_ack_reply("Z", "Z A")
    for status, exc in (("I", BalanceBusy), ("+", BalanceOverload), ("-", BalanceUnderload)):
        with pytest.raises(exc):
            parse_ack_reply("Z", f"Z {status}")
        with pytest.raises(exc):
            parse_tare_reply(f"T {status}")
    with pytest.raises(BalanceProtocolError):
        parse_ack_reply("Z", "Z Q")
    assert parse_tare_reply("T S     20.12345 g") == pytest.approx(20.12345)
    assert parse_text_reply("I4", 'I4 A "B123456789"') == "B123456789"
    assert parse_text_reply("@", 'I4 A "B123456789"') == "B123456789"
    assert parse_text_reply("I2", 'I2 A "XPR225DR 220 g"') == "XPR225DR 220 g"
    with pytest.raises(BalanceBusy):
        parse_text_reply("I2", "I2 I")
    with pytest.raises(BalanceProtocolError):
        parse_text_reply("I4", "I4 A B123")


def test_balance_errors_are_pump_errors():
    assert issubclass(BalanceError, PumpError)  # the CLI boundary prints them without traceback


@pytest.fixture
def sim():
    load = {"g": 50.0}
    s = MtSicsSimulator(lambda: load["g"]).start()
    s.load = load
    yield s
    s.stop()


def test_mtsics_balance_over_the_pty(sim):
    with MtSicsBalance(sim.port, timeout_s=0.5) as bal:
        assert bal.identify() == f"XPR225DR 220 g (serial SIM0000001) on {sim.port}"
        with pytest.raises(BalanceOverload, match="zero range"):
            bal.zero()  # 50 g is outside the zero range (2 % of capacity)
        assert bal.tare() == pytest.approx(50.0)
        sim.load["g"] += 0.01234
        r = bal.read()
        assert r.mass_g == pytest.approx(0.01234) and r.stable
        assert bal.read_stable().mass_g == pytest.approx(0.01234)
        sim.load["g"] = 0.5
        bal.zero()
        assert bal.read().mass_g == pytest.approx(0.0)
    assert sim.commands == ["I2", "I4", "Z", "T", "SI", "S", "Z", "SI"]


@pytest.mark.parametrize("reply, exc", [
    ("S +", BalanceOverload), ("S -", BalanceUnderload), ("S I", BalanceBusy),
    ("ES", BalanceCommandError), ("ET", BalanceCommandError), ("EL", BalanceCommandError),
    ("S S garbage g", BalanceProtocolError), ("\x7f\x7f", BalanceProtocolError)])
def test_every_error_reply_through_the_wire(sim, reply, exc):
    with MtSicsBalance(sim.port, timeout_s=0.5) as bal:
        sim.inject(reply)
        with pytest.raises(exc):
            bal.read()
        assert bal.read().mass_g == pytest.approx(50.0)  # the next command works again


def test_simulated_overload_and_underload(sim):
    with MtSicsBalance(sim.port, timeout_s=0.5) as bal:
        sim.load["g"] = 500.0
        with pytest.raises(BalanceOverload, match="above"):
            bal.read()
        sim.load["g"] = -50.0
        with pytest.raises(BalanceUnderload, match="pan"):
            bal.read()


def test_no_answer_is_a_timeout_naming_port_and_command(sim):
    with MtSicsBalance(sim.port, timeout_s=0.3) as bal:
        sim.inject(None)
        t0 = time.monotonic()
        with pytest.raises(BalanceTimeout, match=f"{sim.port} did not answer 'SI' within 0.3 s"):
            bal.read()
        assert time.monotonic() - t0 < 2.0


def test_a_stale_line_never_answers_the_next_command(sim):
    with MtSicsBalance(sim.port, timeout_s=0.5) as bal:
        os.write(sim._master, b"S S      99.00000 g\r\n")  # a late answer to an earlier command
        time.sleep(0.1)
        assert bal.read().mass_g == pytest.approx(50.0)


def test_unknown_command_is_a_syntax_error(sim):
    with MtSicsBalance(sim.port, timeout_s=0.5) as bal:
        assert bal.command("XYZ") == "ES"
        assert bal.command("S 5") == "EL"


def test_unopenable_port_names_the_port():
    with pytest.raises(BalanceError, match="cannot open balance port /dev/nonexistent-balance"):
        MtSicsBalance("/dev/nonexistent-balance")


def test_sim_balance_reads_rig_time_and_keeps_tare():
    state = {"t": 0.0, "ug": 1_000_000}

    class FakeRig:
        def balance(self):
            return {"t_s": state["t"], "mass_ug": state["ug"]}

    bal = SimBalance.from_rig(FakeRig())
    assert bal.tare() == pytest.approx(1.0)
    state["t"], state["ug"] = 30.0, 1_000_018
    r = bal.read()
    assert r.t_s == 30.0 and r.mass_g == pytest.approx(18e-6)
    state["t"] = 60.0
    assert SimBalance(lambda: (60.0, 2.5)).read().mass_g == 2.5

    class Mute:
        def balance(self):
            return {"nothing": 1}
    with pytest.raises(BalanceProtocolError, match="expected the rig time and a mass"):
        SimBalance.from_rig(Mute()).read()


def test_the_xpr2u_spoken_to_through_mt_sics_sees_a_tenth_of_a_microgram():
    """The precision drive's balance (accuracy.balances "xpr2u", from its datasheet: 2.1 g,
    d = 0.1 ug, settling 10 s) behind the MT-SICS driver: 0.1 ug steps read back, an overload
    above 2.1 g, and `S` (stable) refused while the load moves, as under a steady flow."""
    from pumpctl.accuracy import balances
    spec = balances.get("xpr2u")
    t = {"s": 0.0}
    load = {"g": 1.0}
    s = MtSicsSimulator.for_balance(spec, lambda: load["g"], clock=lambda: t["s"]).start()
    try:
        with MtSicsBalance(s.port, timeout_s=0.5) as bal:
            assert bal.identify().startswith("XPR2U 2.1 g")
            bal.tare()
            load["g"] += 3e-7                      # 0.3 ug: three readability steps
            assert bal.read().mass_g == pytest.approx(3e-7, abs=1e-12)
            load["g"] += 4e-8                      # below half a step: not shown
            assert bal.read().mass_g == pytest.approx(3e-7, abs=1e-12)
            for _ in range(3):                     # 1.08 ug/s, the therapy's flow: never settles
                t["s"] += 5.0
                load["g"] += 5.4e-6
                with pytest.raises(BalanceBusy):
                    bal.read_stable()
            t["s"] += 11.0                         # the flow stopped: settled after 10 s
            bal.read()
            t["s"] += 11.0
            assert bal.read_stable().mass_g == pytest.approx(load["g"] - 1.0, abs=1e-7)
            load["g"] = 2.2
            with pytest.raises(BalanceOverload):
                bal.read()
    finally:
        s.stop()
    assert spec.params()["balance_readability_ng"] == 100 and spec.params()["balance_capacity_ng"] == 2_100_000_000
