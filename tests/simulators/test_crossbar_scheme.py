"""Crossbar biasing schemes: voltages per device, disturb exposure, and disturb on devices."""

from __future__ import annotations

import numpy as np
import pytest

from hil.errors import ConfigError
from simulators.crossbar_scheme import device_voltages, disturb_exposure, line_voltages
from simulators.devices import ConstantStepModel, DeviceArray, PulseLaw

SHAPE = (4, 5)
G_MIN, G_MAX = 1e-7, 1e-5
STEP = 1e-8
WIDTH = 1e-6


def roles(shape, r, c):
    """Masks of the selected, half-selected and unselected devices."""
    rows = np.arange(shape[0])[:, None] == r
    cols = np.arange(shape[1])[None, :] == c
    return rows & cols, rows ^ cols, ~(rows | cols)


@pytest.mark.parametrize("volts", [1.2, -0.8])
def test_v2_scheme_half_selected_see_half(volts):
    v = device_voltages(SHAPE, 1, 3, volts, "V/2")
    selected, half, rest = roles(SHAPE, 1, 3)
    assert v.shape == SHAPE
    assert np.all(v[selected] == volts)
    assert np.all(v[half] == volts / 2) and half.sum() == 3 + 4
    assert np.all(v[rest] == 0.0)


@pytest.mark.parametrize("volts", [1.2, -0.9])
def test_v3_scheme_others_see_a_third_with_opposite_sign_when_unselected(volts):
    v = device_voltages(SHAPE, 2, 0, volts, "V/3")
    selected, half, rest = roles(SHAPE, 2, 0)
    np.testing.assert_allclose(v[selected], volts)
    np.testing.assert_allclose(v[half], volts / 3)
    np.testing.assert_allclose(v[rest], -volts / 3)


@pytest.mark.parametrize("scheme", ["V/2", "V/3"])
def test_device_voltage_is_row_line_minus_column_line(scheme):
    v_rows, v_cols = line_voltages(SHAPE, 3, 4, 1.5, scheme)
    np.testing.assert_allclose(v_rows[3], 0.75)
    np.testing.assert_allclose(v_cols[4], -0.75)
    np.testing.assert_allclose(
        v_rows[:, None] - v_cols[None, :], device_voltages(SHAPE, 3, 4, 1.5, scheme)
    )


def test_batched_voltages_stack_the_single_ones():
    rows, cols, volts = np.array([0, 3, 3]), np.array([4, 0, 4]), np.array([1.0, -1.0, 2.0])
    batch = device_voltages(SHAPE, rows, cols, volts, "V/3")
    assert batch.shape == (3, *SHAPE)
    for k in range(3):
        np.testing.assert_array_equal(
            batch[k], device_voltages(SHAPE, int(rows[k]), int(cols[k]), volts[k], "V/3")
        )


@pytest.mark.parametrize("scheme", ["V/2", "V/3"])
def test_exposure_counts_match_a_pulse_by_pulse_tally(scheme):
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, SHAPE[0], 12), rng.integers(0, SHAPE[1], 12)
    counts = rng.integers(-5, 6, 12)
    exposure = disturb_exposure(SHAPE, rows, cols, counts, 1.2, scheme)
    up = np.zeros(SHAPE, int)
    down = np.zeros(SHAPE, int)
    for r, c, n in zip(rows, cols, counts, strict=True):
        v = device_voltages(SHAPE, int(r), int(c), np.sign(n) * 1.2, scheme)
        v[r, c] = 0.0  # a device's own pulses are not disturbs
        up += np.where(v > 0, abs(n), 0)
        down += np.where(v < 0, abs(n), 0)
    np.testing.assert_array_equal(exposure.potentiating, up)
    np.testing.assert_array_equal(exposure.depressing, down)
    assert exposure.amplitude_v == pytest.approx(1.2 / (2 if scheme == "V/2" else 3))


