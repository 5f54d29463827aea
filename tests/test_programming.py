import numpy as np

from hil.bench import PulseCalibration
from hil.programming import plan_open_loop, stochastic_round


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
