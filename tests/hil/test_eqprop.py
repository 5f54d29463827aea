"""EqProp gradients from measured drops agree with exact gradients of the loss."""

import numpy as np
import pytest

from hil.eqprop import EqProp
from hil.errors import ConfigError
from hil.network import Network
from simulators.bench import SimulatedBench
from tests.networks import small_spec


def finite_difference_gradient(bench, eqprop, inputs, labels):
    """dC/dg by central differences of re-solved free equilibria (independent of EqProp)."""
    net = bench.network
    targets = eqprop.targets(labels, net.n_classes)
    g = bench.circuit.conductances
    g_ref = net.g_bounds[1]
    h = 1e-4 * g_ref
    grad = np.zeros(net.n_devices)

    def loss():
        bench.engine.update_conductances()
        out = bench.engine.solve(bench.circuit.source_voltages(inputs)).layers[-1]
        return eqprop.loss(out[:, 0::2] - out[:, 1::2], targets).mean()

    for d in range(net.n_devices):
        g0 = g[d]
        g[d] = g0 + h
        up = loss()
        g[d] = g0 - h
        down = loss()
        g[d] = g0
        grad[d] = (up - down) / (2 * h) * g_ref
    bench.engine.update_conductances()
    return grad


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("model", ["ideal", "shockley"])
@pytest.mark.parametrize("amplifier", [None, 4.0])
def test_centered_eqprop_matches_exact_gradient(model, amplifier):
    net = Network(small_spec(model, amplifier))
    bench = SimulatedBench(net, seed=3)
    rng = np.random.default_rng(0)
    inputs = net.encode_inputs(rng.uniform(0, 1, (4, net.n_inputs)))
    labels = rng.integers(0, net.n_classes, 4)
    eqprop = EqProp(beta=1e-3, variant="centered", target_amplitude=0.3)
    estimate = eqprop.estimate(bench, inputs, labels).gradient
    exact = finite_difference_gradient(bench, eqprop, inputs, labels)
    assert cosine(estimate, exact) >= 0.999
    np.testing.assert_allclose(np.linalg.norm(estimate), np.linalg.norm(exact), rtol=1e-3)


@pytest.mark.parametrize("variant", ["positive", "negative"])
def test_one_sided_variants_are_biased_but_aligned(variant):
    net = Network(small_spec("shockley"))
    bench = SimulatedBench(net, seed=5)
    rng = np.random.default_rng(1)
    inputs = net.encode_inputs(rng.uniform(0, 1, (4, net.n_inputs)))
    labels = rng.integers(0, net.n_classes, 4)
    exact = finite_difference_gradient(bench, EqProp(1e-3), inputs, labels)
    small = EqProp(beta=1e-3, variant=variant).estimate(bench, inputs, labels).gradient
    large = EqProp(beta=2.0, variant=variant).estimate(bench, inputs, labels).gradient
    centered = EqProp(beta=2.0).estimate(bench, inputs, labels).gradient
    assert cosine(small, exact) >= 0.999
    # at a large nudge the one-sided estimates drift further than the centered one
    assert np.linalg.norm(large - exact) > np.linalg.norm(centered - exact)


def test_gradient_uses_drops_only():
    """The rule is local: each device's gradient depends only on its own two drops."""
    eqprop = EqProp(beta=0.5)
    weights = np.array([1.0, 1.0, 0.25])
    high = np.array([[0.3, -0.2, 0.1]])
    low = np.array([[0.1, -0.2, 0.3]])
    grad = eqprop.gradient(weights, high, low, 2.0)
    np.testing.assert_allclose(grad, [(0.09 - 0.01) / 2, 0.0, 0.25 * (0.01 - 0.09) / 2])


def test_bad_parameters():
    with pytest.raises(ConfigError, match="beta"):
        EqProp(beta=0.0)
    with pytest.raises(ConfigError, match="variant"):
        EqProp(beta=0.1, variant="sideways")
