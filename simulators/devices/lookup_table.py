"""Measured pulse-response tables in CrossSim's format: loading, checking and sampling.

File format (one file per direction, plain text or gzip):

- line 1: a comment;
- row 1: the conductance bins ``G_j`` (S), increasing;
- row 2: the CDF points ``c_k`` in [0, 1], non-decreasing;
- then the dG matrix ``M[k, j]`` (S): rows are CDF points, columns are G bins, so column j is
  the quantile function (inverse CDF) of the step of one pulse from ``G_j``.

Values are separated by commas and/or whitespace; blank lines are skipped. Sandia's TaOx
tables (cross-sim-data) have slightly non-monotone quantile columns (interpolation residue
below 1 uS); they are accepted as they are.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from hil.errors import ConfigError

_SEPARATORS = re.compile(r"[,\s]+")

GInterpolation = Literal["linear", "nearest"]


@dataclass(frozen=True, eq=False)
class PulseResponseTable:
    """One direction's measured step distribution as a function of G.

    Attributes
    ----------
    g_bins : ndarray of float, shape (n_g,)
        Conductance bins (S), strictly increasing.
    cdf : ndarray of float, shape (n_c,)
        CDF points in [0, 1], non-decreasing.
    dg : ndarray of float, shape (n_c, n_g)
        Step quantiles (S): ``dg[k, j]`` is the step with CDF ``cdf[k]`` from ``g_bins[j]``.
    source : str
        Where the table came from (a path), for messages.
    """

    g_bins: np.ndarray
    cdf: np.ndarray
    dg: np.ndarray
    source: str = ""

    @property
    def g_range(self) -> tuple[float, float]:
        """The table's own conductance range ``(g_bins[0], g_bins[-1])`` (S)."""
        return float(self.g_bins[0]), float(self.g_bins[-1])

    @cached_property
    def column_means(self) -> np.ndarray:
        """Mean step at every G bin (S), shape (n_g,).

        The mean of the piecewise-linear quantile function that ``sample`` draws from:
        ``integral M(c) dc`` by the trapezoid rule over the CDF points.
        """
        return np.trapezoid(self.dg, self.cdf, axis=0)

    def rescaled(self, g_min: float, g_max: float) -> PulseResponseTable:
        """Map the table linearly onto ``[g_min, g_max]`` (S): G and dG scale by one factor."""
        lo, hi = self.g_range
        k = (g_max - g_min) / (hi - lo)
        return PulseResponseTable(
            g_bins=g_min + (self.g_bins - lo) * k, cdf=self.cdf, dg=self.dg * k, source=self.source
        )

    @cached_property
    def g_locator(self) -> GridLocator:
        """Locator of the G bins."""
        return GridLocator.build(self.g_bins)

    @cached_property
    def cdf_locator(self) -> GridLocator:
        """Locator of the CDF points."""
        return GridLocator.build(self.cdf)

    def mean_step(self, g: np.ndarray, interpolation: GInterpolation = "linear") -> np.ndarray:
        """Mean step from each G (S), shape (n,): the column means interpolated like ``sample``."""
        j, t = self.g_locator.locate(g)
        if interpolation == "nearest":
            t = np.rint(t)
        means = self.column_means
        return (1.0 - t) * means[j] + t * means[j + 1]

    def sample(
        self, g: np.ndarray, u: np.ndarray, interpolation: GInterpolation = "linear"
    ) -> np.ndarray:
        """Steps drawn by inverting the CDF at the uniform draws ``u`` (S), shape (n,).

        Parameters
        ----------
        g : ndarray of float, shape (n,)
            Present conductances (S); outside the table they read the edge bin.
        u : ndarray of float, shape (n,)
            Uniform draws in [0, 1).
        interpolation : {"linear", "nearest"}
            Between G bins: blend the two neighbouring columns (linear), or use the nearest
            one (CrossSim's choice).

        Notes
        -----
        Along the CDF axis the quantile function is linear between CDF points, so for a G
        on a bin the sample mean tends to ``column_means`` at that bin.
        """
        layer = np.zeros(np.shape(g), dtype=np.int64)
        return sample_layers(
            self.g_locator, self.cdf_locator, self.dg[None], layer, g, u, interpolation
        )


