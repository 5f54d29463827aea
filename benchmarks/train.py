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

Prints one JSON line last::

    {"epoch_seconds": ..., "train_seconds": ..., "samples_per_second": ...,
     "phase_seconds": {"settle": ..., ...}, "test_error": ..., "blas": [...], ...}

``epoch_seconds`` is the mean over epochs of the trainer's own epoch time (training steps and
the evaluation of both sets); ``samples_per_second`` counts training samples over the
training steps only; ``seconds_per_60k_epoch`` scales the steps to 60,000 images and adds
the evaluation scaled to 70,000.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

from hil.composition import build_bench, build_data, build_trainer
from hil.config import load_config
from hil.config.run import RunConfig

REPO = Path(__file__).resolve().parents[1]
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


def train(config: RunConfig) -> dict[str, Any]:
    """Train and time one configuration; returns the JSON record."""
    start = time.perf_counter()
    data = build_data(config)
    bench = build_bench(config)
    trainer = build_trainer(bench, config.training, data)
    setup_seconds = time.perf_counter() - start
    clock = PhaseClock()
    bench.settle = clock.wrap_settle(bench.settle)  # type: ignore[method-assign]
    trainer.estimator.estimate = clock.wrap("gradient", trainer.estimator.estimate)  # type: ignore[method-assign]
    trainer.programmer.apply = clock.wrap("programming", trainer.programmer.apply)  # type: ignore[method-assign]
    trainer.evaluate = clock.wrap("evaluation", trainer.evaluate)  # type: ignore[method-assign]
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
        "train_accuracy": last.train_accuracy,
        "pulses": sum(m.pulses for m in history),
        "solver_blas_threads": getattr(engine, "blas_threads", None),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ],
        "python": platform.python_version(),
    }


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
    args = parser.parse_args()
    config = configure(args)
    if args.blas_threads is None:
        record = train(config)
    else:
        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            record = train(config)
    record["blas_threads_option"] = args.blas_threads
    print(json.dumps(record))


if __name__ == "__main__":
    main()
