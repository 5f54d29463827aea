"""The compiled loops (hil.kernels, numba) give the numpy code's answers bit for bit.

Each test runs the same calls with the loops forced on and forced off, from the same seeds,
and compares every value: the open-loop plan, the constant-step pulses (ideal, asymmetric,
device-to-device spread, stuck devices), the half-select counting and the circuit's copy
of the conductances, and a short training run end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hil import kernels
from hil.bench import PulseCalibration, PulseRequest
from hil.errors import ConfigError, SafetyError
from hil.network import Network
from hil.programming import OpenLoopProgrammer, SignProgrammer, plan_open_loop
from simulators.bench import SimulatedBench, ideal_device
from simulators.devices import DeviceArray, Variability
from tests.networks import small_spec

pytest.importorskip("numba", reason="the compiled loops need numba (the [fast] extra)")

G_MIN, G_MAX = 1e-7, 1e-5


def both(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` with the compiled loops, then with numpy."""
    with kernels.forced(True):
        compiled = fn()
    with kernels.forced(False):
        reference = fn()
    return compiled, reference


@pytest.mark.parametrize("steps", [(1e-8, 1e-8), (1.3e-8, 0.7e-8)])
def test_compiled_plan_is_the_numpy_plan(steps):
    cal = PulseCalibration(*steps, 1.0, 1e-6)
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = 5000
        delta_g = rng.normal(0, 3e-8, n) * (rng.random(n) < 0.9)
        delta_g[:6] = [1e-3, -1e-3, 0.0, -0.0, 5e-9, 1e-300]  # capped twice, none, tiny
        g = rng.uniform(0.5 * G_MIN, 1.1 * G_MAX, n)  # some estimates outside the range
        g[:2] = 0.5 * (G_MIN + G_MAX)
        seed = int(rng.integers(1 << 30))

        def plan(delta_g=delta_g, g=g, seed=seed) -> tuple[Any, float, np.ndarray]:
            draws = np.random.default_rng(seed)
            target = np.full(g.size, np.nan)
            result = plan_open_loop(delta_g, g, (G_MIN, G_MAX), cal, 50, draws, target)
            return result, draws.random(), target  # the same draws used

        (fast, after_fast, target_fast), (slow, after_slow, target_slow) = both(plan)
        np.testing.assert_array_equal(target_fast, target_slow)
        np.testing.assert_array_equal(target_slow, np.clip(g + delta_g, G_MIN, G_MAX))
        np.testing.assert_array_equal(fast.request.device_ids, slow.request.device_ids)
        np.testing.assert_array_equal(fast.request.counts, slow.request.counts)
        assert fast.request.device_ids.dtype == slow.request.device_ids.dtype == np.int64
        assert fast.capped == slow.capped >= 2
        assert after_fast == after_slow


