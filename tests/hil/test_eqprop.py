"""EqProp gradients from measured drops agree with exact gradients of the loss."""

import numpy as np
import pytest

from hil.eqprop import EqProp
from hil.errors import ConfigError
from hil.network import Network
from simulators.bench import SimulatedBench
from tests.networks import small_spec


def finite_difference_gradient(bench, eqprop, inputs, labels, cost=None):
    """dC/dg by central differences of re-solved free equilibria (independent of EqProp);
    C is the squared error ``eqprop.loss`` unless another ``cost(outputs, targets)``."""
    cost = cost or eqprop.loss
    net = bench.network
    targets = eqprop.targets(labels, net.n_classes)
    g = bench.circuit.conductances
    g_ref = net.g_bounds[1]
    h = 1e-4 * g_ref
    grad = np.zeros(net.n_devices)

    def loss():
        bench.engine.update_conductances()
        out = bench.engine.solve(bench.circuit.source_voltages(inputs)).layers[-1]
        return cost(out[:, 0::2] - out[:, 1::2], targets).mean()

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


def finite_difference_cost_gradient(bench, eqprop, inputs, labels):
    """dC/dg of the estimator's own cost (Huber with max_error) by central differences."""
    return finite_difference_gradient(bench, eqprop, inputs, labels, eqprop.cost)


@pytest.mark.parametrize("model", ["ideal", "shockley"])
@pytest.mark.parametrize("amplifier", [None, 4.0])
def test_dimensionless_beta_still_gives_the_exact_gradient(model, amplifier):
    """for_network only rescales the nudge: the estimate is still dC/dg, here of a Huber
    cost whose clip (max_error) some of the errors exceed."""
    net = Network(small_spec(model, amplifier, input_gain=6.0))
    bench = SimulatedBench(net, seed=3)
    rng = np.random.default_rng(0)
    inputs = net.encode_inputs(rng.uniform(0, 1, (4, net.n_inputs)))
    labels = rng.integers(0, net.n_classes, 4)
    eqprop = EqProp.for_network(net, 1e-3, target_amplitude=0.5, max_error=0.3)
    y = eqprop.targets(labels, net.n_classes)
    errors = np.abs(y - bench.settle(inputs).outputs)
    assert np.any(errors > 0.3) and np.any(errors < 0.3)  # both branches of the cost
    estimate = eqprop.estimate(bench, inputs, labels).gradient
    exact = finite_difference_cost_gradient(bench, eqprop, inputs, labels)
    assert cosine(estimate, exact) >= 0.999
    np.testing.assert_allclose(np.linalg.norm(estimate), np.linalg.norm(exact), rtol=2e-3)


def test_huber_cost_is_the_squared_error_within_the_clip():
    eqprop = EqProp(0.5, max_error=0.5)
    y = np.array([[0.5, 0.0, 0.0]])
    near = np.array([[0.3, 0.2, -0.1]])
    np.testing.assert_allclose(eqprop.cost(near, y), EqProp.loss(near, y))
    far = np.array([[0.5, 2.0, 0.0]])  # one error of 2 V: 0.5 * 2 - 0.5**2 / 2
    np.testing.assert_allclose(eqprop.cost(far, y), [0.875])
    assert EqProp(0.5).max_nudge_current(Network(small_spec())) == float("inf")


def test_for_network_refuses_a_bad_nudge():
    net = Network(small_spec())
    with pytest.raises(ConfigError, match="beta"):
        EqProp.for_network(net, 0.0)
    with pytest.raises(ConfigError, match="max_error"):
        EqProp.for_network(net, 0.5, max_error=-1.0)
