"""The fast paths of a training step give the answers of the straightforward ones.

EqProp's gradient from node voltages (one product per tile) against the drops of every
device; Measurement's lazy drops; PulseRequest's O(n) repeat check; the branch-free select;
the BLAS thread limit; and a short training whose every pulse is the same either way.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from hil import numerics
from hil.bench import Measurement, PulseRequest, SafetyLimits
from hil.eqprop import EqProp
from hil.errors import ConfigError, SafetyError
from hil.network import Network, NetworkSpec
from hil.numerics import blas_threads, select
from simulators.bench import SimulatedBench
from tests.networks import small_spec

EPS = np.finfo(float).eps


def phases(bench: SimulatedBench, eqprop: EqProp, seed: int, batch: int = 5):
    """A free and two nudged phases on random inputs and labels."""
    net = bench.network
    rng = np.random.default_rng(seed)
    inputs = net.encode_inputs(rng.uniform(0, 1, (batch, net.n_inputs)))
    y = eqprop.targets(rng.integers(0, net.n_classes, batch), net.n_classes)
    free = bench.settle(inputs)
    high = bench.settle(inputs, eqprop.nudge_currents(bench, free.outputs, y, 1.0))
    low = bench.settle(inputs, eqprop.nudge_currents(bench, free.outputs, y, -1.0))
    return free, high, low


def exact_gradient(net: Network, eqprop: EqProp, high, low, span: float) -> np.ndarray:
    """The drop-based formula in extended precision (the reference for both forms)."""
    wide = np.longdouble
    gain, rows, cols = net.device_row_gain.astype(wide), net.device_rows, net.device_cols
    v_high, v_low = high.node_voltages.astype(wide), low.node_voltages.astype(wide)
    d_high = gain * v_high[:, rows] - v_high[:, cols]
    d_low = gain * v_low[:, rows] - v_low[:, cols]
    diff = np.mean(d_high * d_high - d_low * d_low, axis=0)
    return net.device_weights.astype(wide) * diff / wide(2 * span * eqprop.beta)


NETWORKS = {
    "small": lambda amp: small_spec("ideal", amp),
    "small-shockley": lambda amp: small_spec("shockley", amp),
    "two-hidden": lambda amp: NetworkSpec(
        inputs=30, hidden=[20, 7], outputs=4, input_gain=5.0, amplifier_gain=amp,
        diode={"v_low": -0.3, "v_high": 0.3},
    ),
    "wide": lambda amp: NetworkSpec(
        inputs=196, hidden=[50], outputs=10, input_gain=10.0, amplifier_gain=amp,
        diode={"v_low": -0.3, "v_high": 0.3},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("amplifier", [None, 4.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_from_voltages_equals_the_drop_based_one(name, amplifier, seed):
    net = Network(NETWORKS[name](amplifier))
    # the default training nudge (beta 0.5); the amplified outputs need more than 1 mA
    bench = SimulatedBench(net, limits=SafetyLimits(max_nudge_current=0.1), seed=seed + 7)
    eqprop = EqProp(beta=0.5, target_amplitude=0.5)
    free, high, low = phases(bench, eqprop, seed)
    for a, b, span in ((high, low, 2.0), (high, free, 1.0), (free, low, 1.0)):
        slow = eqprop.gradient(net.device_weights, a.drops, b.drops, span)
        fast = eqprop.gradient_from_voltages(net, a.node_voltages, b.node_voltages, span)
        scale = np.abs(slow).max()
        # ~1e-12 relative to the largest: the drop-based form itself rounds each dV^2
        # (10 V inputs: dV^2 ~ 100 V^2 against gradients of ~1e-2), which is all of the
        # difference (seen: up to 1.8e-12 on "wide", 3e-14 on the others)
        np.testing.assert_allclose(fast, slow, rtol=0, atol=5e-12 * scale)
        # and per device within that rounding: a few eps of (dV_high^2 + dV_low^2) (seen: up
        # to 8 eps with OpenBLAS's Haswell kernels, 11 with its SkylakeX ones)
        rounding = 16 * EPS * net.device_weights * np.mean(a.drops**2 + b.drops**2, axis=0)
        assert np.all(np.abs(fast - slow) <= rounding / (2 * span * eqprop.beta) + 1e-300)
        # the product form has no such cancellation: closer to the exact value
        exact = exact_gradient(net, eqprop, a, b, span)
        assert float(np.abs(fast - exact).max()) <= 1e-14 * scale


def test_estimate_takes_the_voltage_path_and_measured_drops_the_drop_path():
    net = Network(small_spec("ideal", 4.0))
    bench = SimulatedBench(net, seed=2)
    eqprop = EqProp(beta=0.3)
    _, high, low = phases(bench, eqprop, 3)
    assert high.network is net  # derived drops: the voltage path applies
    given = [
        Measurement(m.node_voltages, m.drops + 1e-3, m.outputs, m.compliance, m.overflow)
        for m in (high, low)
    ]
    assert given[0].network is None
    # drops that were given (measured some other way) are used as they are
    np.testing.assert_array_equal(
        eqprop.phase_gradient(net, *given, 2.0),
        eqprop.gradient(net.device_weights, given[0].drops, given[1].drops, 2.0),
    )
    np.testing.assert_array_equal(
        eqprop.phase_gradient(net, high, low, 2.0),
        eqprop.gradient_from_voltages(net, high.node_voltages, low.node_voltages, 2.0),
    )


def test_gradient_from_voltages_refuses_mismatched_shapes():
    net = Network(small_spec())
    v = np.zeros((2, net.n_nodes))
    with pytest.raises(ConfigError, match="shape"):
        EqProp(0.5).gradient_from_voltages(net, v, v[:1], 2.0)
    with pytest.raises(ConfigError, match="shape"):
        EqProp(0.5).gradient_from_voltages(net, v[:, 1:], v[:, 1:], 2.0)


def test_measurement_drops_are_derived_once_on_first_use():
    net = Network(small_spec("ideal", 4.0))
    v = np.random.default_rng(0).normal(size=(3, net.n_nodes))
    m = Measurement.from_voltages(net, v)
    assert m._drops is None  # nothing computed until asked
    want = net.device_row_gain * v[:, net.device_rows] - v[:, net.device_cols]
    np.testing.assert_array_equal(m.drops, want)
    assert m.drops is m.drops  # cached
    np.testing.assert_array_equal(m.outputs, net.outputs(v))
    with pytest.raises(ValueError, match="drops"):
        Measurement(v, None, m.outputs, m.compliance, m.overflow)
    with pytest.raises(AttributeError):
        m.node_voltages = v  # type: ignore[misc]  # still frozen


def test_network_drops_of_one_sample_and_a_batch():
    net = Network(NetworkSpec(inputs=5, hidden=[4, 3], outputs=2, amplifier_gain=2.0))
    v = np.random.default_rng(1).normal(size=(6, net.n_nodes))
    want = net.device_row_gain * v[..., net.device_rows] - v[..., net.device_cols]
    np.testing.assert_array_equal(net.drops(v), want)
    np.testing.assert_array_equal(net.drops(v[2]), want[2])


@pytest.mark.parametrize(
    "ids",
    [
        [],
        [7],
        [3, 3],
        [0, 5, 2, 9],
        [0, 5, 2, 5],
        [-(2**63), 2**63 - 1],
        [-(2**63), -(2**63)],
        [2, 10**15, 2],
        [2, 10**15, 3],
    ],
)
def test_repeated_device_ids_are_refused_as_np_unique_says(ids):
    array = np.asarray(ids, dtype=np.int64)
    repeats = len(np.unique(array)) != len(array)
    counts = np.ones(len(array), dtype=np.int64)
    if repeats:
        with pytest.raises(SafetyError, match="repeat"):
            PulseRequest(array, counts, 1.0, 1e-6)
    else:
        PulseRequest(array, counts, 1.0, 1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8, np.uint64, np.int64])
def test_repeat_check_of_every_integer_type(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        low = int(rng.integers(info.min, info.max - 60, endpoint=True, dtype=dtype))
        values = np.array([low + int(k) for k in rng.integers(0, 60, n)], dtype=dtype)
        repeats = len(np.unique(values)) != n
        assert PulseRequest._repeats(values) == repeats
    extremes = np.array([info.min, info.max, info.min], dtype=dtype)
    assert PulseRequest._repeats(extremes) and not PulseRequest._repeats(extremes[:2])


def test_select_is_np_where_bit_for_bit():
    rng = np.random.default_rng(0)
    a = rng.normal(size=1000)
    b = rng.normal(size=1000)
    a[:4] = [np.nan, np.inf, -0.0, 0.0]
    b[:4] = [-np.inf, np.nan, 0.0, -0.0]
    cond = rng.random(1000) < 0.5
    cond[:4] = [True, False, True, False]
    for x, y in ((a, b), (2.5, b), (a, -3.0), (1.0, 2.0)):
        got, want = select(cond, x, y), np.where(cond, x, y)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))


def test_blas_threads_limit_nests_and_restores():
    # the libraries loaded when the limit was first used: numpy's own BLAS among them (one
    # loaded later, e.g. scipy's, is not limited; the hot paths use numpy's)
    known = {lib.filepath for lib in numerics._controller().lib_controllers}
    if not known:
        pytest.skip("no BLAS that threadpoolctl can control is loaded")

    def threads() -> list[int]:
        return [
            i["num_threads"]
            for i in threadpool_info()
            if i["user_api"] == "blas" and i["filepath"] in known
        ]

    before = threads()
    with blas_threads(1):
        assert set(threads()) == {1}
        with blas_threads(1):
            assert set(threads()) == {1}
        assert set(threads()) == {1}  # the inner block leaves the outer one's limit
    assert threads() == before
    with blas_threads(None):
        assert threads() == before


def test_short_training_is_the_same_with_the_drop_based_gradient(monkeypatch):
    """Every pulse and conductance of a short run is the same whichever form computes the
    gradient (so the fast path changes no answer of a training)."""

    def train() -> tuple[np.ndarray, np.ndarray]:
        net = Network(small_spec("ideal", 4.0, g_init=0.5))
        bench = SimulatedBench(net, seed=4)
        from hil.programming import OpenLoopProgrammer

        programmer = OpenLoopProgrammer(bench, np.random.default_rng(5))
        eqprop = EqProp(beta=0.1, target_amplitude=0.5)
        rng = np.random.default_rng(6)
        for _ in range(30):
            x = net.encode_inputs(rng.uniform(0, 1, (4, net.n_inputs)))
            result = eqprop.estimate(bench, x, rng.integers(0, net.n_classes, 4))
            programmer.apply(-20.0 * net.g_bounds[1] * result.gradient)
        return bench.pulse_counts, bench.devices.conductances

    fast = train()
    monkeypatch.setattr(
        EqProp,
        "phase_gradient",
        lambda self, net, high, low, span: self.gradient(
            net.device_weights, high.drops, low.drops, span
        ),
    )
    slow = train()
    assert fast[0].sum() > 0
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
