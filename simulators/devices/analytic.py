"""Closed-form step laws: constant, linear, soft-bounds and exponential steps.

Each law gives the mean step of one nominal pulse as a function of the normalised state
``x = (G - lo) / (hi - lo)`` and the direction; ``x`` uses the device's own bounds, so
device-to-device bound variation changes the law's shape per device.
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import Field

from simulators.devices.base import DeviceModel, position


def _range_ratio(model: DeviceModel, g_min: float, g_max: float) -> float:
    lo, hi = model.bounds()
    return (g_max - g_min) / (hi - lo)


class ConstantStepModel(DeviceModel):
    """Every pulse moves G by a fixed step (then G is clipped to the device's bounds).

    Attributes
    ----------
    step_up, step_down : float
        Step magnitude of a potentiating / depressing nominal pulse (S).

    Notes
    -----
    ``dG = +step_up`` (direction +1) or ``-step_down`` (direction -1); after ``p``
    noise-free pulses from ``G_0``, ``G = clip(G_0 +- p * step, lo, hi)`` exactly.
    """

    kind: Literal["constant"] = "constant"
    step_up: float = Field(gt=0.0, description="potentiating step (S)")
    step_down: float = Field(gt=0.0, description="depressing step (S)")

    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """The constant step: ``+step_up`` or ``-step_down`` (S), wherever G is."""
        return np.where(direction > 0, self.step_up, -self.step_down).astype(float)

    def rescaled(self, g_min: float, g_max: float) -> Self:
        """Steps scale with the range; the pulses over it stay the same."""
        k = _range_ratio(self, g_min, g_max)
        return self.replace(
            g_min=g_min, g_max=g_max, step_up=self.step_up * k, step_down=self.step_down * k
        )

    def pulses_for(
        self, dg: float | np.ndarray, g: float | np.ndarray, max_pulses: int = 100_000
    ) -> np.ndarray:
        """Closed form ``dg / step`` (``+-inf`` where the target is outside the bounds)."""
        dg_arr, g_arr = np.broadcast_arrays(np.asarray(dg, float), np.asarray(g, float))
        lo, hi = self.bounds()
        step = np.where(dg_arr >= 0, self.step_up, self.step_down)
        pulses = dg_arr / step
        outside = (g_arr + dg_arr < lo) | (g_arr + dg_arr > hi)
        return np.where(outside, np.copysign(np.inf, dg_arr), pulses)


class LinearStepModel(DeviceModel):
    """The step shrinks linearly towards the bound it moves to.

    Attributes
    ----------
    step_up, step_down : float
        Mean step magnitude at mid-range, ``x = 1/2`` (S).
    gamma_up, gamma_down : float
        Slopes in [0, 1]: 0 is a constant step, 1 a step that vanishes at the target bound.

    Notes
    -----
    With ``x = (G - lo) / (hi - lo)``::

        dG_up   = +step_up   * (1 + gamma_up   * (1 - 2x))
        dG_down = -step_down * (1 + gamma_down * (2x - 1))

    so the step is ``step * (1 + gamma)`` at the far bound and ``step * (1 - gamma)`` at the
    bound it moves to. Same law as aihwkit's ``LinearStepDevice`` with weights in [-1, 1].
    """

    kind: Literal["linear"] = "linear"
    step_up: float = Field(gt=0.0, description="potentiating step at mid-range (S)")
    step_down: float = Field(gt=0.0, description="depressing step at mid-range (S)")
    gamma_up: float = Field(0.0, ge=0.0, le=1.0)
    gamma_down: float = Field(0.0, ge=0.0, le=1.0)

    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """The step at the device's position in its range, linear in it (S)."""
        x = position(g, lo, hi)
        up = self.step_up * (1.0 + self.gamma_up * (1.0 - 2.0 * x))
        down = -self.step_down * (1.0 + self.gamma_down * (2.0 * x - 1.0))
        return np.where(direction > 0, up, down)

    def rescaled(self, g_min: float, g_max: float) -> Self:
        """Steps scale with the range; the pulses over it stay the same."""
        k = _range_ratio(self, g_min, g_max)
        return self.replace(
            g_min=g_min, g_max=g_max, step_up=self.step_up * k, step_down=self.step_down * k
        )

    def pulses_for(
        self, dg: float | np.ndarray, g: float | np.ndarray, max_pulses: int = 100_000
    ) -> np.ndarray:
        """Closed form of the affine recurrence (Notes); ``+-inf`` where unreachable.

        Notes
        -----
        Measured from the bound the pulses move away from, ``y = x`` (up) or ``1 - x``
        (down) obeys ``y_{k+1} = r y_k + c (1 + gamma)`` with ``c = step / (hi - lo)`` and
        ``r = 1 - 2 c gamma``; so ``y_k = y* - (y* - y_0) r^k``, ``y* = (1 + gamma)/(2 gamma)``
        and ``k = ln((y* - y_t) / (y* - y_0)) / ln r`` (``k = (y_t - y_0) / c`` for gamma 0).
        """
        dg_arr, g_arr = np.broadcast_arrays(np.asarray(dg, float), np.asarray(g, float))
        lo, hi = self.bounds()
        up = dg_arr >= 0
        x0, xt = position(g_arr, lo, hi), position(g_arr + dg_arr, lo, hi)
        y0, yt = np.where(up, x0, 1.0 - x0), np.where(up, xt, 1.0 - xt)
        c = np.where(up, self.step_up, self.step_down) / (hi - lo)
        gamma = np.where(up, self.gamma_up, self.gamma_down)
        with np.errstate(divide="ignore", invalid="ignore"):
            y_star = (1.0 + gamma) / (2.0 * gamma)
            curved = np.log((y_star - yt) / (y_star - y0)) / np.log(1.0 - 2.0 * c * gamma)
            pulses = np.where(gamma > 0, curved, (yt - y0) / c)
        bad = ~np.isfinite(pulses) | (pulses < 0) | (xt < 0) | (xt > 1)
        pulses = np.where(bad, np.inf, pulses)
        return np.where(up, pulses, -pulses)


class SoftBoundsModel(DeviceModel):
    """Soft bounds: the step is proportional to the distance to the bound it moves to.

    Attributes
    ----------
    pulses_up, pulses_down : float
        Time constants A (in pulses) of potentiation and depression.

    Notes
    -----
    One nominal pulse maps ``hi - G -> (hi - G) exp(-1/A_up)`` (up) or
    ``G - lo -> (G - lo) exp(-1/A_down)`` (down), i.e.::

        dG_up   = +(hi - G) (1 - exp(-1/A_up))
        dG_down = -(G - lo) (1 - exp(-1/A_down))

    so from ``lo`` the closed form ``G(p) = lo + B (1 - exp(-p/A_up))`` with ``B = hi - lo``
    holds exactly for every integer p, and from ``hi`` its mirror
    ``G(p) = hi - B (1 - exp(-p/A_down))``. It is invertible:
    ``p = -A ln(1 - dG / (hi - G))`` (up). The mean step at mid-range is
    ``(B/2)(1 - exp(-1/A)) ~ B / (2A)``, so ``2A`` pulses at that step span the range.
    """

    kind: Literal["soft_bounds"] = "soft_bounds"
    pulses_up: float = Field(gt=0.0, description="potentiation time constant A_up (pulses)")
    pulses_down: float = Field(gt=0.0, description="depression time constant A_down (pulses)")

    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """A fixed fraction of the distance to the bound the pulse moves towards (S)."""
        up = (hi - g) * -np.expm1(-1.0 / self.pulses_up)
        down = -(g - lo) * -np.expm1(-1.0 / self.pulses_down)
        return np.where(direction > 0, up, down)

    def rescaled(self, g_min: float, g_max: float) -> Self:
        """The law is relative to the bounds: only they change."""
        return self.replace(g_min=g_min, g_max=g_max)

    def pulses_for(
        self, dg: float | np.ndarray, g: float | np.ndarray, max_pulses: int = 100_000
    ) -> np.ndarray:
        """Closed form ``p = -A ln(1 - |dG| / distance to the bound)``; ``+-inf`` if unreachable."""
        dg_arr, g_arr = np.broadcast_arrays(np.asarray(dg, float), np.asarray(g, float))
        lo, hi = self.bounds()
        up = dg_arr >= 0
        room = np.where(up, hi - g_arr, g_arr - lo)
        a = np.where(up, self.pulses_up, self.pulses_down)
        with np.errstate(divide="ignore", invalid="ignore"):
            pulses = -a * np.log1p(-np.abs(dg_arr) / room)
        pulses = np.where(np.isfinite(pulses) & (np.abs(dg_arr) < room), pulses, np.inf)
        pulses = np.where(dg_arr == 0, 0.0, pulses)
        return np.where(up, pulses, -pulses)


class ExponentialStepModel(DeviceModel):
    """The step decays exponentially as G approaches the bound it moves to.

    Attributes
    ----------
    step_up, step_down : float
        Mean step magnitude at mid-range, ``x = 1/2`` (S).
    rate_up, rate_down : float
        Exponential rates (dimensionless, ``>= 0``); 0 is a constant step.

    Notes
    -----
    With ``x = (G - lo) / (hi - lo)``::

        dG_up   = +step_up   * exp(-rate_up   * (x - 1/2))
        dG_down = -step_down * exp(-rate_down * (1/2 - x))

    The step never vanishes; clipping at the bounds stops the device. ``pulses_for`` is the
    base class's numeric inverse of the mean trajectory.
    """

    kind: Literal["exponential"] = "exponential"
    step_up: float = Field(gt=0.0, description="potentiating step at mid-range (S)")
    step_down: float = Field(gt=0.0, description="depressing step at mid-range (S)")
    rate_up: float = Field(0.0, ge=0.0)
    rate_down: float = Field(0.0, ge=0.0)

    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """The step at the device's position in its range, exponential in it (S)."""
        x = position(g, lo, hi)
        up = self.step_up * np.exp(-self.rate_up * (x - 0.5))
        down = -self.step_down * np.exp(-self.rate_down * (0.5 - x))
        return np.where(direction > 0, up, down)

    def rescaled(self, g_min: float, g_max: float) -> Self:
        """Steps scale with the range; the pulses over it stay the same."""
        k = _range_ratio(self, g_min, g_max)
        return self.replace(
            g_min=g_min, g_max=g_max, step_up=self.step_up * k, step_down=self.step_down * k
        )
