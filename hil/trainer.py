"""The training loop: batches -> phases -> gradient -> program -> evaluate -> checkpoint.

The trainer sees only the :class:`hil.bench.Bench` protocol; ``training.programming``
chooses how updates become pulses (:mod:`hil.programming`). It emits events (dicts with a
``type``: ``step``, ``epoch``, and ``pulse_notes`` when the bench or the programmer noted
something, e.g. refused pulses) to listeners: the CLI's progress bar, the run store and the
API consume them. A run directory holds ``metrics.json`` (one record per epoch) and
``checkpoint.npz`` (``bench.*``: device state where the bench can save it; ``programmer.*``:
the programmer's estimate, and write-verify's targets; the random state and the epoch
reached), so a crashed run resumes from its last finished epoch and continues exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hil.bench import Bench, StatefulBench, in_safe_hands
from hil.config import TrainingConfig
from hil.data import Dataset
from hil.eqprop import EqProp
from hil.errors import ConfigError
from hil.programming import Programmer, make_programmer

Listener = Callable[[dict], None]
EVAL_BATCH = 256


@dataclass
class EpochMetrics:
    """Metrics of one epoch (losses in V^2, accuracies in [0, 1]).

    Attributes
    ----------
    pulses : int
        Programming pulses delivered during the epoch (every strategy, every round).
    pulses_capped : int
        Device updates cut by the per-request pulse limit.
    pulses_refused : int
        Pulses the bench refused (endurance); the bench's notes go out as ``pulse_notes``
        events.
    reads : int
        Device reads spent on write-verify (not counting the resyncs).
    residual_rms : float
        RMS of ``target - estimate`` after programming over the epoch's updates (S).
    unconverged : int
        Write-verify programmings that stopped at the iteration cap or were refused.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    pulses: int
    pulses_capped: int
    learning_rate: float
    seconds: float
    pulses_refused: int = 0
    reads: int = 0
    residual_rms: float = 0.0
    unconverged: int = 0


