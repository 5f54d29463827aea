"""How a pulse's amplitude and width scale a device's step: a switching threshold and a linear law.

A memristor switches only when the voltage across it exceeds a threshold. This is what lets a
crossbar address one device: half-selected devices (V/2 or V/3 across them) stay below the
threshold, unless the threshold is lower than the half-select voltage, in which case they are
disturbed.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hil.errors import ConfigError, SafetyError


class PulseLaw(BaseModel):
    """Switching threshold and the scaling of a step with pulse amplitude and width.

    Attributes
    ----------
    v_threshold : float
        Switching threshold (V). A pulse with ``|V| <= v_threshold`` does nothing.
    v_nominal : float
        Amplitude at which the model's step law holds as stated (V); above ``v_threshold``.
    width_nominal : float
        Width at which the model's step law holds as stated (s).
    v_max : float or None
        Largest amplitude the device tolerates (V); a larger pulse raises ``SafetyError``
        before anything moves. None for no device-level limit (the bench's limits apply).

    Notes
    -----
    A pulse of amplitude ``V`` and width ``w`` moves a device by ``gain * step`` where
    ``step`` is the model's (random) step for one nominal pulse and::

        gain = max(|V| - V_th, 0) / (V_nominal - V_th) * (w / w_nominal)

    so ``gain == 1`` at the nominal pulse, grows linearly with the overdrive ``|V| - V_th``
    and with the width, and is exactly 0 at or below threshold. The direction of the step
    comes from the pulse polarity, never from this gain. Cycle-to-cycle noise scales with the
    step, so with the gain too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v_threshold: float = Field(0.6, ge=0.0, description="switching threshold (V)")
    v_nominal: float = Field(1.0, gt=0.0, description="nominal pulse amplitude (V)")
    width_nominal: float = Field(1e-6, gt=0.0, description="nominal pulse width (s)")
    v_max: float | None = Field(None, gt=0.0, description="largest tolerated amplitude (V)")

    @model_validator(mode="after")
    def _threshold_below_nominal(self) -> PulseLaw:
        if self.v_nominal <= self.v_threshold:
            raise ValueError(
                f"v_nominal ({self.v_nominal} V) must exceed v_threshold ({self.v_threshold} V)"
            )
        if self.v_max is not None and self.v_max < self.v_nominal:
            raise ValueError(f"v_max ({self.v_max} V) must be >= v_nominal ({self.v_nominal} V)")
        return self

    def gain(self, amplitude_v: float | np.ndarray, width_s: float | np.ndarray) -> np.ndarray:
        """Step multiplier of a pulse relative to the nominal pulse.

        Parameters
        ----------
        amplitude_v : float or ndarray, shape (n,)
            Pulse amplitude magnitude (V), ``>= 0``.
        width_s : float or ndarray, shape (n,)
            Pulse width (s), ``> 0``.

        Returns
        -------
        ndarray of float
            The gain (dimensionless, ``>= 0``), broadcast of the two inputs.

        Raises
        ------
        ConfigError
            If an amplitude is negative or not finite, or a width is not positive and finite.
        SafetyError
            If an amplitude exceeds ``v_max``.
        """
        amplitude = np.asarray(amplitude_v, dtype=float)
        width = np.asarray(width_s, dtype=float)
        if not np.all(np.isfinite(amplitude)) or np.any(amplitude < 0):
            raise ConfigError(
                f"pulse amplitude_v must be finite and >= 0 V (a magnitude; the sign of the "
                f"count or the polarity gives the direction), got min {amplitude.min()} V"
            )
        if not np.all(np.isfinite(width)) or np.any(width <= 0):
            raise ConfigError(f"pulse width_s must be finite and > 0 s, got min {width.min()} s")
        if self.v_max is not None and np.any(amplitude > self.v_max):
            raise SafetyError(
                f"pulse amplitude {amplitude.max()} V exceeds the device's v_max "
                f"({self.v_max} V); nothing was applied"
            )
        overdrive = np.maximum(amplitude - self.v_threshold, 0.0)
        span = self.v_nominal - self.v_threshold
        return overdrive / span * (width / self.width_nominal)
