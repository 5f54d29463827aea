"""Equilibrium Propagation: phases, loss, nudge currents and gradients from measured drops.

EqProp is a gradient estimator that sees the bench as a black box which settles: it asks for a
free phase and one or two nudged phases and turns the voltage drops across each device into
the gradient of the loss with respect to that device's conductance.

Notes
-----
The circuit minimises the energy ``E = sum_d w_d G_d dV_d^2 / 2 + ...`` (weights ``w_d`` from
:class:`hil.network.Network`). Injecting a current ``I = beta_S (y - o) / w_out`` into the +
node of every output pair (and ``-I`` into the - node) minimises ``F = E + beta_S C`` to first
order, with ``C = sum_k (o_k - y_k)^2 / 2`` and ``beta_S = beta * g_ref`` (siemens). Then::

    dC/dG_d = w_d (dV_d(+beta)^2 - dV_d(-beta)^2) / (4 beta_S)      (centered)
    dC/dG_d = w_d (dV_d(+beta)^2 - dV_d(0)^2) / (2 beta_S)          (positive)
    dC/dG_d = w_d (dV_d(0)^2 - dV_d(-beta)^2) / (2 beta_S)          (negative)

The currents are computed once from the free-phase outputs, as an SMU sourcing a fixed
current would apply them. Gradients are returned with respect to ``g = G / g_ref``
(dimensionless), so that learning rates do not depend on the conductance scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.bench import Bench, Measurement
from hil.errors import ConfigError
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
        Nudge strength, relative to ``g_ref`` (the physical nudge conductance is
        ``beta * g_ref`` siemens).
    variant : ``"centered"``, ``"positive"`` or ``"negative"``
    target_amplitude : float
        The target ``y`` is this many volts on the correct class's pair, 0 V on the others.
    g_ref : float, optional
        Reference conductance (S); the network's ``g_max`` by default.
    """

    def __init__(
        self,
        beta: float,
        variant: Variant = "centered",
        target_amplitude: float = 1.0,
        g_ref: float | None = None,
    ) -> None:
        if beta <= 0:
            raise ConfigError(f"beta must be > 0, got {beta}")
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.beta = beta
        self.variant = variant
        self.target_amplitude = target_amplitude
        self.g_ref = g_ref

    def targets(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """One-hot targets (B, classes) in volts."""
        y = np.zeros((len(labels), n_classes))
        y[np.arange(len(labels)), labels] = self.target_amplitude
        return y

    @staticmethod
    def loss(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Squared error ``sum_k (o_k - y_k)^2 / 2`` per sample (V^2), shape (B,)."""
        return 0.5 * np.sum((outputs - targets) ** 2, axis=1)

    def nudge_currents(
        self, bench: Bench, free_outputs: np.ndarray, targets: np.ndarray, sign: float
    ) -> np.ndarray:
        """Currents (B, 2*classes) that nudge the outputs towards the targets (A)."""
        net = bench.network
        beta_s = sign * self.beta * self._g_ref(bench)
        return net.pair_currents(beta_s * (targets - free_outputs) / net.output_weight)

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
        net = bench.network
        free = bench.settle(inputs)
        y = self.targets(labels, net.n_classes)
        signs = {"centered": (1.0, -1.0), "positive": (1.0, 0.0), "negative": (0.0, -1.0)}
        plus, minus = signs[self.variant]
        drops = {0.0: free.drops}
        for sign in (plus, minus):
            if sign not in drops:
                nudges = self.nudge_currents(bench, free.outputs, y, sign)
                drops[sign] = bench.settle(inputs, nudges).drops
        gradient = self.gradient(net.device_weights, drops[plus], drops[minus], plus - minus)
        return EqPropResult(gradient, free, self.loss(free.outputs, y))

    def gradient(
        self,
        weights: np.ndarray,
        drops_high: np.ndarray,
        drops_low: np.ndarray,
        sign_span: float,
    ) -> np.ndarray:
        """Batch-mean ``dC/dg`` from the drops of two phases (the higher nudge first).

        ``sign_span`` is the difference of the two phases' nudge signs (2 for centered).
        """
        diff = np.mean(drops_high**2 - drops_low**2, axis=0)
        return weights * diff / (2.0 * sign_span * self.beta)
