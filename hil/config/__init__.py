"""Config schemas (pydantic) for runs and benches, and the loader of config files.

Schemas only: nothing in this package imports ``simulators`` or ``drivers``; the
composition root (:mod:`hil.composition`) builds benches and runs from these configs.
"""

from hil.config.lab import LabBenchConfig
from hil.config.loading import (
    config_differences,
    format_validation_error,
    load_config,
    validate_config,
)
from hil.config.run import RunConfig, TrainingConfig
from hil.config.simulated import ConvertersConfig, DeviceConfig, SimulatedBenchConfig

__all__ = [
    "ConvertersConfig",
    "DeviceConfig",
    "LabBenchConfig",
    "RunConfig",
    "SimulatedBenchConfig",
    "TrainingConfig",
    "config_differences",
    "format_validation_error",
    "load_config",
    "validate_config",
]
