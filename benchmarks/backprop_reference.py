"""The backprop reference of ``benchmarks/train.py``: a same-size MLP trained by plain SGD.

A software network with the resistive network's layer sizes (784 pixels -> 100 hidden ->
10 outputs for ``kendall-fashion``), trained on the same train/test split, with the same
batch size, epochs and per-epoch learning-rate decay as the EqProp run, so that
``benchmarks/train.py`` can report both test errors from one run.

Choices (fixed once, not tuned per run):

- inputs: the pixels in [0, 1] as the dataset gives them (784 for Fashion-MNIST). The
  circuit enters each pixel twice (``+g x`` and ``-g x``) only because conductances are
  positive; a signed weight does the same (``W [x; -x] = (W+ - W-) x``), so the MLP sees
  each pixel once;
- hidden units: ReLU. ``hardtanh`` (``clip(a, -1, 1)``, the software analogue of the diode
  clamp) is an option, not the default: with it, squared-error SGD at batch 4 diverged above
  a learning rate of 0.02 and learned slower below it (docs/benchmarks.md);
- outputs: linear, one per class, against one-hot targets (1 on the label, 0 elsewhere)
  with the squared error ``sum_k (o_k - y_k)^2 / 2`` that EqProp descends
  (``cross_entropy``, softmax cross-entropy, as an option);
- plain SGD on the batch mean, learning rate :data:`LEARNING_RATE` (0.02, chosen once from
  0.005-0.3 on 10,000 images held out of the 60,000 training images, docs/benchmarks.md)
  times the EqProp config's ``learning_rate_decay`` per epoch; Glorot-uniform weights and
  zero biases drawn from ``numpy.random.default_rng([seed, 1])``, batches ordered by
  ``default_rng([seed, 2])``;
- BLAS at one thread around the small products (:func:`hil.numerics.blas_threads`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hil.eqprop import EqPropResult
from hil.network import Network
from hil.numerics import blas_threads

Activation = Literal["hardtanh", "relu"]
Loss = Literal["squared", "cross_entropy"]

#: SGD step of the MLP (per batch mean), before the per-epoch decay.
LEARNING_RATE = 0.02


@dataclass
class MLP:
    """A one-hidden-layer perceptron: ``o = W2 f(W1 x + b1) + b2``.

    Attributes
    ----------
    w1 : ndarray, shape (inputs, hidden)
    b1 : ndarray, shape (hidden,)
    w2 : ndarray, shape (hidden, outputs)
    b2 : ndarray, shape (outputs,)
    activation : ``"hardtanh"`` or ``"relu"``
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    activation: Activation = "relu"

    @classmethod
    def glorot(
        cls, sizes: tuple[int, int, int], rng: np.random.Generator, activation: Activation
    ) -> MLP:
        """Glorot-uniform weights, zero biases."""
        n_in, n_hidden, n_out = sizes

        def uniform(fan_in: int, fan_out: int) -> np.ndarray:
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-bound, bound, (fan_in, fan_out))

        return cls(
            uniform(n_in, n_hidden),
            np.zeros(n_hidden),
            uniform(n_hidden, n_out),
            np.zeros(n_out),
            activation,
        )

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pre-activations (B, hidden) and outputs (B, outputs)."""
        a = x @ self.w1 + self.b1
        h = _activate(a, self.activation)
        return a, h @ self.w2 + self.b2

    def predict(self, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Predicted classes (n,)."""
        return np.concatenate(
            [self.forward(x[i : i + batch])[1].argmax(axis=1) for i in range(0, len(x), batch)]
        )

    def step(self, x: np.ndarray, labels: np.ndarray, lr: float, loss: Loss) -> float:
        """One SGD step on a batch; returns the batch's summed loss before the step."""
        a, o = self.forward(x)
        batch = len(labels)
        if loss == "squared":
            y = np.zeros_like(o)
            y[np.arange(batch), labels] = 1.0
            d_o = o - y
            value = 0.5 * float(np.sum(d_o**2))
        else:
            z = o - o.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            value = -float(np.sum(np.log(p[np.arange(batch), labels] + 1e-300)))
            d_o = p
            d_o[np.arange(batch), labels] -= 1.0
        d_o /= batch  # the batch mean's gradient
        h = _activate(a, self.activation)
        d_h = d_o @ self.w2.T
        if self.activation == "hardtanh":
            d_h *= np.abs(a) < 1.0
        else:
            d_h *= a > 0.0
        self.w2 -= lr * (h.T @ d_o)
        self.b2 -= lr * d_o.sum(axis=0)
        self.w1 -= lr * (x.T @ d_h)
        self.b1 -= lr * d_h.sum(axis=0)
        return value


