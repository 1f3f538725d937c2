"""A check that fails on purpose, for tests/lab/test_lab_grid.py: its worker must give its place back.

Not collected by the suite (the name is not test_*.py); the lab test passes it to pytest by path.
"""
FAILS_ON_PURPOSE = "deliberate failure: the lab must give this worker's place back"


def test_deliberately_fails_and_gives_its_place_back(rig, pump):
    assert pump.hello().rig_id == rig.rig_id
    assert False, FAILS_ON_PURPOSE
