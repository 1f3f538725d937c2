"""The device carries what it runs (issue 16): deploy ships the import closure of main.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pumpctl import deploy, devicecode
from pumpctl.errors import UsageError
from tests.support.mpy import run_micropython

FIRMWARE = deploy.DEFAULT_FIRMWARE_DIR


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_walk_follows_imports_lazy_ones_and_packages(tmp_path: Path) -> None:
    fw = _tree(tmp_path / "fw", {
        "main.py": "import pa\nfrom pb import mod\n",
        "pa/__init__.py": "def f():\n    from pa.lazy import x\n",
        "pa/lazy.py": "import micropython\nx = 1\n",
        "pa/unused.py": "import nothing_of_ours\n",
        "pb/__init__.py": "",
        "pb/mod.py": "from pb.leaf import name\n",
        "pb/leaf.py": "name = 1\n",
        "pb/never.py": "",
    })
    assert devicecode.device_files(fw, "rp2") == [
        "main.py", "pa/__init__.py", "pa/lazy.py", "pb/__init__.py", "pb/leaf.py", "pb/mod.py"]


def test_platform_branches_are_taken_as_the_device_takes_them(tmp_path: Path) -> None:
    fw = _tree(tmp_path / "fw", {
        "main.py": ("import sys\n"
                    "def make():\n"
                    "    if sys.platform == 'rp2':\n"
                    "        from hw import real\n"
                    "        return real\n"
                    "    from hw import twin\n"
                    "    return twin\n"
                    "if sys.platform != 'rp2':\n"
                    "    import hw.simonly\n"
                    "else:\n"
                    "    import hw.pioonly\n"),
        "hw/__init__.py": "", "hw/real.py": "import machine\n", "hw/twin.py": "import socket\n",
        "hw/simonly.py": "", "hw/pioonly.py": "import rp2\n",
    })
    assert devicecode.device_files(fw, "rp2") == ["hw/__init__.py", "hw/pioonly.py", "hw/real.py", "main.py"]
    assert devicecode.device_files(fw, "linux") == ["hw/__init__.py", "hw/simonly.py", "hw/twin.py", "main.py"]


def test_an_import_that_is_nothing_is_named_with_its_line(tmp_path: Path) -> None:
    fw = _tree(tmp_path / "fw", {"main.py": "import pumpcore\n", "pumpcore/__init__.py": "x = 1\nimport socket\n"})
    with pytest.raises(UsageError, match=r"^firmware file pumpcore/__init__.py line 2 imports socket: not a module "
                                         r"of .* and not built into MicroPython on rp2$"):
        devicecode.device_files(fw, "rp2")
    assert devicecode.device_files(fw, "linux") == ["main.py", "pumpcore/__init__.py"]   # the unix port has it


def test_a_cpython_fallback_is_not_an_error(tmp_path: Path) -> None:
    fw = _tree(tmp_path / "fw", {"main.py": ("try:\n    from micropython import const\n"
                                             "except ImportError:\n    import typing\n"
                                             "    const = int\n")})
    assert devicecode.device_files(fw, "rp2") == ["main.py"]


def test_no_main_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    with pytest.raises(UsageError, match="has no main.py"):
        devicecode.device_files(tmp_path / "fw", "rp2")


@pytest.mark.parametrize("platform", ["rp2", "linux"])
def test_the_deployed_file_list_is_the_devices_import_closure(tmp_path: Path, platform: str) -> None:
    files = deploy.plan_deploy(FIRMWARE, deploy.DEFAULT_HW_DIR, tmp_path / "b", None, None, platform)
    code = sorted(f.remote for f in files if f.kind != "config")
    assert code == devicecode.device_files(FIRMWARE, platform)
    assert sorted(f.remote for f in files if f.kind == "config") == sorted(deploy.HW_FILES)


def test_the_pico_gets_the_rp2_layer_and_not_the_twin() -> None:
    pico = set(devicecode.device_files(FIRMWARE, "rp2"))
    sim = set(devicecode.device_files(FIRMWARE, "linux"))
    assert {"main.py", "pumphw/rp2hw.py", "pumphw/steppio.py", "pumphw/pinmap.py", "pumpfw/app.py"} <= pico
    assert not any(f.startswith("pumpsim/") or f == "pumphw/simhw.py" for f in pico)
    assert {"pumphw/simhw.py", "pumpsim/model.py"} <= sim and "pumphw/rp2hw.py" not in sim


# Firmware-tree modules only the host runs (issue 16): text the host renders from codes, the
# host's halves of the wire codec and of authentication, the controller interface the app
# implements without subclassing. They sit beside the code they read, never in the device's RAM.
# (pumphw/interface.py is absent from the Pico only: the twin subclasses it, tests/hw.)
HOST_ONLY = ("pumpcore/logtext.py", "pumpcore/wirehost.py", "pumpcore/authhost.py",
             "pumpfw/controller.py")


@pytest.mark.parametrize("platform", ["rp2", "linux"])
def test_host_only_modules_are_neither_imported_nor_deployed(tmp_path: Path, platform: str) -> None:
    assert all((FIRMWARE / rel).is_file() for rel in HOST_ONLY)
    files = deploy.plan_deploy(FIRMWARE, deploy.DEFAULT_HW_DIR, tmp_path / "b", None, None, platform)
    shipped = {f.remote for f in files} | {f.remote[:-4] + ".py" for f in files if f.remote.endswith(".mpy")}
    closure = set(devicecode.device_files(FIRMWARE, platform))
    assert not closure & set(HOST_ONLY)
    assert not shipped & set(HOST_ONLY)


@pytest.mark.parametrize("platform", ["rp2", "linux"])
def test_the_closure_alone_imports_in_the_real_micropython(tmp_path: Path, platform: str) -> None:
    """An independent check in the interpreter itself: with only the closure's files on the path,
    every one of its modules imports (so no module-level import reaches outside it). `rp2`, a
    Pico built-in, is absent from the unix port: only that ImportError is allowed."""
    root = tmp_path / "device"
    files = devicecode.device_files(FIRMWARE, platform)
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIRMWARE / rel, root / rel)
    modules = [rel[:-3].replace("/__init__", "").replace("/", ".") for rel in files if rel != "main.py"]
    script = ("import sys\nsys.path[:] = [%r]\n" % str(root) +
              "for m in %r:\n" % modules +
              "    try:\n        __import__(m)\n        print('OK', m)\n"
              "    except ImportError as e:\n        print('MISSING', m, e)\n")
    out = run_micropython(script)
    assert out.count("OK ") == len(modules), out
