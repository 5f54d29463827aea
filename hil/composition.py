"""The composition root: the only code that turns configs into back ends.

Everything below this module sees abstractions (the :class:`~hil.bench.Bench` protocol, an
estimator, a programmer); everything above it (the run object, the CLI, the API to come)
asks this module for what a config describes. The back ends (``simulators``, ``drivers``)
are imported here, lazily, so that a user without the lab extras can still train on a
simulated bench.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hil.bench import Bench
from hil.config.lab import LabBenchConfig
from hil.config.run import RunConfig, TrainingConfig
from hil.config.simulated import SimulatedBenchConfig
from hil.data import Dataset, load_dataset
from hil.eqprop import EqProp
from hil.errors import ConfigError
from hil.events import Listener
from hil.locks import ExclusiveLock, lock_path_for
from hil.network import Network
from hil.programming import Programmer, make_programmer
from hil.trainer import Schedule, Trainer

if TYPE_CHECKING:
    from drivers.lab_bench import LabBench
    from drivers.lab_requirements import CheckRow
    from simulators.bench import SimulatedBench


def build_bench(config: RunConfig) -> Bench:
    """The bench a run config describes, ready to use.

    A ``simulated`` bench is built in memory. A ``lab`` bench comes back connected and
    checked (``drivers.lab_bench.LabBench``); with an ``emulate`` section its emulated lab is
    started first and stopped when the bench is closed.
    """
    network = Network(config.network)
    bench_cfg = config.bench
    if isinstance(bench_cfg, SimulatedBenchConfig):
        return build_simulated_bench(network, bench_cfg, config.training.seed)
    lab = build_lab_bench(network, bench_cfg, config.training.seed)
    try:
        lab.connect()
    except BaseException:
        lab.close()
        raise
    return lab


def build_simulated_bench(
    network: Network, config: SimulatedBenchConfig, seed: int
) -> SimulatedBench:
    """A :class:`~simulators.bench.SimulatedBench` of ``network``; ``config.seed`` (or
    ``seed``, the training seed) seeds its devices and converters."""
    from simulators.bench import SimulatedBench, build_device_model
    from simulators.converters import Converters

    device, conv = config.device, config.converters
    seed = seed if config.seed is None else config.seed
    full_scale = config.limits.max_input_voltage
    return SimulatedBench(
        network,
        engine=config.engine,
        limits=config.limits,
        seed=seed,
        pulse_amplitude_v=config.pulse_amplitude_v,
        pulse_width_s=config.pulse_width_s,
        device=build_device_model(
            device.preset,
            network.g_bounds,
            n_states=config.n_states or 1000,
            data_dir=device.data_dir,
            file_increasing=device.file_increasing,
            file_decreasing=device.file_decreasing,
            overrides=device.overrides,
        ),
        scheme=config.scheme,
        converters=Converters(
            dac_bits=conv.dac_bits,
            dac_full_scale_v=conv.dac_full_scale_v or full_scale,
            adc_bits=conv.adc_bits,
            adc_full_scale_v=conv.adc_full_scale_v or full_scale,
            adc_noise_v=conv.adc_noise_v,
            seed=[seed, 1],
        ),
        clip_device_bounds=device.clip_bounds,
        flagged_samples=config.flagged_samples,
    )


def build_lab_bench(network: Network, config: LabBenchConfig, seed: int) -> LabBench:
    """The unconnected :class:`~drivers.lab_bench.LabBench` of a lab config.

    With an ``emulate`` section the emulated lab (its physics a simulated bench seeded like
    the run) is started first and stopped when the bench is closed. ``hil bench check``
    uses the bench unconnected; :func:`build_bench` connects it.
    """
    try:
        from drivers.lab_bench import LabBench
    except ImportError as exc:  # pyvisa / pyserial are the `lab` extra
        raise ConfigError(
            f"a lab bench needs the lab drivers ({exc.name} is not installed): "
            "pip install 'hil-eqprop[lab]'"
        ) from None

    config.resolve(network)  # a wiring mismatch is a config error, before anything starts
    if config.emulate is None:
        locks = lock_instruments(config)  # before anything is opened: a busy bench is untouched
        try:
            return LabBench(network, config, on_close=lambda: _release(locks))
        except BaseException:
            _release(locks)
            raise
    from simulators.instruments.emulated_lab import EmulatedLab, physics_config

    physics = build_simulated_bench(network, physics_config(config), seed)
    lab = EmulatedLab(physics, config).start()
    calibration = None if config.calibration is not None else physics.calibration
    try:
        return LabBench(
            network,
            config,
            addresses=lab.addresses,
            calibration=calibration,
            on_close=lab.stop,
            emulator=lab,
        )
    except BaseException:
        lab.stop()
        raise


def lock_instruments(config: LabBenchConfig) -> list[ExclusiveLock]:
    """Take the process-wide lock of every instrument address of a physical bench.

    Raises
    ------
    InUseError
        Naming the instrument, its address and the process holding it; no lock is kept.
    """
    locks: list[ExclusiveLock] = []
    try:
        for name, inst in config.instruments.items():
            address = inst.address or name
            lock = ExclusiveLock(
                lock_path_for("instrument", address), f"instrument {name} ({address})"
            )
            locks.append(lock.acquire())
    except BaseException:
        _release(locks)
        raise
    return locks


def _release(locks: list[ExclusiveLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def build_check_bench(config: RunConfig) -> LabBench:
    """The unconnected LabBench of a lab config, for ``hil bench check`` (emulators started)."""
    if not isinstance(config.bench, LabBenchConfig):
        raise ConfigError(
            f"hil bench check needs a lab bench (bench.kind: lab), not {config.bench.kind!r}"
        )
    return build_lab_bench(Network(config.network), config.bench, config.training.seed)


def build_data(config: RunConfig) -> Dataset:
    """The run's dataset, split with the training seed; ConfigError unless it fits."""
    data = load_dataset(config.data, config.training.seed)
    config.check_fits(data)
    return data


def build_estimator(config: TrainingConfig, network: Network) -> EqProp:
    """The EqProp gradient estimator of a training config on ``network`` (``beta`` is the
    dimensionless nudge: docs/learning.md)."""
    return EqProp.for_network(
        network, config.beta, config.variant, config.target_amplitude, config.max_nudge_error
    )


def build_programmer(bench: Bench, config: TrainingConfig, rng: np.random.Generator) -> Programmer:
    """The programmer (dG -> pulses) of a training config, on ``bench``, drawing from ``rng``."""
    return make_programmer(bench, config.programming, rng)


def build_trainer(
    bench: Bench,
    config: TrainingConfig,
    data: Dataset,
    listeners: list[Listener] | None = None,
) -> Trainer:
    """A trainer wired from a training config: estimator, programmer, schedule, one random
    stream (seeded with ``config.seed``) shared by the batch order and the programmer."""
    rng = np.random.default_rng(config.seed)
    return Trainer(
        bench,
        build_estimator(config, bench.network),
        build_programmer(bench, config, rng),
        data,
        Schedule(
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            learning_rate_decay=config.learning_rate_decay,
            resync_every=config.resync_every,
            rms_steps=config.rms_steps,
        ),
        rng,
        listeners,
    )


def check_bench(bench: LabBench) -> list[CheckRow]:
    """Run ``hil bench check`` on an unconnected lab bench: one row per check."""
    from drivers.bench_check import check_bench as check

    return check(bench)
