"""Simulated bench configs (pydantic): engine, device model, converters, limits.

A ``kind: simulated`` bench section; also the ``physics`` of an emulated lab. Schemas only:
the composition root (:mod:`hil.composition`) turns them into benches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from hil.bench import SafetyLimits
from hil.schema import MAX_COUNT, MAX_SEED, Schema
from hil.vocabulary import (
    MEASURED_PRESETS,
    DevicePreset,
    EngineName,
    FlaggedSamples,
    PulseScheme,
)


class DeviceConfig(Schema):
    """Which memristor model the simulated devices follow.

    Attributes
    ----------
    preset : str
        ``ideal`` (constant step, ``n_states`` pulses over the range, no noise), ``reram``,
        ``ecram``, ``taox_measured``, ``enode_measured`` (see ``simulators.devices.presets``)
        or ``measured``: any pair of tables in CrossSim's format given by path. Every model
        is mapped linearly onto the network's ``[g_min, g_max]``.
    data_dir : Path or None
        Folder holding Sandia's tables (``taox_measured``, ``enode_measured``); relative
        paths are relative to the working directory.
    file_increasing, file_decreasing : Path or None
        The potentiating and depressing tables of a ``measured`` device.
    overrides : dict
        Model fields changed after the preset is built, merged into nested ones, e.g.
        ``{endurance: 100000, variability: {c2c: 2.0}, pulse: {v_threshold: 0.4}}``;
        checked when the bench is built (before anything runs).
    clip_bounds : bool
        Clip every device's own bounds (device-to-device spread) into the network's
        ``[g_min, g_max]``.
    """

    preset: DevicePreset = "ideal"
    data_dir: Path | None = None
    file_increasing: Path | None = None
    file_decreasing: Path | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    clip_bounds: bool = True

    @model_validator(mode="after")
    def _sources(self) -> DeviceConfig:
        files = self.file_increasing is not None or self.file_decreasing is not None
        if self.preset == "measured":
            if self.file_increasing is None or self.file_decreasing is None:
                raise ValueError("preset 'measured' needs file_increasing and file_decreasing")
        elif files:
            raise ValueError(
                f"file_increasing/file_decreasing only apply to preset 'measured', "
                f"not {self.preset!r}"
            )
        if self.preset in MEASURED_PRESETS and self.data_dir is None:
            raise ValueError(f"preset {self.preset!r} needs data_dir (the folder of its tables)")
        if self.data_dir is not None and self.preset not in MEASURED_PRESETS:
            raise ValueError("data_dir only applies to taox_measured and enode_measured")
        _check_overrides(self.overrides)
        if {"g_min", "g_max"} & set(self.overrides):
            raise ValueError("overrides cannot set g_min/g_max: devices take the network's range")
        return self


def _check_overrides(tree: object, depth: int = 0) -> int:
    """Count the entries of a device override tree; ValueError past 4 levels or 256 entries
    (the model has a few dozen fields: anything bigger is a mistake or an attack)."""
    if depth > 4:
        raise ValueError("overrides nest deeper than 4 levels")
    entries = 0
    if isinstance(tree, dict):
        for value in tree.values():
            entries += 1 + _check_overrides(value, depth + 1)
    elif isinstance(tree, list):
        if len(tree) > 256:
            raise ValueError("overrides hold a list longer than 256 items")
        entries += len(tree)
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ValueError("overrides hold an infinite or NaN number")
    if entries > 256:
        raise ValueError("overrides hold more than 256 entries")
    return entries


class ConvertersConfig(Schema):
    """The simulated bench's converters (None bits: ideal).

    Attributes
    ----------
    dac_bits : int or None
        Resolution of the input DACs (bipolar, two's complement).
    dac_full_scale_v : float or None
        DAC full scale (V); None for the bench's ``limits.max_input_voltage``.
    adc_bits : int or None
        Resolution of the ADCs measuring the node voltages.
    adc_full_scale_v : float or None
        ADC full scale (V); None for the bench's ``limits.max_input_voltage``.
    adc_noise_v : float
        RMS noise of every measured voltage (V).
    """

    dac_bits: int | None = Field(None, ge=2, le=32)
    dac_full_scale_v: float | None = Field(None, gt=0, le=1e6)
    adc_bits: int | None = Field(None, ge=2, le=32)
    adc_full_scale_v: float | None = Field(None, gt=0, le=1e6)
    adc_noise_v: float = Field(0.0, ge=0, le=1e3)


class SimulatedBenchConfig(Schema):
    """A bench backed by a simulated circuit.

    Attributes
    ----------
    engine : ``"native"`` or ``"spice"``
    device : DeviceConfig
        The device model (preset, tables, overrides).
    n_states : int or None
        Pulses over the full conductance range of the ideal device (``device.preset:
        ideal`` only; None for 1000).
    pulse_amplitude_v, pulse_width_s : float or None
        Nominal programming pulse (V, s); None for the device model's nominal pulse.
    scheme : ``"V/2"`` or ``"V/3"``
        Crossbar biasing when a device is pulsed: half-selected devices see V/2 (or V/3)
        and are disturbed as the device model says.
    converters : ConvertersConfig
        DAC on the inputs, ADC and noise on the measured voltages.
    seed : int or None
        Seeds the devices (initial state, variation, noise) and the ADC noise; None for
        ``training.seed``.
    limits : SafetyLimits
    flagged_samples : ``"record"`` or ``"raise"``
        A sample with an ADC overflow is recorded in the Measurement's ``overflow`` array
        (default) or raises an InstrumentError.
    """

    kind: Literal["simulated"] = "simulated"
    engine: EngineName = "native"
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    n_states: int | None = Field(None, gt=0, le=MAX_COUNT)
    pulse_amplitude_v: float | None = Field(None, gt=0, le=1e3)
    pulse_width_s: float | None = Field(None, gt=0, le=1e3)
    scheme: PulseScheme = "V/2"
    converters: ConvertersConfig = Field(default_factory=ConvertersConfig)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    limits: SafetyLimits = Field(default_factory=SafetyLimits)
    flagged_samples: FlaggedSamples = "record"

    @model_validator(mode="after")
    def _n_states_for_ideal(self) -> SimulatedBenchConfig:
        if self.n_states is not None and self.device.preset != "ideal":
            raise ValueError(
                f"n_states only applies to the ideal device, not {self.device.preset!r} "
                "(its pulses over the range come from the model)"
            )
        return self
