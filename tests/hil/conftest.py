"""Loads the HIL plugin for this suite (until pyproject registers it as the pytest11 entry point `pumprig`) and marks rig tests."""
import pytest

pytest_plugins = ["pumpctl.hil.plugin", "pytester"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "rig" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rig)