VARIANTS = {
    "ideal": {},
    "asymmetric": {"step_up": 1.3e-8},
    "spread": {"variability": Variability(step_d2d=0.1, updown_d2d=0.05, bounds_d2d=0.05)},
    "stuck": {"variability": Variability(stuck_on=0.02, stuck_off=0.02)},
    "endurance": {"endurance": 30},  # not compiled: the numpy loop either way
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_compiled_pulses_are_the_numpy_pulses(variant, order):
    model = ideal_device((G_MIN, G_MAX), n_states=200).replace(**VARIANTS[variant])

    def run() -> tuple[DeviceArray, list[Any]]:
        rng = np.random.default_rng(len(variant))
        array = DeviceArray(model, 4000, seed=1)
        outcomes = []
        for call in range(4):
            ids = np.sort(rng.choice(4000, 2500, replace=False))
            if order == "shuffled":
                rng.shuffle(ids)
            counts = rng.integers(-25, 26, ids.size)
            amplitude = 1.0 if call % 2 else rng.uniform(0.2, 1.4, ids.size)  # some gain 0
            outcomes.append(array.apply_pulses(ids, counts, amplitude, 1e-6))
        return array, outcomes

    (fast, fast_out), (slow, slow_out) = both(run)
    np.testing.assert_array_equal(fast.conductances, slow.conductances)
    np.testing.assert_array_equal(fast.pulse_count, slow.pulse_count)
    for a, b in zip(fast_out, slow_out, strict=True):
        for field in ("requested", "applied", "refused", "g_before", "g_after", "effective"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_compiled_pulses_beyond_16_bit_counts():
    model = ideal_device((G_MIN, G_MAX), n_states=10**6)

    def run() -> np.ndarray:
        array = DeviceArray(model, 10, seed=0)
        array.apply_pulses(np.arange(5), np.array([40_000, -3, 0, 1, 33_000]), 1.0, 1e-6)
        return array.conductances

    fast, slow = both(run)
    np.testing.assert_array_equal(fast, slow)


def test_compiled_pulses_from_outside_the_bounds_and_into_them():
    """The compiled chain clips once at the end from inside the bounds: devices that start
    outside (a restored state), reach a bound mid-chain, or have more pulses than its
    branch-free part get the numpy chain's bits all the same."""
    model = ideal_device((G_MIN, G_MAX), n_states=50).replace(
        variability=Variability(step_d2d=0.2, bounds_d2d=0.05)
    )
    n = 3000
    rng = np.random.default_rng(7)
    ids = np.arange(n)
    counts = rng.integers(-70, 71, n)
    counts[:8] = [1, -1, 8, -8, 9, -9, 60, -60]

    def run() -> tuple[np.ndarray, ...]:
        array = DeviceArray(model, n, seed=3)
        state = array.state_dict()
        g = state["g"]
        g[::5] = state["lo"][::5] * 0.9  # below the device's own bound
        g[1::5] = state["hi"][1::5] * 1.1  # above it
        g[2::5] = state["hi"][2::5]  # on a bound
        g[3::5] = state["lo"][3::5]
        array.load_state_dict(state)
        out = array.apply_pulses(ids, counts, 1.0, 1e-6)
        return array.conductances, out.g_after, state["lo"], state["hi"]

    fast, slow = both(run)
    for a, b in zip(fast[:2], slow[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    g, _, lo, hi = fast
    inside = slice(4, None, 5)  # started inside: some chains end on each bound
    assert np.count_nonzero(g[inside] == hi[inside]) > 50
    assert np.count_nonzero(g[inside] == lo[inside]) > 50


@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_compiled_bench_pulses_count_disturb_and_sync_like_numpy(order):
    net = Network(small_spec(g_init=0.5))

    def run() -> tuple[np.ndarray, ...]:
        bench = SimulatedBench(net, scheme="V/2", seed=1)  # ideal: V/2 moves nothing
        rng = np.random.default_rng(2)
        applied = []
        for _ in range(6):
            ids = np.sort(rng.choice(net.n_devices, net.n_devices // 2, replace=False))
            if order == "shuffled":
                rng.shuffle(ids)
            counts = rng.integers(-4, 5, ids.size)
            applied.append(bench.pulse(PulseRequest(ids, counts, 1.0, 1e-6)).applied)
        saved = bench.devices.state_dict()["disturb_count"]  # a checkpoint has them all
        assert bench.disturb_counts.sum() > 0
        return (
            saved,
            bench.disturb_counts,
            bench.devices.conductances,
            bench.circuit.conductances,
            bench.pulse_counts,
            *applied,
        )

    fast, slow = both(run)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast[3], fast[2])  # the circuit holds the devices' values


def test_count_half_selected_refuses_bad_blocks_and_counts_nothing():
    array = DeviceArray(ideal_device((G_MIN, G_MAX)), 200, seed=0)
    applied = np.array([1, -2, 3])
    with kernels.forced(True):
        array.count_half_selected(10, (3, 4), np.array([10, 13, 21]), applied)
        counts = array.disturb_count
        bad = [
            ((195, (3, 4), np.array([196, 197, 198]), applied), "outside"),
            ((10, (3, 4), np.array([9, 13, 21]), applied), "block"),
            ((10, (3, 4), np.array([10, 13, 22]), applied), "block"),
            ((10, (3, 4), np.array([13, 10, 21]), applied), "ascend"),
            ((10, (3, 4), np.array([10, 10, 21]), applied), "ascend"),
            ((10, (3, 4), np.array([10, 13, 21]), applied[:2]), "applied"),
        ]
        for args, message in bad:
            with pytest.raises(ConfigError, match=message):
                array.count_half_selected(*args)
    np.testing.assert_array_equal(array.disturb_count, counts)
    # devices (0, 0), (0, 3), (2, 3): rows 0 and 2 have 3 pulses, columns 0 and 3 have 1, 5
    want = np.array([[3, 3, 3, 3], [0, 0, 0, 0], [3, 3, 3, 3]]) + np.array([1, 0, 0, 5])
    want.flat[[0, 3, 11]] -= 2 * np.abs(applied)
    np.testing.assert_array_equal(counts[10:22].reshape(3, 4), want)


@pytest.mark.parametrize("programmer_class", [OpenLoopProgrammer, SignProgrammer])
def test_compiled_programmers_follow_and_report_like_numpy(programmer_class):
    """The programmer's target, estimate and residual from the compiled passes: updates
    with zeros (the residual of some devices only) and without, estimates outside the
    range (a noisy read) that the follow clips back."""
    net = Network(small_spec(g_init=0.5))
    g_min, g_max = net.g_bounds

    def run() -> list[np.ndarray]:
        bench = SimulatedBench(net, seed=1)
        programmer = programmer_class(bench, np.random.default_rng(2))
        rng = np.random.default_rng(3)
        estimate = rng.uniform(0.9 * g_min, 1.05 * g_max, net.n_devices)
        programmer.g_estimate = estimate
        values = []
        for call in range(6):
            delta_g = rng.normal(0, 0.02 * g_max, net.n_devices)
            if call % 2:
                delta_g[rng.random(net.n_devices) < 0.3] = 0.0
            report = programmer.apply(delta_g)
            values += [report.device_ids, report.residual, programmer.estimate().copy()]
        assert programmer.estimate().min() >= g_min and programmer.estimate().max() <= g_max
        return values

    fast, slow = both(run)
    assert any(a.size < net.n_devices for a in fast[::3])  # some calls left devices out
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_int_summary_is_numpy_min_max_and_ascending():
    rng = np.random.default_rng(11)
    big = np.iinfo(np.int64)
    cases = [
        np.array([5]),
        np.array([3, 3]),
        np.array([1, 2, 2, 3]),
        np.array([big.min, 0, big.max]),
        np.array([big.max, big.min]),
        np.arange(1000),
        np.sort(rng.choice(10**6, 5000, replace=False)),
        rng.integers(-(10**9), 10**9, 5000),
    ]
    for values in cases:
        with kernels.forced(True):
            fast = kernels.int_summary(values)
        with kernels.forced(False):
            slow = kernels.int_summary(values)
        want = (values.min(), values.max(), bool(np.all(values[1:] > values[:-1])))
        assert fast == slow == want


def test_compiled_id_checks_refuse_what_numpy_refuses():
    """A repeat or an id out of range is refused with the compiled checks as without."""
    net = Network(small_spec(g_init=0.5))
    for on in (True, False):
        with kernels.forced(on):
            bench = SimulatedBench(net, seed=1)
            before = bench.devices.conductances.copy()
            ids = np.arange(40)
            with pytest.raises(SafetyError, match="repeat"):
                PulseRequest(np.r_[ids, 7], np.ones(41, np.int64), 1.0, 1e-6)
            with pytest.raises(SafetyError, match="must be in"):
                bench.pulse(
                    PulseRequest(np.r_[ids, net.n_devices], np.ones(41, np.int64), 1.0, 1e-6)
                )
            with pytest.raises(ConfigError, match="repeat"):
                bench.devices.apply_pulses(np.r_[ids, 3], np.ones(41, np.int64), 1.0, 1e-6)
            np.testing.assert_array_equal(bench.devices.conductances, before)


@pytest.fixture
def kernel_threads(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """The compiled loops split over ``request.param`` threads (HIL_KERNEL_THREADS)."""
    monkeypatch.setenv("HIL_KERNEL_THREADS", str(request.param))
    kernels.threads.cache_clear()
    monkeypatch.setattr(kernels, "_pool", None)  # a pool of the new size
    yield request.param
    kernels.threads.cache_clear()


def test_a_bad_kernel_thread_count_stops_the_first_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIL_KERNEL_THREADS", "two")
    kernels.threads.cache_clear()
    kernels._numba.cache_clear()
    try:
        with pytest.raises(ConfigError, match="HIL_KERNEL_THREADS must be a whole number"):
            kernels.active(10**6)
    finally:
        kernels.threads.cache_clear()
        kernels._numba.cache_clear()


@pytest.mark.parametrize("kernel_threads", [1, 3], indirect=True)
def test_short_training_is_the_same_with_compiled_loops(kernel_threads):
    """Every pulse, count and conductance of a short open-loop run is the same, whether
    each compiled loop runs on one thread or is split over three."""
    from hil.eqprop import EqProp

    assert kernels.threads() == kernel_threads

    def train() -> tuple[np.ndarray, ...]:
        net = Network(small_spec("ideal", 4.0, g_init=0.5))
        bench = SimulatedBench(net, seed=4)
        programmer = OpenLoopProgrammer(bench, np.random.default_rng(5))
        eqprop = EqProp(beta=0.1, target_amplitude=0.5)
        rng = np.random.default_rng(6)
        residual = []
        for _ in range(30):
            x = net.encode_inputs(rng.uniform(0, 1, (4, net.n_inputs)))
            result = eqprop.estimate(bench, x, rng.integers(0, net.n_classes, 4))
            report = programmer.apply(-20.0 * net.g_bounds[1] * result.gradient)
            residual.append(report.residual)
        return (
            bench.pulse_counts,
            bench.disturb_counts,
            bench.devices.conductances,
            programmer.estimate(),
            np.concatenate(residual),
        )

    fast, slow = both(train)
    assert fast[0].sum() > 0
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
