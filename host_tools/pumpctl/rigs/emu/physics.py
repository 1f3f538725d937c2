"""Physics of the emulated Pico rig: pumpsim.model (the one pump model) driven by pin edges.

The virtual rig and the emulated Pico share `pumpsim.model`; this adapter only turns what the
pins do into the model's inputs (a STEP edge with EN low moves the plunger one microstep in the
DIR direction, at an emulated time in ns) and the model's state into pin levels (DIAG, end stop)
and the pressure sensor's ADC counts.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pumpcore.pressure import PressureSensor, load_sensor
from pumpsim import sensorout

MECHANISM_PATH = Path(__file__).resolve().parents[4] / "hw" / "mechanism.json"

ADC_FULL_SCALE = 4095
"""12-bit ADC; its reference is the 3V3 rail that also supplies the sensor."""


@functools.lru_cache(maxsize=None)
def _sensor(mechanism_path: Path = MECHANISM_PATH) -> PressureSensor:
    """The pressure sensor hw/mechanism.json describes (pumpcore.pressure), read once."""
    return load_sensor(str(mechanism_path))


def pressure_to_adc_counts(kpa_x10: int | None, mechanism_path: Path = MECHANISM_PATH) -> int:
    """Line pressure (kPa x 10) to the 12-bit ADC reading the sensor produces: the transfer
    function of hw/mechanism.json "pressure_sensor" (the one pumphw.rp2hw inverts), rounded,
    railing at 0 V and at the supply. None models an open sensor wire (0 V)."""
    if kpa_x10 is None:
        return 0
    return int(sensorout.adc_counts(_sensor(mechanism_path), int(kpa_x10) * 100, ADC_FULL_SCALE))


class EmuPhysics:
    """Pin-level adapter over `pumpsim.model.World`. Without the model installed it still counts
    steps (`has_model` False): pressure, stall and end stop then come only from faults.

    The model is segment-driven (it emits pulses itself); here each STEP edge seen at the pin is
    handed to it as a one-pulse segment at the edge's emulated time (the model adds its DIR setup
    time, 3 us), so the plunger moves exactly once per edge the chip made."""

    def __init__(self, world: Any, mechanism_path: Path = MECHANISM_PATH) -> None:
        self.model = world
        self.has_model = world is not None
        self.steps_infused = 0
        self.steps_retracted = 0
        self.mechanism_path = mechanism_path
        """The mechanism file the model (and the pressure sensor's transfer) were made from: the
        one the chip's deploy copies (rigdir.emu_mechanism_path)."""
        from ... import mechanisms
        self.mechanism = mechanisms.name_of(json.loads(mechanism_path.read_text()))

    @classmethod
    def create(cls, mechanism_path: Path = MECHANISM_PATH) -> EmuPhysics:
        try:
            from pumpsim import model as model_module
        except ImportError:
            return cls(None, mechanism_path)
        world = model_module.World(model_module.Mechanism.load(str(mechanism_path)))
        world.enable(True)  # EN is judged at the pin: only enabled edges reach step()
        return cls(world, mechanism_path)

    def adc_counts(self, kpa_x10: int | None) -> int:
        """The pressure sensor's ADC reading for `kpa_x10`, by this mechanism file's sensor."""
        return pressure_to_adc_counts(kpa_x10, self.mechanism_path)

    def step(self, direction: int, t_ns: int) -> None:
        """One microstep with the driver enabled, DIR level `direction` (1 = infuse)."""
        if direction:
            self.steps_infused += 1
        else:
            self.steps_retracted += 1
        w = self.model
        if w is not None:
            t_us = t_ns // 1000
            w.advance_to(t_us)
            if w.queue_segment(1, 1, direction):
                w.advance_to(max(t_us, w.t_us) + 3)

    def sample(self, t_ns: int) -> dict[str, Any]:
        """Model state as the pins see it at emulated time `t_ns`."""
        out: dict[str, Any] = {"steps_infused": self.steps_infused, "steps_retracted": self.steps_retracted}
        w = self.model
        if w is None:
            return out
        w.advance_to(t_ns // 1000)
        out.update(pressure_kpa_x10=max(0, w.pressure_pa() // 100), stall=bool(w.diag()),
                   end_stop=bool(w.end_stop()), plunger_steps=w.plunger_steps, out_pl=w.out_pl,
                   screw_steps=w.screw_steps(), screw_angle=int(w.screw_angle()), skipped=w.skipped)
        return out

    def screw_angle(self, t_ns: int) -> int | None:
        """The AS5600's RAW ANGLE (0..4095) of the lead screw at emulated time `t_ns`, from the
        model's screw travel (a jam or a slip stops it while the motor's steps go on); None
        without the model (no magnet on a screw that does not exist)."""
        w = self.model
        if w is None:
            return None
        w.advance_to(t_ns // 1000)
        return int(w.screw_angle())

    def occlude(self, on: bool) -> None:
        if self.model is not None:
            self.model.set_occluded(on)

    def jam(self, on: bool) -> None:
        """Screw jammed: the motor skips, DIAG stays low (StallGuard off)."""
        if self.model is not None:
            self.model.set_jammed(on)

    def slip(self, on: bool) -> None:
        """Coupling slips: the motor turns, the screw does not, DIAG stays low."""
        if self.model is not None:
            self.model.set_slipping(on)

    def empty(self, on: bool, nl: int | None = None) -> None:
        """Empty the syringe (plunger at its end stop), or refill it: with `nl` nL in it, else
        to capacity (the mechanism file's syringe), as the virtual twin's `reservoir` fault.
        Raises ValueError for an `nl` outside 0..capacity."""
        if self.model is not None:
            self.model.set_reservoir_nl(0 if on else self.model.capacity_pl // 1000 if nl is None else int(nl))
