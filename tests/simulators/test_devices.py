"""Device models: each reproduces its defining curve; non-idealities, endurance and state."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hil.errors import ConfigError, SafetyError
from simulators.devices import (
    ConstantStepModel,
    DeviceArray,
    ExponentialStepModel,
    LinearStepModel,
    PulseLaw,
    SoftBoundsModel,
    Variability,
    ecram,
    enode_measured,
    ideal,
    load_table,
    model_from_dict,
    preset,
    reram,
    taox_measured,
)
from simulators.devices.lookup_table import GridLocator
from tests.conftest import SHARED_DATA

G_MIN, G_MAX = 1e-7, 1e-5
RANGE = G_MAX - G_MIN
NOMINAL = PulseLaw(v_threshold=0.6, v_nominal=1.0, width_nominal=1e-6)
LUT_DIR = SHARED_DATA / "device_luts"


@pytest.fixture(scope="module")
def lut_dir() -> Path:
    if not (LUT_DIR / "ENODe_dG_increasing.txt.gz").is_file():
        pytest.skip(f"measured pulse-response tables not found in {LUT_DIR.resolve()}")
    return LUT_DIR


def pulse(array: DeviceArray, idx, counts, amplitude: float = 1.0, width: float = 1e-6):
    return array.apply_pulses(np.asarray(idx), np.asarray(counts), amplitude, width)


def quiet(model, **changes):
    """The model without any non-ideality (or with the given ones only)."""
    return model.replace(variability=Variability(**changes))


# ------------------------------------------------------------------ defining curves


def test_constant_step_is_exact():
    array = DeviceArray(ideal(G_MIN, G_MAX), 3, seed=0, g_init=5e-6)
    step = RANGE / 1000
    pulse(array, [0, 1, 2], [7, -3, 0])
    np.testing.assert_allclose(array.conductances, [5e-6 + 7 * step, 5e-6 - 3 * step, 5e-6])
    pulse(array, [0], [-10_000])  # far past the bound: clipped at g_min exactly
    assert array.conductances[0] == G_MIN


def test_soft_bounds_follows_closed_form_both_ways():
    model = SoftBoundsModel(g_min=G_MIN, g_max=G_MAX, pulses_up=120.0, pulses_down=80.0)
    up = DeviceArray(model, 1, seed=0, g_init=G_MIN)
    down = DeviceArray(model, 1, seed=0, g_init=G_MAX)
    done = 0
    for chunk in (1, 9, 40, 150, 300):
        pulse(up, [0], [chunk])
        pulse(down, [0], [-chunk])
        done += chunk
        expected_up = G_MIN + RANGE * (1 - np.exp(-done / 120.0))
        expected_down = G_MAX - RANGE * (1 - np.exp(-done / 80.0))
        np.testing.assert_allclose(up.conductances[0], expected_up, rtol=1e-10)
        np.testing.assert_allclose(down.conductances[0], expected_down, rtol=1e-10)


def test_soft_bounds_inverse_gives_the_pulses_back():
    model = SoftBoundsModel(g_min=G_MIN, g_max=G_MAX, pulses_up=120.0, pulses_down=80.0)
    g_after_50 = G_MIN + RANGE * (1 - np.exp(-50 / 120.0))
    np.testing.assert_allclose(model.pulses_for(g_after_50 - G_MIN, G_MIN), 50.0, rtol=1e-10)
    g_after_30 = G_MAX - RANGE * (1 - np.exp(-30 / 80.0))
    np.testing.assert_allclose(model.pulses_for(g_after_30 - G_MAX, G_MAX), -30.0, rtol=1e-10)
    assert model.pulses_for(RANGE, G_MIN) == np.inf  # the bound itself is never reached


def test_linear_step_shrinks_linearly_towards_its_bound():
    model = LinearStepModel(
        g_min=G_MIN, g_max=G_MAX, step_up=1e-8, step_down=2e-8, gamma_up=0.5, gamma_down=1.0
    )
    g = np.array([G_MIN, (G_MIN + G_MAX) / 2, G_MAX])
    up = model.mean_step(g, np.ones(3, int), G_MIN, G_MAX)
    down = model.mean_step(g, -np.ones(3, int), G_MIN, G_MAX)
    np.testing.assert_allclose(up, [1.5e-8, 1e-8, 0.5e-8])
    np.testing.assert_allclose(down, [-0.0, -2e-8, -4e-8], atol=1e-20)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_linear_step_closed_form_inverse_matches_the_pulses(gamma):
    model = LinearStepModel(
        g_min=G_MIN, g_max=G_MAX, step_up=2e-8, step_down=2e-8, gamma_up=gamma, gamma_down=gamma
    )
    array = DeviceArray(model, 2, seed=0, g_init=[3e-6, 7e-6])
    before = array.conductances
    pulse(array, [0, 1], [37, -37])
    pulses = model.pulses_for(array.conductances - before, before)
    np.testing.assert_allclose(pulses, [37.0, -37.0], rtol=1e-9)


def test_exponential_step_law_and_numeric_inverse():
    model = ExponentialStepModel(
        g_min=G_MIN, g_max=G_MAX, step_up=1e-8, step_down=1e-8, rate_up=2.0, rate_down=3.0
    )
    x = np.array([0.0, 0.25, 0.5, 1.0])
    g = G_MIN + x * RANGE
    np.testing.assert_allclose(
        model.mean_step(g, np.ones(4, int), G_MIN, G_MAX), 1e-8 * np.exp(-2.0 * (x - 0.5))
    )
    np.testing.assert_allclose(
        model.mean_step(g, -np.ones(4, int), G_MIN, G_MAX), -1e-8 * np.exp(-3.0 * (0.5 - x))
    )
    array = DeviceArray(model, 1, seed=0, g_init=2e-6)
    pulse(array, [0], [123])
    np.testing.assert_allclose(model.pulses_for(array.conductances[0] - 2e-6, 2e-6), 123, rtol=1e-9)


def test_nominal_step_is_the_mid_range_mean_step():
    model = SoftBoundsModel(g_min=G_MIN, g_max=G_MAX, pulses_up=500.0, pulses_down=250.0)
    np.testing.assert_allclose(model.nominal_step(+1), RANGE / 2 * -np.expm1(-1 / 500))
    np.testing.assert_allclose(model.nominal_step(-1), RANGE / 2 * -np.expm1(-1 / 250))
    with pytest.raises(ConfigError, match="direction"):
        model.nominal_step(0)


def test_rescaling_keeps_pulses_over_the_range():
    model = ecram(1e-6, 2e-6)
    mapped = model.rescaled(G_MIN, G_MAX)
    assert mapped.bounds() == (G_MIN, G_MAX)
    assert model.nominal_step(1) / 1e-6 == pytest.approx(mapped.nominal_step(1) / RANGE)
    assert mapped.gamma_down == model.gamma_down


# ------------------------------------------------------------------ measured tables


def parse_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An independent reader of the CrossSim format, for the reference numbers."""
    lines = gzip.open(path, "rt").read().splitlines()[1:]
    rows = [np.array([float(v) for v in re.split(r"[,\s]+", ln.strip()) if v]) for ln in lines]
    rows = [r for r in rows if r.size]
    return rows[0], rows[1], np.array(rows[2:])


