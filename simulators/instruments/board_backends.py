"""The physics behind an emulated XBAR board: the :class:`BoardBackend` contract and a trivial
:class:`LinearBackend` for protocol tests.

The firmware (:mod:`~simulators.instruments.board_firmware`) validates every command before a
backend sees it, so a backend only carries out what the board was told; the emulated lab's
backend, on the crossbar it shares with the SMUs, is
:class:`simulators.instruments.crossbar_backends.CrossbarBoardBackend`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hil.vocabulary import BoardMode, PulseScheme


class BoardBackend(Protocol):
    """Physics behind the board; every argument arrives already validated by the firmware."""

    def set_dacs(self, values: dict[int, float]) -> None:
        """Drive DAC channel -> voltage (V); channels not given keep their value."""

    def read_adcs(self, channels: list[int]) -> list[float]:
        """Return the node voltages (V) on these ADC channels, unclipped, in order."""

    def set_mode(self, mode: BoardMode) -> None:
        """Reconnect the devices for ``mode``; DACs were already set to 0 V."""

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        """Apply ``count`` pulses of ``amplitude`` (V, signed) and ``width`` (s) to one device.

        All or nothing: a backend that raises has applied none of them (the firmware then
        reports the pulses before these as delivered).
        """

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Return the current (A) through device (row, col) biased at ``v_read`` (V)."""

    def read_block(self, row0: int, row1: int, col0: int, col1: int, v_read: float) -> list[float]:
        """Currents (A) of the devices on rows ``row0..row1`` and columns ``col0..col1``
        (inclusive), row-major, each as :meth:`read_device` would read it."""

    def abort(self) -> None:
        """Return every DAC and crossbar line to 0 V and isolate the devices."""


class LinearBackend:
    """Trivial physics for tests: linear ADC read-back and a stepping conductance matrix.

    Parameters
    ----------
    spec : object
        Anything with ``n_dac``, ``n_adc``, ``rows`` and ``cols`` (a ``BoardSpec``).
    gain : numpy.ndarray, optional
        Shape (n_adc, n_dac); ADC k reads ``gain[k] @ dac`` (V). Default: -0.5 on
        ``gain[k, k % n_dac]``, zero elsewhere.
    g_init, g_min, g_max : float
        Initial conductance and its bounds (S).
    g_step : float
        Conductance change per pulse (S), up for positive and down for negative voltages.
    v_threshold : float
        Smallest voltage magnitude (V) across a device that moves it; half-selected devices
        move too when they see at least this much.
    """

    def __init__(
        self,
        spec: _Dimensions,
        gain: np.ndarray | None = None,
        g_init: float = 50e-6,
        g_min: float = 10e-6,
        g_max: float = 100e-6,
        g_step: float = 1e-6,
        v_threshold: float = 0.9,
    ) -> None:
        if gain is None:
            gain = np.zeros((spec.n_adc, spec.n_dac))
            gain[np.arange(spec.n_adc), np.arange(spec.n_adc) % spec.n_dac] = -0.5
        self.gain = np.asarray(gain, dtype=float)
        self.dac = np.zeros(spec.n_dac)
        self.conductance = np.full((spec.rows, spec.cols), g_init)
        self.g_min, self.g_max, self.g_step = g_min, g_max, g_step
        self.v_threshold = v_threshold
        self.mode: BoardMode = "idle"

    def set_dacs(self, values: dict[int, float]) -> None:
        """Keep the DAC voltages (V) for the next ADC read."""
        for ch, v in values.items():
            self.dac[ch] = v

    def read_adcs(self, channels: list[int]) -> list[float]:
        """ADC k reads ``gain[k] @ dac`` (V)."""
        return [float(v) for v in (self.gain @ self.dac)[channels]]

    def set_mode(self, mode: BoardMode) -> None:
        """Record the mode; the linear physics does not depend on it."""
        self.mode = mode

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        """Step every device whose voltage reaches the threshold; ``width`` is ignored."""
        share = amplitude / 2 if scheme == "V/2" else amplitude / 3
        seen = np.full(self.conductance.shape, 0.0 if scheme == "V/2" else -share)
        seen[row, :] = share
        seen[:, col] = share
        seen[row, col] = amplitude
        moved = np.abs(seen) >= self.v_threshold
        self.conductance += moved * np.sign(seen) * self.g_step * count
        np.clip(self.conductance, self.g_min, self.g_max, out=self.conductance)

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Ohm's law through device (row, col): ``G * v_read`` (A)."""
        return float(self.conductance[row, col] * v_read)

    def read_block(self, row0: int, row1: int, col0: int, col1: int, v_read: float) -> list[float]:
        """Ohm's law through every device of the block, row-major (A)."""
        block = self.conductance[row0 : row1 + 1, col0 : col1 + 1] * v_read
        return [float(i) for i in block.ravel()]

    def abort(self) -> None:
        """DACs to 0 V, mode idle; the conductances keep their state."""
        self.dac[:] = 0.0
        self.mode = "idle"


class _Dimensions(Protocol):
    """What :class:`LinearBackend` reads of a board spec (a ``BoardSpec`` has it all)."""

    @property
    def n_dac(self) -> int:
        """DAC channels."""

    @property
    def n_adc(self) -> int:
        """ADC channels."""

    @property
    def rows(self) -> int:
        """Crossbar row lines."""

    @property
    def cols(self) -> int:
        """Crossbar column lines."""
