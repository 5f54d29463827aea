"""Programming strategies: open-loop planning, the sign rule, write-verify's bookkeeping.

Write-verify on noisy devices, ramping, retirement and endurance are in
tests/simulators/test_simulated_devices.py.
"""

import numpy as np
import pytest

from hil.bench import PulseCalibration
from hil.network import Network
from hil.programming import (
    OpenLoopProgrammer,
    ProgrammingConfig,
    SignProgrammer,
    WriteVerifyProgrammer,
    make_programmer,
    plan_open_loop,
    stochastic_round,
)
from simulators.bench import SimulatedBench
from tests.networks import small_spec

STEP = (1e-5 - 1e-7) / 1000


def ideal_bench() -> SimulatedBench:
    return SimulatedBench(Network(small_spec(g_init=0.5)), seed=0)


def test_stochastic_round_keeps_the_mean():
    rng = np.random.default_rng(0)
    values = np.full(200_000, 0.3)
    rounded = stochastic_round(values, rng)
    assert set(np.unique(rounded)) == {0, 1}
    assert abs(rounded.mean() - 0.3) < 0.005


def test_plan_counts_signs_and_bounds():
    cal = PulseCalibration(step_up=1e-8, step_down=2e-8, amplitude_v=1.0, width_s=1e-6)
    g = np.array([5e-6, 5e-6, 9.99e-6, 1.5e-7])
    dg = np.array([3e-8, -4e-8, 1e-6, -1e-6])
    plan = plan_open_loop(dg, g, (1e-7, 1e-5), cal, 1000, np.random.default_rng(0))
    counts = dict(zip(plan.request.device_ids.tolist(), plan.request.counts.tolist(), strict=True))
    assert counts[0] == 3 and counts[1] == -2
    assert 0 < counts[2] <= 1  # only 1e-8 S of room left below g_max
    assert -3 <= counts[3] < 0  # only 5e-8 S of room above g_min


def test_plan_caps_at_the_request_limit_and_says_so():
    cal = PulseCalibration(1e-9, 1e-9, 1.0, 1e-6)
    plan = plan_open_loop(
        np.array([5e-6]), np.array([1e-6]), (1e-7, 1e-5), cal, 100, np.random.default_rng(0)
    )
    assert plan.request.counts.tolist() == [100] and plan.capped == 1


def test_sign_rule_sends_one_pulse_along_dg_above_the_threshold():
    bench = ideal_bench()
    programmer = SignProgrammer(
        bench, np.random.default_rng(0), ProgrammingConfig(strategy="sign", threshold=1.5)
    )
    g = programmer.estimate().copy()
    dg = np.zeros(bench.network.n_devices)
    dg[[0, 1, 2, 3]] = np.array([2.0, -7.0, 1.2, -1.4]) * STEP
    report = programmer.apply(dg)
    moved = bench.read_conductances() - g
    np.testing.assert_allclose(moved[[0, 1]], [STEP, -STEP], rtol=1e-9)
    assert np.count_nonzero(moved) == 2 and report.pulses == 2
    np.testing.assert_allclose(
        report.residual, (dg - moved)[report.device_ids], atol=1e-20
    )  # what the rule left undone


def test_open_loop_residual_is_the_rounding_left_over():
    bench = ideal_bench()
    programmer = OpenLoopProgrammer(bench, np.random.default_rng(0))
    g = programmer.estimate().copy()
    dg = np.zeros(bench.network.n_devices)
    dg[:3] = np.array([2.0, -3.0, 0.5]) * STEP
    report = programmer.apply(dg)
    moved = bench.read_conductances() - g
    np.testing.assert_allclose(report.residual, dg[:3] - moved[:3], atol=1e-20)
    assert report.reads == 0 and report.converged is None


@pytest.mark.parametrize(
    "strategy, cls",
    [
        ("open_loop", OpenLoopProgrammer),
        ("sign", SignProgrammer),
        ("write_verify", WriteVerifyProgrammer),
    ],
)
def test_strategy_is_chosen_by_config(strategy, cls):
    bench = ideal_bench()
    programmer = make_programmer(
        bench, ProgrammingConfig(strategy=strategy), np.random.default_rng(0)
    )
    assert type(programmer) is cls


def test_write_verify_keeps_updates_below_the_threshold_in_its_target():
    bench = ideal_bench()
    config = ProgrammingConfig(strategy="write_verify", threshold=2.0, tolerance=0.5)
    programmer = WriteVerifyProgrammer(bench, np.random.default_rng(0), config)
    g0 = programmer.estimate().copy()
    dg = np.zeros(bench.network.n_devices)
    dg[3] = 0.8 * STEP
    for _ in range(2):
        report = programmer.apply(dg)
        assert report.pulses == 0 and report.reads == 0
        assert report.device_ids.tolist() == [3]
    third = programmer.apply(dg)  # 2.4 steps waiting: programmed with 2 pulses, read once
    assert third.pulses == 2 and third.reads == 1 and third.verified.tolist() == [3]
    np.testing.assert_allclose(bench.read_conductances()[3] - g0[3], 2 * STEP, rtol=1e-9)
    np.testing.assert_allclose(third.residual, [0.4 * STEP], rtol=1e-6)
    assert third.converged is not None and third.converged.tolist() == [True]  # 0.4 <= 0.5
    assert third.iterations == 1


@pytest.mark.parametrize("strategy", ["open_loop", "sign", "write_verify"])
def test_programmer_state_round_trips(strategy):
    bench = ideal_bench()
    config = ProgrammingConfig(strategy=strategy)
    first = make_programmer(bench, config, np.random.default_rng(0))
    first.apply(np.random.default_rng(1).normal(0, 3 * STEP, bench.network.n_devices))
    state = first.state_dict()
    second = make_programmer(bench, config, np.random.default_rng(0))
    second.load_state_dict({k: v.copy() for k, v in state.items()})
    for key, value in second.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