@dataclass(frozen=True, eq=False)
class GridLocator:
    """Finds the interval of many points on a fixed increasing grid, fast and exactly.

    Built once per grid: the grid's span is cut into buckets no wider than its smallest
    gap, each bucket remembering the interval its left edge falls in; a point then needs
    one lookup and a +-1 correction instead of a binary search. Grids with repeated
    points, or needing more than ``MAX_BUCKETS`` buckets, fall back to binary search.

    Attributes
    ----------
    grid : ndarray, shape (n,)
        The grid, non-decreasing, ``n >= 2``.
    start, scale : float
        Bucket ``b`` covers ``[start + b / scale, start + (b + 1) / scale)``.
    bucket_interval : ndarray of int, shape (m,), or None
        Interval index of every bucket's left edge; None for binary search.
    """

    MAX_BUCKETS = 1 << 20

    grid: np.ndarray
    start: float
    scale: float
    bucket_interval: np.ndarray | None

    @classmethod
    def build(cls, grid: np.ndarray) -> GridLocator:
        """Index ``grid`` (non-decreasing, at least 2 points)."""
        gaps = np.diff(grid)
        span = float(grid[-1] - grid[0])
        if gaps.min() <= 0 or span / gaps.min() + 1 > cls.MAX_BUCKETS:
            return cls(grid, float(grid[0]), 1.0, None)
        n_buckets = int(np.ceil(span / gaps.min())) + 1
        scale = n_buckets / span
        edges = grid[0] + np.arange(n_buckets) / scale
        interval = np.clip(np.searchsorted(grid, edges, side="right") - 1, 0, grid.size - 2)
        return cls(grid, float(grid[0]), scale, interval.astype(np.int32))

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval ``i`` in ``[0, n - 2]`` and fraction ``f`` in [0, 1] of each x.

        ``x`` reads as ``grid[i] + f * (grid[i + 1] - grid[i])``, clamped at the ends; a
        zero-width interval gives ``f = 0``. ``i`` equals
        ``clip(searchsorted(grid, x, "right") - 1, 0, n - 2)``.
        """
        grid, last = self.grid, self.grid.size - 2
        if self.bucket_interval is None:
            i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, last)
        else:
            buckets = self.bucket_interval
            b = np.clip(np.floor((x - self.start) * self.scale), 0, buckets.size - 1)
            i = buckets[b.astype(np.int64)]
            i = np.maximum(i - (x < grid[i]), 0)
            i = np.minimum(i + (x >= grid[i + 1]), last)
            i = np.minimum(i + (x >= grid[i + 1]), last)
        width = grid[i + 1] - grid[i]
        f = np.clip((x - grid[i]) / np.where(width > 0, width, 1.0), 0.0, 1.0)
        return i, f


def sample_layers(
    g_locator: GridLocator,
    cdf_locator: GridLocator,
    dg: np.ndarray,
    layer: np.ndarray,
    g: np.ndarray,
    u: np.ndarray,
    interpolation: GInterpolation = "linear",
) -> np.ndarray:
    """Inverse-CDF sampling from several tables that share their G bins and CDF points.

    Parameters
    ----------
    g_locator : GridLocator
        Locator of the shared G bins (S), shape (n_g,).
    cdf_locator : GridLocator
        Locator of the shared CDF points, shape (n_c,).
    dg : ndarray, shape (n_layers, n_c, n_g)
        Step quantiles of each table (S).
    layer : ndarray of int, shape (n,)
        Which table each draw reads.
    g, u : ndarray, shape (n,)
        Conductances (S) and uniform draws in [0, 1).
    interpolation : {"linear", "nearest"}
        Between G bins (see ``PulseResponseTable.sample``).

    Returns
    -------
    ndarray of float, shape (n,)
        Steps (S): bilinear in (CDF, G) within the table ``layer``.
    """
    n_c, n_g = dg.shape[1:]
    j, t = g_locator.locate(g)
    if interpolation == "nearest":
        t = np.rint(t)
    k, s = cdf_locator.locate(u)
    flat = dg.reshape(-1)
    low = (layer * n_c + k) * n_g + j
    high = low + n_g
    left = flat[low] + s * (flat[high] - flat[low])
    right = flat[low + 1] + s * (flat[high + 1] - flat[low + 1])
    return left + t * (right - left)


def _read_rows(path: Path) -> list[np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read pulse-response table {path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if not fields:
            continue
        try:
            rows.append(np.array(fields, dtype=float))
        except ValueError as exc:
            raise ConfigError(f"{path}, line {number}: not a number ({exc})") from exc
    return rows


def _check_table(path: Path, g_bins: np.ndarray, cdf: np.ndarray, dg: np.ndarray) -> None:
    if g_bins.size < 2 or np.any(np.diff(g_bins) <= 0) or g_bins[0] <= 0:
        raise ConfigError(f"{path}: row 1 must hold >= 2 positive, increasing G bins (S)")
    if cdf.size < 2 or np.any(np.diff(cdf) < 0) or cdf[0] < 0 or cdf[-1] > 1:
        raise ConfigError(f"{path}: row 2 must hold >= 2 non-decreasing CDF points in [0, 1]")
    if dg.shape != (cdf.size, g_bins.size):
        raise ConfigError(
            f"{path}: the dG matrix must be {cdf.size} rows (CDF points) x {g_bins.size} "
            f"columns (G bins), got {dg.shape[0]} x {dg.shape[1]}"
        )
    if not np.all(np.isfinite(dg)):
        raise ConfigError(f"{path}: the dG matrix holds non-finite values")


@lru_cache(maxsize=16)
def load_table(path: str | Path) -> PulseResponseTable:
    """Load and check one CrossSim pulse-response table (cached per path).

    Parameters
    ----------
    path : str or Path
        A ``.txt`` or ``.txt.gz`` file in the format of the module docstring.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or malformed (names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pulse-response table not found: {path}")
    rows = _read_rows(path)
    if len(rows) < 4:
        raise ConfigError(f"{path}: expected G bins, CDF points and >= 2 dG rows")
    lengths = {row.size for row in rows[2:]}
    if len(lengths) != 1:
        raise ConfigError(f"{path}: dG rows differ in length: {sorted(lengths)}")
    g_bins, cdf, dg = rows[0], rows[1], np.vstack(rows[2:])
    _check_table(path, g_bins, cdf, dg)
    for array in (g_bins, cdf, dg):
        array.setflags(write=False)
    return PulseResponseTable(g_bins=g_bins, cdf=cdf, dg=dg, source=str(path))
