"""hw/ documents agree with the files the firmware reads: wiring vs pinmap.json, arithmetic vs mechanism.json."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pumpcore import calibration

REPO = Path(__file__).resolve().parents[2]
HW = REPO / "hw"


def _renderer():
    spec = importlib.util.spec_from_file_location("render_wiring", HW / "render_wiring.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_wiring_files_are_generated_from_the_current_pin_map():
    rw = _renderer()
    pm = rw.load()
    assert (HW / "wiring.md").read_text() == rw.render_markdown(pm), "run python hw/render_wiring.py"
    assert (HW / "wiring.svg").read_text() == rw.render_svg(pm), "run python hw/render_wiring.py"


def test_every_pin_of_the_map_is_in_table_and_diagram():
    rw = _renderer()
    pm = rw.load()
    md = (HW / "wiring.md").read_text()
    svg = ET.fromstring((HW / "wiring.svg").read_text())
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    for key, gpio, _ in pm.rows():
        assert re.search(r"\| `%s` \| GP%d \|" % (re.escape(key), gpio), md), key
        assert "GP%d " % gpio in texts, key
        if key != "status_led":
            assert key in texts, key


def test_renderer_follows_a_changed_pin_map(tmp_path):
    rw = _renderer()
    raw = json.loads((HW / "pinmap.json").read_text())
    raw["buzzer"] = 18
    pm = rw.PinMap(raw)
    assert "| `buzzer` | GP18 | pin 24 |" in rw.render_markdown(pm)
    assert rw.render_markdown(pm) != (HW / "wiring.md").read_text()


@pytest.mark.skipif(not shutil.which("rsvg-convert"), reason="rsvg-convert (librsvg2-bin) not installed")
def test_diagram_renders_to_png(tmp_path):
    out = tmp_path / "wiring.png"
    subprocess.run(["rsvg-convert", "-o", str(out), str(HW / "wiring.svg")], check=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mechanism_doc_arithmetic_matches_mechanism_json():
    mech = json.loads((HW / "mechanism.json").read_text())
    pl = calibration.pl_per_step_from_mechanism(mech)
    text = (HW / "mechanism.md").read_text()
    assert "%s pL (nearest)" % format(pl, ",") in text
    per_rev = mech["full_steps_per_rev"] * mech["microsteps"]
    assert "= %s microsteps/rev" % format(per_rev, ",") in text
    rows = {
        "5,177 per day": 93_000_000 // pl,               # 186 ug/day at 2000 ug/mL = 93 uL/day
        "1,391 (floor": 25_000_000 // pl,                 # 50 ug at 2000 ug/mL = 25 uL
        "10,020": mech["catheter_volume_nl"] * 1000 // pl,
        "1,113,337": mech["syringe_capacity_nl"] * 1000 // pl,
    }
    for needle, steps in rows.items():
        assert needle in text
        assert needle.split()[0] == format(steps, ",")


def test_calibration_doc_example_is_consistent():
    mech = json.loads((HW / "mechanism.json").read_text())
    pl = calibration.pl_per_step_from_mechanism(mech)
    text = (HW / "calibration.md").read_text()
    n = 1_000_000_000 // pl
    assert "N = %s" % format(n, ",") in text
    assert calibration.from_measurement(1_000_000, n, pl) == pl
    assert "pumpctl calibration set" in text
    iec = pytest.importorskip("pumpctl.accuracy.iec60601")
    for t, rho in re.findall(r"\| (\d\d) \| (0\.\d{5}) \|", text):
        assert round(iec.water_density_g_ml(float(t)), 5) == float(rho), t


def test_bom_lists_the_rig():
    bom = (HW / "bom.md").read_text().lower()
    for item in ("raspberry pi pico", "tmc2209", "nema 17", "m5 x 0.8", "20 ml", "abpdanv015pgaa3",
                 "microswitch", "button", "piezo", "led", "power supply", "balance"):
        assert item in bom, item
    from pumpcore import pressure
    sensor = pressure.sensor_from_mechanism(json.loads((HW / "mechanism.json").read_text()))
    assert sensor.part.lower().split()[-1] in bom
    for raw, value in ((6554, 0), (32768, 517), (58982, 1034)):
        assert sensor.kpa_x10_from_u16(raw) == value
        assert "raw %d" % raw in bom
