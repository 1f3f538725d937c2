"""The simulated balances (pumpctl.accuracy.balances) and the evaporation they weigh against:
datasheet figures into the one physical model, a drifting rate, the before/after correction."""
from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl import mechanisms
from pumpctl.accuracy import balances
from pumpctl.accuracy.simrun import evaporation_before_after
from pumpctl.errors import UsageError
from pumpsim import model

REPO = Path(__file__).resolve().parents[2]


def test_each_mechanism_names_its_balance_and_unknown_names_are_refused():
    assert balances.for_mechanism(mechanisms.load("precision")).name == "xpr2u"
    assert balances.for_mechanism(mechanisms.load(None)).name == "analytical-5digit"
    with pytest.raises(UsageError, match=r"balance 'xpr9': .*known: analytical-5digit, xpr2u"):
        balances.get("xpr9")
    # the 20 mL rig's balance is the model the virtual rig always had
    assert model.Params(**balances.get("analytical-5digit").params()).as_dict() == model.Params().as_dict()


def test_a_drifting_evaporation_and_its_before_after_correction():
    p = model.Params(**balances.get("xpr2u").params())       # 4 ug/h, +1 ug/h per day
    w = model.World(model.Mechanism.load(str(REPO / "hw" / "mechanism-precision.json")), p)
    w.advance_to(24 * 3_600_000_000)
    # lost over 24 h: 4 ug/h x 24 h + 1 ug/h/day x (24 h)^2 / (2 x 24 h) = 96 + 12 ug
    assert w.balance_true_ng() == -108_000
    # rates measured over [-4 h, 0] and [24 h, 28 h] of a run: the mean is the run's own
    before, after = 4e-6 + 1e-6 * 2 / 24, 4e-6 + 1e-6 * 26 / 24
    mean, note = evaporation_before_after(before, "measured before the run: x, added back",
                                          after, "measured after the run: y, added back")
    assert mean == pytest.approx(4e-6 + 1e-6 * 14 / 24)
    assert note.startswith("mean of the rates measured before and after the run") and "x; measured after" in note


def test_the_balance_overloads_above_its_capacity():
    p = model.Params(**balances.get("xpr2u").params())
    w = model.World(model.Mechanism.load(str(REPO / "hw" / "mechanism-precision.json")), p)
    w.out_pl = 2_200_000_000        # 2.2 mL on a 2.1 g balance
    assert w.balance_reading_ng() == 2_100_000_000 + 100
