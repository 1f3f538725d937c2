"""Physics of the emulated Pico rig: pumpsim.model (the one pump model) driven by pin edges.

The virtual rig and the emulated Pico share `pumpsim.model`; this adapter only turns what the
pins do into the model's inputs (a STEP edge with EN low moves the plunger one microstep in the
DIR direction, at an emulated time in ns) and the model's state into pin levels (DIAG, end stop)
and the pressure sensor's ADC counts.
"""
from __future__ import annotations

from typing import Any

ADC_FULL_SCALE = 4095
"""12-bit ADC; its reference is the 3V3 rail that also supplies the sensor."""
SENSOR_FULL_SCALE_KPA_X10 = 1034
"""Honeywell ABPDANV015PGAA3 as pumphw.rp2hw reads it: 0..15 psi gauge (103.4 kPa), output
ratiometric 10 % .. 90 % of supply. Vout/Vs = 0.1 + 0.8 * P / 15 psi."""


def pressure_to_adc_counts(kpa_x10: int | None) -> int:
    """Line pressure (kPa x 10) to the 12-bit ADC reading the sensor produces (rounded, clamped
    to the sensor's 0..100 % output). None models an open sensor wire (0 V)."""
    if kpa_x10 is None:
        return 0
    # counts = 4095 * (0.1 + 0.8 * P / FS) = 4095 * (FS + 8 * P) / (10 * FS)
    num = ADC_FULL_SCALE * (SENSOR_FULL_SCALE_KPA_X10 + 8 * int(kpa_x10))
    den = 10 * SENSOR_FULL_SCALE_KPA_X10
    return max(0, min(ADC_FULL_SCALE, (num + den // 2) // den))


class EmuPhysics:
    """Pin-level adapter over `pumpsim.model`. Without the model installed it still counts
    steps (`has_model` False): pressure, stall and end stop then come only from faults."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.has_model = model is not None
        self.steps_infused = 0
        self.steps_retracted = 0
        self._last_ns = 0

    @classmethod
    def create(cls) -> EmuPhysics:
        try:
            from pumpsim import model as model_module
        except ImportError:
            return cls(None)
        factory = getattr(model_module, "PumpModel", None)
        return cls(factory() if factory is not None else None)

    def _advance(self, t_ns: int) -> None:
        if self.model is not None and t_ns > self._last_ns:
            dt_ms = (t_ns - self._last_ns) // 1_000_000
            if dt_ms > 0:
                self.model.advance(dt_ms)
                self._last_ns += dt_ms * 1_000_000

    def step(self, direction: int, t_ns: int) -> None:
        """One microstep with the driver enabled, DIR level `direction` (1 = infuse)."""
        if direction:
            self.steps_infused += 1
        else:
            self.steps_retracted += 1
        if self.model is not None:
            self._advance(t_ns)
            self.model.step(direction)

    def sample(self, t_ns: int) -> dict[str, Any]:
        """Model state as the pins see it at emulated time `t_ns`."""
        out: dict[str, Any] = {"steps_infused": self.steps_infused, "steps_retracted": self.steps_retracted}
        if self.model is None:
            return out
        self._advance(t_ns)
        m = self.model
        out.update(pressure_kpa_x10=int(m.pressure_kpa_x10()), stall=bool(m.stalled()),
                   end_stop=bool(m.at_end_stop()))
        return out

    def occlude(self, on: bool) -> None:
        if self.model is not None:
            self.model.occlude(on)

    def empty(self, on: bool) -> None:
        if self.model is not None and on:
            self.model.empty_reservoir()
