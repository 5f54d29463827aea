"""The fast paths of the simulated bench give the answers of the general ones.

The constant-step pulse loop against the general loop; disturb counted in line form against
the per-device exposure grid; the solver's reuse of the source drive; the circuit kept in
step with the devices; the open-loop plan against its where-based formulation.
"""

from __future__ import annotations

import numpy as np
import pytest

from hil.bench import PulseCalibration, PulseRequest
from hil.errors import ConfigError
from hil.network import Network, NetworkSpec
from hil.programming import plan_open_loop
from simulators.bench import SimulatedBench, ideal_device
from simulators.circuit import Circuit
from simulators.crossbar_scheme import disturb_exposure, exposure_totals
from simulators.devices import DeviceArray, PulseLaw, Variability
from simulators.devices.analytic import ConstantStepModel, LinearStepModel
from simulators.native import NativeSolver
from tests.networks import small_spec

G_MIN, G_MAX = 1e-7, 1e-5


def as_linear(model: ConstantStepModel) -> LinearStepModel:
    """The same device as a linear-step model with zero slopes: identical steps
    (``step * (1 + 0 * ...)``), taken through the general pulse loop."""
    return LinearStepModel(
        g_min=model.g_min,
        g_max=model.g_max,
        step_up=model.step_up,
        step_down=model.step_down,
        pulse=model.pulse,
        variability=model.variability,
        endurance=model.endurance,
    )


