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
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hil.bench import Bench, SafetyLimits
from hil.data import DataConfig, Dataset
from hil.eqprop import Variant
from hil.errors import ConfigError
from hil.network import Network, NetworkSpec


class SimulatedBenchConfig(BaseModel):
    """A bench backed by a simulated circuit.

    Attributes
    ----------
    engine : ``"native"`` or ``"spice"``
    n_states : int
        Pulses over the full conductance range of the ideal device.
    pulse_amplitude_v, pulse_width_s : float
        Nominal programming pulse (V, s).
    limits : SafetyLimits
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["simulated"] = "simulated"
    engine: Literal["native", "spice"] = "native"
    n_states: int = Field(1000, gt=0)
    pulse_amplitude_v: float = Field(1.0, gt=0)
    pulse_width_s: float = Field(1e-6, gt=0)
    limits: SafetyLimits = Field(default_factory=SafetyLimits)


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


class RunConfig(BaseModel):
    """A whole run: network, bench, data and training."""

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    network: NetworkSpec
    bench: SimulatedBenchConfig = Field(default_factory=SimulatedBenchConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

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
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
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
    """The one place that turns a bench config into a bench (imports back ends lazily)."""
    network = Network(config.network)
    bench_cfg = config.bench
    if bench_cfg.kind == "simulated":
        from simulators.bench import SimulatedBench

        return SimulatedBench(
            network,
            engine=bench_cfg.engine,
            limits=bench_cfg.limits,
            seed=config.training.seed,
            n_states=bench_cfg.n_states,
            pulse_amplitude_v=bench_cfg.pulse_amplitude_v,
            pulse_width_s=bench_cfg.pulse_width_s,
        )
    raise ConfigError(f"bench.kind {bench_cfg.kind!r} is not supported")