def tile_devices(v_threshold: float) -> DeviceArray:
    law = PulseLaw(v_threshold=v_threshold, v_nominal=1.0, width_nominal=WIDTH)
    model = ConstantStepModel(g_min=G_MIN, g_max=G_MAX, step_up=STEP, step_down=STEP, pulse=law)
    g0 = np.linspace(2e-6, 8e-6, SHAPE[0] * SHAPE[1])
    return DeviceArray(model, SHAPE[0] * SHAPE[1], seed=0, g_init=g0)


def program_one(devices: DeviceArray, r: int, c: int, count: int, scheme: str) -> None:
    """Pulse (r, c) ``count`` times at 1 V and apply the disturbs the scheme implies."""
    flat = r * SHAPE[1] + c
    devices.apply_pulses(np.array([flat]), np.array([count]), 1.0, WIDTH)
    exposure = disturb_exposure(SHAPE, np.array([r]), np.array([c]), np.array([count]), 1.0, scheme)
    for polarity in (1, -1):
        idx, n = exposure.for_polarity(polarity)
        devices.disturb(idx, exposure.amplitude_v, WIDTH, polarity, n)


def test_v2_with_threshold_between_half_and_full_disturbs_nothing():
    devices = tile_devices(v_threshold=0.6)
    before = devices.conductances.reshape(SHAPE)
    program_one(devices, 1, 2, 7, "V/2")
    after = devices.conductances.reshape(SHAPE)
    selected, half, rest = roles(SHAPE, 1, 2)
    np.testing.assert_allclose(after[selected], before[selected] + 7 * STEP, rtol=1e-12)
    np.testing.assert_array_equal(after[half], before[half])
    np.testing.assert_array_equal(after[rest], before[rest])
    np.testing.assert_array_equal(devices.disturb_count.reshape(SHAPE)[half], 7)
    np.testing.assert_array_equal(devices.pulse_count.reshape(SHAPE)[half], 0)


def test_v2_with_threshold_below_half_disturbs_by_the_model_law():
    devices = tile_devices(v_threshold=0.3)
    before = devices.conductances.reshape(SHAPE)
    program_one(devices, 2, 4, -6, "V/2")
    after = devices.conductances.reshape(SHAPE)
    selected, half, rest = roles(SHAPE, 2, 4)
    disturb_gain = (0.5 - 0.3) / (1.0 - 0.3)
    np.testing.assert_allclose(after[selected], before[selected] - 6 * STEP, rtol=1e-12)
    np.testing.assert_allclose(after[half], before[half] - 6 * disturb_gain * STEP, rtol=1e-12)
    np.testing.assert_array_equal(after[rest], before[rest])


def test_v3_below_threshold_spares_all_and_above_pushes_unselected_the_other_way():
    quiet = tile_devices(v_threshold=0.4)
    before = quiet.conductances.reshape(SHAPE)
    program_one(quiet, 0, 0, 5, "V/3")
    selected, half, rest = roles(SHAPE, 0, 0)
    np.testing.assert_array_equal(quiet.conductances.reshape(SHAPE)[~selected], before[~selected])
    loud = tile_devices(v_threshold=0.2)
    program_one(loud, 0, 0, 5, "V/3")
    after = loud.conductances.reshape(SHAPE)
    gain = (1 / 3 - 0.2) / (1.0 - 0.2)
    np.testing.assert_allclose(after[half], before[half] + 5 * gain * STEP, rtol=1e-12)
    np.testing.assert_allclose(after[rest], before[rest] - 5 * gain * STEP, rtol=1e-12)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="scheme"):
        device_voltages(SHAPE, 0, 0, 1.0, "V/4")
    with pytest.raises(ConfigError, match=r"row must lie in \[0, 3\]"):
        device_voltages(SHAPE, 4, 0, 1.0)
    with pytest.raises(ConfigError, match="tile shape"):
        line_voltages((0, 3), 0, 0, 1.0)
    with pytest.raises(ConfigError, match="counts"):
        disturb_exposure(SHAPE, np.array([0]), np.array([0]), np.array([1.5]), 1.0)
