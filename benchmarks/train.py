"""Training speed at the founding paper's size: 1568-100-10 on Fashion-MNIST.

Trains ``bench_configs/kendall-fashion.yaml`` (Kendall et al. 2020: 784 pixels entered as +x
and -x, 100 hidden nodes, 10 differential outputs; centered EqProp, batch 4, native engine)
on the full 60k/10k images of Debian's dataset-fashion-mnist, or a part of it, and times
every phase of the loop by wrapping the trainer's collaborators (so it measures any version
of the code the same way):

- ``settle``: the three settles of every training step (free, +nudge, -nudge);
- ``gradient``: the rest of the estimator's step (nudge currents, loss, the gradient);
- ``programming``: dG -> pulses on the bench (planning, pulses, disturb, bookkeeping);
- ``evaluation``: the end-of-epoch free settles of the train and test sets;
- ``other``: what is left of the epoch (batches, resync, events).

In the same run (``--backprop``, the default) the same-size network is trained by backprop
on the same split, with the same batch size, epochs and per-epoch learning-rate decay: an
MLP of the dataset's pixels (784 for Fashion-MNIST; the circuit's ``+x, -x`` doubling adds
nothing to signed weights) -> the config's hidden layer (100, ReLU) -> 10 linear outputs,
the squared error on one-hot targets, plain SGD (``benchmarks/backprop_reference.py``).
``--circuit-backprop`` (off by default: a second training of the circuit) also trains the
resistive network itself with the exact gradient of EqProp's cost at its free equilibrium
(implicit differentiation, Scellier's "backprop through the same network") through the same
bench, programmer, batches and schedule, and checks EqProp's first-batch gradient against it.

Prints one JSON line last::

    {"epoch_seconds": ..., "train_seconds": ..., "samples_per_second": ...,
     "phase_seconds": {"settle": ..., ...}, "test_error": ..., "eqprop_test_error": ...,
     "backprop_test_error": ..., "backprop_seconds": ..., "blas": [...], ...}

``test_error`` is ``eqprop_test_error`` (the key older readers use).

``epoch_seconds`` is the mean over epochs of the trainer's own epoch time (training steps and
the evaluation of both sets); ``samples_per_second`` counts training samples over the
training steps only; ``seconds_per_60k_epoch`` scales the steps to 60,000 images and adds
the evaluation scaled to 70,000.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from hil.composition import build_bench, build_data, build_trainer
from hil.config import load_config
from hil.config.run import RunConfig
from hil.data import Dataset
from hil.events import StepFinished
from hil.trainer import StopRequested, Trainer

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported from elsewhere (benchmarks/ is no package)
    sys.path.insert(0, str(HERE))

from backprop_reference import (  # noqa: E402
    LEARNING_RATE,
    CircuitBackprop,
    train_mlp,
)

REPO = HERE.parent
PHASES = ("settle", "gradient", "programming", "evaluation")


class PhaseClock:
    """Seconds spent in each phase; a settle counts where it is called from."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self._inside: str | None = None

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            outer, self._inside = self._inside, phase
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
                self.calls[phase] += 1
                self._inside = outer

        return timed

    def wrap_settle(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside != "gradient":  # evaluation settles stay in evaluation
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.seconds["settle"] += spent
                self.seconds["gradient"] -= spent  # the estimator's time less its settles
                self.calls["settle"] += 1

        return timed


def configure(args: argparse.Namespace) -> RunConfig:
    """The config file with the command line's changes."""
    config = load_config(args.config, epochs=args.epochs, seed=args.seed)
    raw = config.model_dump(mode="json")
    if args.train_limit is not None:
        raw["data"]["train_limit"] = args.train_limit
    if args.test_limit is not None:
        raw["data"]["test_limit"] = args.test_limit
    if args.data_path is not None:
        raw["data"]["path"] = args.data_path
    if args.diode is not None:
        raw["network"]["diode"]["model"] = args.diode
    if args.device is not None:
        raw["bench"]["device"] = {"preset": args.device}
        if args.device != "ideal":
            raw["bench"]["n_states"] = None  # the ideal device's only
    if args.batch_size is not None:
        raw["training"]["batch_size"] = args.batch_size
    return RunConfig.model_validate(raw)


def train(
    config: RunConfig,
    data: Dataset | None = None,
    estimator: Callable[[Trainer], Any] | None = None,
    max_steps: int | None = None,
    warmup_steps: int = 0,
) -> dict[str, Any]:
    """Train and time one configuration; returns the JSON record.

    ``data``: the dataset (loaded from the config if None); ``estimator``: builds the
    gradient estimator from the wired trainer in place of its EqProp (None: EqProp);
    ``max_steps``: time only the first ``max_steps`` steps of epoch 1, the first
    ``warmup_steps`` of them untimed, and stop there (no evaluation; a shorter record:
    ``ms_per_step``, ``phase_ms_per_step``, ``seconds_per_60k_epoch_steps``).
    """
    start = time.perf_counter()
    data = build_data(config) if data is None else data
    bench = build_bench(config)
    trainer = build_trainer(bench, config.training, data)
    if estimator is not None:
        trainer.estimator = estimator(trainer)
    setup_seconds = time.perf_counter() - start
    clock = PhaseClock()
    bench.settle = clock.wrap_settle(bench.settle)  # type: ignore[method-assign]
    trainer.estimator.estimate = clock.wrap("gradient", trainer.estimator.estimate)  # type: ignore[method-assign]
    trainer.programmer.apply = clock.wrap("programming", trainer.programmer.apply)  # type: ignore[method-assign]
    trainer.evaluate = clock.wrap("evaluation", trainer.evaluate)  # type: ignore[method-assign]
    if max_steps is not None:
        return _time_steps(
            config, data, bench, trainer, clock, setup_seconds, max_steps, warmup_steps
        )
    history = trainer.fit()
    bench.close()
    epochs = len(history)
    epoch_seconds = sum(m.seconds for m in history) / epochs
    phases = {k: v / epochs for k, v in clock.seconds.items()}
    steps_seconds = epoch_seconds - phases["evaluation"]
    phases["other"] = steps_seconds - phases["settle"] - phases["gradient"] - phases["programming"]
    n_train, n_test = len(data.y_train), len(data.y_test)
    per_sample = steps_seconds / n_train
    per_eval = phases["evaluation"] / (n_train + n_test)
    last = history[-1]
    engine = getattr(bench, "engine", None)
    return {
        "config": config.name,
        "network": bench.network.describe(),
        "device": getattr(getattr(config.bench, "device", None), "preset", None),
        "epochs": epochs,
        "batch_size": config.training.batch_size,
        "train_samples": n_train,
        "test_samples": n_test,
        "steps_per_epoch": -(-n_train // config.training.batch_size),
        "setup_seconds": round(setup_seconds, 2),
        "epoch_seconds": round(epoch_seconds, 2),
        "train_seconds": round(steps_seconds, 2),
        "samples_per_second": round(n_train / steps_seconds, 1),
        "ms_per_step": round(1e3 * steps_seconds / -(-n_train // config.training.batch_size), 3),
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
        "seconds_per_60k_epoch": round(60_000 * per_sample + 70_000 * per_eval, 1),
        "test_accuracy": last.test_accuracy,
        "test_error": round(1.0 - last.test_accuracy, 4),
        "eqprop_test_error": round(1.0 - last.test_accuracy, 4),
        "test_errors": [round(1.0 - m.test_accuracy, 4) for m in history],
        "train_accuracy": last.train_accuracy,
        "pulses": sum(m.pulses for m in history),
        "solver_blas_threads": getattr(engine, "blas_threads", None),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ],
        "python": platform.python_version(),
        "machine": machine(),
    }


def _time_steps(
    config: RunConfig,
    data: Dataset,
    bench: Any,
    trainer: Trainer,
    clock: PhaseClock,
    setup_seconds: float,
    max_steps: int,
    warmup_steps: int,
) -> dict[str, Any]:
    """Time training steps ``warmup_steps + 1 .. max_steps`` of epoch 1 (no evaluation)."""
    if not 0 <= warmup_steps < max_steps:
        raise ValueError(f"need 0 <= warmup_steps < max_steps, got {warmup_steps}, {max_steps}")
    steps_per_epoch = -(-len(data.y_train) // config.training.batch_size)
    if max_steps > steps_per_epoch:
        raise ValueError(f"max_steps {max_steps} is more than the epoch's {steps_per_epoch}")
    pulses = [0]
    marks: dict[int, tuple[float, dict[str, float], int]] = {}

    def mark(step: int) -> None:
        marks[step] = (time.perf_counter(), dict(clock.seconds), pulses[0])

    def on_step(event: object) -> None:
        if isinstance(event, StepFinished):
            if event.step in (warmup_steps, max_steps):
                mark(event.step)
            if event.step >= max_steps:
                trainer.request_stop()

    def count_pulses(report: Any) -> Any:
        pulses[0] += report.pulses
        return report

    apply = trainer.programmer.apply
    trainer.programmer.apply = lambda dg: count_pulses(apply(dg))  # type: ignore[method-assign]
    trainer.subscribe(on_step)
    if warmup_steps == 0:
        mark(0)  # includes the epoch start (a resync: one read of every conductance)
    with contextlib.suppress(StopRequested):
        trainer.fit()
    bench.close()
    (t0, c0, p0), (t1, c1, p1) = marks[warmup_steps], marks[max_steps]
    steps, seconds = max_steps - warmup_steps, t1 - t0
    phases = {k: c1[k] - c0[k] for k in ("settle", "gradient", "programming")}
    phases["other"] = seconds - sum(phases.values())
    batch = config.training.batch_size
    return {
        "config": config.name,
        "network": bench.network.describe(),
        "devices": bench.network.n_devices,
        "warmup_steps": warmup_steps,
        "steps": steps,
        "batch_size": batch,
        "setup_seconds": round(setup_seconds, 2),
        "train_seconds": round(seconds, 3),
        "ms_per_step": round(1e3 * seconds / steps, 3),
        "samples_per_second": round(steps * batch / seconds, 1),
        "phase_ms_per_step": {k: round(1e3 * v / steps, 3) for k, v in phases.items()},
        "seconds_per_60k_epoch_steps": round(seconds / steps * 60_000 / batch, 1),
        "pulses_per_step": round((p1 - p0) / steps),
    }


def machine() -> dict[str, Any]:
    """The machine: cores, load average, thread settings of the environment."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "thread_env": {k: os.environ.get(k) for k in keys},
    }


def backprop(config: RunConfig, data: Dataset, learning_rate: float) -> dict[str, Any]:
    """The same-size MLP by SGD on the same split (benchmarks/backprop_reference.py)."""
    training = config.training
    result = train_mlp(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        hidden=config.network.hidden[0],
        n_classes=config.network.outputs,
        epochs=training.epochs,
        batch_size=training.batch_size,
        seed=training.seed,
        learning_rate=learning_rate,
        learning_rate_decay=training.learning_rate_decay,
    )
    record = result.as_dict()
    record.update(
        model=f"{data.n_features}-{config.network.hidden[0]}-{config.network.outputs} MLP",
        inputs="the dataset's pixels in [0, 1], once each (no +x/-x doubling)",
        activation="relu",
        loss="squared error on one-hot targets (1 on the label)",
        optimizer="plain SGD",
        learning_rate=learning_rate,
        learning_rate_decay=training.learning_rate_decay,
        seed=training.seed,
    )
    return record


def circuit_backprop(config: RunConfig, data: Dataset) -> dict[str, Any]:
    """The resistive network trained with the exact gradient (CircuitBackprop), timed like
    EqProp, and EqProp's first-batch gradient against the exact one."""
    check: dict[str, Any] = {}

    def build(trainer: Trainer) -> CircuitBackprop:
        exact = CircuitBackprop(trainer.estimator, trainer.programmer.estimate)
        net = trainer.bench.network
        x = net.encode_inputs(data.x_train[: config.training.batch_size])
        labels = data.y_train[: config.training.batch_size]
        reference = exact.estimate(trainer.bench, x, labels).gradient
        estimate = trainer.estimator.estimate(trainer.bench, x, labels).gradient
        norm = float(np.linalg.norm(reference))
        check["eqprop_vs_exact_relative_error"] = float(
            f"{np.linalg.norm(estimate - reference) / norm:.3g}"
        )
        check["cosine"] = round(float(estimate @ reference) / norm / np.linalg.norm(estimate), 9)
        return exact

    record = train(config, data, estimator=build)
    keep = ("epoch_seconds", "train_seconds", "ms_per_step", "phase_seconds", "test_error")
    out = {k: record[k] for k in keep}
    out["test_errors"] = record["test_errors"]
    out["pulses"] = record["pulses"]
    out["first_batch_gradient_check"] = check
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "kendall-fashion.yaml"))
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--seed", type=int, help="override training.seed")
    parser.add_argument("--train-limit", type=int, help="train on the first N images (stratified)")
    parser.add_argument("--test-limit", type=int, help="test on the first N images (stratified)")
    parser.add_argument("--data-path", help="the IDX folder (default: the config's)")
    parser.add_argument("--diode", choices=["ideal", "shockley"], help="override the diodes")
    parser.add_argument("--device", help="device preset (ideal, reram, ecram)")
    parser.add_argument("--batch-size", type=int, help="override training.batch_size")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit BLAS to N threads for the whole run (default: as the process has it; the "
        "native solver limits its own products, see solver_blas_threads)",
    )
    parser.add_argument(
        "--backprop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train the same-size MLP by backprop on the same split (default: on)",
    )
    parser.add_argument(
        "--backprop-learning-rate",
        type=float,
        default=LEARNING_RATE,
        help=f"the MLP's SGD learning rate (default {LEARNING_RATE}, chosen once)",
    )
    parser.add_argument(
        "--circuit-backprop",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also train the resistive network with the exact gradient of the same cost "
        "(implicit differentiation at its equilibrium), through the same programmer",
    )
    args = parser.parse_args()
    config = configure(args)
    with (
        threadpool_limits(limits=args.blas_threads, user_api="blas")
        if args.blas_threads is not None
        else contextlib.nullcontext()
    ):
        record = run(config, args)
    record["blas_threads_option"] = args.blas_threads
    print(json.dumps(record))


def run(config: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """EqProp, then the backprop references asked for, on one dataset; one record."""
    data = build_data(config)
    load_start = machine()["load_average"]
    record = train(config, data)
    record["backprop_test_error"] = record["backprop_seconds"] = None
    if args.backprop:
        mlp = backprop(config, data, args.backprop_learning_rate)
        record["backprop_test_error"] = mlp["test_error"]
        record["backprop_seconds"] = mlp["seconds"]
        record["backprop"] = mlp
        record["eqprop_minus_backprop_points"] = round(
            100 * (record["eqprop_test_error"] - mlp["test_error"]), 2
        )
    if args.circuit_backprop:
        circuit = circuit_backprop(config, data)
        record["circuit_backprop_test_error"] = circuit["test_error"]
        record["circuit_backprop_seconds"] = round(
            circuit["epoch_seconds"] * len(circuit["test_errors"]), 2
        )
        record["circuit_backprop"] = circuit
    record["machine"] = machine()
    record["machine"]["load_average_start"] = load_start  # "load_average": at the end
    return record


if __name__ == "__main__":
    main()
