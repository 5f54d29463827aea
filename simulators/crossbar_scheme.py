"""Voltages across every device of a crossbar tile when one device is pulsed (V/2, V/3).

Sign convention
---------------
A tile has ``rows`` row lines and ``cols`` column lines; device ``(i, j)`` joins row line i
to column line j. The voltage across a device is ``V_row[i] - V_col[j]``. A positive voltage
has the polarity of a potentiating pulse (it increases G, direction +1 of the device models),
a negative one depresses. To pulse the selected device ``(r, c)`` with a signed amplitude
``V`` (``V > 0`` potentiates, ``V < 0`` depresses):

- ``"V/2"``: row r at ``+V/2``, column c at ``-V/2``, every other line at 0. The selected
  device sees ``V``; half-selected devices (row r or column c) see ``V/2``, with the
  polarity of the pulse; all others see 0.
- ``"V/3"``: row r at ``+V/2``, column c at ``-V/2``, other rows at ``-V/6``, other columns
  at ``+V/6`` (the usual 0 / V/3 / 2V/3 / V biasing shifted by ``-V/2``). The selected
  device sees ``V``; half-selected devices see ``V/3`` with the pulse's polarity;
  unselected devices see ``-V/3``, the opposite polarity.

Exposure
--------
For a list of pulses (selected devices with signed pulse counts at one amplitude),
``disturb_exposure`` counts how many half-select pulses every device receives, by polarity,
excluding the pulses meant for the device itself. A ``DeviceArray`` then applies them with
``disturb``. The order of pulses within the list is not modelled. ``exposure_totals`` gives
the same counts summed over both polarities in line form (per row, per column, per tile and
a correction per selected device), for exposures below threshold, which only count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.errors import ConfigError
from hil.vocabulary import PULSE_SCHEMES, PulseScheme


@dataclass(frozen=True)
class DisturbExposure:
    """Half-select pulses received by every device of a tile.

    Attributes
    ----------
    amplitude_v : float
        Magnitude of the voltage across a disturbed device (V): ``|V|/2`` or ``|V|/3``.
    potentiating : ndarray of int, shape (rows, cols)
        Exposures whose polarity potentiates the device.
    depressing : ndarray of int, shape (rows, cols)
        Exposures whose polarity depresses the device.
    """

    amplitude_v: float
    potentiating: np.ndarray
    depressing: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """All exposures per device, shape (rows, cols)."""
        return self.potentiating + self.depressing

    def for_polarity(self, polarity: int) -> tuple[np.ndarray, np.ndarray]:
        """``(flat_idx, counts)`` of the devices exposed with ``polarity`` (+1 or -1).

        ``flat_idx`` are row-major positions in the tile (add the tile's first device id);
        pass them with ``polarity`` and ``amplitude_v`` to ``DeviceArray.disturb``.
        """
        if polarity not in (1, -1):
            raise ConfigError(f"polarity must be +1 or -1, got {polarity!r}")
        grid = self.potentiating if polarity == 1 else self.depressing
        flat = np.flatnonzero(grid)
        return flat, grid.reshape(-1)[flat]


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(n) != n or n < 1 for n in shape):
        raise ConfigError(f"tile shape must be (rows, cols) of positive integers, got {shape}")
    return int(shape[0]), int(shape[1])


def check_scheme(scheme: str) -> None:
    """Raise ConfigError unless ``scheme`` is one of :data:`hil.vocabulary.PULSE_SCHEMES`."""
    if scheme not in PULSE_SCHEMES:
        raise ConfigError(f"scheme must be one of {', '.join(PULSE_SCHEMES)}, got {scheme!r}")


def _check_selection(
    shape: tuple[int, int], row: np.ndarray, col: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.atleast_1d(np.asarray(row)), np.atleast_1d(np.asarray(col))
    if rows.shape != cols.shape or rows.ndim != 1:
        raise ConfigError(f"row and col must have one shape (n,), got {rows.shape}, {cols.shape}")
    if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
        raise ConfigError("row and col must be integers")
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        raise ConfigError(f"row must lie in [0, {shape[0] - 1}], got {rows.min()}..{rows.max()}")
    if cols.size and (cols.min() < 0 or cols.max() >= shape[1]):
        raise ConfigError(f"col must lie in [0, {shape[1] - 1}], got {cols.min()}..{cols.max()}")
    return rows.astype(np.int64), cols.astype(np.int64)


def line_voltages(
    shape: tuple[int, int], row: int, col: int, voltage_v: float, scheme: PulseScheme = "V/2"
) -> tuple[np.ndarray, np.ndarray]:
    """Voltages on the row and column lines to pulse device ``(row, col)``.

    Parameters
    ----------
    shape : (int, int)
        Tile shape (rows, cols).
    row, col : int
        The selected device.
    voltage_v : float
        Signed pulse amplitude across the selected device (V).
    scheme : {"V/2", "V/3"}
        Biasing scheme (module docstring).

    Returns
    -------
    (ndarray, ndarray)
        Row-line voltages, shape (rows,), and column-line voltages, shape (cols,) (V).
    """
    n_rows, n_cols = _check_shape(shape)
    check_scheme(scheme)
    r, c = _check_selection((n_rows, n_cols), row, col)
    idle = 0.0 if scheme == "V/2" else voltage_v / 6.0
    v_rows = np.full(n_rows, -idle)
    v_cols = np.full(n_cols, idle)
    v_rows[r] = voltage_v / 2.0
    v_cols[c] = -voltage_v / 2.0
    return v_rows, v_cols


def device_voltages(
    shape: tuple[int, int],
    row: int | np.ndarray,
    col: int | np.ndarray,
    voltage_v: float | np.ndarray,
    scheme: PulseScheme = "V/2",
) -> np.ndarray:
    """Voltage across every device of the tile, for one or several selected devices.

    Parameters
    ----------
    shape : (int, int)
        Tile shape (rows, cols).
    row, col : int or ndarray of int, shape (n,)
        Selected device(s); one voltage map per selection.
    voltage_v : float or ndarray, shape (n,)
        Signed pulse amplitude across each selected device (V).
    scheme : {"V/2", "V/3"}
        Biasing scheme (module docstring).

    Returns
    -------
    ndarray of float
        Shape (rows, cols) for scalar ``row``/``col``, else (n, rows, cols) (V):
        ``V_row[i] - V_col[j]`` under the scheme's biasing.

    Notes
    -----
    With ``a = [i == r] + [j == c]`` (0, 1 or 2): V/2 gives ``V a / 2``; V/3 gives
    ``V (2a - 1) / 3``.
    """
    n_rows, n_cols = _check_shape(shape)
    check_scheme(scheme)
    scalar = np.ndim(row) == 0 and np.ndim(col) == 0
    rows, cols = _check_selection((n_rows, n_cols), row, col)
    volts = np.broadcast_to(np.asarray(voltage_v, dtype=float), rows.shape)
    on_row = np.arange(n_rows)[None, :, None] == rows[:, None, None]
    on_col = np.arange(n_cols)[None, None, :] == cols[:, None, None]
    hits = on_row.astype(float) + on_col
    weight = hits / 2.0 if scheme == "V/2" else (2.0 * hits - 1.0) / 3.0
    out = volts[:, None, None] * weight
    return out[0] if scalar else out


def disturb_exposure(
    shape: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    counts: np.ndarray,
    voltage_v: float,
    scheme: PulseScheme = "V/2",
) -> DisturbExposure:
    """Half-select pulses every device receives while a list of devices is programmed.

    Parameters
    ----------
    shape : (int, int)
        Tile shape (rows, cols).
    rows, cols : ndarray of int, shape (n,)
        Selected devices (may repeat).
    counts : ndarray of int, shape (n,)
        Signed pulse counts (+ potentiating pulses at ``+|V|``, - depressing at ``-|V|``).
    voltage_v : float
        Pulse amplitude magnitude across a selected device (V).
    scheme : {"V/2", "V/3"}
        Biasing scheme (module docstring).

    Returns
    -------
    DisturbExposure
        Per-device exposure counts by polarity, at ``|V|/2`` or ``|V|/3``.

    Notes
    -----
    With ``R_i`` the pulses on row i, ``C_j`` those on column j, ``S_ij`` those on device
    (i, j) itself and ``T`` all of them (counted per polarity): half-selected exposures are
    ``R_i + C_j - 2 S_ij`` (pulse polarity); under V/3 the unselected exposures
    ``T - R_i - C_j + S_ij`` have the opposite polarity.
    """
    n_rows, n_cols = _check_shape(shape)
    check_scheme(scheme)
    r, c = _check_selection((n_rows, n_cols), rows, cols)
    signed = np.asarray(counts)
    if signed.shape != r.shape or not np.issubdtype(signed.dtype, np.integer):
        raise ConfigError(f"counts must be integers of shape {r.shape}, got {signed.shape}")
    if not np.isfinite(voltage_v) or voltage_v < 0:
        raise ConfigError(f"voltage_v must be a finite magnitude >= 0 V, got {voltage_v}")
    same = {}
    opposite = {}
    for polarity, n in ((1, np.maximum(signed, 0)), (-1, np.maximum(-signed, 0))):
        per_row = np.bincount(r, weights=n, minlength=n_rows).astype(np.int64)
        per_col = np.bincount(c, weights=n, minlength=n_cols).astype(np.int64)
        own = np.zeros((n_rows, n_cols), dtype=np.int64)
        np.add.at(own, (r, c), n)
        line = per_row[:, None] + per_col[None, :]
        same[polarity] = line - 2 * own
        if scheme == "V/3":
            opposite[-polarity] = int(n.sum()) - line + own
    potentiating = same[1] + opposite.get(1, 0)
    depressing = same[-1] + opposite.get(-1, 0)
    fraction = 2.0 if scheme == "V/2" else 3.0
    return DisturbExposure(
        amplitude_v=float(voltage_v) / fraction,
        potentiating=np.asarray(potentiating, dtype=np.int64),
        depressing=np.asarray(depressing, dtype=np.int64),
    )


@dataclass(frozen=True)
class ExposureTotals:
    """Half-select pulses of a tile summed over both polarities, in line form.

    Device ``(i, j)`` receives ``per_row[i] + per_col[j] + everyone`` exposures, plus
    ``own[k]`` for every entry k of the selection at ``(i, j)`` (a device is not disturbed
    by its own pulses). Equal to ``disturb_exposure(...).total`` without the grid.

    Attributes
    ----------
    amplitude_v : float
        Magnitude of the voltage across a disturbed device (V): ``|V|/2`` or ``|V|/3``.
    per_row : ndarray of int, shape (rows,)
    per_col : ndarray of int, shape (cols,)
    everyone : int
    own : ndarray of int, shape (n,)
        Correction for each entry of the selection (``<= 0``).
    """

    amplitude_v: float
    per_row: np.ndarray
    per_col: np.ndarray
    everyone: int
    own: np.ndarray


def exposure_totals(
    shape: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    counts: np.ndarray,
    voltage_v: float,
    scheme: PulseScheme = "V/2",
) -> ExposureTotals:
    """Half-select pulses every device receives, both polarities together, in line form.

    Same parameters as :func:`disturb_exposure`; O(rows + cols + n) instead of a grid.

    Notes
    -----
    With ``R_i``, ``C_j``, ``S_ij`` and ``T`` the pulses (either polarity) on row i, column
    j, device (i, j) and the tile, V/2 exposes ``R_i + C_j - 2 S_ij`` and V/3 exposes every
    device to every pulse but its own, ``T - S_ij`` (half-selected with the pulse's
    polarity, unselected with the opposite one).
    """
    n_rows, n_cols = _check_shape(shape)
    check_scheme(scheme)
    r, c = _check_selection((n_rows, n_cols), rows, cols)
    signed = np.asarray(counts)
    if signed.shape != r.shape or not np.issubdtype(signed.dtype, np.integer):
        raise ConfigError(f"counts must be integers of shape {r.shape}, got {signed.shape}")
    if not np.isfinite(voltage_v) or voltage_v < 0:
        raise ConfigError(f"voltage_v must be a finite magnitude >= 0 V, got {voltage_v}")
    pulses = np.abs(signed.astype(np.int64))
    if scheme == "V/2":
        if r.size and bool(np.all(r[1:] >= r[:-1])):
            # rows in order (ascending device ids): sums of runs, in integers, no scatter
            total = np.concatenate([np.zeros(1, np.int64), np.cumsum(pulses)])
            per_row = np.diff(total[np.searchsorted(r, np.arange(n_rows + 1))])
        else:
            per_row = np.bincount(r, weights=pulses, minlength=n_rows).astype(np.int64)
        per_col = np.bincount(c, weights=pulses, minlength=n_cols).astype(np.int64)
        return ExposureTotals(float(voltage_v) / 2.0, per_row, per_col, 0, -2 * pulses)
    return ExposureTotals(
        float(voltage_v) / 3.0,
        np.zeros(n_rows, dtype=np.int64),
        np.zeros(n_cols, dtype=np.int64),
        int(pulses.sum()),
        -pulses,
    )
