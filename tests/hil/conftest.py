"""Loads the HIL plugin's hooks for this suite unless it is installed as the pytest11 entry point `pumprig`, and marks rig tests.

(`pytest_plugins` is not allowed in a non-top-level conftest, so the hooks are imported here.
Run as `pytest tests/hil ...` the options --rig etc. are parsed; in a whole-tree run from the
repository root this conftest loads late and the options take their defaults: the virtual rig.)
"""
from importlib.metadata import entry_points

import pytest

if not any(ep.name == "pumprig" for ep in entry_points(group="pytest11")):
    from pumpctl.hil.plugin import (pytest_addhooks, pytest_addoption, pytest_configure,
                                    pytest_report_header, pytest_runtest_makereport, pytest_sessionfinish)
    from pumpctl.hil.plugin import pytest_collection_modifyitems as _hil_modifyitems
else:
    def _hil_modifyitems(config, items):
        return None


def pytest_collection_modifyitems(config, items):
    _hil_modifyitems(config, items)
    for item in items:
        if "rig" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rig)