def _activate(a: np.ndarray, activation: Activation) -> np.ndarray:
    if activation == "hardtanh":
        return np.clip(a, -1.0, 1.0)
    return np.maximum(a, 0.0)


@dataclass
class BackpropResult:
    """What :func:`train_mlp` returns (every epoch's errors, the time)."""

    test_error: float
    train_error: float
    seconds: float
    epochs: int
    test_errors: list[float] = field(default_factory=list)
    train_errors: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "test_error": round(self.test_error, 4),
            "train_error": round(self.train_error, 4),
            "seconds": round(self.seconds, 2),
            "epochs": self.epochs,
            "test_errors": [round(e, 4) for e in self.test_errors],
            "train_errors": [round(e, 4) for e in self.train_errors],
        }


def train_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    hidden: int,
    n_classes: int,
    epochs: int,
    batch_size: int,
    seed: int,
    learning_rate: float = LEARNING_RATE,
    learning_rate_decay: float = 1.0,
    activation: Activation = "relu",
    loss: Loss = "squared",
    threads: int | None = 1,
) -> BackpropResult:
    """Train the reference MLP by SGD and measure its errors after every epoch.

    Parameters
    ----------
    x_train, x_test : ndarray, shape (n, features)
        Features (the dataset's, in [0, 1]).
    y_train, y_test : ndarray of int, shape (n,)
    hidden, n_classes : int
        Layer sizes (the resistive network's hidden layer and classes).
    epochs, batch_size, seed : int
    learning_rate : float
        SGD step of the first epoch; multiplied by ``learning_rate_decay`` every epoch.
    threads : int or None
        BLAS threads during training (None: as the process has it).
    """
    start = time.perf_counter()
    x_train = np.ascontiguousarray(x_train, dtype=float)
    x_test = np.ascontiguousarray(x_test, dtype=float)
    model = MLP.glorot(
        (x_train.shape[1], hidden, n_classes), np.random.default_rng([seed, 1]), activation
    )
    order_rng = np.random.default_rng([seed, 2])
    result = BackpropResult(1.0, 1.0, 0.0, epochs)
    with blas_threads(threads):
        for epoch in range(epochs):
            lr = learning_rate * learning_rate_decay**epoch
            order = order_rng.permutation(len(y_train))
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                total += model.step(x_train[idx], y_train[idx], lr, loss)
            result.train_loss.append(total / len(order))
            result.test_errors.append(float(np.mean(model.predict(x_test) != y_test)))
            result.train_errors.append(float(np.mean(model.predict(x_train) != y_train)))
    result.test_error = result.test_errors[-1]
    result.train_error = result.train_errors[-1]
    result.seconds = time.perf_counter() - start
    return result


