"""The simulated balances, each taken from a real part's datasheet: what the virtual rig's
balance model (pumpsim.model.Params balance_*, evaporation_*) and the MT-SICS simulator
(accuracy.mtsics_sim) are set to, and what the accuracy report cites.

`pumpctl accuracy --balance NAME` picks one; `--balance sim` takes the mechanism's own
(hw/mechanism*.json "balance"). The model per balance: a reading every `update_ms`, noise of
standard deviation `repeatability_ug` (the datasheet's repeatability, a standard deviation),
quantised to `readability_ug`, an overload above `capacity_g`; evaporation from the collecting
vessel at `evaporation_ug_h`, drifting by `evaporation_drift_ug_h_per_day` (humidity, the oil
layer thinning), which the run measures before and after and corrects by the mean (this
project's procedure; NIST's micro-flow standard retards evaporation with an oil layer, but no
source here says NIST or METAS correct by a before/after mean; both rates are assumptions:
docs/accuracy-186ug-day-precision.md, "The measurement chain"). Settling time: at a constant flow the balance's
filter delays every reading by the same time, which cancels in every window of the trumpet;
it shows only at the start-up and sets the shortest sampling interval (S = 30 s here, above it).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class BalanceSpec:
    name: str
    part: str                    # maker and model
    source: str                  # the datasheet the figures are from
    capacity_g: float
    readability_ug: float
    repeatability_ug: float      # standard deviation
    settling_s: float
    update_ms: int
    evaporation_ug_h: float      # the collecting vessel as set up (oil layer)
    evaporation_drift_ug_h_per_day: float
    vessel: str

    def params(self) -> dict[str, int]:
        """The pumpsim.model.Params fields for this balance."""
        return {"balance_readability_ng": max(1, round(self.readability_ug * 1000)),
                "balance_noise_ng": round(self.repeatability_ug * 1000),
                "balance_update_ms": self.update_ms,
                "balance_capacity_ng": round(self.capacity_g * 1e9),
                "evaporation_ng_per_h": round(self.evaporation_ug_h * 1000),
                "evaporation_drift_ng_per_h_per_day": round(self.evaporation_drift_ug_h_per_day * 1000)}

    def describe(self) -> str:
        """One line for the report: the part, its figures, the source."""
        return ("%s (%s): capacity %g g, readability %g ug, repeatability %g ug (sd), settling %g s; "
                "model: a reading every %d ms, noise sd %g ug quantised to %g ug, overload above "
                "capacity; %s, evaporation %g ug/h drifting %+g ug/h per day"
                % (self.part, self.source, self.capacity_g, self.readability_ug, self.repeatability_ug,
                   self.settling_s, self.update_ms, self.repeatability_ug, self.readability_ug,
                   self.vessel, self.evaporation_ug_h, self.evaporation_drift_ug_h_per_day))


BALANCES = {
    # the 20 mL rig's: the model the virtual rig always had (a 5-digit analytical balance)
    "analytical-5digit": BalanceSpec(
        name="analytical-5digit", part="5-digit analytical balance (class of the Mettler Toledo XPR225DR fine range)",
        source="the virtual rig's balance model before there were two: readability 0.01 mg, noise sd 20 ug "
               "(a laboratory room, not a weighing table)",
        capacity_g=220.0, readability_ug=10.0, repeatability_ug=20.0, settling_s=4.0, update_ms=100,
        evaporation_ug_h=50.0, evaporation_drift_ug_h_per_day=0.0,
        vessel="beaker with an oil layer"),
    # the precision drive's: an ultra-microbalance
    "xpr2u": BalanceSpec(
        name="xpr2u", part="Mettler Toledo XPR2U ultra-microbalance",
        source="figures from memory of Mettler Toledo's XPR ultra-microbalance datasheet, NOT verified: "
               "no datasheet or Mettler page with the XPR2U's figures was found in the sources searched "
               "(docs/accuracy-186ug-day-precision.md, 'The balance model's source')",
        capacity_g=2.1, readability_ug=0.1, repeatability_ug=0.25, settling_s=10.0, update_ms=100,
        evaporation_ug_h=4.0, evaporation_drift_ug_h_per_day=1.0,
        vessel="1.5 mL glass vial under a 2 mm mineral-oil layer, needle tip below the oil (the NIST set-up)"),
}


def get(name: str) -> BalanceSpec:
    """The simulated balance `name`; UsageError names the known ones."""
    try:
        return BALANCES[name]
    except KeyError:
        raise UsageError("balance %r: no simulated balance of that name (known: %s; or an MT-SICS "
                         "balance's serial port)" % (name, ", ".join(sorted(BALANCES)))) from None


def for_mechanism(mech: dict) -> BalanceSpec:
    """The balance a mechanism file names ("balance"; absent: the 20 mL rig's)."""
    return get(str(mech.get("balance", "analytical-5digit")))