class Trainer:
    """Train a bench's network with EqProp.

    Parameters
    ----------
    bench : Bench
    config : TrainingConfig
    data : Dataset
    run_dir : Path, optional
        Where metrics and checkpoints go; nothing is written when None.
    listeners : list of callables
        Called with every event.
    """

    def __init__(
        self,
        bench: Bench,
        config: TrainingConfig,
        data: Dataset,
        run_dir: Path | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.bench = bench
        self.config = config
        self.data = data
        self.run_dir = run_dir
        self.listeners = list(listeners or [])
        self.eqprop = EqProp(config.beta, config.variant, config.target_amplitude)
        self.rng = np.random.default_rng(config.seed)
        self.history: list[EpochMetrics] = []
        self._programmer: Programmer | None = None

    # --- events -----------------------------------------------------------------------
    def _emit(self, event: dict) -> None:
        for listener in self.listeners:
            listener(event)

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean loss (V^2) and accuracy of the free phase on a dataset."""
        net = self.bench.network
        losses, correct = [], 0
        for start in range(0, len(labels), EVAL_BATCH):
            xb, yb = x[start : start + EVAL_BATCH], labels[start : start + EVAL_BATCH]
            out = self.bench.settle(net.encode_inputs(xb)).outputs
            losses.append(self.eqprop.loss(out, self.eqprop.targets(yb, net.n_classes)))
            correct += int(np.sum(out.argmax(axis=1) == yb))
        return float(np.concatenate(losses).mean()), correct / len(labels)

    # --- training -----------------------------------------------------------------------
    def fit(self) -> list[EpochMetrics]:
        """Train for the configured epochs (continuing a resumed run); returns the history."""
        with in_safe_hands(self.bench):
            if self._programmer is None:
                self._programmer = self._make_programmer()
            for epoch in range(len(self.history) + 1, self.config.epochs + 1):
                metrics = self._epoch(epoch)
                self.history.append(metrics)
                self._checkpoint()
                self._emit({"type": "epoch", **asdict(metrics)})
        return self.history

    def _make_programmer(self) -> Programmer:
        return make_programmer(self.bench, self.config.programming, self.rng)

    def learning_rate(self, epoch: int) -> float:
        return self.config.learning_rate * self.config.learning_rate_decay ** (epoch - 1)

    def _epoch(self, epoch: int) -> EpochMetrics:
        start = time.perf_counter()
        programmer = self._programmer
        assert programmer is not None
        programmer.resync()
        capped_before = programmer.capped
        net, cfg = self.bench.network, self.config
        g_ref = net.g_bounds[1]
        lr = self.learning_rate(epoch)
        order = self.rng.permutation(len(self.data.y_train))
        n_steps = -(-len(order) // cfg.batch_size)
        pulses, seen, correct, loss_sum = 0, 0, 0, 0.0
        refused = reads = unconverged = residual_n = 0
        residual_sq = 0.0
        for step in range(n_steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            labels = self.data.y_train[idx]
            result = self.eqprop.estimate(
                self.bench, net.encode_inputs(self.data.x_train[idx]), labels
            )
            report = programmer.apply(-lr * g_ref * result.gradient)
            pulses += report.pulses
            refused += report.refused
            reads += report.reads
            unconverged += report.unconverged.size
            residual_sq += float(np.sum(report.residual**2))
            residual_n += report.residual.size
            if report.notes:
                self._emit(
                    {"type": "pulse_notes", "epoch": epoch, "step": step + 1, "notes": report.notes}
                )
            seen += len(idx)
            correct += int(np.sum(result.free.outputs.argmax(axis=1) == labels))
            loss_sum += float(result.loss.sum())
            if cfg.resync_every and (step + 1) % cfg.resync_every == 0:
                programmer.resync()
            self._emit(
                {
                    "type": "step",
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": n_steps,
                    "loss": loss_sum / seen,
                    "accuracy": correct / seen,
                }
            )
        train_loss, train_acc = self.evaluate(self.data.x_train, self.data.y_train)
        test_loss, test_acc = self.evaluate(self.data.x_test, self.data.y_test)
        return EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_acc,
            test_loss=test_loss,
            test_accuracy=test_acc,
            pulses=pulses,
            pulses_capped=programmer.capped - capped_before,
            learning_rate=lr,
            seconds=time.perf_counter() - start,
            pulses_refused=refused,
            reads=reads,
            residual_rms=float(np.sqrt(residual_sq / residual_n)) if residual_n else 0.0,
            unconverged=unconverged,
        )

    # --- checkpoints --------------------------------------------------------------------
    def _checkpoint(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "metrics.json").write_text(
            json.dumps([asdict(m) for m in self.history], indent=1)
        )
        arrays = {}
        if isinstance(self.bench, StatefulBench):
            arrays = {f"bench.{k}": v for k, v in self.bench.state_dict().items()}
        assert self._programmer is not None
        arrays.update({f"programmer.{k}": v for k, v in self._programmer.state_dict().items()})
        rng_state = json.dumps(self.rng.bit_generator.state)
        tmp = self.run_dir / "checkpoint.tmp.npz"
        np.savez(tmp, rng_state=np.array(rng_state), epoch=len(self.history), **arrays)
        tmp.replace(self.run_dir / "checkpoint.npz")  # atomic: a crash keeps the last one

    def resume(self) -> int:
        """Load the checkpoint in ``run_dir``; returns the epoch it had finished."""
        if self.run_dir is None or not (self.run_dir / "checkpoint.npz").is_file():
            raise ConfigError(f"no checkpoint.npz in {self.run_dir} to resume from")
        with np.load(self.run_dir / "checkpoint.npz") as ckpt:
            state = {k[6:]: ckpt[k] for k in ckpt.files if k.startswith("bench.")}
            if state and isinstance(self.bench, StatefulBench):
                self.bench.load_state_dict(state)
            self.rng.bit_generator.state = json.loads(str(ckpt["rng_state"]))
            self._programmer = self._make_programmer()
            self._programmer.load_state_dict(
                {k[11:]: ckpt[k] for k in ckpt.files if k.startswith("programmer.")}
            )
            epoch = int(ckpt["epoch"])
        records = json.loads((self.run_dir / "metrics.json").read_text())
        self.history = [EpochMetrics(**r) for r in records[:epoch]]
        return epoch
