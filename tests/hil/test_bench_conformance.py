"""One contract, every bench: same inputs, same shapes, same safety behaviour.

Each factory builds a bench realising ``small_spec()``; a bench added later joins
``BENCH_FACTORIES`` and must pass the same tests, all written against the Bench protocol.
A factory may also name an independent observer of the bench's physical state (the
emulators' own view of their outputs), which the safe-state tests consult as well.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from drivers.lab_bench import LabBench
from hil.bench import Bench, PulseRequest, SafeStateReport, SafetyLimits, in_safe_hands
from hil.errors import SafetyError
from hil.network import Network
from simulators.bench import SimulatedBench
from tests.labs import small_lab
from tests.networks import small_spec


def native_bench() -> SimulatedBench:
    return SimulatedBench(Network(small_spec("shockley", 2.0)), engine="native", seed=11)


def spice_bench() -> SimulatedBench:
    # ngspice through its shared library (libngspice0); same network, same contract
    return SimulatedBench(Network(small_spec("shockley", 2.0)), engine="spice", seed=11)


def emulated_lab_bench() -> LabBench:
    # the drivers over pty/TCP to emulated instruments on the native-engine crossbar
    return small_lab(seed=11)


BENCH_FACTORIES = {"native": native_bench, "spice": spice_bench, "emulated-lab": emulated_lab_bench}


def sources_at_zero(bench: SimulatedBench) -> bool:
    return not bench.applied_inputs.any() and not bench.applied_nudges.any()


def emulators_safe(bench: LabBench) -> bool:
    return bench.emulator.is_safe()


#: Independent views of "nothing is applied" (optional per bench).
SAFE_OBSERVERS: dict[str, Callable] = {
    "native": sources_at_zero,
    "spice": sources_at_zero,
    "emulated-lab": emulators_safe,
}


@pytest.fixture(params=sorted(BENCH_FACTORIES))
def bench_name(request) -> str:
    return request.param


@pytest.fixture
def bench(bench_name) -> Bench:
    b = BENCH_FACTORIES[bench_name]()
    yield b
    b.close()


@pytest.fixture
def observe_safe(bench_name) -> Callable[[Bench], bool]:
    return SAFE_OBSERVERS.get(bench_name, lambda _: True)


def inputs_for(bench: Bench, batch: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return bench.network.encode_inputs(rng.uniform(0, 1, (batch, bench.network.n_inputs)))


def test_is_a_bench(bench):
    assert isinstance(bench, Bench)
    assert isinstance(bench.limits, SafetyLimits)
    assert bench.calibration.step_up > 0 and bench.calibration.step_down > 0


def test_settle_shapes(bench):
    net = bench.network
    m = bench.settle(inputs_for(bench))
    assert m.node_voltages.shape == (3, net.n_nodes)
    assert m.drops.shape == (3, net.n_devices)
    assert m.outputs.shape == (3, net.n_classes)
    np.testing.assert_allclose(m.node_voltages[:, net.input_nodes], inputs_for(bench))


def test_nudge_moves_outputs_the_right_way(bench):
    net = bench.network
    free = bench.settle(inputs_for(bench)).outputs
    push = net.pair_currents(np.full((3, net.n_classes), 1e-6))
    nudged = bench.settle(inputs_for(bench), push).outputs
    assert np.all(nudged > free)


def test_pulses_move_conductance_and_are_counted(bench):
    before = bench.read_conductances()
    ids = np.array([0, 5, 7])
    report = bench.pulse(PulseRequest(ids, np.array([3, -2, 0]), 1.0, 1e-6))
    after = bench.read_conductances()
    assert after[0] > before[0] and after[5] < before[5] and after[7] == before[7]
    untouched = np.setdiff1d(np.arange(bench.network.n_devices), ids)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    assert report.total_pulses == 5


@pytest.mark.parametrize(
    "request_kwargs, message",
    [
        ({"amplitude_v": 5.0}, "pulse amplitude 5 V is outside"),
        ({"width_s": 1.0}, "pulse width 1 s is outside"),
        ({"counts": np.array([5000, 1])}, "exceeds max_pulses_per_request"),
        ({"device_ids": np.array([0, 10**6])}, r"device ids must be in \[0, "),
    ],
)
def test_pulse_out_of_limits_changes_nothing(bench, request_kwargs, message):
    kwargs = {
        "device_ids": np.array([0, 1]),
        "counts": np.array([1, 1]),
        "amplitude_v": 1.0,
        "width_s": 1e-6,
        **request_kwargs,
    }
    before = bench.read_conductances()
    with pytest.raises(SafetyError, match=message):
        bench.pulse(PulseRequest(**kwargs))
    np.testing.assert_array_equal(bench.read_conductances(), before)


def test_settle_out_of_limits_is_refused(bench):
    too_high = np.full((1, bench.network.n_input_sources), 1e3)
    with pytest.raises(SafetyError, match="input voltage 1000 V exceeds the limit"):
        bench.settle(too_high)
    huge_nudge = np.full((1, bench.network.n_output_nodes), 1.0)
    with pytest.raises(SafetyError, match="nudge current 1 A exceeds the limit"):
        bench.settle(inputs_for(bench, 1), huge_nudge)
    nan = np.full((1, bench.network.n_input_sources), np.nan)
    with pytest.raises(SafetyError, match="NaN"):
        bench.settle(nan)


@pytest.mark.parametrize(
    "shape", [(1, 2, 12), (12,), (0, 12), (2, 11)], ids=["3-D", "1-D", "empty", "narrow"]
)
def test_settle_of_a_wrong_shape_is_refused_and_changes_nothing(bench, observe_safe, shape):
    bench.settle(inputs_for(bench))
    before = bench.read_conductances()
    bench.safe_state()
    assert bench.network.n_input_sources == 12  # the shapes above are for small_spec()
    with pytest.raises(SafetyError, match=r"inputs must have shape \(batch, 12\)"):
        bench.settle(np.full(shape, 0.1))
    assert observe_safe(bench)  # nothing was applied, nothing re-armed
    np.testing.assert_array_equal(bench.read_conductances(), before)


def test_safe_state_on_error(bench, observe_safe):
    with pytest.raises(RuntimeError), in_safe_hands(bench):
        bench.settle(inputs_for(bench))
        raise RuntimeError("boom")
    assert observe_safe(bench)
    report = bench.safe_state()  # idempotent, and says what it confirmed
    assert isinstance(report, SafeStateReport) and report.confirmed, report.unconfirmed
    assert observe_safe(bench)


def test_float_device_ids_are_refused_by_every_bench(bench):
    before = bench.read_conductances()
    with pytest.raises(SafetyError, match="integers"):
        bench.read_conductances(np.array([1.7]))
    with pytest.raises(SafetyError, match="integers"):
        bench.pulse(PulseRequest(np.array([1.0]), np.array([1]), 1.0, 1e-6))
    np.testing.assert_array_equal(bench.read_conductances(), before)