@pytest.mark.parametrize(
    "name, factory",
    [("ENODe", enode_measured), ("TaOx_all_1", taox_measured)],
)
def test_measured_mean_step_matches_the_table(lut_dir, name, factory):
    model = factory(lut_dir)
    rng = np.random.default_rng(1)
    n = 100_000
    for direction, suffix in ((1, "increasing"), (-1, "decreasing")):
        g_bins, cdf, dg = parse_table(lut_dir / f"{name}_dG_{suffix}.txt.gz")
        means = np.trapezoid(dg, cdf, axis=0)
        second = np.trapezoid(dg**2, cdf, axis=0)
        for j in (0, len(g_bins) // 3, (2 * len(g_bins)) // 3, len(g_bins) - 1):
            steps = model.sample_step(
                np.full(n, g_bins[j]), np.full(n, direction), G_MIN, G_MAX, rng
            )
            sem = np.sqrt(max(second[j] - means[j] ** 2, 0.0) / n)
            assert abs(steps.mean() - means[j]) <= 5 * sem + 1e-3 * abs(means[j]), (j, suffix)
            median = np.interp(0.5, cdf, dg[:, j])
            spread = np.interp(0.9, cdf, dg[:, j]) - np.interp(0.1, cdf, dg[:, j])
            assert abs(np.median(steps) - median) <= 0.05 * spread + 1e-12


def test_measured_model_between_bins_blends_neighbour_columns(lut_dir):
    model = enode_measured(lut_dir)
    inc = load_table(lut_dir / "ENODe_dG_increasing.txt.gz")
    g = (inc.g_bins[10] + inc.g_bins[11]) / 2
    expected = (inc.column_means[10] + inc.column_means[11]) / 2
    assert model.mean_step(np.array([g]), np.array([1]), 0, 1)[0] == pytest.approx(expected)
    nearest = model.replace(g_interpolation="nearest")
    g_near = inc.g_bins[10] + 0.2 * (inc.g_bins[11] - inc.g_bins[10])
    got = nearest.mean_step(np.array([g_near]), np.array([1]), 0, 1)[0]
    assert got == pytest.approx(inc.column_means[10])


def test_measured_array_mean_step_matches_the_table(lut_dir):
    model = enode_measured(lut_dir)
    _, _, dg = parse_table(lut_dir / "ENODe_dG_increasing.txt.gz")
    inc = load_table(lut_dir / "ENODe_dG_increasing.txt.gz")
    j = 20
    n = 50_000
    array = DeviceArray(model, n, seed=3, g_init=inc.g_bins[j])
    outcome = pulse(array, np.arange(n), np.ones(n, int))
    std = np.sqrt(np.trapezoid(dg[:, j] ** 2, inc.cdf) - inc.column_means[j] ** 2)
    assert abs(outcome.dg.mean() - inc.column_means[j]) < 5 * std / np.sqrt(n)


def test_measured_rescaling_maps_g_and_dg_linearly(lut_dir):
    raw = taox_measured(lut_dir)
    mapped = taox_measured(lut_dir, g_min=G_MIN, g_max=G_MAX)
    lo, hi = raw.bounds()
    assert (lo, hi) == pytest.approx((18.6312369e-6, 118.644007e-6))
    k = RANGE / (hi - lo)
    g_raw = np.array([30e-6, 60e-6, 100e-6])
    g_net = G_MIN + (g_raw - lo) * k
    for direction in (1, -1):
        d = np.full(3, direction)
        np.testing.assert_allclose(
            mapped.mean_step(g_net, d, 0, 1), k * raw.mean_step(g_raw, d, 0, 1), rtol=1e-9
        )


@pytest.mark.parametrize(
    "grid",
    [
        np.sort(np.random.default_rng(0).random(40)),
        np.concatenate([[0.0], np.cumsum(np.random.default_rng(1).exponential(1.0, 100))]),
        np.linspace(18.6e-6, 118.6e-6, 501) * (1 + 1e-7 * np.sin(np.arange(501))),
        np.array([0.0, 1e-5, 0.5, 0.5, 1.0]),
    ],
)
def test_grid_locator_agrees_with_binary_search(grid):
    rng = np.random.default_rng(2)
    lo, hi = grid[0], grid[-1]
    x = np.concatenate(
        [
            rng.uniform(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), 20_000),
            grid,
            np.nextafter(grid, -np.inf),
            np.nextafter(grid, np.inf),
        ]
    )
    i, f = GridLocator.build(grid).locate(x)
    expected = np.clip(np.searchsorted(grid, x, "right") - 1, 0, grid.size - 2)
    np.testing.assert_array_equal(i, expected)
    inside = (x >= lo) & (x <= hi) & (grid[i + 1] > grid[i])
    np.testing.assert_allclose((grid[i] + f * (grid[i + 1] - grid[i]))[inside], x[inside])


