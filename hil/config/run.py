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

from pydantic import Field, field_validator

from hil.config.lab import LabBenchConfig
from hil.config.simulated import SimulatedBenchConfig
from hil.data import DataConfig, Dataset
from hil.errors import ConfigError
from hil.network import NetworkSpec
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
    checkpoint_every : int
        Also checkpoint after every this many steps (0: only after every epoch); a run
        interrupted mid-epoch then resumes from its last such step.
    programming : ProgrammingConfig
        How updates become pulses: ``open_loop``, ``sign`` or ``write_verify`` and their
        threshold, tolerance, iteration cap and amplitude ramp (see hil.programming).
    """

    epochs: int = Field(10, gt=0, le=100_000)
    batch_size: int = Field(16, gt=0, le=MAX_COUNT)
    learning_rate: float = Field(0.05, gt=0, le=1e6)
    learning_rate_decay: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.5, gt=0, le=1e3)
    variant: Variant = "centered"
    target_amplitude: float = Field(1.0, gt=0, le=1e3)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    resync_every: int = Field(0, ge=0, le=MAX_COUNT)
    checkpoint_every: int = Field(0, ge=0, le=MAX_COUNT)
    programming: ProgrammingConfig = Field(default_factory=ProgrammingConfig)


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
