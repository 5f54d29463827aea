"""The simulated bench with device models: crossbar disturb through the bench's pulse,
limits, endurance, converters, device state; the programming strategies on it; configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.bench import PulseRequest
from hil.composition import build_bench
from hil.config import RunConfig, load_config
from hil.errors import ConfigError, InstrumentError, SafetyError
from hil.network import Network
from hil.programming import ProgrammingConfig, WriteVerifyProgrammer
from hil.run import Run
from simulators.bench import SimulatedBench, build_device_model
from simulators.converters import Converters, quantise
from simulators.devices import PulseLaw, Variability, ideal, reram
from tests.conftest import REPO, SHARED_DATA
from tests.networks import small_spec

LUT_DIR = SHARED_DATA / "device_luts"
G_MIN, G_MAX = 1e-7, 1e-5
STEP = (G_MAX - G_MIN) / 1000


def network(**kw) -> Network:
    return Network(small_spec(g_init=0.5, **kw))


def low_threshold_ideal(v_threshold: float) -> object:
    """The ideal device with a switching threshold low enough for half-select disturb."""
    return ideal(G_MIN, G_MAX).replace(
        pulse=PulseLaw(v_threshold=v_threshold, v_nominal=1.0, width_nominal=1e-6)
    )


def tile_ids(net: Network, tile: int) -> np.ndarray:
    t = net.tiles[tile]
    return np.arange(t.first_device, t.first_device + t.size).reshape(t.shape)


def true_g(bench: SimulatedBench) -> np.ndarray:
    return bench.devices.conductances


# ------------------------------------------------------------------ crossbar scheme


def test_v2_pulse_disturbs_half_selected_as_the_model_says_and_nothing_else():
    net = network()
    bench = SimulatedBench(net, device=low_threshold_ideal(0.3), scheme="V/2", seed=3)
    grid = tile_ids(net, 1)
    selected = grid[2, 1]
    before = true_g(bench)
    report = bench.pulse(PulseRequest(np.array([selected]), np.array([3]), 1.0, 1e-6))
    after = true_g(bench)
    gain = (0.5 - 0.3) / (1.0 - 0.3)  # V/2 across a half-selected device, linear overdrive
    half = np.zeros(net.n_devices, bool)
    half[grid[2, :]] = half[grid[:, 1]] = True
    half[selected] = False
    np.testing.assert_allclose(after[selected] - before[selected], 3 * STEP, rtol=1e-9)
    np.testing.assert_allclose(after[half] - before[half], 3 * gain * STEP, rtol=1e-9)
    rest = ~half
    rest[selected] = False
    np.testing.assert_array_equal(after[rest], before[rest])  # other tiles, other lines
    assert report.applied.tolist() == [3] and report.refused.tolist() == [0]
    assert any("half-selected device(s) moved by disturb" in n for n in report.notes)
    assert bench.disturb_counts[half].tolist() == [3] * int(half.sum())
    assert bench.pulse_counts[selected] == 3 and bench.pulse_counts.sum() == 3


def test_v2_exposures_of_several_pulses_add_up_by_polarity():
    net = network()
    bench = SimulatedBench(net, device=low_threshold_ideal(0.3), scheme="V/2", seed=3)
    grid = tile_ids(net, 0)
    a, b, elsewhere = grid[1, 0], grid[4, 3], tile_ids(net, 2)[0, 0]
    before = true_g(bench)
    bench.pulse(PulseRequest(np.array([a, b, elsewhere]), np.array([2, -1, 4]), 1.0, 1e-6))
    moved = true_g(bench) - before
    gain = 0.2 / 0.7
    # (1, 3): on a's row (2 potentiating) and on b's column (1 depressing)
    np.testing.assert_allclose(moved[grid[1, 3]], (2 - 1) * gain * STEP, rtol=1e-9)
    # (4, 0): on b's row (1 depressing) and on a's column (2 potentiating)
    np.testing.assert_allclose(moved[grid[4, 0]], (2 - 1) * gain * STEP, rtol=1e-9)
    np.testing.assert_allclose(moved[grid[1, 4]], 2 * gain * STEP, rtol=1e-9)
    np.testing.assert_allclose(moved[grid[0, 3]], -1 * gain * STEP, rtol=1e-9)
    assert moved[grid[0, 4]] == 0.0  # on neither line
    assert np.count_nonzero(moved[tile_ids(net, 1).ravel()]) == 0


def test_half_select_below_threshold_moves_nothing_but_is_counted():
    net = network()
    bench = SimulatedBench(net, seed=3)  # ideal preset: threshold 0.6 V > V/2 = 0.5 V
    grid = tile_ids(net, 1)
    before = true_g(bench)
    report = bench.pulse(PulseRequest(np.array([grid[3, 2]]), np.array([-4]), 1.0, 1e-6))
    moved = true_g(bench) - before
    assert np.flatnonzero(moved).tolist() == [grid[3, 2]]
    np.testing.assert_allclose(moved[grid[3, 2]], -4 * STEP, rtol=1e-9)
    assert bench.disturb_counts[grid[3, 0]] == 4 and bench.disturb_counts[grid[0, 0]] == 0
    assert not any("disturb" in n for n in report.notes)


def test_v3_pushes_unselected_devices_of_the_tile_the_other_way():
    net = network()
    bench = SimulatedBench(net, device=low_threshold_ideal(0.2), scheme="V/3", seed=3)
    grid = tile_ids(net, 1)
    before = true_g(bench)
    bench.pulse(PulseRequest(np.array([grid[0, 0]]), np.array([2]), 1.0, 1e-6))
    moved = true_g(bench) - before
    gain = (1 / 3 - 0.2) / 0.8
    np.testing.assert_allclose(moved[grid[0, 1:]], 2 * gain * STEP, rtol=1e-9)
    np.testing.assert_allclose(moved[grid[1:, 0]], 2 * gain * STEP, rtol=1e-9)
    np.testing.assert_allclose(moved[grid[1:, 1:]], -2 * gain * STEP, rtol=1e-9)
    others = np.setdiff1d(np.arange(net.n_devices), grid.ravel())
    np.testing.assert_array_equal(moved[others], 0.0)


# ------------------------------------------------------------------ limits and endurance


def full_state(bench: SimulatedBench) -> dict:
    return {k: np.asarray(v).copy() for k, v in bench.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
    "amplitude, width, message",
    [
        (3.5, 100e-9, "pulse amplitude 3.5 V is outside"),
        (0.05, 100e-9, "pulse amplitude 0.05 V is outside"),
        (1.5, 2e-3, "pulse width 0.002 s is outside"),
        (1.5, 1e-9, "pulse width 1e-09 s is outside"),
        (2.5, 100e-9, "exceeds the device's v_max"),
    ],
)
def test_pulse_beyond_the_limits_raises_and_changes_nothing(amplitude, width, message):
    model = reram(G_MIN, G_MAX)
    model = model.replace(pulse=model.pulse.model_copy(update={"v_max": 2.0}))
    bench = SimulatedBench(network(), device=model, scheme="V/2", seed=5)
    bench.pulse(PulseRequest(np.array([0, 7]), np.array([2, -2]), 1.5, 100e-9))
    before = full_state(bench)
    with pytest.raises(SafetyError, match=message):
        bench.pulse(PulseRequest(np.array([0, 1, 30]), np.array([1, -3, 2]), amplitude, width))
    assert_same_state(full_state(bench), before)


def test_endurance_refuses_pulses_with_a_record_and_counters_count_every_pulse():
    bench = SimulatedBench(network(), device=ideal(G_MIN, G_MAX).replace(endurance=5), seed=1)
    ids = np.array([4, 9, 20])
    first = bench.pulse(PulseRequest(ids, np.array([3, -3, 1]), 1.0, 1e-6))
    assert first.refused.tolist() == [0, 0, 0] and not first.notes
    frozen_target = true_g(bench)[4] + 2 * STEP
    second = bench.pulse(PulseRequest(ids, np.array([4, -1, 2]), 1.0, 1e-6))
    assert second.applied.tolist() == [2, -1, 2] and second.refused.tolist() == [2, 0, 0]
    assert second.notes == [
        "endurance limit of 5 pulses reached: 2 pulse(s) refused to 1 device(s) (4)"
    ]
    assert bench.pulse_counts[ids].tolist() == [5, 4, 3]
    assert bench.exhausted.tolist() == [4]
    third = bench.pulse(PulseRequest(ids[:1], np.array([-3]), 1.0, 1e-6))
    assert third.applied.tolist() == [0] and third.refused.tolist() == [3]
    np.testing.assert_allclose(true_g(bench)[4], frozen_target, rtol=1e-12)
    assert bench.pulse_counts.sum() == 12


# ------------------------------------------------------------------ converters


def test_quantise_rounds_to_two_complement_codes_and_flags_saturation():
    values = np.array([0.0, 0.1, 0.13, -0.37, 0.74, 0.9, -1.2])
    out, saturated = quantise(values, bits=3, full_scale_v=1.0)  # LSB 0.25 V, codes -4..3
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, -0.25, 0.75, 0.75, -1.0])
    # 0.9 V rounds to code 4 > 3; -1.2 V to -5 < -4
    assert saturated.tolist() == [False] * 5 + [True, True]


def test_bench_inputs_pass_the_dac_and_measurements_the_adc():
    net = network()
    inputs = net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (4, net.n_inputs)))
    exact = SimulatedBench(net, seed=2).settle(inputs)
    conv = Converters(dac_bits=6, dac_full_scale_v=4.0, adc_bits=10, adc_full_scale_v=4.0)
    bench = SimulatedBench(net, seed=2, converters=conv)
    m = bench.settle(inputs)
    dac_lsb, adc_lsb = 4.0 / 32, 4.0 / 512
    np.testing.assert_allclose(bench.applied_inputs, np.rint(inputs[-1] / dac_lsb) * dac_lsb)
    codes = m.node_voltages / adc_lsb
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-9)
    assert np.abs(m.node_voltages - exact.node_voltages).max() < 2 * dac_lsb
    assert not np.array_equal(m.outputs, exact.outputs)
    assert conv.adc_overflows == 0
    small = Converters(adc_bits=10, adc_full_scale_v=2.0)  # inputs reach 3 V: saturates
    top = SimulatedBench(net, seed=2, converters=small).settle(inputs).node_voltages.max()
    assert top == pytest.approx(2.0 - 2.0 / 512) and small.adc_overflows > 0

    noisy = SimulatedBench(net, seed=2, converters=Converters(adc_noise_v=0.01, seed=7))
    spread = np.std(
        noisy.settle(np.repeat(inputs[:1], 400, 0)).node_voltages - exact.node_voltages[:1]
    )
    assert 0.009 < spread < 0.011


def saturating_bench(flagged_samples: str = "record") -> tuple[SimulatedBench, np.ndarray]:
    """A bench whose 2 V ADC the 3 V inputs of the returned batch overflow."""
    net = network()
    inputs = net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (4, net.n_inputs)))
    conv = Converters(adc_bits=10, adc_full_scale_v=2.0, seed=0)
    bench = SimulatedBench(net, seed=2, converters=conv, flagged_samples=flagged_samples)
    return bench, inputs


def test_adc_overflow_is_recorded_per_node_and_sample():
    bench, inputs = saturating_bench("record")
    exact = SimulatedBench(bench.network, seed=2).settle(inputs).node_voltages
    m = bench.settle(inputs)
    assert m.overflow.shape == m.node_voltages.shape and m.overflow.dtype == bool
    lsb = 2.0 / 512
    # exactly the readings whose true voltage rounds past an end code are flagged
    np.testing.assert_array_equal(m.overflow, (exact >= 2.0 - lsb / 2) | (exact < -2.0 - lsb / 2))
    assert m.overflow.any() and not m.overflow.all()
    assert bench.converters.adc_overflows == int(m.overflow.sum())
    np.testing.assert_array_equal(m.flagged, m.overflow.any(axis=1))
    assert not m.compliance.any()  # a simulated bench has no compliance model


def test_adc_overflow_raises_naming_the_nodes_when_asked_to():
    bench, inputs = saturating_bench("raise")
    recorded = saturating_bench()[0].settle(inputs).overflow
    flagged, overflowed = np.flatnonzero(recorded.any(axis=0)), int(recorded.sum())
    with pytest.raises(InstrumentError, match=r"outside the ADC full scale of ±2 V") as info:
        bench.settle(inputs)
    assert (info.value.instrument, info.value.command) == ("ADC", "settle")
    named = ", ".join(str(n) for n in flagged[:10]) + (" ..." if flagged.size > 10 else "")
    assert f"{overflowed} node voltage(s)" in info.value.reason
    assert f"(nodes {named}; 4 of 4 samples)" in info.value.reason
    bench.settle(inputs * 0.0)  # readings within full scale settle normally
    with pytest.raises(ConfigError, match="flagged_samples"):
        SimulatedBench(bench.network, flagged_samples="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape",
    [lambda w: (2, 4, w), lambda w: (w,), lambda w: (3, w - 1), lambda w: (0, w)],
    ids=["3-D", "1-D", "wrong width", "empty batch"],
)
def test_settle_of_any_other_shape_is_refused_with_nothing_applied(shape):
    net = network()
    conv = Converters(adc_noise_v=0.01, seed=0)
    bench = SimulatedBench(net, seed=2, converters=conv)
    good = net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (2, net.n_inputs)))
    bench.settle(good)
    applied = bench.applied_inputs.copy(), bench.applied_nudges.copy()
    state = {k: v.copy() for k, v in conv.state_dict().items()}
    bad = np.full(shape(net.n_input_sources), 0.1)
    with pytest.raises(SafetyError, match="nothing was applied"):
        bench.settle(bad)
    with pytest.raises(SafetyError, match="nothing was applied"):
        bench.settle(good, np.zeros((2, 4, net.n_output_nodes)))
    np.testing.assert_array_equal(bench.applied_inputs, applied[0])
    np.testing.assert_array_equal(bench.applied_nudges, applied[1])
    after = conv.state_dict()
    assert after.keys() == state.keys()
    for key in state:  # no ADC noise was drawn, no overflow counted
        np.testing.assert_array_equal(after[key], state[key])


def test_safe_state_is_confirmed_and_close_reaches_it():
    net = network()
    bench = SimulatedBench(net, seed=2)
    bench.settle(np.full((1, net.n_input_sources), 0.5), np.full((1, net.n_output_nodes), 1e-7))
    report = bench.safe_state()
    assert report.confirmed and report.unconfirmed == ()
    bench.settle(np.full((1, net.n_input_sources), 0.5))
    bench.close()
    assert not bench.applied_inputs.any() and not bench.applied_nudges.any()


def test_converters_from_the_config():
    config = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())
    config["bench"]["converters"] = {"dac_bits": 8, "adc_bits": 12, "adc_noise_v": 1e-3}
    bench = build_bench(RunConfig.model_validate(config))
    assert bench.converters.dac_lsb() == pytest.approx(12.0 / 128)  # limits.max_input_voltage
    assert bench.converters.adc_lsb() == pytest.approx(12.0 / 2048)
    assert bench.converters.adc_noise_v == 1e-3


# ------------------------------------------------------------------ device state


def exercise(bench: SimulatedBench, rng: np.random.Generator) -> list[np.ndarray]:
    """Pulses, reads and settles; returns everything observed."""
    net, seen = bench.network, []
    for _ in range(3):
        ids = rng.choice(net.n_devices, size=net.n_devices // 3, replace=False)
        report = bench.pulse(PulseRequest(ids, rng.integers(-6, 7, ids.size), 1.5, 100e-9))
        seen += [report.applied, bench.read_conductances(ids)]
        x = net.encode_inputs(rng.uniform(0, 1, (3, net.n_inputs)))
        seen.append(bench.settle(x).node_voltages)
    seen += [bench.devices.conductances, bench.pulse_counts, bench.disturb_counts]
    return seen


def reram_bench(seed: int) -> SimulatedBench:
    model = reram(G_MIN, G_MAX).replace(
        endurance=40, pulse=PulseLaw(v_threshold=0.7, v_nominal=1.5, width_nominal=100e-9)
    )  # threshold below V/2 of the pulses: disturb is part of the trajectory
    conv = Converters(adc_bits=12, adc_noise_v=2e-3, seed=seed)
    return SimulatedBench(network(), device=model, converters=conv, seed=seed)


def test_saved_state_reproduces_the_future_trajectory_exactly(tmp_path: Path):
    bench = reram_bench(seed=4)
    exercise(bench, np.random.default_rng(0))
    np.savez(tmp_path / "bench.npz", **bench.state_dict())  # as the trainer checkpoints
    future = exercise(bench, np.random.default_rng(1))

    restored = reram_bench(seed=99)
    assert not np.array_equal(restored.devices.conductances, bench.devices.conductances)
    with np.load(tmp_path / "bench.npz") as saved:
        restored.load_state_dict({k: saved[k] for k in saved.files})
    again = exercise(restored, np.random.default_rng(1))
    for a, b in zip(future, again, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="different device model"):
        SimulatedBench(network(), seed=0).load_state_dict(bench.state_dict())


def test_device_range_is_the_networks_and_bounds_are_clipped_into_it():
    net = Network(small_spec(g_min=2e-6, g_max=2e-5))
    bench = SimulatedBench(net, device=reram(), seed=0)  # preset built on 0.1 to 10 uS
    assert bench.device_model.bounds() == (2e-6, 2e-5)
    lo, hi = bench.devices.lower_bounds, bench.devices.upper_bounds
    assert lo.min() >= 2e-6 and hi.max() <= 2e-5 and np.all(hi - lo >= 0.01 * 1.8e-5 * 0.999)
    assert lo.max() > 2e-6 and hi.min() < 2e-5  # the spread inside the range is kept
    spread = SimulatedBench(net, device=reram(), seed=0, clip_device_bounds=False)
    assert spread.devices.upper_bounds.max() > 2e-5


def test_ideal_preset_keeps_the_fixed_step_of_n_states():
    bench = SimulatedBench(network(), seed=0, n_states=500)
    step = (G_MAX - G_MIN) / 500
    assert bench.calibration.step_up == pytest.approx(step)
    before = bench.read_conductances()
    bench.pulse(PulseRequest(np.array([1, 2]), np.array([7, -3]), 1.0, 1e-6))
    np.testing.assert_allclose(bench.read_conductances()[1:3] - before[1:3], [7 * step, -3 * step])


# ------------------------------------------------------------------ programming strategies


def noisy_reram_bench(seed: int = 0, **variability) -> SimulatedBench:
    var = {"step_d2d": 0.3, "c2c": 2.0, "read_noise": 0.002, **variability}
    return SimulatedBench(
        network(), device=reram(G_MIN, G_MAX).replace(variability=Variability(**var)), seed=seed
    )


def test_write_verify_reaches_the_tolerance_on_noisy_devices():
    bench = noisy_reram_bench()
    config = ProgrammingConfig(
        strategy="write_verify", tolerance=3.0, max_iterations=40, max_pulses_per_iteration=30
    )
    programmer = WriteVerifyProgrammer(bench, np.random.default_rng(0), config)
    lo, hi = bench.devices.lower_bounds, bench.devices.upper_bounds
    rng = np.random.default_rng(1)
    ids = rng.choice(bench.network.n_devices, 120, replace=False)
    targets = lo[ids] + rng.uniform(0.2, 0.8, ids.size) * (hi[ids] - lo[ids])
    report = programmer.program(ids, targets)
    tol = programmer.tolerance_s
    assert tol == pytest.approx(3 * (bench.calibration.step_up + bench.calibration.step_down) / 2)
    assert report.converged is not None and report.converged.mean() > 0.97
    assert np.all(np.abs(report.residual[report.converged]) <= tol)
    truth = bench.devices.conductances[ids]
    noise = 0.002 * truth  # read noise, relative
    ok = report.converged
    assert np.all(np.abs(targets[ok] - truth[ok]) <= tol + 5 * noise[ok])
    assert report.reads >= ids.size and 1 < report.iterations <= 40
    assert report.pulses == int(bench.pulse_counts.sum())


def test_write_verify_stops_at_the_cap_and_says_so():
    bench = noisy_reram_bench()
    config = ProgrammingConfig(strategy="write_verify", tolerance=0.01, max_iterations=3)
    programmer = WriteVerifyProgrammer(bench, np.random.default_rng(0), config)
    ids = np.arange(40)
    targets = np.full(ids.size, 5e-6)
    report = programmer.program(ids, targets)
    assert report.iterations == 3
    assert report.converged is not None and report.converged.sum() < 5
    assert report.reads <= 3 * ids.size
    unconverged = report.unconverged.size
    assert (
        f"write-verify: {unconverged} device(s) stopped at the iteration cap (3)"
        in (report.notes[-1])
    )
    np.testing.assert_allclose(
        report.residual, targets - programmer.g_estimate[ids]
    )  # residual of the last read


def test_write_verify_ramps_within_the_limits_and_retires_stuck_devices():
    bench = noisy_reram_bench(stuck_off=1.0)  # every device stuck: nothing ever moves
    amplitudes = []
    pulse = bench.pulse
    bench.pulse = lambda request: amplitudes.append(request.amplitude_v) or pulse(request)
    config = ProgrammingConfig(
        strategy="write_verify",
        threshold=1.0,
        max_iterations=8,
        amplitude_step_v=0.1,
        amplitude_max_v=1.8,
        max_failures=2,
    )
    programmer = WriteVerifyProgrammer(bench, np.random.default_rng(0), config)
    dg = np.zeros(bench.network.n_devices)
    dg[:5] = 20 * STEP
    first = programmer.apply(dg)
    assert first.unconverged.tolist() == [0, 1, 2, 3, 4]
    assert amplitudes[0] == 1.5 and max(amplitudes) == pytest.approx(1.8)
    assert np.all(np.diff(amplitudes) >= 0)
    programmer.apply(np.zeros_like(dg))
    assert programmer.retired[:5].all() and not programmer.retired[5:].any()
    count = len(amplitudes)
    third = programmer.apply(dg)
    assert len(amplitudes) == count and third.pulses == 0  # retired: no more pulses


def test_write_verify_through_endurance_retires_the_device_with_a_record():
    bench = SimulatedBench(network(), device=ideal(G_MIN, G_MAX).replace(endurance=3), seed=0)
    programmer = WriteVerifyProgrammer(
        bench, np.random.default_rng(0), ProgrammingConfig(strategy="write_verify", tolerance=0.5)
    )
    dg = np.zeros(bench.network.n_devices)
    dg[0] = 10 * STEP
    report = programmer.apply(dg)
    assert report.pulses == 3 and report.refused > 0
    assert any("endurance limit of 3 pulses reached" in n for n in report.notes)
    assert report.blocked.tolist() == [0] and programmer.retired[0]


# ------------------------------------------------------------------ training on devices


def digits_config(**training) -> RunConfig:
    config = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())
    config["network"]["hidden"] = [32]
    config["bench"].pop("n_states")
    config["bench"].update(pulse_amplitude_v=None, pulse_width_s=None)
    config["bench"]["device"] = {"preset": "reram"}
    config["data"]["train_limit"] = 300
    config["training"].update(epochs=2, **training)
    return RunConfig.model_validate(config)


def test_write_verify_training_records_its_work_and_resumes_exactly(tmp_path: Path):
    config = digits_config(programming={"strategy": "write_verify", "threshold": 5, "tolerance": 5})
    straight = Run(config, tmp_path / "a").execute().history
    last = straight[-1]
    assert last.reads > 0 and last.pulses > 0 and 0 < last.residual_rms < 1e-6
    assert last.test_accuracy > 0.5

    one = config.model_copy(deep=True)
    one.training.epochs = 1
    Run(one, tmp_path / "b").execute()
    history = Run(config, tmp_path / "b", resume=True).execute().history
    assert history[-1].test_accuracy == last.test_accuracy
    assert history[-1].pulses == last.pulses and history[-1].reads == last.reads
    with (
        np.load(tmp_path / "a" / "checkpoint.npz") as a,
        np.load(tmp_path / "b" / "checkpoint.npz") as b,
    ):
        for key in ("bench.conductances", "bench.devices.g", "programmer.g_target"):
            np.testing.assert_array_equal(a[key], b[key])
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert {"pulses_refused", "reads", "residual_rms", "unconverged"} <= set(saved[-1])


# ------------------------------------------------------------------ configs


def test_device_configs_are_checked_before_anything_runs(tmp_path: Path):
    base = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())

    def check(bench_changes: dict, message: str) -> None:
        config = json.loads(json.dumps(base))
        config["bench"].update(bench_changes)
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match=message):
            build_bench(load_config(path))

    check({"device": {"preset": "pcm"}}, "bench.device.preset")
    check({"device": {"preset": "reram"}}, "n_states only applies to the ideal device")
    check({"device": {"preset": "measured"}}, "needs file_increasing and file_decreasing")
    check({"device": {"preset": "taox_measured"}}, "needs data_dir")
    check({"scheme": "V/4"}, "bench.scheme")
    check({"converters": {"adc_bits": 1}}, "bench.converters.adc_bits")
    check({"device": {"overrides": {"g_max": 1.0}}}, "cannot set g_min/g_max")
    check({"device": {"overrides": {"variability": {"c2c": -1}}}}, "invalid device overrides")
    check({"pulse_amplitude_v": 0.5}, "does not exceed the device's switching threshold")


def test_reram_config_with_overrides_builds_the_device_it_says():
    config = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())
    config["bench"].pop("n_states")
    config["bench"].update(pulse_amplitude_v=None, pulse_width_s=None, scheme="V/3")
    config["bench"]["device"] = {
        "preset": "reram",
        "overrides": {"endurance": 1000, "variability": {"c2c": 1.0}},
    }
    bench = build_bench(RunConfig.model_validate(config))
    model = bench.device_model
    assert model.endurance == 1000 and model.variability.c2c == 1.0
    assert model.variability.step_d2d == 0.3  # the other fields keep the preset's values
    assert bench.scheme == "V/3" and bench.calibration.amplitude_v == 1.5


def test_measured_device_from_any_table_path():
    if not (LUT_DIR / "ENODe_dG_increasing.txt.gz").is_file():
        pytest.skip(f"measured pulse-response tables not found in {LUT_DIR}")
    model = build_device_model(
        "measured",
        (G_MIN, G_MAX),
        file_increasing=LUT_DIR / "ENODe_dG_increasing.txt.gz",
        file_decreasing=LUT_DIR / "ENODe_dG_decreasing.txt.gz",
    )
    assert model.bounds() == (G_MIN, G_MAX)
    bench = SimulatedBench(network(), device=model, seed=0)
    before = bench.read_conductances()
    bench.pulse(PulseRequest(np.array([3]), np.array([5]), 1.0, 1e-6))
    assert bench.read_conductances()[3] > before[3]


def test_bench_configs_in_the_repo_are_valid():
    for path in sorted((REPO / "bench_configs").glob("sim-*.yaml")):
        config = load_config(path)
        device = config.bench.device
        if config.bench.engine != "native" or (device.data_dir and not device.data_dir.exists()):
            continue  # valid; building it needs ngspice or the measured tables
        assert isinstance(build_bench(config), SimulatedBench), path


def test_a_run_directory_config_of_a_device_run_loads_again(tmp_path: Path):
    config = load_config(REPO / "bench_configs" / "sim-digits-reram.yaml")
    assert config.bench.device.preset == "reram"
    assert config.training.programming.strategy == "write_verify"
    path = tmp_path / "config.yaml"  # what `hil train` writes next to the run
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(path) == config
