"""A device whose steps are drawn from measured pulse-response tables (CrossSim format).

Sampling one pulse from G in direction d: take the table of direction d (increasing for +1,
decreasing for -1), locate G among the table's G bins (linear blend of the two neighbouring
columns, or the nearest one), draw ``u ~ U(0, 1)`` and invert the CDF: the step is the
column's quantile function at ``u``, linear between CDF points. The table carries the
device's cycle-to-cycle noise and its nonlinearity, so ``variability.c2c`` is extra noise
(0 by default in the presets).

Range mapping: with ``g_min``/``g_max`` unset the device lives on the table's own range
(e.g. TaOx: 18.6 to 118.6 uS). Set them (or call ``rescaled``) to map the table linearly onto
a network's range: ``G' = g_min + (G - G_0) * k``, ``dG' = k * dG``,
``k = (g_max - g_min) / (G_last - G_0)``, with ``G_0``, ``G_last`` the table's first and last
bins. Pulses over the range and the relative noise are preserved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from hil.errors import ConfigError
from simulators.devices.base import DeviceModel
from simulators.devices.lookup_table import (
    GInterpolation,
    PulseResponseTable,
    load_table,
    sample_layers,
)


class MeasuredModel(DeviceModel):
    """Steps sampled from a pair of measured tables (see the module docstring).

    Attributes
    ----------
    file_increasing, file_decreasing : Path
        The tables of potentiating and depressing pulses (``.txt`` or ``.txt.gz``).
    g_min, g_max : float or None
        Range (S) the tables are mapped onto; None (both) for the tables' own range.
    g_interpolation : {"linear", "nearest"}
        How a G between bins reads the table.
    """

    kind: Literal["measured"] = "measured"
    file_increasing: Path
    file_decreasing: Path
    g_min: float | None = Field(None, gt=0.0, description="mapped lower bound (S)")
    g_max: float | None = Field(None, gt=0.0, description="mapped upper bound (S)")
    g_interpolation: GInterpolation = "linear"

    _tables: tuple[PulseResponseTable, PulseResponseTable] | None = PrivateAttr(None)
    _stacked: np.ndarray | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _range_given_together(self) -> Self:
        if (self.g_min is None) != (self.g_max is None):
            raise ValueError("give both g_min and g_max (S), or neither for the table's range")
        return self

    def table_range(self) -> tuple[float, float]:
        """The measured tables' own range (first and last G bin, S)."""
        return load_table(self.file_increasing).g_range

    def bounds(self) -> tuple[float, float]:
        """The bounds given, or else the measured tables' own range (S)."""
        if self.g_min is None or self.g_max is None:
            return self.table_range()
        return float(self.g_min), float(self.g_max)

    def tables(self) -> tuple[PulseResponseTable, PulseResponseTable]:
        """The (increasing, decreasing) tables, checked and mapped onto ``bounds()``."""
        if self._tables is None:
            inc, dec = load_table(self.file_increasing), load_table(self.file_decreasing)
            _check_pair(inc, dec)
            lo, hi = self.bounds()
            inc, dec = inc.rescaled(lo, hi), dec.rescaled(lo, hi)
            if np.array_equal(inc.g_bins, dec.g_bins) and np.array_equal(inc.cdf, dec.cdf):
                self._stacked = np.stack([inc.dg, dec.dg])
            self._tables = (inc, dec)
        return self._tables

    def mean_step(
        self, g: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """The mean step the tables give at G (S); the tables, not ``lo``/``hi``, set the law."""
        inc, dec = self.tables()
        how = self.g_interpolation
        return np.where(direction > 0, inc.mean_step(g, how), dec.mean_step(g, how))

    def sample_step(
        self,
        g: np.ndarray,
        direction: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Steps drawn from the tables (one uniform draw per device, then c2c if set)."""
        inc, dec = self.tables()
        u = rng.random(g.shape)
        how = self.g_interpolation
        if self._stacked is not None:
            layer = (direction < 0).astype(np.int64)
            step = sample_layers(inc.g_locator, inc.cdf_locator, self._stacked, layer, g, u, how)
        else:
            up = direction > 0
            step = np.empty(g.shape)
            step[up] = inc.sample(g[up], u[up], how)
            step[~up] = dec.sample(g[~up], u[~up], how)
        if self.variability.c2c > 0.0:
            step *= 1.0 + self.variability.c2c * rng.standard_normal(g.shape)
        return step

    def rescaled(self, g_min: float, g_max: float) -> Self:
        """The tables are mapped onto the bounds when they are read: only the bounds change."""
        return self.replace(g_min=g_min, g_max=g_max)


def _check_pair(inc: PulseResponseTable, dec: PulseResponseTable) -> None:
    if not np.allclose(inc.g_range, dec.g_range, rtol=1e-9, atol=0.0):
        raise ConfigError(
            f"the increasing and decreasing tables must share their G range: {inc.source} "
            f"spans {inc.g_range} S, {dec.source} spans {dec.g_range} S"
        )
    up, down = inc.column_means.mean(), dec.column_means.mean()
    if up <= 0 or down >= 0:
        raise ConfigError(
            f"the increasing table must have a positive mean step and the decreasing one a "
            f"negative mean step; got {up:.3g} S ({inc.source}) and {down:.3g} S "
            f"({dec.source}): are the files swapped?"
        )
