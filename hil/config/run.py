"""Run configs (pydantic): network, bench, data and training, as a YAML file holds them.

A config file holds four sections (and an optional ``name``)::

    network:  NetworkSpec  (inputs/outputs must fit the data)
    bench:    which bench realises it (simulated: engine and device; lab: instruments)
    data:     DataConfig
    training: TrainingConfig

Schemas only: nothing here imports a back end. Every error names the field and the reason,
and is raised before anything runs (:mod:`hil.config.loading` reads the files).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from hil.config.lab import LabBenchConfig
from hil.config.simulated import SimulatedBenchConfig
from hil.data import DataConfig, Dataset
from hil.eqprop import nudge_current_bound
from hil.errors import ConfigError
from hil.network import Network, NetworkSpec
from hil.programming import ProgrammingConfig
from hil.schema import MAX_COUNT, MAX_SEED, RUN_NAME, Schema
from hil.vocabulary import Variant


class TrainingConfig(Schema):
    """EqProp training hyperparameters.

    Attributes
    ----------
    epochs : int
    batch_size : int
    learning_rate : float
        RMS conductance step of every layer per training step, as a fraction of
        ``g_max - g_min`` (in (0, 1]): each layer's EqProp gradient is divided by its RMS
        (``hil.trainer.layer_normalised_update``), so the value means the same at any
        width, depth, amplifier gain and nudge (docs/learning.md). 0.008 is 8 pulses RMS
        per device per step on a 1000-state device.
    learning_rate_decay : float
        Multiplies the learning rate after every epoch.
    rms_steps : int
        Steps over which each layer's gradient RMS is averaged (exponentially) before it
        divides the gradient (``hil.trainer.RunningRms``). 1, the default, divides every
        step by its own RMS; more keeps the steps' relative sizes, so that batches the
        network already fits take small steps (kendall-fashion: 1000; docs/learning.md).
    beta : float
        Dimensionless nudge: the fraction of the way the nudged outputs move towards their
        targets (linearised, at the nominal conductance), whatever the width, depth or
        amplifier gain (``hil.eqprop.EqProp.for_network``, docs/learning.md).
    max_nudge_error : float
        Output errors ``|y - o|`` beyond this (V) are nudged as this: the cost is the Huber
        cost, and the nudge current can never exceed
        ``beta * G_out * max_nudge_error / 2``, which must be within the bench's
        ``limits.max_nudge_current`` (checked when the config is validated).
    variant : ``"centered"``, ``"positive"`` or ``"negative"``
    target_amplitude : float
        Target differential output of the correct class (V); 0 V for the others.
    seed : int
        Seeds the bench's initial state, the split, the batches and the pulse rounding.
    resync_every : int
        Re-read every conductance after this many steps (0: only at the start of epochs).
    checkpoint_every : int
        Also checkpoint after every this many steps (0: only after every epoch); a run
        interrupted mid-epoch then resumes from its last such step.
    programming : ProgrammingConfig
        How updates become pulses: ``open_loop``, ``sign`` or ``write_verify`` and their
        threshold, tolerance, iteration cap and amplitude ramp (see hil.programming).
    """

    epochs: int = Field(10, gt=0, le=100_000)
    batch_size: int = Field(16, gt=0, le=MAX_COUNT)
    learning_rate: float = Field(0.008, gt=0)
    learning_rate_decay: float = Field(1.0, gt=0, le=1)
    rms_steps: int = Field(1, ge=1, le=MAX_COUNT)
    beta: float = Field(0.5, gt=0, le=1e3)
    variant: Variant = "centered"
    max_nudge_error: float = Field(1.0, gt=0, le=1e3)
    target_amplitude: float = Field(1.0, gt=0, le=1e3)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    resync_every: int = Field(0, ge=0, le=MAX_COUNT)
    checkpoint_every: int = Field(0, ge=0, le=MAX_COUNT)
    programming: ProgrammingConfig = Field(default_factory=ProgrammingConfig)

    @field_validator("learning_rate")
    @classmethod
    def _step_fraction(cls, value: float) -> float:
        if value > 1.0:
            raise ValueError(
                f"{value:g} is above 1: learning_rate is the RMS step of a layer per training "
                "step as a fraction of the conductance range (docs/learning.md); configs "
                "written for the old unnormalised rate (e.g. 20) want about 0.008"
            )
        return value


class RunConfig(Schema):
    """A whole run: network, bench, data and training.

    ``bench.kind`` says which bench: ``simulated`` (:class:`SimulatedBenchConfig`) or ``lab``
    (:class:`hil.lab_config.LabBenchConfig`: instruments, emulated or physical).
    """

    name: str = Field("run", pattern=RUN_NAME)
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

    @model_validator(mode="after")
    def _nudge_within_limits(self) -> RunConfig:
        training, limit = self.training, self.bench.limits.max_nudge_current
        network = Network(self.network)
        worst = nudge_current_bound(network, training.beta, training.max_nudge_error)
        if worst > limit:
            most = limit / (network.output_conductance * training.max_nudge_error / 2)
            raise ValueError(
                f"training.beta {training.beta:g} with training.max_nudge_error "
                f"{training.max_nudge_error:g} V asks for nudge currents up to {worst:.3g} A "
                f"(output conductance {network.output_conductance:.3g} S), above "
                f"bench.limits.max_nudge_current ({limit:g} A): lower training.beta to at "
                f"most {most:.3g} or training.max_nudge_error, or raise the limit"
            )
        return self

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
