"""Program validation (every bad field names path, value, reason), canonical encoding, review screen."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from pumpcore.limits import HardLimits
from pumpcore.program import (MODE_CONTINUOUS, MODE_FLEX, MODE_SINGLE_BOLUS, MODE_STOPPED, Program,
                              ProgramError)
from tests.core.scenario_runner import program_from_json
from tests.core.scenarios import LIMITS, gen_program
from tests.support.mpy import run_micropython

H = 3_600_000
LIM = HardLimits()


def flex(**kw) -> Program:
    steps = [(0, 150_000), (6 * H, 200_000), (12 * H, 186_000), (20 * H, 120_000)]
    base = dict(mode=MODE_FLEX, concentration_ug_ml=2000, patterns=[(0x1F, steps), (0x60, [(0, 100_000)])])
    base.update(kw)
    return Program(**base)


def test_valid_programs() -> None:
    Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186_000).validate(LIM)
    flex().validate(LIM)
    Program(mode=MODE_SINGLE_BOLUS, concentration_ug_ml=2000, single_bolus=(50_000, 60_000)).validate(LIM)
    Program(mode=MODE_STOPPED).validate(LIM)


BAD = [
    (dict(mode=7), "mode", "7"),
    (dict(concentration_ug_ml=5000), "concentration_ug_ml", "above the hard limit max_conc_ug_ml 2000"),
    (dict(concentration_ug_ml=10), "concentration_ug_ml", "below the hard limit min_conc_ug_ml 50"),
    (dict(mode=MODE_CONTINUOUS, rate_ng_day=2_500_000), "rate_ng_day", "above the hard limit max_rate_ng_day 1500000"),
    (dict(mode=MODE_CONTINUOUS, rate_ng_day=0), "rate_ng_day", "at least 1 ng/day"),
    (dict(rate_ng_day=5), "rate_ng_day", "only a continuous program"),
    (dict(patterns=[(0x7F, [(0, 1), (5, 2_500_000)])]), "flex.patterns[0].steps[1].rate_ng_day",
     "above the hard limit max_rate_ng_day 1500000"),
    (dict(patterns=[(0x7F, [(5, 1)])]), "flex.patterns[0].steps[0].start_ms", "must start at 00:00"),
    (dict(patterns=[(0x7F, [(0, 1), (10, 2), (10, 3)])]), "flex.patterns[0].steps[2].start_ms",
     "after the previous step's start 10"),
    (dict(patterns=[(0x7F, [(0, 1), (86_400_000, 2)])]), "flex.patterns[0].steps[1].start_ms", "before midnight"),
    (dict(patterns=[(0x7F, [(i, 1) for i in range(25)])]), "flex.patterns[0].steps", "at most 24"),
    (dict(patterns=[(0x0F, [(0, 1)])]), "flex.patterns", "no pattern for fri,sat,sun"),
    (dict(patterns=[(0x7F, [(0, 1)]), (0x01, [(0, 1)])]), "flex.patterns[1].weekdays", "mon already covered"),
    (dict(patterns=[(0x80, [(0, 1)])]), "flex.patterns[0].weekdays", "7-bit mask"),
    (dict(patterns=[]), "flex.patterns", "at least one pattern"),
    (dict(periodic=[(8 * H, 600_000, 60_000)]), "periodic[0].dose_ng", "above the hard limit max_bolus_ng 500000"),
    (dict(periodic=[(8 * H, 10_000, H), (8 * H + 10, 10_000, H)]), "periodic[1].time_ms", "end of periodic[0]"),
    (dict(periodic=[(0, 10_000, H), (23 * H, 10_000, 2 * H)]), "periodic[1].duration_ms", "overlaps periodic[0]"),
    (dict(periodic=[(8 * H, 10_000, 0)]), "periodic[0].duration_ms", "at least 1 ms"),
    (dict(periodic=[(8 * H, 400_000, 1)]), "periodic[0].duration_ms", "max_flow_ng_day"),
    (dict(patient=(10_000, H, H // 2, 4)), "patient.lockout_ms", "shorter than the bolus duration"),
    (dict(patient=(10_000, H, H, 0)), "patient.per_24h", "at least 1"),
    (dict(patient=(10_000, H, H, 25)), "patient.per_24h", "at most 24"),
    (dict(patient=(600_000, H, H, 2)), "patient.dose_ng", "max_bolus_ng 500000"),
    (dict(patient=(100_000, H, H, 24)), "worst_case_24h_ng", "above the hard limit max_24h_ng 2000000"),
    (dict(catheter_nl=600_000), "catheter_nl", "above 500000 nL"),
    (dict(low_volume_nl=30_000_000), "low_volume_nl", "reservoir capacity"),
    (dict(low_days=100), "low_days", "above 90 days"),
    (dict(single_bolus=(1, 1)), "single_bolus", "only a single-bolus program"),
    (dict(mode=MODE_SINGLE_BOLUS, patterns=[], single_bolus=None), "single_bolus", "(dose_ng, duration_ms)"),
    (dict(mode=MODE_SINGLE_BOLUS, patterns=[], single_bolus=(0, 10)), "single_bolus.dose_ng", "at least 1 ng"),
    (dict(mode=MODE_STOPPED, patterns=[], periodic=[(0, 1, 1)]), "periodic", "stopped program"),
    (dict(concentration_ug_ml="2000"), "concentration_ug_ml", "must be an integer"),
]


@pytest.mark.parametrize("kw,field,reason", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_each_invalid_field_is_named(kw: dict, field: str, reason: str) -> None:
    with pytest.raises(ProgramError) as e:
        flex(**kw).validate(LIM)
    err = e.value
    assert err.field == field, str(err)
    assert reason in str(err)
    assert str(err).startswith(f"{field} = {err.value}: ")


def test_error_reads_like_architecture_example() -> None:
    p = flex(patterns=[(0x7F, [(0, 1), (1, 1), (2, 1), (3, 2_500_000)])])
    with pytest.raises(ProgramError) as e:
        p.validate(LIM)
    assert str(e.value) == ("flex.patterns[0].steps[3].rate_ng_day = 2500000: "
                            "above the hard limit max_rate_ng_day 1500000")


def test_worst_case_24h_exact_across_weekday_patterns() -> None:
    # Mon..Fri: 1 mg/day from 12:00 only; Sat, Sun: 1.5 mg/day all day. Windows: Fri 12:00 ->
    # Sat 12:00 gives 0.5 + 0.75 = 1.25 mg; Sat 00:00 -> Sun 00:00 gives 1.5 mg (the worst).
    # The second program runs 1 mg/day for 6 h a day: any window holds exactly 0.25 mg.
    p = Program(mode=MODE_FLEX, concentration_ug_ml=2000,
                patterns=[(0x1F, [(0, 0), (12 * H, 1_000_000)]), (0x60, [(0, 1_500_000)])],
                periodic=[(6 * H, 20_000, H)], patient=(10_000, H, 2 * H, 3))
    assert p.worst_case_24h_ng() == 1_500_000 + 20_000 + 30_000
    q = Program(mode=MODE_FLEX, concentration_ug_ml=2000,
                patterns=[(0x7F, [(0, 0), (12 * H, 1_000_000), (18 * H, 0)]), ])
    assert q.worst_case_24h_ng() == 250_000


def test_encode_decode_round_trip_and_crc() -> None:
    p = flex(periodic=[(8 * H, 20_000, 15 * 60_000)], patient=(10_000, 600_000, 3 * H, 4),
             low_volume_nl=2_000_000, low_days=7)
    p.validate(LIM)
    b = p.encode()
    q = Program.decode(b, LIM)
    assert q.encode() == b and q == p
    assert q.crc32() == p.crc32()
    import zlib
    assert p.crc32() == zlib.crc32(b)


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_generated_programs_round_trip(r: random.Random) -> None:
    p = program_from_json(gen_program(r))
    lim = HardLimits(*LIMITS)
    p.validate(lim)
    assert Program.decode(p.encode(), lim).encode() == p.encode()


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.data())
def test_malformed_bytes_raise_program_error(r: random.Random, data) -> None:
    b = bytearray(program_from_json(gen_program(r)).encode())
    how = data.draw(st.sampled_from(["truncate", "extend", "flip"]))
    if how == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1))]
    elif how == "extend":
        b += bytes(data.draw(st.binary(min_size=1, max_size=8)))
    else:
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] ^= data.draw(st.integers(1, 255))
    try:
        q = Program.decode(bytes(b), HardLimits(*LIMITS))
    except ProgramError as e:
        assert e.field and e.reason
        return
    # a flip can yield another valid program; then it must be canonical and valid
    assert q.encode() == bytes(b)


def test_decode_rejects_wrong_magic_and_version() -> None:
    b = bytearray(flex().encode())
    with pytest.raises(ProgramError, match="program.magic"):
        Program.decode(b"XX" + bytes(b[2:]))
    b[2] = 9
    with pytest.raises(ProgramError, match="program.version = 9"):
        Program.decode(bytes(b))
    with pytest.raises(ProgramError, match="shorter than"):
        Program.decode(b"IP")


@pytest.mark.micropython
def test_describe_identical_on_both_interpreters() -> None:
    progs = [flex(periodic=[(8 * H, 20_500, 15 * 60_000)], patient=(10_000, 600_000, 3 * H, 4),
                  low_volume_nl=2_000_000, low_days=7),
             Program(mode=MODE_CONTINUOUS, concentration_ug_ml=2000, rate_ng_day=186_000),
             Program(mode=MODE_SINGLE_BOLUS, concentration_ug_ml=500, single_bolus=(50_000, 90_000))]
    hexes = [p.encode().hex() for p in progs]
    script = ("import binascii\nfrom pumpcore.program import Program\n"
              f"for h in {hexes!r}:\n"
              "    p = Program.decode(binascii.unhexlify(h))\n"
              "    for line in p.describe():\n        print(line)\n    print('%08x' % p.crc32())\n")
    expected = []
    for p in progs:
        expected += p.describe() + ["%08x" % p.crc32()]
    assert run_micropython(script).splitlines() == expected
    assert "Basal: 186 ug/day (93 uL/day)" in progs[1].describe()
