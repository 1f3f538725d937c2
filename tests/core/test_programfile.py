"""TOML program files: the examples load; every error names the TOML key, the value and why."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpcore.program import MODE_CONTINUOUS, MODE_FLEX, MODE_SINGLE_BOLUS, Program
from pumpctl import programfile
from pumpctl.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs"

BASE = """
[program]
mode = "continuous"
concentration = "2000 ug/mL"
rate = "186 ug/day"
"""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_are_valid_and_round_trip(path: Path) -> None:
    p = programfile.load(path)
    assert Program.decode(p.encode()).encode() == p.encode()
    assert p.describe()


def test_example_contents() -> None:
    c = programfile.load(EXAMPLES / "continuous_186.toml")
    assert (c.mode, c.concentration_ug_ml, c.rate_ng_day, c.catheter_nl) == (MODE_CONTINUOUS, 2000, 186_000, 180_000)
    w = programfile.load(EXAMPLES / "weekday_pattern.toml")
    assert w.mode == MODE_FLEX and w.patterns[0][0] == 0x1F and len(w.patterns[0][1]) == 10
    assert w.patterns[1] == (0x60, [(0, 180_000)])
    s = programfile.load(EXAMPLES / "screening_bolus.toml")
    assert s.mode == MODE_SINGLE_BOLUS and s.single_bolus == (50_000, 60_000)
    pb = programfile.load(EXAMPLES / "patient_bolus.toml")
    assert pb.patient == (10_000, 600_000, 10_800_000, 4)


BAD = [
    (BASE.replace("186 ug/day", "2500 ug/day"), 'program.rate = "2500 ug/day" (2500000): above the hard limit max_rate_ng_day 1500000'),
    (BASE.replace("186 ug/day", "186 ug"), 'program.rate = "186 ug": rate needs a unit per day'),
    (BASE.replace("2000 ug/mL", "3 mg/mL"), 'program.concentration = "3 mg/mL" (3000): above the hard limit max_conc_ug_ml 2000'),
    (BASE.replace("rate =", "rat ="), "program.rat = \"186 ug/day\": unknown key; did you mean 'rate'?"),
    (BASE.replace("continuous", "sometimes"), 'program.mode = "sometimes": must be one of'),
    (BASE + '[patient_bolus]\ndose = "10 ug"\nduration = "10 min"\nlockout = "3 h"\n',
     'patient_bolus.per_24h = (missing): required'),
    (BASE + '[patient_bolus]\ndose = "10 ug"\nduration = "10 min"\nlockout = "3 h"\nper_24h = "4"\n',
     'patient_bolus.per_24h = "4": must be a whole number'),
    (BASE + '[patient_bolus]\ndose = "10 ug"\nduration = "10 min"\nlockout = "5 min"\nper_24h = 4\n',
     'patient_bolus.lockout = "5 min" (300000): shorter than the bolus duration'),
    (BASE + '[[periodic_bolus]]\ntime = "25:00"\ndose = "1 ug"\nduration = "1 min"\n',
     'periodic_bolus[0].time = "25:00": not a time of day'),
    (BASE + '[[periodic_bolus]]\ntime = "08:00"\ndose = "1 ug"\nduration = "2 h"\n'
            '[[periodic_bolus]]\ntime = "09:00"\ndose = "1 ug"\nduration = "1 min"\n',
     'periodic_bolus[1].time = "09:00" (32400000): must be at or after the end of periodic[0]'),
    ('[program]\nmode = "flexible"\nconcentration = "2000 ug/mL"\n[[flex]]\ndays = "weekdays"\n'
     'steps = [{ from = "00:00", rate = "1 ug/day" }]\n', "flex = days mon,tue,wed,thu,fri: no pattern for sat,sun"),
    ('[program]\nmode = "flexible"\nconcentration = "2000 ug/mL"\n[[flex]]\ndays = "all"\n'
     'steps = [{ from = "00:00", rate = "1 ug/day" }, { from = "07:00", rate = "1600 ug/day" }]\n',
     'flex[0].steps[1].rate = "1600 ug/day" (1600000): above the hard limit max_rate_ng_day 1500000'),
    ('[program]\nmode = "flexible"\nconcentration = "2000 ug/mL"\n[[flex]]\ndays = ["mon", "funday"]\n'
     'steps = [{ from = "00:00", rate = "1 ug/day" }]\n', 'flex[0].days = "funday": not a day name'),
    ("[program\n", "(file) = (unparsable): not valid TOML"),
    ('[reservoir]\nlow_days = 3\n', "program = (missing): every program file needs a [program] table"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_errors_name_key_value_reason(text: str, message: str) -> None:
    with pytest.raises(programfile.ProgramFileError) as e:
        programfile.loads(text, source="p.toml")
    assert isinstance(e.value, UsageError)
    assert str(e.value).startswith("p.toml: "), str(e.value)
    assert message in str(e.value), str(e.value)


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(programfile.ProgramFileError, match="cannot read"):
        programfile.load(tmp_path / "none.toml")


def test_field_paths_map_to_toml_keys() -> None:
    assert programfile.toml_key_for("flex.patterns[2].steps[3].rate_ng_day") == "flex[2].steps[3].rate"
    assert programfile.toml_key_for("periodic[1].duration_ms") == "periodic_bolus[1].duration"
    assert programfile.toml_key_for("patient.lockout_ms") == "patient_bolus.lockout"