class CircuitBackprop:
    """Backprop through the resistive network itself: the exact gradient of EqProp's cost at
    the circuit's free equilibrium, by implicit differentiation, in EqProp's place.

    A drop-in for the trainer's estimator (same :meth:`estimate`, and every other attribute
    is the wrapped estimator's: targets, loss, cost, ``max_error``), so that the same bench,
    programmer, batches and learning-rate schedule train the same network with the gradient
    EqProp estimates (its ``beta -> 0`` limit) instead of the estimate.

    Notes
    -----
    The free equilibrium minimises the energy ``E`` (hil.network) over the free nodes (hidden
    and output) with the sources held: ``dE/dV = 0``. With ``H`` the Hessian of ``E`` over the
    free nodes that can move (a hidden node held by an ideal diode at ``v_low``/``v_high``
    cannot; a Shockley diode adds its layer-weighted small-signal conductance to ``H``) and
    ``u = H^-1 dC/dV`` (``dC/dV`` is ``+e`` on the + node of a pair and ``-e`` on the - node,
    ``e = o - y`` clipped to ``max_error`` as the nudge clips it), the cost's gradient is::

        dC/dG_d = -w_d dV_d du_d,    dV_d = a V_row - V_col,  du_d = a u_row - u_col

    (``u = 0`` on the sources and the held nodes), returned as ``dC/dg = g_ref dC/dG`` like
    :class:`hil.eqprop.EqProp`. ``H`` is built from ``conductances()`` (the programmer's
    estimate by default: what the trainer knows without reading the devices) and the
    measured free-phase voltages; one free settle a step instead of three.
    """

    def __init__(self, estimator: Any, conductances: Callable[[], np.ndarray]) -> None:
        self.estimator = estimator
        self.conductances = conductances

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["estimator"], name)

    def estimate(self, bench: Any, inputs: np.ndarray, labels: np.ndarray) -> EqPropResult:
        """One free settle and the exact gradient of every conductance (``dC/dg``)."""
        with blas_threads(getattr(self.estimator, "blas_threads", 1)):
            net = bench.network
            free = bench.settle(inputs)
            y = self.estimator.targets(labels, net.n_classes)
            gradient = self.gradient(net, self.conductances(), free.node_voltages, y)
        return EqPropResult(gradient, free, self.estimator.loss(free.outputs, y))

    def gradient(
        self, network: Network, conductances: np.ndarray, voltages: np.ndarray, targets: np.ndarray
    ) -> np.ndarray:
        """Batch-mean ``dC/dg`` (n_devices,) at the free equilibrium ``voltages`` (B, n_nodes).

        ``conductances`` in siemens (n_devices,), ``targets`` in volts (B, classes).
        """
        net, v = network, np.asarray(voltages, dtype=float)
        batch = len(v)
        g_ref = getattr(self.estimator, "g_ref", None) or net.g_bounds[1]
        error = net.outputs(v) - targets
        max_error = getattr(self.estimator, "max_error", None)
        if max_error is not None:
            error = np.clip(error, -max_error, max_error)
        free_nodes = np.concatenate([layer.nodes for layer in net.layers])
        position = np.full(net.n_nodes, -1)
        position[free_nodes] = np.arange(len(free_nodes))
        hessian = np.broadcast_to(
            _free_hessian(net, conductances, position), (batch, len(free_nodes), len(free_nodes))
        ).copy()
        rhs = np.zeros((batch, len(free_nodes)))
        rhs[:, position[net.output_nodes]] = net.pair_currents(error)  # +e, -e on each pair
        diode = net.spec.diode
        for layer in net.layers:
            if layer.kind != "hidden":
                continue
            pos, vl = position[layer.nodes], v[:, layer.nodes]
            if diode.model == "ideal":
                held = (np.abs(vl - diode.v_high) <= 1e-9) | (np.abs(vl - diode.v_low) <= 1e-9)
                b_idx, n_idx = np.nonzero(held)
                p = pos[n_idx]
                hessian[b_idx, p, :] = 0.0
                hessian[b_idx, :, p] = 0.0
                hessian[b_idx, p, p] = 1.0
                rhs[b_idx, p] = 0.0
            else:
                from simulators.circuit import clamp_diodes

                conductance = clamp_diodes(vl, diode)[2]
                hessian[:, pos, pos] += layer.weight * conductance
        u_free = np.linalg.solve(hessian, rhs[..., None])[..., 0]
        u = np.zeros_like(v)
        u[:, free_nodes] = u_free
        out = np.empty(net.n_devices)
        for tile in net.tiles:
            rows_v = tile.row_gain * v[:, tile.row_nodes]
            rows_u = tile.row_gain * u[:, tile.row_nodes]
            cols_v, cols_u = v[:, tile.col_nodes], u[:, tile.col_nodes]
            # sum over the batch of (r_v - c_v)(r_u - c_u), one (rows, 2B) @ (2B, cols) product
            block = np.concatenate([rows_v, rows_u]).T @ np.concatenate([cols_u, cols_v])
            np.subtract(np.einsum("bi,bi->i", rows_v, rows_u)[:, None], block, out=block)
            block += np.einsum("bj,bj->j", cols_v, cols_u)[None, :]
            out[tile.devices] = (-g_ref * tile.weight / batch) * block.ravel()
        return out


def _free_hessian(network: Network, conductances: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Hessian of the energy over the free nodes (nodes ordered by ``position``), in S."""
    n = int(position.max()) + 1
    hessian = np.zeros((n, n))
    for tile in network.tiles:
        g = network.tile_view(conductances, tile.index) * tile.weight
        cols = position[tile.col_nodes]
        hessian[cols, cols] += g.sum(axis=0)
        free_rows = position[tile.row_nodes] >= 0
        if free_rows.any():
            rows, gain = position[tile.row_nodes[free_rows]], tile.row_gain[free_rows]
            g_free = g[free_rows]
            hessian[rows, rows] += gain**2 * g_free.sum(axis=1)
            coupling = gain[:, None] * g_free
            hessian[np.ix_(rows, cols)] -= coupling
            hessian[np.ix_(cols, rows)] -= coupling.T
    return hessian