VARIANTS = {
    "ideal": {},
    "asymmetric": {"step_up": 1.3e-8},
    "spread": {"variability": Variability(step_d2d=0.1, updown_d2d=0.05, bounds_d2d=0.05)},
    "stuck": {"variability": Variability(stuck_on=0.02, stuck_off=0.02)},
    "endurance": {"endurance": 30},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_constant_step_loop_equals_the_general_loop(variant, order):
    model = ideal_device((G_MIN, G_MAX), n_states=200).replace(**VARIANTS[variant])
    rng = np.random.default_rng(len(variant))
    n = 4000
    fast = DeviceArray(model, n, seed=1)
    general = DeviceArray(as_linear(model), n, seed=1)
    general.load_state_dict({**fast.state_dict(), "model": general.model.model_dump(mode="json")})
    for call in range(4):
        ids = np.sort(rng.choice(n, 2500, replace=False))
        if order == "shuffled":
            rng.shuffle(ids)
        counts = rng.integers(-25, 26, ids.size)
        amplitude = 1.0 if call % 2 else rng.uniform(0.7, 1.4, ids.size)
        a = fast.apply_pulses(ids, counts, amplitude, 1e-6)
        b = general.apply_pulses(ids, counts, amplitude, 1e-6)
        np.testing.assert_array_equal(fast.conductances, general.conductances)
        for field in ("applied", "refused", "g_before", "g_after", "effective"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(fast.pulse_count, general.pulse_count)


def test_constant_step_loop_beyond_16_bit_counts():
    model = ideal_device((G_MIN, G_MAX), n_states=10**6)
    fast, general = DeviceArray(model, 10, seed=0), DeviceArray(as_linear(model), 10, seed=0)
    counts = np.array([40_000, -3, 0, 1, 33_000])
    for array in (fast, general):
        array.apply_pulses(np.arange(5), counts, 1.0, 1e-6)
    np.testing.assert_array_equal(fast.conductances, general.conductances)


def selections(rng: np.random.Generator, shape: tuple[int, int], n: int, repeat: bool):
    flat = rng.choice(shape[0] * shape[1], n, replace=repeat)
    if not repeat:
        flat.sort()  # rows ascending, as a plan's ids
    rows, cols = np.divmod(flat, shape[1])
    return rows, cols, rng.integers(-5, 6, n)


@pytest.mark.parametrize("scheme", ["V/2", "V/3"])
@pytest.mark.parametrize("repeat", [False, True])
def test_exposure_totals_are_the_grids_total_in_line_form(scheme, repeat):
    rng = np.random.default_rng(0)
    shape = (13, 7)
    for _ in range(20):
        rows, cols, counts = selections(rng, shape, int(rng.integers(1, 40)), repeat)
        grid = disturb_exposure(shape, rows, cols, counts, 1.2, scheme)
        line = exposure_totals(shape, rows, cols, counts, 1.2, scheme)
        assert line.amplitude_v == grid.amplitude_v
        total = line.per_row[:, None] + line.per_col[None, :] + line.everyone
        np.add.at(total, (rows, cols), line.own)
        np.testing.assert_array_equal(total, grid.total)


def test_count_exposures_adds_the_grid_and_refuses_bad_blocks():
    array = DeviceArray(ideal_device((G_MIN, G_MAX)), 200, seed=0)
    per_row, per_col = np.array([1, 0, 3]), np.array([2, 0, 1, 4])
    rows, cols, own = np.array([0, 2]), np.array([3, 0]), np.array([-2, -6])
    array.count_exposures(10, (3, 4), per_row, per_col, 1, rows, cols, own)
    want = per_row[:, None] + per_col[None, :] + 1
    want[0, 3] -= 2
    want[2, 0] -= 6
    counts = array.disturb_count
    np.testing.assert_array_equal(counts[10:22].reshape(3, 4), want)
    assert counts[:10].sum() == 0 and counts[22:].sum() == 0
    bad = [
        ((195, (3, 4), per_row, per_col, 0), "outside"),
        ((10, (3, 4), per_row[:2], per_col, 0), "per_row"),
        ((10, (3, 4), -per_row, per_col, 0), "negative"),
        ((10, (3, 4), per_row, per_col, 0, np.array([0, 0]), np.array([3, 3]), own), "repeat"),
        ((10, (3, 4), per_row, per_col, 0, np.array([3]), np.array([0]), own[:1]), "block"),
        ((10, (3, 4), per_row, per_col, 0, np.array([1]), np.array([1]), np.array([-1])), "neg"),
    ]
    for args, message in bad:
        with pytest.raises(ConfigError, match=message):
            array.count_exposures(*args)
    np.testing.assert_array_equal(array.disturb_count, counts)  # nothing counted


@pytest.mark.parametrize("scheme", ["V/2", "V/3"])
@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_bench_counts_below_threshold_disturb_like_the_exposure_grids(scheme, order):
    net = Network(small_spec(g_init=0.5))
    bench = SimulatedBench(net, scheme=scheme, seed=1)  # ideal: nothing moves at V/2, V/3
    rng = np.random.default_rng(2)
    want = np.zeros(net.n_devices, dtype=np.int64)
    for _ in range(5):
        ids = np.sort(rng.choice(net.n_devices, 40, replace=False))
        if order == "shuffled":
            rng.shuffle(ids)
        counts = rng.integers(-4, 5, ids.size)
        before = bench.devices.conductances
        report = bench.pulse(PulseRequest(ids, counts, 1.0, 1e-6))
        assert not any("disturb" in note for note in report.notes)
        moved = np.flatnonzero(bench.devices.conductances != before)
        assert set(moved) <= set(ids[counts != 0])
        for tile in net.tiles:
            mine = (ids >= tile.first_device) & (ids < tile.first_device + tile.size)
            if not np.any(mine & (counts != 0)):
                continue
            rows, cols = np.divmod(ids[mine] - tile.first_device, tile.shape[1])
            grid = disturb_exposure(tile.shape, rows, cols, counts[mine], 1.0, scheme)
            want[tile.devices] += grid.total.ravel()
        np.testing.assert_array_equal(bench.disturb_counts, want)
        np.testing.assert_array_equal(bench.circuit.conductances, bench.devices.conductances)


def test_the_circuit_follows_devices_moved_by_disturb():
    net = Network(small_spec(g_init=0.5))
    device = ideal_device((G_MIN, G_MAX)).replace(
        pulse=PulseLaw(v_threshold=0.3, v_nominal=1.0, width_nominal=1e-6)
    )
    bench = SimulatedBench(net, device=device, seed=1)
    ids = np.array([0, 7, 30])
    report = bench.pulse(PulseRequest(ids, np.array([3, -2, 1]), 1.0, 1e-6))
    assert any("moved by disturb" in note for note in report.notes)
    np.testing.assert_array_equal(bench.circuit.conductances, bench.devices.conductances)


@pytest.mark.parametrize("model", ["ideal", "shockley"])
def test_the_solver_reuses_the_drive_only_for_the_same_sources_and_conductances(model):
    net = Network(small_spec(model, 4.0))
    circuit = Circuit(net, net.initial_conductances(np.random.default_rng(0)))
    solver = NativeSolver(circuit)
    rng = np.random.default_rng(1)
    sources = circuit.source_voltages(net.encode_inputs(rng.uniform(0, 1, (3, net.n_inputs))))
    nudges = net.pair_currents(rng.normal(0, 1e-6, (3, net.n_classes)))
    free = solver.solve(sources)
    nudged = solver.solve(sources, nudges)  # the drive of the free phase, reused
    fresh = NativeSolver(circuit)
    for got, want in ((free, fresh.solve(sources)), (nudged, fresh.solve(sources, nudges))):
        for a, b in zip(got.layers, want.layers, strict=True):
            np.testing.assert_array_equal(a, b)
    other = sources.copy()
    other[:, 0] += 0.1
    for a, b in zip(
        solver.solve(other).layers, NativeSolver(circuit).solve(other).layers, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    circuit.conductances[:] *= 1.5
    solver.update_conductances()
    for a, b in zip(
        solver.solve(sources).layers, NativeSolver(circuit).solve(sources).layers, strict=True
    ):
        np.testing.assert_array_equal(a, b)


def plan_by_where(delta_g, g, bounds, cal, max_pulses, rng):
    """The open-loop plan as first written (np.where, masked signs): the reference."""
    g_min, g_max = bounds
    up = delta_g > 0
    step = np.where(up, cal.step_up, cal.step_down)
    room = np.where(up, g_max - g, g - g_min)
    magnitude = np.minimum(np.abs(delta_g), np.maximum(room, 0.0))
    values = magnitude / step
    low = np.floor(values)
    counts = (low + (rng.random(values.shape) < values - low)).astype(np.int64)
    capped = int(np.count_nonzero(counts > max_pulses))
    counts = np.minimum(counts, max_pulses) * np.where(up, 1, -1)
    ids = np.flatnonzero(counts)
    return ids, counts[ids], capped


@pytest.mark.parametrize("steps", [(1e-8, 1e-8), (1.3e-8, 0.7e-8)])
def test_open_loop_plan_is_the_where_based_one(steps):
    cal = PulseCalibration(*steps, 1.0, 1e-6)
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = 5000
        delta_g = rng.normal(0, 3e-8, n) * (rng.random(n) < 0.9)
        delta_g[:5] = [1e-3, -1e-3, 0.0, -0.0, 5e-9]  # capped, capped, none, none
        g = rng.uniform(0.5 * G_MIN, 1.1 * G_MAX, n)  # some estimates outside the range
        g[:2] = 0.5 * (G_MIN + G_MAX)
        seed = int(rng.integers(1 << 30))
        plan = plan_open_loop(delta_g, g, (G_MIN, G_MAX), cal, 50, np.random.default_rng(seed))
        ids, counts, capped = plan_by_where(
            delta_g, g, (G_MIN, G_MAX), cal, 50, np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(plan.request.device_ids, ids)
        np.testing.assert_array_equal(plan.request.counts, counts)
        assert plan.capped == capped >= 2


def test_kendall_sized_network_trains_a_step_without_drops():
    """At 1568-100-10 a training step never materialises the (B, 159,040) drops."""
    from hil.eqprop import EqProp
    from hil.programming import OpenLoopProgrammer

    spec = NetworkSpec(
        inputs=784, hidden=[100], outputs=10, input_gain=10.0, amplifier_gain=4.0,
        diode={"v_low": -0.3, "v_high": 0.3},
    )  # fmt: skip
    net = Network(spec)
    assert net.n_devices == 159_040
    bench = SimulatedBench(net, seed=0)
    rng = np.random.default_rng(0)
    x = net.encode_inputs(rng.uniform(0, 1, (4, 784)))
    result = EqProp(0.5, target_amplitude=0.5).estimate(bench, x, np.arange(4))
    assert result.free._drops is None
    report = OpenLoopProgrammer(bench, rng).apply(-20.0 * G_MAX * result.gradient)
    assert report.pulses > 0
    np.testing.assert_array_equal(bench.circuit.conductances, bench.devices.conductances)
