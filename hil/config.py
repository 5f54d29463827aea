"""Run configs (pydantic), loaded from bench_configs/*.yaml, and the one bench factory.

A config file holds four sections::

    network:  NetworkSpec  (inputs/outputs must fit the data)
    bench:    which bench realises it (simulated: engine and device; lab: instruments)
    data:     DataConfig
    training: TrainingConfig

Every error names the field and the reason, and is raised before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hil.bench import Bench, SafetyLimits
from hil.data import DataConfig, Dataset
from hil.eqprop import Variant
from hil.errors import ConfigError
from hil.lab_config import LabBenchConfig
from hil.network import Network, NetworkSpec
from hil.programming import ProgrammingConfig


class DeviceConfig(BaseModel):
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

    model_config = ConfigDict(extra="forbid")

    preset: Literal["ideal", "reram", "ecram", "taox_measured", "enode_measured", "measured"] = (
        "ideal"
    )
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
        if self.preset in ("taox_measured", "enode_measured") and self.data_dir is None:
            raise ValueError(f"preset {self.preset!r} needs data_dir (the folder of its tables)")
        if self.data_dir is not None and self.preset not in ("taox_measured", "enode_measured"):
            raise ValueError("data_dir only applies to taox_measured and enode_measured")
        if {"g_min", "g_max"} & set(self.overrides):
            raise ValueError("overrides cannot set g_min/g_max: devices take the network's range")
        return self


class ConvertersConfig(BaseModel):
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

    model_config = ConfigDict(extra="forbid")

    dac_bits: int | None = Field(None, ge=2, le=32)
    dac_full_scale_v: float | None = Field(None, gt=0)
    adc_bits: int | None = Field(None, ge=2, le=32)
    adc_full_scale_v: float | None = Field(None, gt=0)
    adc_noise_v: float = Field(0.0, ge=0)


class SimulatedBenchConfig(BaseModel):
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
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["simulated"] = "simulated"
    engine: Literal["native", "spice"] = "native"
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    n_states: int | None = Field(None, gt=0)
    pulse_amplitude_v: float | None = Field(None, gt=0)
    pulse_width_s: float | None = Field(None, gt=0)
    scheme: Literal["V/2", "V/3"] = "V/2"
    converters: ConvertersConfig = Field(default_factory=ConvertersConfig)
    seed: int | None = None
    limits: SafetyLimits = Field(default_factory=SafetyLimits)

    @model_validator(mode="after")
    def _n_states_for_ideal(self) -> SimulatedBenchConfig:
        if self.n_states is not None and self.device.preset != "ideal":
            raise ValueError(
                f"n_states only applies to the ideal device, not {self.device.preset!r} "
                "(its pulses over the range come from the model)"
            )
        return self


class TrainingConfig(BaseModel):
    """EqProp training hyperparameters.

    Attributes
    ----------
    epochs : int
    batch_size : int
    learning_rate : float
        ``dG = -learning_rate * g_ref**2 * dC/dG`` (dimensionless, see hil.eqprop).
    learning_rate_decay : float
        Multiplies the learning rate after every epoch.
    beta : float
        Nudge strength relative to ``g_ref`` (the network's g_max).
    variant : ``"centered"``, ``"positive"`` or ``"negative"``
    target_amplitude : float
        Target differential output of the correct class (V); 0 V for the others.
    seed : int
        Seeds the bench's initial state, the split, the batches and the pulse rounding.
    resync_every : int
        Re-read every conductance after this many steps (0: only at the start of epochs).
    programming : ProgrammingConfig
        How updates become pulses: ``open_loop``, ``sign`` or ``write_verify`` and their
        threshold, tolerance, iteration cap and amplitude ramp (see hil.programming).
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, gt=0)
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    learning_rate_decay: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.5, gt=0)
    variant: Variant = "centered"
    target_amplitude: float = Field(1.0, gt=0)
    seed: int = 0
    resync_every: int = Field(0, ge=0)
    programming: ProgrammingConfig = Field(default_factory=ProgrammingConfig)


