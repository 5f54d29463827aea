"""The device-model contract: each pulse moves G by a step that depends on G and direction.

A ``DeviceModel`` is a frozen, validated description (pydantic) of one kind of device: its
step law, its nominal conductance range, its pulse law (threshold, amplitude and width
scaling), its non-idealities and its endurance. It holds no per-device state; a
``DeviceArray`` holds that and calls the model vectorised over devices.

Conventions used throughout the package
---------------------------------------
- Conductances and steps in siemens (S), voltages in volts (V), times in seconds (s).
- ``direction`` is +1 (potentiate, increase G) or -1 (depress, decrease G).
- ``lo`` and ``hi`` are a device's own bounds (S); the model's ``g_min``/``g_max`` are the
  nominal ones, which the per-device bounds scatter around.
- Steps are for one nominal pulse (see ``PulseLaw``); the array multiplies them by the pulse
  gain and the device's step scale, adds them, and clips G to ``[lo, hi]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hil.errors import ConfigError
from simulators.devices.pulse_law import PulseLaw
from simulators.devices.variability import Variability


class DeviceModel(BaseModel, ABC):
    """Base of every pulse-response model (see the module docstring for conventions).

    Attributes
    ----------
    kind : str
        Which step law (each subclass fixes it; configs and saved states use it).
    g_min, g_max : float
        Nominal conductance bounds (S).
    pulse : PulseLaw
        Switching threshold and amplitude/width scaling of the step.
    variability : Variability
        Device-to-device, cycle-to-cycle, stuck-device and read non-idealities.
    endurance : int or None
        Most selected pulses a device takes; a ``DeviceArray`` refuses (and reports) any
        pulse beyond it. None for no limit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    g_min: float = Field(1e-7, gt=0.0, description="nominal lower conductance bound (S)")
    g_max: float = Field(1e-5, gt=0.0, description="nominal upper conductance bound (S)")
    pulse: PulseLaw = Field(default_factory=PulseLaw)
    variability: Variability = Field(default_factory=Variability)
    endurance: int | None = Field(None, gt=0, description="max selected pulses per device")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if self.g_min is not None and self.g_max is not None and self.g_min >= self.g_max:
            raise ValueError(f"g_min ({self.g_min} S) must be below g_max ({self.g_max} S)")
        return self

    def bounds(self) -> tuple[float, float]:
        """Nominal conductance bounds ``(g_min, g_max)`` (S)."""
        return float(self.g_min), float(self.g_max)

    @abstractmethod
    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """Mean signed step of one nominal pulse, without noise.

        Parameters
        ----------
        g : ndarray of float, shape (n,)
            Present conductances (S).
        direction : ndarray of int, shape (n,)
            +1 to potentiate, -1 to depress.
        lo, hi : float or ndarray of float, shape (n,)
            The devices' own bounds (S).

        Returns
        -------
        ndarray of float, shape (n,)
            Signed step (S): ``>= 0`` for direction +1, ``<= 0`` for -1 (measured models may
            return either sign, as their tables do).
        """

    @abstractmethod
    def rescaled(self, g_min: float, g_max: float) -> Self:
        """The same device mapped linearly onto ``[g_min, g_max]`` (S).

        Conductances map as ``G' = g_min + (G - G_min) * k`` and steps as ``dG' = k * dG``
        with ``k = (g_max - g_min) / (G_max - G_min)``; so the number of pulses over the
        range, the shape of the step law and all relative non-idealities are unchanged.
        """

    def sample_step(
        self,
        g: np.ndarray,
        direction: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Random signed step of one nominal pulse, with cycle-to-cycle noise.

        Same parameters and shapes as ``mean_step`` plus ``rng``; returns
        ``mean_step * (1 + c2c * N(0, 1))`` (S), one normal draw per device.
        """
        mean = self.mean_step(g, direction, lo, hi)
        c2c = self.variability.c2c
        if c2c == 0.0:
            return mean
        return mean * (1.0 + c2c * rng.standard_normal(mean.shape))

    def nominal_step(self, direction: int) -> float:
        """Magnitude of the mean step of a nominal pulse at mid-range of the nominal bounds (S).

        This is what an open-loop programmer knows about the device: ``dG / nominal_step``
        pulses move a nominal device by about ``dG`` near the middle of its range.
        """
        sign = _check_direction_scalar(direction)
        lo, hi = self.bounds()
        g = np.array([(lo + hi) / 2.0])
        return float(abs(self.mean_step(g, np.array([sign]), lo, hi)[0]))

    def pulses_for(
        self, dg: float | np.ndarray, g: float | np.ndarray, max_pulses: int = 100_000
    ) -> np.ndarray:
        """Signed number of nominal pulses that moves a nominal, noise-free device by ``dg``.

        Parameters
        ----------
        dg : float or ndarray
            Desired conductance change (S); its sign gives the direction.
        g : float or ndarray
            Present conductance (S), broadcast against ``dg``.
        max_pulses : int
            Give up (``inf``) beyond this many pulses.

        Returns
        -------
        ndarray of float
            Fractional pulse counts, signed like ``dg`` (round them to program); ``+-inf``
            where the target lies beyond the nominal bounds or the mean step stalls.

        Notes
        -----
        The base class iterates the mean step and interpolates within the last pulse;
        models with a closed form override it.
        """
        dg_arr, g_arr = np.broadcast_arrays(np.asarray(dg, float), np.asarray(g, float))
        flat_dg, flat_g = dg_arr.ravel(), g_arr.ravel()
        lo, hi = self.bounds()
        sign = np.where(flat_dg >= 0, 1, -1).astype(np.int8)
        target = flat_g + flat_dg
        pulses = np.full(flat_dg.shape, np.inf)
        pulses[flat_dg == 0] = 0.0
        todo = np.flatnonzero((flat_dg != 0) & (target >= lo) & (target <= hi))
        current = flat_g[todo].copy()
        for k in range(max_pulses):
            if todo.size == 0:
                break
            step = self.mean_step(current, sign[todo], lo, hi)
            after = np.clip(current + step, lo, hi)
            crossed = sign[todo] * (after - target[todo]) >= 0
            moved = sign[todo] * (after - current) > 0
            done = crossed & moved
            frac = (target[todo][done] - current[done]) / (after[done] - current[done])
            pulses[todo[done]] = k + frac
            keep = ~crossed & moved
            todo, current = todo[keep], after[keep]
        return (sign * pulses).reshape(dg_arr.shape)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with some fields changed (e.g. ``endurance=10``)."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return type(self).model_validate(data)


def _check_direction_scalar(direction: int) -> int:
    if direction not in (1, -1):
        raise ConfigError(f"direction must be +1 (potentiate) or -1 (depress), got {direction!r}")
    return int(direction)


def position(g: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """Normalised state ``x = (G - lo) / (hi - lo)`` in [0, 1] (dimensionless, shape of g)."""
    return (g - lo) / (hi - lo)
