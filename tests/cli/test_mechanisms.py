"""`--mechanism NAME`: the name chooses one file in hw/ (pumpctl.mechanisms), the deploy sends
that file as /mechanism.json, and a bad name is refused in one line before anything happens."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pumpctl import deploy, mechanisms
from pumpctl.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def test_names_choose_files_and_the_files_name_themselves():
    assert mechanisms.available() == ["20ml", "precision"]
    assert mechanisms.path(None) == REPO / "hw" / "mechanism.json"
    assert mechanisms.path("precision") == REPO / "hw" / "mechanism-precision.json"
    for name in mechanisms.available():
        assert mechanisms.name_of(mechanisms.load(name)) == name


def test_a_wrong_name_or_file_is_refused_naming_what_is_wrong(tmp_path):
    with pytest.raises(UsageError, match=r"mechanism 'fine': no .*mechanism-fine.json \(known in .*: 20ml, precision\)"):
        mechanisms.path("fine")
    with pytest.raises(UsageError, match="plain name"):
        mechanisms.path("../x")
    (tmp_path / "mechanism-odd.json").write_text(json.dumps({"name": "other"}))
    with pytest.raises(UsageError, match=r"mechanism 'odd': .* names itself 'other'"):
        mechanisms.path("odd", tmp_path)
    (tmp_path / "mechanism-bad.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        mechanisms.path("bad", tmp_path)


def test_deploy_sends_the_chosen_mechanism_as_mechanism_json(tmp_path):
    files = deploy.plan_deploy(REPO / "firmware", REPO / "hw", tmp_path / "b", None, None, mechanism="precision")
    mech = [f for f in files if f.remote == "mechanism.json"]
    assert len(mech) == 1 and not any(f.remote.startswith("mechanism-") for f in files)
    assert json.loads(mech[0].local.read_text())["name"] == "precision"
    files = deploy.plan_deploy(REPO / "firmware", REPO / "hw", tmp_path / "c", None, None)
    assert json.loads([f for f in files if f.remote == "mechanism.json"][0].local.read_text())["name"] == "20ml"


def test_deploy_refuses_an_unknown_mechanism_before_touching_the_port():
    with pytest.raises(UsageError, match="mechanism 'nope'"):
        deploy.deploy("/dev/does-not-exist", mechanism="nope", log=lambda m: None)


def test_the_cli_takes_mechanism(capsys):
    from pumpctl import cli
    with pytest.raises(SystemExit):
        cli.main(["deploy", "--help"])
    assert "--mechanism" in capsys.readouterr().out