def test_swapped_or_missing_tables_are_rejected(lut_dir, tmp_path):
    swapped = enode_measured(lut_dir).replace(
        file_increasing=lut_dir / "ENODe_dG_decreasing.txt.gz",
        file_decreasing=lut_dir / "ENODe_dG_increasing.txt.gz",
    )
    with pytest.raises(ConfigError, match="swapped"):
        swapped.tables()
    with pytest.raises(ConfigError, match="not found"):
        taox_measured(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\n1e-6, 2e-6\n0, 1\n1e-9, 2e-9, 3e-9\n1e-9, 2e-9, 3e-9\n")
    with pytest.raises(ConfigError, match="2 rows .* x 2"):
        load_table(bad)


# ------------------------------------------------------------------ presets


def test_reram_spans_about_1000_pulses_and_is_asymmetric():
    model = reram(G_MIN, G_MAX)
    up, down = RANGE / model.nominal_step(1), RANGE / model.nominal_step(-1)
    assert 700 <= up <= 1300 and 700 <= down <= 1300
    assert abs(up - down) / min(up, down) > 0.3


def test_reram_cycle_to_cycle_noise_is_375_to_5_times_the_step():
    model = reram(G_MIN, G_MAX)
    clean = quiet(model, c2c=model.variability.c2c)
    n = 200_000
    array = DeviceArray(clean, n, seed=5)
    for direction in (1, -1):
        outcome = pulse(array, np.arange(n), np.full(n, direction), 1.5, 100e-9)
        ratio = outcome.dg.std() / abs(outcome.dg.mean())
        assert 3.75 <= ratio <= 5.0, ratio
        assert abs(outcome.dg.mean()) == pytest.approx(model.nominal_step(direction), rel=0.05)


def test_presets_by_name_and_registry_round_trip(lut_dir):
    for name in ("ideal", "reram", "ecram"):
        model = preset(name)
        assert model_from_dict(json.loads(json.dumps(model.model_dump(mode="json")))) == model
    measured = preset("enode_measured", data_dir=lut_dir)
    assert model_from_dict(measured.model_dump(mode="json")).bounds() == measured.bounds()
    with pytest.raises(ConfigError, match="known presets: ecram"):
        preset("pcm")
    assert ecram().nominal_step(1) == pytest.approx(ecram().nominal_step(-1))
    assert ideal().variability == Variability()


# ------------------------------------------------------------------ non-idealities


def test_device_to_device_parameters_are_drawn_once():
    model = reram(G_MIN, G_MAX)
    array = DeviceArray(model, 500, seed=11)
    params = (array.lower_bounds, array.upper_bounds, *array.step_scales)
    pulse(array, np.arange(500), np.full(500, 5), 1.5, 100e-9)
    pulse(array, np.arange(500), np.full(500, -9), 1.5, 100e-9)
    again = (array.lower_bounds, array.upper_bounds, *array.step_scales)
    for before, after in zip(params, again, strict=True):
        np.testing.assert_array_equal(before, after)
        assert np.unique(before).size == 500  # every device differs
    scale_up = params[2]
    assert 0.2 < np.std(scale_up) / np.mean(scale_up) < 0.4
    same_seed = DeviceArray(model, 500, seed=11)
    np.testing.assert_array_equal(same_seed.upper_bounds, params[1])
    assert not np.array_equal(DeviceArray(model, 500, seed=12).upper_bounds, params[1])


def test_stuck_devices_never_move():
    model = quiet(reram(G_MIN, G_MAX), stuck_on=0.2, stuck_off=0.2, c2c=4.0, step_d2d=0.3)
    array = DeviceArray(model, 2000, seed=2)
    on, off = array.stuck_on, array.stuck_off
    assert 300 < on.sum() < 500 and 300 < off.sum() < 500 and not np.any(on & off)
    np.testing.assert_array_equal(array.conductances[on], array.upper_bounds[on])
    np.testing.assert_array_equal(array.conductances[off], array.lower_bounds[off])
    before = array.conductances
    rng = np.random.default_rng(0)
    for _ in range(5):
        outcome = pulse(array, np.arange(2000), rng.integers(-50, 51, 2000), 1.5, 100e-9)
        assert not np.any(outcome.effective[on | off])
    array.disturb(np.arange(2000), 1.4, 100e-9, polarity=1, counts=20)
    array.set_conductance(np.arange(2000), 5e-6)
    after = array.conductances
    np.testing.assert_array_equal(after[on | off], before[on | off])
    assert np.all(after[~(on | off)] == 5e-6)


def test_sub_threshold_pulse_changes_nothing():
    model = reram(G_MIN, G_MAX)
    array = DeviceArray(model, 300, seed=4)
    before = array.conductances
    outcome = pulse(array, np.arange(300), np.full(300, 25), amplitude=0.9, width=1e-3)
    np.testing.assert_array_equal(array.conductances, before)
    assert not outcome.effective.any()
    np.testing.assert_array_equal(array.pulse_count, np.full(300, 25))  # delivered, no effect
    above = pulse(array, np.arange(300), np.full(300, 25), amplitude=0.91, width=100e-9)
    assert np.count_nonzero(above.dg) > 250


def test_step_scales_with_overdrive_and_width():
    model = ConstantStepModel(g_min=G_MIN, g_max=G_MAX, step_up=1e-8, step_down=1e-8, pulse=NOMINAL)
    array = DeviceArray(model, 3, seed=0, g_init=5e-6)
    array.apply_pulses(np.arange(3), np.array([1, 1, -2]), np.array([1.0, 0.8, 1.3]), 2e-6)
    gains = np.array([1.0, 0.5, 1.75]) * 2.0
    np.testing.assert_allclose(array.conductances, 5e-6 + np.array([1, 1, -2]) * gains * 1e-8)


def test_pulse_above_the_device_limit_is_refused_before_anything_moves():
    law = PulseLaw(v_threshold=0.6, v_nominal=1.0, width_nominal=1e-6, v_max=2.0)
    array = DeviceArray(ideal(G_MIN, G_MAX).replace(pulse=law), 4, seed=0)
    before = array.conductances
    with pytest.raises(SafetyError, match=r"2.5 V exceeds the device's v_max \(2.0 V\)"):
        array.apply_pulses(np.arange(4), np.ones(4, int), np.array([1.0, 1.0, 2.5, 1.0]), 1e-6)
    np.testing.assert_array_equal(array.conductances, before)
    assert array.pulse_count.sum() == 0


def test_read_noise_is_relative_and_leaves_state_alone():
    model = quiet(reram(G_MIN, G_MAX), read_noise=0.01, c2c=4.0)
    array = DeviceArray(model, 20_000, seed=8, g_init=4e-6)
    twin = DeviceArray(model, 20_000, seed=8, g_init=4e-6)
    reads = array.read()
    assert reads.std() / reads.mean() == pytest.approx(0.01, rel=0.05)
    assert reads.mean() == pytest.approx(4e-6, rel=1e-3)
    np.testing.assert_array_equal(array.conductances, twin.conductances)
    idx = np.arange(20_000)
    a = pulse(array, idx, np.full(20_000, 3), 1.5, 1e-7)
    b = pulse(twin, idx, np.full(20_000, 3), 1.5, 1e-7)
    np.testing.assert_array_equal(a.g_after, b.g_after)  # reads do not shift the pulse noise
    np.testing.assert_array_equal(
        array.read(np.arange(5), rng=np.random.default_rng(1)),
        twin.read(np.arange(5), rng=np.random.default_rng(1)),
    )


# ------------------------------------------------------------------ endurance and state


def test_endurance_limit_refuses_and_reports():
    model = ideal(G_MIN, G_MAX).replace(endurance=5)
    array = DeviceArray(model, 3, seed=0, g_init=5e-6)
    first = pulse(array, [0, 1, 2], [3, -2, 0])
    assert not first.any_refused
    second = pulse(array, [0, 1, 2], [4, -4, 6])
    np.testing.assert_array_equal(second.applied, [2, -3, 5])
    np.testing.assert_array_equal(second.refused, [2, 1, 1])
    np.testing.assert_array_equal(second.refused_devices, [0, 1, 2])
    np.testing.assert_array_equal(array.pulse_count, [5, 5, 5])
    assert array.exhausted.all()
    frozen = array.conductances
    third = pulse(array, [0, 2], [-10, 10])
    np.testing.assert_array_equal(third.refused, [10, 10])
    np.testing.assert_array_equal(array.conductances, frozen)
    np.testing.assert_allclose(frozen, 5e-6 + np.array([5, -5, 5]) * RANGE / 1000)


def run_some(array: DeviceArray, rng: np.random.Generator) -> np.ndarray:
    n = array.n_devices
    for _ in range(3):
        idx = rng.choice(n, size=n // 2, replace=False)
        pulse(array, idx, rng.integers(-20, 21, idx.size), 1.5, 100e-9)
        array.disturb(idx[:10], 0.95, 100e-9, polarity=-1, counts=2)
        array.read(idx)
    return array.conductances


def test_state_round_trip_reproduces_the_future_exactly(tmp_path):
    model = reram(G_MIN, G_MAX).replace(endurance=40)
    array = DeviceArray(model, 400, seed=21)
    run_some(array, np.random.default_rng(0))
    state = array.state_dict()
    array.save(tmp_path / "devices.npz")
    future = run_some(array, np.random.default_rng(1))
    restored = DeviceArray(model, 400, seed=999)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(run_some(restored, np.random.default_rng(1)), future)
    from_disk = DeviceArray.load(tmp_path / "devices.npz")
    np.testing.assert_array_equal(run_some(from_disk, np.random.default_rng(1)), future)
    np.testing.assert_array_equal(from_disk.pulse_count, array.pulse_count)
    np.testing.assert_array_equal(from_disk.disturb_count, array.disturb_count)
    with pytest.raises(ConfigError, match="different device model"):
        DeviceArray(ideal(), 400).load_state_dict(state)


def test_same_seed_same_trajectory_different_seed_differs():
    model = reram(G_MIN, G_MAX)
    runs = [run_some(DeviceArray(model, 300, seed=s), np.random.default_rng(0)) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_bad_requests_raise_before_anything_moves():
    array = DeviceArray(reram(G_MIN, G_MAX), 10, seed=0)
    before = array.conductances
    with pytest.raises(ConfigError, match="repeat"):
        pulse(array, [1, 1], [1, 1], 1.5)
    with pytest.raises(ConfigError, match=r"\[0, 9\]"):
        pulse(array, [10], [1], 1.5)
    with pytest.raises(ConfigError, match="integers"):
        pulse(array, [1], [0.5], 1.5)
    with pytest.raises(ConfigError, match="amplitude_v must be finite and >= 0"):
        pulse(array, [1], [1], -1.5)
    with pytest.raises(ConfigError, match="width_s"):
        pulse(array, [1], [1], 1.5, 0.0)
    with pytest.raises(ConfigError, match="polarity"):
        array.disturb(np.array([1]), 1.0, 1e-7, polarity=0)
    np.testing.assert_array_equal(array.conductances, before)
    assert array.pulse_count.sum() == 0
