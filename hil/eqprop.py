"""Equilibrium Propagation: phases, loss, nudge currents and gradients from measured drops.

EqProp is a gradient estimator that sees the bench as a black box which settles: it asks for a
free phase and one or two nudged phases and turns the voltage drops across each device into
the gradient of the loss with respect to that device's conductance.

Notes
-----
The circuit minimises the energy ``E = sum_d w_d G_d dV_d^2 / 2 + ...`` (weights ``w_d`` from
:class:`hil.network.Network`). Injecting a current ``I = beta_S e / w_out`` into the + node
of every output pair (and ``-I`` into the - node), ``e = y - o`` the error of the pair,
minimises ``F = E + beta_S C`` to first order, with ``C = sum_k (o_k - y_k)^2 / 2`` and
``beta_S = beta * g_ref`` (siemens). Then::

    dC/dG_d = w_d (dV_d(+beta)^2 - dV_d(-beta)^2) / (4 beta_S)      (centered)
    dC/dG_d = w_d (dV_d(+beta)^2 - dV_d(0)^2) / (2 beta_S)          (positive)
    dC/dG_d = w_d (dV_d(0)^2 - dV_d(-beta)^2) / (2 beta_S)          (negative)

The currents are computed once from the free-phase outputs, as an SMU sourcing a fixed
current would apply them. Gradients are returned with respect to ``g = G / g_ref``
(dimensionless), so that learning rates do not depend on the conductance scale.

A training config gives ``beta`` dimensionless (:meth:`EqProp.for_network`): the fraction
of the way the nudge moves the outputs towards their targets. The pair's output moves by
``2 I / G_out`` while the lines driving it hold (``G_out``, the nominal conductance of an
output node, :attr:`hil.network.Network.output_conductance`), so ``beta_S = beta * w_out *
G_out / 2``: the nudge is the same in volts at any width and amplifier gain, and its
current ``beta * G_out * e / 2`` no longer grows as ``A^2`` per amplifier. With
``max_error`` the error is clipped (a Huber cost, :meth:`EqProp.cost`), which bounds the
current by ``beta * G_out * max_error / 2``; run configs refuse a nudge whose bound exceeds
the bench's ``max_nudge_current`` (docs/learning.md).

When the drops of both phases are the network's drops of the measured node voltages (every
bench here), the batch mean of ``dV_high^2 - dV_low^2`` over a tile is computed from the
voltages of its rows and columns by one matrix product (:meth:`EqProp.gradient_from_voltages`)
instead of from 2 x B x n_devices drops: with ``r = a V_row`` and ``c = V_col`` per sample,
``D = high - low`` and ``S = high + low``::

    dV_high^2 - dV_low^2 = (D_r - D_c)(S_r - S_c) = D_r S_r + D_c S_c - (D_r S_c + S_r D_c)

so the tile's sum over the batch is ``rowterm[:, None] + colterm[None, :] - [D_r; S_r]^T
[S_c; D_c]``. It differs from the drop-based form by rounding only (it has no ``dV^2``
cancellation: it is, if anything, the more accurate of the two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.bench import Bench, Measurement
from hil.errors import ConfigError
from hil.network import Network
from hil.numerics import DEFAULT_BLAS_THREADS, blas_threads
from hil.vocabulary import VARIANTS, Variant


@dataclass(frozen=True)
class EqPropResult:
    """One EqProp estimate on a batch.

    Attributes
    ----------
    gradient : ndarray, shape (n_devices,)
        Batch-mean ``dC/dg`` for every device (``g = G / g_ref``).
    free : Measurement
        The free phase.
    loss : ndarray, shape (B,)
        Loss of each sample at the free equilibrium (V^2).
    """

    gradient: np.ndarray
    free: Measurement
    loss: np.ndarray


class EqProp:
    """EqProp gradient estimator on the differential outputs of a network.

    Parameters
    ----------
    beta : float
        Nudge strength in energy units, relative to ``g_ref``: the nudge minimises
        ``E + beta * g_ref * C`` (module Notes). :meth:`for_network` takes the
        dimensionless nudge a training config gives (the fraction of the way the outputs
        move towards their targets) and sets this for a network.
    variant : ``"centered"``, ``"positive"`` or ``"negative"``
    target_amplitude : float
        The target ``y`` is this many volts on the correct class's pair, 0 V on the others.
    g_ref : float, optional
        Reference conductance (S); the network's ``g_max`` by default.
    blas_threads : int or None
        Threads BLAS may use during :meth:`estimate` (settles and gradient); None leaves
        BLAS as it is. One by default: the products are small (see :mod:`hil.numerics`).
    max_error : float or None
        Errors ``|y - o|`` beyond this (V) are nudged as if they were this large: the cost
        is then the Huber cost of :meth:`cost` (quadratic within ``max_error``, linear
        beyond), and the nudge currents are bounded (:meth:`max_nudge_current`). None: the
        squared error everywhere, unbounded currents.

    Attributes
    ----------
    fraction : float or None
        The dimensionless nudge :meth:`for_network` was given (None when built directly).
    """

    def __init__(
        self,
        beta: float,
        variant: Variant = "centered",
        target_amplitude: float = 1.0,
        g_ref: float | None = None,
        blas_threads: int | None = DEFAULT_BLAS_THREADS,
        max_error: float | None = None,
    ) -> None:
        if not beta > 0:
            raise ConfigError(f"beta must be > 0, got {beta}")
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if max_error is not None and not max_error > 0:
            raise ConfigError(f"max_error must be > 0 V, got {max_error}")
        self.beta = beta
        self.variant = variant
        self.target_amplitude = target_amplitude
        self.g_ref = g_ref
        self.blas_threads = blas_threads
        self.max_error = max_error
        self.fraction: float | None = None

    @classmethod
    def for_network(
        cls,
        network: Network,
        beta: float,
        variant: Variant = "centered",
        target_amplitude: float = 1.0,
        max_error: float | None = None,
        blas_threads: int | None = DEFAULT_BLAS_THREADS,
    ) -> EqProp:
        """The estimator whose nudge moves ``network``'s outputs ``beta`` of the way to
        their targets (linearised, at the nominal conductance; docs/learning.md).

        ``beta`` is dimensionless and means the same at any width, depth and amplifier
        gain: the nudge conductance is ``beta * G_out / 2`` on each node of a pair
        (:attr:`Network.output_conductance`), whatever the output layer's energy weight.
        """
        if not beta > 0:
            raise ConfigError(f"beta must be > 0, got {beta}")
        g_ref = network.g_bounds[1]
        raw = nudge_beta(network, beta)
        estimator = cls(raw, variant, target_amplitude, g_ref, blas_threads, max_error)
        estimator.fraction = beta
        return estimator

    def targets(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """One-hot targets (B, classes) in volts."""
        y = np.zeros((len(labels), n_classes))
        y[np.arange(len(labels)), labels] = self.target_amplitude
        return y

    @staticmethod
    def loss(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Squared error ``sum_k (o_k - y_k)^2 / 2`` per sample (V^2), shape (B,)."""
        return 0.5 * np.sum((outputs - targets) ** 2, axis=1)

    def cost(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The cost the nudge descends, per sample (V^2), shape (B,).

        :meth:`loss` without ``max_error``; with it the Huber cost
        ``sum_k h(o_k - y_k)``, ``h(e) = e^2 / 2`` for ``|e| <= m`` and
        ``m |e| - m^2 / 2`` beyond (``m = max_error``), whose derivative is the clipped
        error. The two agree wherever every error is within ``max_error``.
        """
        if self.max_error is None:
            return self.loss(outputs, targets)
        m = self.max_error
        e = np.abs(outputs - targets)
        return np.sum(np.where(e <= m, 0.5 * e**2, m * e - 0.5 * m**2), axis=1)

    def nudge_currents(
        self, bench: Bench, free_outputs: np.ndarray, targets: np.ndarray, sign: float
    ) -> np.ndarray:
        """Currents (B, 2*classes) that nudge the outputs towards the targets (A).

        ``sign * beta * g_ref * e / w_out`` on each pair, ``e = y - o`` clipped to
        ``+-max_error``: never more than :meth:`max_nudge_current` in magnitude.
        """
        net = bench.network
        beta_s = sign * self.beta * self._g_ref(bench)
        error = targets - free_outputs
        if self.max_error is not None:
            error = np.clip(error, -self.max_error, self.max_error)
        return net.pair_currents(beta_s * error / net.output_weight)

    def max_nudge_current(self, network: Network) -> float:
        """The largest |current| :meth:`nudge_currents` can ask for on ``network`` (A);
        infinite without ``max_error``."""
        if self.max_error is None:
            return float("inf")
        g_ref = self.g_ref if self.g_ref is not None else network.g_bounds[1]
        return self.beta * g_ref * self.max_error / network.output_weight

    def _g_ref(self, bench: Bench) -> float:
        return self.g_ref if self.g_ref is not None else bench.network.g_bounds[1]

    def estimate(self, bench: Bench, inputs: np.ndarray, labels: np.ndarray) -> EqPropResult:
        """Run the phases on a batch and return the gradient of every conductance.

        Parameters
        ----------
        inputs : ndarray, shape (B, 2*inputs)
            Input source voltages (V).
        labels : ndarray of int, shape (B,)
        """
        with blas_threads(self.blas_threads):
            net = bench.network
            free = bench.settle(inputs)
            y = self.targets(labels, net.n_classes)
            signs = {"centered": (1.0, -1.0), "positive": (1.0, 0.0), "negative": (0.0, -1.0)}
            plus, minus = signs[self.variant]
            phases = {0.0: free}
            for sign in (plus, minus):
                if sign not in phases:
                    nudges = self.nudge_currents(bench, free.outputs, y, sign)
                    phases[sign] = bench.settle(inputs, nudges)
            gradient = self.phase_gradient(net, phases[plus], phases[minus], plus - minus)
        return EqPropResult(gradient, free, self.loss(free.outputs, y))

    def phase_gradient(
        self, network: Network, high: Measurement, low: Measurement, sign_span: float
    ) -> np.ndarray:
        """Batch-mean ``dC/dg`` (n_devices,) from two phases (the higher nudge first).

        From the node voltages (:meth:`gradient_from_voltages`) when both measurements'
        drops are the network's drops of their node voltages, else from the drops
        (:meth:`gradient`); the two agree to rounding.
        """
        if _derived_from(high, network) and _derived_from(low, network):
            return self.gradient_from_voltages(
                network, high.node_voltages, low.node_voltages, sign_span
            )
        return self.gradient(network.device_weights, high.drops, low.drops, sign_span)

    def gradient(
        self,
        weights: np.ndarray,
        drops_high: np.ndarray,
        drops_low: np.ndarray,
        sign_span: float,
    ) -> np.ndarray:
        """Batch-mean ``dC/dg`` from the drops of two phases (the higher nudge first).

        Parameters
        ----------
        weights : ndarray, shape (n_devices,)
            Energy weight of every device (``Network.device_weights``).
        drops_high, drops_low : ndarray, shape (B, n_devices)
            Voltage across every device in the two phases (V).
        sign_span : float
            The difference of the two phases' nudge signs (2 for centered).

        Returns
        -------
        ndarray, shape (n_devices,)
            ``dC/dg`` (dimensionless, ``g = G / g_ref``).
        """
        diff = np.mean(drops_high**2 - drops_low**2, axis=0)
        return weights * diff / (2.0 * sign_span * self.beta)

    def gradient_from_voltages(
        self,
        network: Network,
        voltages_high: np.ndarray,
        voltages_low: np.ndarray,
        sign_span: float,
    ) -> np.ndarray:
        """Batch-mean ``dC/dg`` from the node voltages of two phases, tile by tile.

        The same quantity as :meth:`gradient` of ``network.drops`` of both (module Notes),
        with one ``(rows, 2B + 2) @ (2B + 2, cols)`` product per tile instead of
        ``2 x B x n_devices`` drops.

        Parameters
        ----------
        network : Network
        voltages_high, voltages_low : ndarray, shape (B, n_nodes)
            Node voltages of the two phases (V), the higher nudge first.
        sign_span : float
            The difference of the two phases' nudge signs (2 for centered).

        Returns
        -------
        ndarray, shape (n_devices,)
            ``dC/dg`` (dimensionless, ``g = G / g_ref``).
        """
        v_high = np.asarray(voltages_high, dtype=float)
        v_low = np.asarray(voltages_low, dtype=float)
        if v_high.ndim != 2 or v_high.shape != v_low.shape or v_high.shape[1] != network.n_nodes:
            raise ConfigError(
                f"node voltages must both have shape (batch, {network.n_nodes}), got "
                f"{v_high.shape} and {v_low.shape}"
            )
        batch = len(v_high)
        out = np.empty(network.n_devices)
        for tile in network.tiles:
            # the row line of a row behind an amplifier sits at A times its node (drops())
            rows_high = tile.row_gain * v_high[:, tile.row_nodes]
            rows_low = tile.row_gain * v_low[:, tile.row_nodes]
            cols_high, cols_low = v_high[:, tile.col_nodes], v_low[:, tile.col_nodes]
            scale = tile.weight / (2.0 * sign_span * self.beta * batch)
            # left (2B + 2, rows) and right (2B + 2, cols): [D_r; S_r; rowterm; 1] and
            # scale * [-S_c; -D_c; 1; colterm], so that left.T @ right is the whole tile
            left = np.empty((2 * batch + 2, tile.shape[0]))
            right = np.empty((2 * batch + 2, tile.shape[1]))
            np.subtract(rows_high, rows_low, out=left[:batch])
            np.add(rows_high, rows_low, out=left[batch : 2 * batch])
            np.einsum("bi,bi->i", left[:batch], left[batch : 2 * batch], out=left[2 * batch])
            left[2 * batch + 1] = 1.0
            diff_cols, sum_cols = cols_high - cols_low, cols_high + cols_low
            np.multiply(sum_cols, -scale, out=right[:batch])
            np.multiply(diff_cols, -scale, out=right[batch : 2 * batch])
            right[2 * batch] = scale
            right[2 * batch + 1] = scale * np.einsum("bj,bj->j", diff_cols, sum_cols)
            block = out[tile.devices].reshape(tile.shape)
            np.matmul(left.T, right, out=block)
        return out


def _derived_from(measurement: Measurement, network: Network) -> bool:
    """Whether a measurement's drops are ``network.drops`` of its node voltages."""
    source = measurement.network
    return source is network or (source is not None and source.spec == network.spec)


def nudge_beta(network: Network, beta: float) -> float:
    """The energy-unit ``beta`` (relative to ``g_max``) of a dimensionless nudge ``beta``.

    A current ``I = beta_S e / w_out`` into the + node of a pair (and ``-I`` into the -
    node) moves ``o = V+ - V-`` by ``2 I / G_out`` while the driving lines hold, so the
    nudge moves the output ``beta`` of the way to its target when
    ``beta_S = beta * w_out * G_out / 2`` (docs/learning.md).
    """
    return beta * network.output_weight * network.output_conductance / (2 * network.g_bounds[1])


def nudge_current_bound(network: Network, beta: float, max_error: float) -> float:
    """The largest nudge current (A) a dimensionless ``beta`` asks for on ``network`` when
    errors are clipped at ``max_error`` volts: ``beta * G_out * max_error / 2``."""
    return beta * network.output_conductance * max_error / 2