class RunConfig(BaseModel):
    """A whole run: network, bench, data and training.

    ``bench.kind`` says which bench: ``simulated`` (:class:`SimulatedBenchConfig`) or ``lab``
    (:class:`hil.lab_config.LabBenchConfig`: instruments, emulated or physical).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    network: NetworkSpec
    bench: SimulatedBenchConfig | LabBenchConfig = Field(
        default_factory=SimulatedBenchConfig, discriminator="kind"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("bench", mode="before")
    @classmethod
    def _simulated_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "simulated", **value}  # `kind` may be left out of simulated benches
        return value

    def check_fits(self, data: Dataset) -> None:
        """Raise ConfigError unless the network's inputs and outputs fit the data."""
        if self.network.inputs != data.n_features:
            raise ConfigError(
                f"network.inputs is {self.network.inputs} but the {data.name} data has "
                f"{data.n_features} features"
            )
        if self.network.outputs < data.n_classes:
            raise ConfigError(
                f"network.outputs is {self.network.outputs} but the {data.name} data has "
                f"{data.n_classes} classes"
            )


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``field.path: reason``."""
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        loc = list(item["loc"])
        if loc[:1] == ["bench"] and loc[1:2] in (["simulated"], ["lab"]):
            del loc[1]  # the union's tag: bench.engine, not bench.simulated.engine
        where = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, **overrides: object) -> RunConfig:
    """Read and validate a YAML run config; ``overrides`` set ``training`` fields."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    training = dict(raw.get("training") or {})
    training.update({k: v for k, v in overrides.items() if v is not None})
    raw["training"] = training
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def build_bench(config: RunConfig) -> Bench:
    """The one place that turns a bench config into a bench (imports back ends lazily).

    A ``lab`` bench comes back connected and checked (drivers.lab_bench.LabBench); with an
    ``emulate`` section its emulated lab is started first and stopped when it is closed.
    """
    network = Network(config.network)
    bench_cfg = config.bench
    if bench_cfg.kind == "simulated":
        from simulators.bench import SimulatedBench, build_device_model
        from simulators.converters import Converters

        device, conv = bench_cfg.device, bench_cfg.converters
        seed = config.training.seed if bench_cfg.seed is None else bench_cfg.seed
        full_scale = bench_cfg.limits.max_input_voltage
        return SimulatedBench(
            network,
            engine=bench_cfg.engine,
            limits=bench_cfg.limits,
            seed=seed,
            pulse_amplitude_v=bench_cfg.pulse_amplitude_v,
            pulse_width_s=bench_cfg.pulse_width_s,
            device=build_device_model(
                device.preset,
                network.g_bounds,
                n_states=bench_cfg.n_states or 1000,
                data_dir=device.data_dir,
                file_increasing=device.file_increasing,
                file_decreasing=device.file_decreasing,
                overrides=device.overrides,
            ),
            scheme=bench_cfg.scheme,
            converters=Converters(
                dac_bits=conv.dac_bits,
                dac_full_scale_v=conv.dac_full_scale_v or full_scale,
                adc_bits=conv.adc_bits,
                adc_full_scale_v=conv.adc_full_scale_v or full_scale,
                adc_noise_v=conv.adc_noise_v,
                seed=[seed, 1],
            ),
            clip_device_bounds=device.clip_bounds,
        )
    if bench_cfg.kind == "lab":
        return _build_lab_bench(config, bench_cfg)  # type: ignore[no-any-return]
    raise ConfigError(f"bench.kind {bench_cfg.kind!r} is not supported")


#: Limits of an emulated lab's physics unless its config sets them: the instruments guard.
_EMULATED_PHYSICS_LIMITS = SafetyLimits(
    max_input_voltage=1e6,
    max_nudge_current=1e3,
    compliance_current=1e3,
    compliance_voltage=1e6,
    pulse_amplitude=(1e-9, 1e6),
    pulse_width=(1e-15, 1e6),
    max_pulses_per_request=10**9,
)


def build_bench_for_check(config: RunConfig) -> Any:
    """The unconnected LabBench of a lab config, for ``hil bench check`` (emulators started)."""
    if config.bench.kind != "lab":
        raise ConfigError(
            f"hil bench check needs a lab bench (bench.kind: lab), not {config.bench.kind!r}"
        )
    return _build_lab_bench(config, config.bench, connect=False)


def _build_lab_bench(config: RunConfig, bench_cfg: LabBenchConfig, connect: bool = True) -> Any:
    """A LabBench; with ``emulate``, first the emulated lab it talks to (and stops on close)."""
    from drivers.lab_bench import LabBench

    network = Network(config.network)
    bench_cfg.resolve(network)  # a wiring mismatch is a config error, before anything starts
    if bench_cfg.emulate is None:
        bench = LabBench(network, bench_cfg)
    else:
        from simulators.instruments.emulated_lab import EmulatedLab

        physics_cfg = bench_cfg.emulate.physics
        changes: dict[str, Any] = {}
        if "limits" not in physics_cfg.model_fields_set:
            changes["limits"] = _EMULATED_PHYSICS_LIMITS
        fields = type(physics_cfg).model_fields
        if "scheme" in fields and "scheme" not in physics_cfg.model_fields_set:
            changes["scheme"] = bench_cfg.pulse_scheme
        physics_cfg = physics_cfg.model_copy(update=changes)
        physics = build_bench(config.model_copy(update={"bench": physics_cfg}))
        lab = EmulatedLab(physics, bench_cfg).start()
        calibration = None if bench_cfg.calibration is not None else physics.calibration
        try:
            bench = LabBench(
                network,
                bench_cfg,
                addresses=lab.addresses,
                calibration=calibration,
                on_close=lab.stop,
                emulator=lab,
            )
        except BaseException:
            lab.stop()
            raise
    if connect:
        try:
            bench.connect()
        except BaseException:
            bench.close()
            raise
    return bench
