"""Non-idealities of a device population: device-to-device spread, cycle-to-cycle noise, stuck
devices and read noise.

The magnitudes are those of the standard abstraction (IBM aihwkit, CrossSim, NeuroSim): the
device-to-device parameters are drawn once per device when a ``DeviceArray`` is built, the
cycle-to-cycle noise is drawn for every pulse, the read noise for every read.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Variability(BaseModel):
    """Non-idealities of a population of devices (all dimensionless).

    Attributes
    ----------
    step_d2d : float
        Relative std of each device's step scale ``s_i = max(1 + step_d2d * N(0, 1), 0)``.
    updown_d2d : float
        Std of each device's up/down imbalance ``a_i ~ N(0, updown_d2d)``: the device's
        potentiating steps are scaled by ``s_i (1 + a_i)``, its depressing steps by
        ``s_i (1 - a_i)`` (both clipped at 0).
    bounds_d2d : float
        Log-normal sigma of each device's bounds: ``lo_i = g_min exp(bounds_d2d N)``,
        ``hi_i = g_max exp(bounds_d2d N)`` (independent draws; medians at the nominal bounds;
        ``hi_i`` is kept at least 1 % of the nominal range above ``lo_i``).
    c2c : float
        Cycle-to-cycle noise: std of a pulse's step relative to its mean step at the device's
        present state, ``dG = mean_step * (1 + c2c * N(0, 1))``. A value above about 1 lets
        single pulses move the wrong way, as on real ReRAM.
    stuck_on : float
        Fraction of devices stuck at their upper bound ``hi_i`` (drawn once).
    stuck_off : float
        Fraction of devices stuck at their lower bound ``lo_i`` (drawn once).
    read_noise : float
        Relative std of a read: ``G_read = G (1 + read_noise * N(0, 1))``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_d2d: float = Field(0.0, ge=0.0)
    updown_d2d: float = Field(0.0, ge=0.0)
    bounds_d2d: float = Field(0.0, ge=0.0)
    c2c: float = Field(0.0, ge=0.0)
    stuck_on: float = Field(0.0, ge=0.0, le=1.0)
    stuck_off: float = Field(0.0, ge=0.0, le=1.0)
    read_noise: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _stuck_fractions(self) -> Variability:
        if self.stuck_on + self.stuck_off > 1.0:
            raise ValueError(
                f"stuck_on + stuck_off must be <= 1, got {self.stuck_on} + {self.stuck_off}"
            )
        return self
