"""The native solver obeys Kirchhoff's current law and reports what it cannot solve."""

import numpy as np
import pytest

from hil.errors import ConvergenceError
from hil.network import Network, NetworkSpec
from simulators.circuit import Circuit
from simulators.native import NativeSolver


def random_network(seed: int, model: str, amplifier: float | None):
    rng = np.random.default_rng(seed)
    spec = NetworkSpec(
        inputs=int(rng.integers(3, 12)),
        hidden=[int(h) for h in rng.integers(2, 10, size=rng.integers(1, 4))],
        outputs=int(rng.integers(1, 4)),
        input_gain=float(rng.uniform(10, 20)),
        amplifier_gain=amplifier,
        diode={
            "model": model,
            "v_low": -float(rng.uniform(0.05, 0.4)),
            "v_high": float(rng.uniform(0.05, 0.4)),
        },
    )
    net = Network(spec)
    return net, Circuit(net, net.initial_conductances(rng)), rng


def settle(net, circuit, rng, batch=8, nudge=1e-6):
    x = rng.uniform(-1, 1, (batch, net.n_inputs))
    sources = circuit.source_voltages(net.encode_inputs(x))
    nudges = rng.normal(0, nudge, (batch, net.n_output_nodes))
    solution = NativeSolver(circuit).solve(sources, nudges)
    return circuit.node_voltages(sources, solution.layers), nudges


@pytest.mark.parametrize("amplifier", [None, 3.0])
@pytest.mark.parametrize("seed", range(6))
def test_kcl_shockley(seed, amplifier):
    net, circuit, rng = random_network(seed, "shockley", amplifier)
    volts, nudges = settle(net, circuit, rng)
    residual = circuit.kcl_residual(volts, nudges)
    assert np.abs(residual).max() < 1e-9
    # the diodes really conduct somewhere, so the test exercises the nonlinearity
    hidden = volts[:, net.hidden_nodes]
    d = net.spec.diode
    assert np.any((hidden > d.v_high + 0.2) | (hidden < d.v_low - 0.2))


@pytest.mark.parametrize("amplifier", [None, 3.0])
@pytest.mark.parametrize("seed", range(6))
def test_kcl_ideal_with_complementarity(seed, amplifier):
    net, circuit, rng = random_network(seed, "ideal", amplifier)
    volts, nudges = settle(net, circuit, rng)
    residual = circuit.kcl_residual(volts, nudges)  # excludes the ideal diodes' current
    free = volts[:, net.n_sources :]
    d = net.spec.diode
    is_hidden = np.isin(np.arange(net.n_sources, net.n_nodes), net.hidden_nodes)
    high = is_hidden & (free >= d.v_high)
    low = is_hidden & (free <= d.v_low)
    assert high.any() and low.any(), "the random case should clamp nodes both ways"
    assert np.all(free <= d.v_high + 1e-12) or not is_hidden.all()
    assert np.abs(residual[~(high | low)]).max() < 1e-9  # KCL where no diode conducts
    assert np.all(residual[high] <= 1e-9)  # upper diode can only sink current
    assert np.all(residual[low] >= -1e-9)  # lower diode can only source current
    assert np.all(free[:, is_hidden] <= d.v_high + 1e-12)
    assert np.all(free[:, is_hidden] >= d.v_low - 1e-12)


@pytest.mark.parametrize("model", ["ideal", "shockley"])
def test_warm_start_reaches_the_same_equilibrium(model):
    net, circuit, rng = random_network(7, model, 2.0)
    x = rng.uniform(-1, 1, (5, net.n_inputs))
    sources = circuit.source_voltages(net.encode_inputs(x))
    solver = NativeSolver(circuit)
    cold = solver.solve(sources)
    nudges = rng.normal(0, 1e-6, (5, net.n_output_nodes))
    warm = solver.solve(sources, nudges, initial=cold.layers)
    again = solver.solve(sources, nudges)
    for a, b in zip(warm.layers, again.layers, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)
    assert warm.iterations <= again.iterations


def test_batch_equals_one_by_one():
    net, circuit, rng = random_network(3, "shockley", None)
    x = rng.uniform(-1, 1, (4, net.n_inputs))
    sources = circuit.source_voltages(net.encode_inputs(x))
    solver = NativeSolver(circuit)
    batch = solver.solve(sources).layers
    for i in range(4):
        single = solver.solve(sources[i : i + 1]).layers
        for a, b in zip(batch, single, strict=True):
            np.testing.assert_allclose(a[i], b[0], rtol=0, atol=1e-11)


def test_non_convergence_names_the_sample():
    net, circuit, rng = random_network(2, "shockley", None)
    x = np.zeros((3, net.n_inputs))
    x[1] = 1.0
    sources = circuit.source_voltages(net.encode_inputs(x))
    solver = NativeSolver(circuit, max_iterations=1)
    with pytest.raises(ConvergenceError, match=r"sample\(s\) \[.*1.*\]"):
        solver.solve(sources)
