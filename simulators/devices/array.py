"""Per-device state of a whole population of devices, pulsed vectorised over devices.

A ``DeviceArray`` holds every device of a network (all tiles, by device id) for one
``DeviceModel``: conductances, the device-to-device parameters drawn once, the stuck masks,
pulse and disturb counters, and its random streams. One ``apply_pulses`` call applies signed
pulse counts to many devices at once; the loop runs over pulse index (up to the largest
count in the call), each iteration vectorised over the devices still receiving pulses.

Random streams (all from one seed): one for the device-to-device draw (used once), one for
the per-pulse noise, one for read noise. Reads therefore never change the pulse noise that
follows, and ``state_dict`` captures both live streams, so a restored array continues the
exact trajectory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hil import kernels
from hil.errors import ConfigError
from hil.numerics import select
from simulators.devices.analytic import ConstantStepModel
from simulators.devices.base import DeviceModel
from simulators.devices.presets import model_from_dict

STATE_FORMAT = "simulators.devices.DeviceArray/1"
_STATE_ARRAYS = (
    "g",
    "lo",
    "hi",
    "scale_up",
    "scale_down",
    "stuck_on",
    "stuck_off",
    "pulse_count",
    "disturb_count",
)


@dataclass(frozen=True)
class PulseOutcome:
    """What one ``apply_pulses`` or ``disturb`` call did, per addressed device.

    Attributes
    ----------
    kind : {"selected", "disturb"}
        Programming pulses on selected devices, or half-select disturb exposures.
    device_idx : ndarray of int, shape (n,)
        The devices, in the order given.
    requested : ndarray of int, shape (n,)
        Signed pulses asked for (+ potentiate, - depress).
    applied : ndarray of int, shape (n,)
        Signed pulses delivered (``requested`` less what endurance refused). Stuck and
        sub-threshold devices count as delivered: the pulse reached them.
    refused : ndarray of int, shape (n,)
        Pulses refused because the device reached its endurance limit (``>= 0``).
    g_before, g_after : ndarray of float, shape (n,)
        True conductances before and after (S).
    effective : ndarray of bool, shape (n,)
        Whether the pulses could move G (above threshold, not stuck, >= 1 pulse applied).
    """

    kind: Literal["selected", "disturb"]
    device_idx: np.ndarray
    requested: np.ndarray
    applied: np.ndarray
    refused: np.ndarray
    g_before: np.ndarray
    g_after: np.ndarray
    effective: np.ndarray

    @property
    def any_refused(self) -> bool:
        """True when endurance refused at least one pulse."""
        return bool(np.any(self.refused > 0))

    @property
    def refused_devices(self) -> np.ndarray:
        """Ids of the devices that had pulses refused, shape (m,)."""
        return self.device_idx[self.refused > 0]

    @property
    def dg(self) -> np.ndarray:
        """Conductance change per device (S), shape (n,)."""
        return self.g_after - self.g_before


class DeviceArray:
    """State of ``n_devices`` devices of one model (see the module docstring).

    Parameters
    ----------
    model : DeviceModel
        The device model (step law, pulse law, non-idealities, endurance).
    n_devices : int
        Number of devices (ids ``0 .. n_devices - 1``).
    seed : int, numpy Generator or None
        Seeds the three random streams; the same seed gives identical results.
    g_init : float, ndarray of shape (n_devices,) or None
        Initial conductances (S), clipped into each device's own bounds; None for the middle
        of each device's range. Stuck devices start (and stay) at their stuck value.

    Notes
    -----
    Drawn once per device (``model.variability``): step scales ``scale_up``/``scale_down``
    (step and up/down spread), bounds ``lo``/``hi`` (log-normal around ``g_min``/``g_max``),
    stuck-on (G = ``hi``) and stuck-off (G = ``lo``) masks. A pulse of gain ``f`` (see
    ``PulseLaw``) moves a device by ``f * scale * model.sample_step(...)`` and G is clipped
    to ``[lo, hi]``.
    """

    def __init__(
        self,
        model: DeviceModel,
        n_devices: int,
        seed: int | np.random.Generator | None = None,
        g_init: float | np.ndarray | None = None,
    ) -> None:
        if not isinstance(model, DeviceModel):
            raise ConfigError(f"model must be a DeviceModel, got {type(model).__name__}")
        if int(n_devices) != n_devices or n_devices < 1:
            raise ConfigError(f"n_devices must be a positive integer, got {n_devices!r}")
        self._model = model
        self._n = int(n_devices)
        parent = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        d2d_rng, self._rng_pulse, self._rng_read = parent.spawn(3)
        self._draw_devices(d2d_rng)
        self._pulse_count = np.zeros(self._n, dtype=np.int64)
        self._disturb_count = np.zeros(self._n, dtype=np.int64)
        # V/2 exposures per row and column of a block, not yet spread over its devices:
        # (first, n_rows, n_cols) -> (per_row, per_col) (count_half_selected)
        self._line_totals: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._g = (self._lo + self._hi) / 2.0
        self._set_all(g_init)

    # ----------------------------------------------------------------- construction

    def _draw_devices(self, rng: np.random.Generator) -> None:
        var, n = self._model.variability, self._n
        g_min, g_max = self._model.bounds()
        scale = np.maximum(1.0 + var.step_d2d * rng.standard_normal(n), 0.0)
        imbalance = var.updown_d2d * rng.standard_normal(n)
        self._scale_up = scale * np.maximum(1.0 + imbalance, 0.0)
        self._scale_down = scale * np.maximum(1.0 - imbalance, 0.0)
        self._lo = g_min * np.exp(var.bounds_d2d * rng.standard_normal(n))
        hi = g_max * np.exp(var.bounds_d2d * rng.standard_normal(n))
        self._hi = np.maximum(hi, self._lo + 0.01 * (g_max - g_min))
        u = rng.random(n)
        self._stuck_on = u < var.stuck_on
        self._stuck_off = (u >= var.stuck_on) & (u < var.stuck_on + var.stuck_off)
        self._note_population()

    def _set_all(self, g_init: float | np.ndarray | None) -> None:
        if g_init is not None:
            values = np.broadcast_to(np.asarray(g_init, dtype=float), (self._n,))
            self.set_conductance(np.arange(self._n), values)
        self._apply_stuck()

    def _note_population(self) -> None:
        """Note what the pulse loop may skip: the scales and stuck masks are set here and
        by a loaded state only, never written in between."""
        self._scales_equal = bool(np.array_equal(self._scale_up, self._scale_down))
        self._any_stuck = bool(self._stuck_on.any() or self._stuck_off.any())
        model = self._model
        self._constant_unlimited = (
            type(model) is ConstantStepModel
            and model.variability.c2c == 0.0
            and model.endurance is None
        )

    def _apply_stuck(self) -> None:
        self._g[self._stuck_on] = self._hi[self._stuck_on]
        self._g[self._stuck_off] = self._lo[self._stuck_off]

    def __repr__(self) -> str:
        return f"DeviceArray(model={self._model.kind!r}, n_devices={self._n})"

    # ----------------------------------------------------------------- read-only views

    @property
    def model(self) -> DeviceModel:
        """The device model."""
        return self._model

    @property
    def n_devices(self) -> int:
        """Number of devices."""
        return self._n

    @property
    def conductances(self) -> np.ndarray:
        """True conductances, no read noise (S), shape (n_devices,); a copy."""
        return self._g.copy()

    @property
    def lower_bounds(self) -> np.ndarray:
        """Each device's own lower bound ``lo`` (S), shape (n_devices,); a copy."""
        return self._lo.copy()

    @property
    def upper_bounds(self) -> np.ndarray:
        """Each device's own upper bound ``hi`` (S), shape (n_devices,); a copy."""
        return self._hi.copy()

    @property
    def step_scales(self) -> tuple[np.ndarray, np.ndarray]:
        """Each device's (potentiating, depressing) step scales, each shape (n_devices,)."""
        return self._scale_up.copy(), self._scale_down.copy()

    @property
    def stuck_on(self) -> np.ndarray:
        """Mask of devices stuck at their upper bound, shape (n_devices,); a copy."""
        return self._stuck_on.copy()

    @property
    def stuck_off(self) -> np.ndarray:
        """Mask of devices stuck at their lower bound, shape (n_devices,); a copy."""
        return self._stuck_off.copy()

    @property
    def pulse_count(self) -> np.ndarray:
        """Selected pulses delivered to each device so far, shape (n_devices,); a copy."""
        return self._pulse_count.copy()

    @property
    def disturb_count(self) -> np.ndarray:
        """Half-select exposures (non-zero amplitude) per device so far, shape (n_devices,)."""
        self._spread_line_totals()
        return self._disturb_count.copy()

    def _spread_line_totals(self) -> None:
        """Add the pending row and column totals of :meth:`count_half_selected` to every
        device of their blocks (integers: the same counts whenever it happens)."""
        for (first, n_rows, n_cols), (per_row, per_col) in self._line_totals.items():
            block = self._disturb_count[first : first + n_rows * n_cols].reshape(n_rows, n_cols)
            block += per_row[:, None]
            block += per_col[None, :]
        self._line_totals.clear()

    @property
    def exhausted(self) -> np.ndarray:
        """Mask of devices at their endurance limit, shape (n_devices,)."""
        limit = self._model.endurance
        if limit is None:
            return np.zeros(self._n, dtype=bool)
        return self._pulse_count >= limit

    # ----------------------------------------------------------------- operations

    def apply_pulses(
        self,
        device_idx: np.ndarray,
        counts: np.ndarray,
        amplitude_v: float | np.ndarray,
        width_s: float | np.ndarray,
    ) -> PulseOutcome:
        """Apply signed counts of identical programming pulses to selected devices.

        Parameters
        ----------
        device_idx : ndarray of int, shape (n,)
            Distinct device ids.
        counts : ndarray of int, shape (n,)
            Signed pulse counts: ``+k`` potentiates k times, ``-k`` depresses k times.
        amplitude_v : float or ndarray, shape (n,)
            Pulse amplitude magnitude (V).
        width_s : float or ndarray, shape (n,)
            Pulse width (s).

        Returns
        -------
        PulseOutcome
            Per device: pulses applied, refused for endurance, G before and after.

        Raises
        ------
        ConfigError
            On bad ids (out of range, repeated), non-integer counts, negative amplitude or
            non-positive width; nothing is applied then.
        """
        idx = self._check_idx(device_idx)
        signed = _check_int(counts, idx.size, "counts")
        gain = self._gain(amplitude_v, width_s, idx.size, "amplitude_v")
        if self._constant_unlimited and kernels.active(idx.size):
            return self._pulse_constant(idx, signed, gain)
        requested = np.abs(signed)
        allowed = requested
        if self._model.endurance is not None:
            left = np.maximum(self._model.endurance - self._pulse_count[idx], 0)
            allowed = np.minimum(requested, left)
        g_before = self._g[idx]  # a gather is a copy already
        direction = np.sign(signed)
        effective = self._move(idx, direction, allowed, gain)
        self._pulse_count[idx] += allowed
        if allowed is requested:  # no endurance limit: everything asked for is delivered
            applied, refused = signed.copy(), np.zeros(idx.size, dtype=np.int64)
        else:
            applied, refused = direction * allowed, requested - allowed
        return PulseOutcome(
            kind="selected",
            device_idx=idx,
            requested=signed,
            applied=applied,
            refused=refused,
            g_before=g_before,
            g_after=self._g[idx],
            effective=effective,
        )

    def _pulse_constant(
        self, idx: np.ndarray, signed: np.ndarray, gain: np.ndarray
    ) -> PulseOutcome:
        """:meth:`apply_pulses` for constant steps without endurance limit, in one compiled
        loop (:mod:`hil.kernels`): the same conductances, counts and outcome."""
        model = self._model
        assert isinstance(model, ConstantStepModel)
        g_before, g_after, effective = kernels.pulse_constant(
            self._g,
            self._pulse_count,
            (self._lo, self._hi),
            (self._scale_up, self._scale_up if self._scales_equal else self._scale_down),
            (self._stuck_on | self._stuck_off) if self._any_stuck else None,
            idx,
            signed,
            gain,
            (float(model.step_up), float(model.step_down)),
        )
        return PulseOutcome(
            kind="selected",
            device_idx=idx,
            requested=signed,
            applied=signed.copy(),
            refused=np.zeros(idx.size, dtype=np.int64),
            g_before=g_before,
            g_after=g_after,
            effective=effective,
        )

    def count_half_selected(
        self, first: int, shape: tuple[int, int], device_idx: np.ndarray, applied: np.ndarray
    ) -> None:
        """Count the V/2 half-select exposures of pulses below threshold on one block.

        What :meth:`count_exposures` counts for the line totals of
        :func:`simulators.crossbar_scheme.exposure_totals` under V/2, in one compiled pass
        (:mod:`hil.kernels`; numpy's two calls are the reference). ``device_idx`` (ascending)
        are devices of the ``shape`` block from ``first``, ``applied`` their signed pulses.

        Raises
        ------
        ConfigError
            Ids not ascending or outside the block, or counts of the wrong shape; nothing
            is counted then.
        """
        n_rows, n_cols = int(shape[0]), int(shape[1])
        ids = _check_int(device_idx, None, "device_idx")
        pulses = _check_int(applied, ids.size, "applied")
        if n_rows < 1 or n_cols < 1 or first < 0 or first + n_rows * n_cols > self._n:
            raise ConfigError(
                f"block of {n_rows}x{n_cols} devices from {first} is outside [0, {self._n})"
            )
        if ids.size and (ids[0] < first or ids[-1] >= first + n_rows * n_cols):
            raise ConfigError(
                f"device_idx must lie in the block [{first}, {first + n_rows * n_cols})"
            )
        if ids.size > 1 and not kernels.int_summary(ids)[2]:
            raise ConfigError("device_idx must ascend (distinct devices)")
        # The line totals wait until the counts are read: a step then touches the pulsed
        # devices only, not every device of the block.
        key = (int(first), n_rows, n_cols)
        if key not in self._line_totals:
            self._line_totals[key] = (
                np.zeros(n_rows, dtype=np.int64),
                np.zeros(n_cols, dtype=np.int64),
            )
        kernels.count_half_selected(
            self._disturb_count, first, n_cols, ids, pulses, self._line_totals[key]
        )

    def disturb(
        self,
        device_idx: np.ndarray,
        effective_amplitude_v: float | np.ndarray,
        width_s: float | np.ndarray,
        polarity: int | np.ndarray,
        counts: int | np.ndarray = 1,
    ) -> PulseOutcome:
        """Expose half-selected devices to pulses meant for other devices.

        Parameters
        ----------
        device_idx : ndarray of int, shape (n,)
            Distinct device ids.
        effective_amplitude_v : float or ndarray, shape (n,)
            Magnitude of the voltage across each device (V), e.g. V/2 or V/3.
        width_s : float or ndarray, shape (n,)
            Pulse width (s).
        polarity : int or ndarray of int, shape (n,)
            +1 if the voltage across the device potentiates it, -1 if it depresses it.
        counts : int or ndarray of int, shape (n,)
            Number of exposures (``>= 0``).

        Returns
        -------
        PulseOutcome
            ``kind="disturb"``; ``refused`` is all zero: endurance limits selected pulses
            only, a disturb is physics, not a request.

        Notes
        -----
        The device model's pulse law applies unchanged: below threshold nothing moves
        (only ``disturb_count`` grows), above it the step scales with the overdrive.
        """
        idx = self._check_idx(device_idx)
        sign = _check_int(polarity, idx.size, "polarity")
        if not np.all((sign == 1) | (sign == -1)):
            raise ConfigError(f"polarity must be +1 or -1 for every device, got {np.unique(sign)}")
        n = _check_int(counts, idx.size, "counts")
        if np.any(n < 0):
            raise ConfigError(f"disturb counts must be >= 0, got min {n.min()}")
        gain = self._gain(effective_amplitude_v, width_s, idx.size, "effective_amplitude_v")
        amplitude = _float_per_device(effective_amplitude_v, idx.size, "effective_amplitude_v")
        g_before = self._g[idx]  # a gather is a copy already
        effective = self._move(idx, sign, n, gain)
        self._disturb_count[idx] += np.where(amplitude > 0, n, 0)
        return PulseOutcome(
            kind="disturb",
            device_idx=idx,
            requested=sign * n,
            applied=sign * n,
            refused=np.zeros(idx.size, dtype=np.int64),
            g_before=g_before,
            g_after=self._g[idx],
            effective=effective,
        )

    def count_exposures(
        self,
        first: int,
        shape: tuple[int, int],
        per_row: np.ndarray,
        per_col: np.ndarray,
        everyone: int = 0,
        rows: np.ndarray | None = None,
        cols: np.ndarray | None = None,
        own: np.ndarray | None = None,
    ) -> None:
        """Count exposures that move nothing (at or below threshold) on a block of devices.

        The block is the ``n_rows x n_cols`` devices ``first .. first + n_rows * n_cols - 1``,
        row-major (a crossbar tile); device ``(i, j)`` of it receives ``per_row[i] +
        per_col[j] + everyone`` exposures, plus ``own[k]`` if it is ``(rows[k], cols[k])``.
        Only ``disturb_count`` changes: what :meth:`disturb` does for exposures whose pulse
        gain is 0, in two passes over the block instead of one call per device.

        Parameters
        ----------
        first : int
            Id of the block's device (0, 0).
        shape : (int, int)
            ``(n_rows, n_cols)`` of the block.
        per_row : ndarray of int, shape (n_rows,)
        per_col : ndarray of int, shape (n_cols,)
        everyone : int
            Exposures of every device of the block.
        rows, cols : ndarray of int, shape (m,), optional
            Distinct positions in the block with a correction of their own.
        own : ndarray of int, shape (m,), optional
            The corrections (negative ones too: a selected device does not disturb itself).

        Raises
        ------
        ConfigError
            On a block outside the array, arrays of the wrong shape, positions outside the
            block or repeated, or a device whose count would be negative; nothing is
            counted then.
        """
        n_rows, n_cols = int(shape[0]), int(shape[1])
        if n_rows < 1 or n_cols < 1 or first < 0 or first + n_rows * n_cols > self._n:
            raise ConfigError(
                f"block of {n_rows}x{n_cols} devices from {first} is outside [0, {self._n})"
            )
        per_row = _check_int(per_row, n_rows, "per_row")
        per_col = _check_int(per_col, n_cols, "per_col")
        r = _check_int(np.zeros(0, np.int64) if rows is None else rows, None, "rows")
        c = _check_int(np.zeros(0, np.int64) if cols is None else cols, r.size, "cols")
        extra = _check_int(np.zeros(0, np.int64) if own is None else own, r.size, "own")
        if r.size:
            if r.min() < 0 or r.max() >= n_rows or c.min() < 0 or c.max() >= n_cols:
                raise ConfigError(f"rows and cols must lie in the {n_rows}x{n_cols} block")
            flat = r * n_cols + c
            seen = np.zeros(n_rows * n_cols, dtype=bool)
            seen[flat] = True
            if np.count_nonzero(seen) != flat.size:
                raise ConfigError("rows and cols must not repeat a device within one call")
            lowest = per_row[r] + per_col[c] + (everyone + extra)
        else:
            flat = lowest = np.zeros(0, dtype=np.int64)
        if per_row.min() < 0 or per_col.min() < 0 or everyone < 0 or np.any(lowest < 0):
            raise ConfigError("exposure counts must not be negative")
        block = self._disturb_count[first : first + n_rows * n_cols]
        grid = block.reshape(n_rows, n_cols)
        if per_row.any():
            grid += per_row[:, None]
        if per_col.any():
            grid += per_col[None, :]
        if everyone:
            grid += everyone
        block[flat] += extra

    def read(
        self, device_idx: np.ndarray | None = None, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Conductances as a read sees them, with read noise (S), shape (n,).

        Parameters
        ----------
        device_idx : ndarray of int, shape (n,), or None
            Devices to read; None for all.
        rng : numpy Generator or None
            Stream for the read noise; None for the array's own read stream.
        """
        idx = np.arange(self._n) if device_idx is None else self._check_idx(device_idx)
        g = self._g[idx]
        noise = self._model.variability.read_noise
        if noise == 0.0:
            return g.copy()
        stream = self._rng_read if rng is None else rng
        return g * (1.0 + noise * stream.standard_normal(g.shape))

    def set_conductance(self, device_idx: np.ndarray, g: float | np.ndarray) -> np.ndarray:
        """Set conductances directly (simulation only, e.g. a network's initial weights).

        Values are clipped into each device's own bounds and stuck devices keep their
        stuck value; the returned array says what each device now holds (S), shape (n,).
        Counters and random streams are untouched.

        Raises
        ------
        ConfigError
            If a value is negative or not finite.
        """
        idx = self._check_idx(device_idx)
        values = _float_per_device(g, idx.size, "g")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ConfigError("conductances must be finite and >= 0 S")
        self._g[idx] = np.clip(values, self._lo[idx], self._hi[idx])
        self._apply_stuck()
        return self._g[idx].copy()

    def nominal_step(self, direction: int) -> float:
        """Mean step magnitude of a nominal pulse at mid-range of a nominal device (S)."""
        return self._model.nominal_step(direction)

    def pulses_for(self, dg: float | np.ndarray, g: float | np.ndarray) -> np.ndarray:
        """Signed fractional pulse counts for ``dg`` from ``g`` on a nominal device.

        Uses the nominal model only (what an open-loop programmer knows), not the devices'
        own parameters; see ``DeviceModel.pulses_for``.
        """
        return self._model.pulses_for(dg, g)

    # ----------------------------------------------------------------- the pulse loop

    def _move(
        self, idx: np.ndarray, sign: np.ndarray, n_pulses: np.ndarray, gain: np.ndarray
    ) -> np.ndarray:
        """Apply ``n_pulses`` pulses of direction ``sign`` and gain ``gain``; return the mask
        of devices that could move."""
        effective = (n_pulses > 0) & (gain > 0)
        if self._any_stuck:
            effective &= ~(self._stuck_on[idx] | self._stuck_off[idx])
        if not np.any(effective):
            return effective
        model = self._model
        if type(model) is ConstantStepModel and model.variability.c2c == 0.0:
            self._move_constant(model, idx, sign, n_pulses, gain, effective)
            return effective
        chosen = np.flatnonzero(effective)
        count = n_pulses[chosen]
        # Devices by descending count, ties in the order given (the order the random steps
        # are drawn in); a stable sort is unique, and 16-bit keys sort by radix, O(n).
        keys = -count.astype(np.int16) if count.max() <= np.iinfo(np.int16).max else -count
        chosen = chosen[np.argsort(keys, kind="stable")]
        dev = idx[chosen]
        direction = sign[chosen]
        count = n_pulses[chosen]
        scale = self._scales(dev, direction) * _gain_of(gain, chosen)
        g, lo, hi = self._g[dev], self._lo[dev], self._hi[dev]
        active = np.searchsorted(-count, -np.arange(count[0]), side="left")
        for m in active:
            step = model.sample_step(g[:m], direction[:m], lo[:m], hi[:m], self._rng_pulse)
            moved = g[:m] + scale[:m] * step
            np.clip(moved, lo[:m], hi[:m], out=g[:m])
        self._g[dev] = g
        return effective

    def _move_constant(
        self,
        model: ConstantStepModel,
        idx: np.ndarray,
        sign: np.ndarray,
        n_pulses: np.ndarray,
        gain: np.ndarray,
        effective: np.ndarray,
    ) -> None:
        """:meth:`_move` for a step that neither depends on G nor is random.

        Every pulse of a device adds the same increment ``scale * gain * step`` and clips,
        so the devices need no order: the first pulse of all of them in one pass (in the
        order given, usually ascending ids: sequential memory), then the devices with more
        pulses, by descending count, in passes over a shrinking prefix. Each device gets
        exactly the additions and clips of the general loop, so the same conductances.
        """
        chosen = None if effective.all() else np.flatnonzero(effective)
        dev = idx if chosen is None else idx[chosen]
        direction = sign if chosen is None else sign[chosen]
        count = n_pulses if chosen is None else n_pulses[chosen]
        # the values of mean_step: +step_up or -step_down by direction
        if model.step_up == model.step_down:
            step = direction * float(model.step_up)
        else:
            step = select(direction > 0, model.step_up, -model.step_down)
        increment = self._scales(dev, direction) * _gain_of(gain, chosen)
        increment *= step
        g, lo, hi = self._g[dev], self._lo[dev], self._hi[dev]
        np.add(g, increment, out=g)
        np.clip(g, lo, hi, out=g)
        more = np.flatnonzero(count > 1)
        if more.size:
            rest = count[more]
            keys = -rest.astype(np.int16) if rest.max() <= np.iinfo(np.int16).max else -rest
            more = more[np.argsort(keys, kind="stable")]
            rest = count[more]
            g_more, inc_more, lo_more, hi_more = g[more], increment[more], lo[more], hi[more]
            active = np.searchsorted(-rest, -np.arange(1, rest[0]), side="left")
            for m in active:
                np.add(g_more[:m], inc_more[:m], out=g_more[:m])
                np.clip(g_more[:m], lo_more[:m], hi_more[:m], out=g_more[:m])
            g[more] = g_more
        self._g[dev] = g

    def _scales(self, dev: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Step scale of each device in its direction, shape (n,); a new array."""
        if self._scales_equal:
            return self._scale_up[dev]
        # directions are as unpredictable as a gradient's signs: no branch per element
        return select(direction > 0, self._scale_up[dev], self._scale_down[dev])

    def _gain(
        self, amplitude_v: float | np.ndarray, width_s: float | np.ndarray, size: int, name: str
    ) -> np.ndarray:
        """The pulse law's gain per device, shape (size,); from one evaluation when both
        the amplitude and the width are scalars (same checks, same values)."""
        if size and np.ndim(amplitude_v) == 0 and np.ndim(width_s) == 0:
            one = self._model.pulse.gain(
                _float_per_device(amplitude_v, 1, name), _float_per_device(width_s, 1, "width_s")
            )
            return np.broadcast_to(one, (size,))
        return self._model.pulse.gain(
            _float_per_device(amplitude_v, size, name),
            _float_per_device(width_s, size, "width_s"),
        )

    def _check_idx(self, device_idx: np.ndarray) -> np.ndarray:
        idx = _check_int(device_idx, None, "device_idx")
        if not idx.size:
            return idx
        lo, hi, ascending = kernels.int_summary(idx)
        if lo < 0 or hi >= self._n:
            raise ConfigError(f"device_idx must lie in [0, {self._n - 1}], got min {lo} max {hi}")
        if not ascending:  # ascending ids are distinct
            seen = np.zeros(self._n, dtype=bool)
            seen[idx] = True
            if np.count_nonzero(seen) != idx.size:
                raise ConfigError("device_idx must not repeat a device within one call")
        return idx

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore this array exactly (numpy arrays and JSON values).

        Returns
        -------
        dict
            ``format``, ``model`` (the model as a JSON dict), ``n_devices``, the per-device
            arrays (``g``, ``lo``, ``hi``, ``scale_up``, ``scale_down``, ``stuck_on``,
            ``stuck_off``, ``pulse_count``, ``disturb_count``; copies, shape (n_devices,))
            and the states of the pulse and read random streams (``rng_pulse``,
            ``rng_read``; JSON dicts).
        """
        self._spread_line_totals()
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "model": self._model.model_dump(mode="json"),
            "n_devices": self._n,
            "rng_pulse": self._rng_pulse.bit_generator.state,
            "rng_read": self._rng_read.bit_generator.state,
        }
        for name in _STATE_ARRAYS:
            state[name] = getattr(self, f"_{name}").copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from ``state_dict`` (same model and number of devices).

        Raises
        ------
        ConfigError
            If the state has another format, model or size, or an array of the wrong shape.
        """
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"device state format must be {STATE_FORMAT!r}")
        if state.get("n_devices") != self._n:
            raise ConfigError(
                f"device state holds {state.get('n_devices')} devices, this array {self._n}"
            )
        if state.get("model") != self._model.model_dump(mode="json"):
            raise ConfigError("device state was saved with a different device model")
        arrays = {}
        for name in _STATE_ARRAYS:
            current = getattr(self, f"_{name}")
            value = np.asarray(state[name], dtype=current.dtype)
            if value.shape != current.shape:
                raise ConfigError(f"device state {name!r} has shape {value.shape}")
            arrays[name] = value.copy()
        self._rng_pulse.bit_generator.state = state["rng_pulse"]
        self._rng_read.bit_generator.state = state["rng_read"]
        for name, value in arrays.items():
            setattr(self, f"_{name}", value)
        self._line_totals.clear()  # the restored counts hold everything counted before
        self._note_population()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> DeviceArray:
        """A new array restored from ``state_dict`` (the model is rebuilt from the state)."""
        array = cls(model_from_dict(state["model"]), int(state["n_devices"]), seed=0)
        array.load_state_dict(state)
        return array

    def save(self, path: str | Path) -> None:
        """Write ``state_dict`` to an ``.npz`` file (JSON parts as a ``meta`` string)."""
        state = self.state_dict()
        meta = {k: v for k, v in state.items() if k not in _STATE_ARRAYS}
        arrays = {k: state[k] for k in _STATE_ARRAYS}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> DeviceArray:
        """Read an array saved by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["meta"]))
            state.update({k: data[k] for k in _STATE_ARRAYS})
        return cls.from_state_dict(state)


def _check_int(values: Any, size: int | None, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array (a scalar broadcasts to ``size``, or to one element);
    an int64 array is returned as it is (checking must not cost a copy at paper scale; no
    caller writes to the result), anything else as a new array."""
    array = np.asarray(values)
    scalar = array.ndim == 0
    if scalar:
        array = np.broadcast_to(array, (1 if size is None else size,))
    if array.ndim != 1 or (size is not None and array.size != size):
        want = "a 1-D array" if size is None else f"shape ({size},)"
        raise ConfigError(f"{name} must be {want}, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        integral = np.issubdtype(array.dtype, np.floating) and bool(
            np.all(np.isfinite(array)) and np.all(array == np.round(array))
        )
        if not integral:
            raise ConfigError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=scalar)  # a broadcast scalar becomes a real array


def _float_per_device(values: Any, size: int, name: str) -> np.ndarray:
    """``values`` (a scalar or shape (size,)) as a float array of shape (size,)."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 0:
        return np.full(size, float(array))
    if array.shape != (size,):
        raise ConfigError(f"{name} must be a scalar or shape ({size},), got shape {array.shape}")
    return array


def _gain_of(gain: np.ndarray, chosen: np.ndarray | None) -> np.ndarray | float:
    """The gains of the chosen devices (all when None); one float when all are the same
    (a scalar pulse, broadcast): the same products, without a gather."""
    if gain.strides == (0,) and gain.size:
        return float(gain[0])
    return gain if chosen is None else gain[chosen]
