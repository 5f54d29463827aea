"""The training loop: batches -> phases -> gradient -> program -> evaluate -> events.

The trainer is given its collaborators (a bench, a gradient estimator, a programmer, the
data, a schedule and one random stream) and sees the bench only through the
:class:`hil.bench.Bench` protocol. It writes no files: it emits typed events
(:mod:`hil.events`) to its listeners, and :meth:`Trainer.state_dict` /
:meth:`Trainer.load_state_dict` give the run object (:mod:`hil.run`) what a checkpoint
holds: the bench's device state where the bench can save it (``bench.*``), the
programmer's estimate and targets (``programmer.*``), the random state, and the history,
so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, fields

import numpy as np

from hil.bench import Bench, StatefulBench, in_safe_hands, restores_devices
from hil.data import Dataset
from hil.eqprop import EqProp
from hil.errors import ConfigError
from hil.events import EpochFinished, EpochMetrics, Event, Listener, PulseNotes, StepFinished
from hil.network import Network
from hil.programming import Programmer

#: Samples per settle when evaluating (a simulated bench settles them at once).
EVAL_BATCH = 256


@dataclass(frozen=True)
class Schedule:
    """How long and how fast to train.

    Attributes
    ----------
    epochs : int
    batch_size : int
    learning_rate : float
        The RMS conductance step of every layer (tile) per training step, as a fraction of
        ``g_max - g_min``: each tile's gradient is divided by its own RMS
        (:func:`layer_normalised_update`, docs/learning.md).
    learning_rate_decay : float
        Multiplies the learning rate after every epoch.
    resync_every : int
        Re-read every conductance after this many steps (0: only at the start of epochs).
    rms_steps : int
        Steps over which each tile's gradient RMS is averaged before it scales the step
        (:class:`RunningRms`; 1: every step by its own).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    learning_rate_decay: float = 1.0
    resync_every: int = 0
    rms_steps: int = 1

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of a 1-based epoch."""
        return self.learning_rate * self.learning_rate_decay ** (epoch - 1)


def tile_rms(network: Network, gradient: np.ndarray) -> np.ndarray:
    """The RMS of ``gradient`` over each tile's devices, shape (n_tiles,).

    Computed as ``max|g| * sqrt(mean((g / max|g|)^2))`` (no overflow of ``g^2``); 0 for a
    tile whose gradient is exactly zero, NaN for one holding NaN or infinity.
    """
    gradient = np.asarray(gradient, dtype=float)
    out = np.zeros(len(network.tiles))
    for t, tile in enumerate(network.tiles):
        g = gradient[tile.devices]  # (a slice: a view)
        if not g.size:
            continue
        work = np.abs(g)  # one scratch array for |g| and (g / scale)^2
        scale = float(np.max(work))
        if not np.isfinite(scale):
            out[t] = np.nan
        elif scale > 0:
            np.divide(g, scale, out=work)
            np.square(work, out=work)
            out[t] = scale * float(np.sqrt(np.mean(work)))
    return out


def layer_normalised_update(
    network: Network,
    gradient: np.ndarray,
    learning_rate: float,
    rms: np.ndarray | None = None,
) -> np.ndarray:
    """The conductance update (S) of one step: steepest descent, per layer of fixed length.

    Each tile's gradient is divided by its RMS over the tile's devices, so that the tile's
    update has an RMS of ``learning_rate * (g_max - g_min)`` whatever the width, the depth,
    the amplifier gains (the energy weights) and the nudge::

        dG_d = -learning_rate * (g_max - g_min) * grad_d / rms_t(grad)

    The rule stays local: a device's update is its own gradient (its own drops) times one
    scalar per tile. A tile whose gradient is exactly zero is left as it is; one holding
    NaN or infinity gets NaN, which the programmer refuses (nothing is applied).

    Parameters
    ----------
    network : Network
    gradient : ndarray, shape (n_devices,)
        ``dC/dg`` of every device (any common scale: only its direction per tile counts).
    learning_rate : float
        RMS step per tile, as a fraction of the conductance range.
    rms : ndarray, shape (n_tiles,), optional
        The RMS to divide each tile by (:class:`RunningRms`: averaged over steps); this
        step's own (:func:`tile_rms`) by default.

    Returns
    -------
    ndarray, shape (n_devices,)
        ``dG`` (S).
    """
    gradient = np.asarray(gradient, dtype=float)
    rms = tile_rms(network, gradient) if rms is None else rms
    lo, hi = network.g_bounds
    out = np.zeros(network.n_devices)
    for t, tile in enumerate(network.tiles):
        if not np.isfinite(rms[t]):
            out[tile.devices] = np.nan
        elif rms[t] > 0:
            factor = -learning_rate * (hi - lo) / float(rms[t])
            np.multiply(factor, gradient[tile.devices], out=out[tile.devices])
    return out


class RunningRms:
    """Each tile's gradient RMS averaged over about the last ``steps`` training steps.

    An exponential average of the mean square with weight ``1 - 1/steps`` on the past,
    bias-corrected as in Adam (``m_t / (1 - w^t)``), so that the first step divides by its
    own RMS. With ``steps == 1`` it is each step's own RMS, bit for bit. Averaged, the
    learning rate keeps its meaning (the RMS step per layer, now on average over steps)
    while the steps keep their relative sizes: a batch the network already fits gives a
    small gradient and takes a small step, where a per-step normalisation would take a
    full-size step in a noisy direction (docs/learning.md).

    A step whose RMS is not finite passes through without entering the average (the
    programmer then refuses the update).
    """

    def __init__(self, n_tiles: int, steps: int = 1) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps = int(steps)
        self.weight = 1.0 - 1.0 / self.steps
        self.mean_square = np.zeros(n_tiles)
        self.count = 0

    def update(self, rms: np.ndarray) -> np.ndarray:
        """Add this step's per-tile RMS; the RMS to divide by, shape (n_tiles,)."""
        rms = np.asarray(rms, dtype=float)
        if self.steps == 1 or not np.all(np.isfinite(rms)):
            return rms
        self.count += 1
        self.mean_square = self.weight * self.mean_square + (1.0 - self.weight) * rms**2
        return np.sqrt(self.mean_square / (1.0 - self.weight**self.count))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The average and the number of steps in it (checkpoints)."""
        return {"mean_square": self.mean_square.copy(), "count": np.array(self.count)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`; an empty state (a checkpoint from before the average
        existed, or ``steps == 1``) leaves it at its start."""
        if not state:
            return
        mean_square = np.asarray(state.get("mean_square"), dtype=float)
        count = np.asarray(state.get("count"), dtype=float)
        if mean_square.shape != self.mean_square.shape:
            raise ConfigError(
                f"checkpoint's running RMS has {mean_square.size} tiles, the network "
                f"{self.mean_square.size}: not this network's checkpoint"
            )
        if not (np.all(np.isfinite(mean_square)) and np.all(mean_square >= 0)):
            raise ConfigError("checkpoint's running RMS holds negative or non-finite values")
        if count.shape != () or not (np.isfinite(count) and count >= 0 and count == int(count)):
            raise ConfigError("checkpoint's running RMS step count is not a whole number >= 0")
        self.mean_square = mean_square.copy()
        self.count = int(count)


class Trainer:
    """Train a bench's network with EqProp.

    Parameters
    ----------
    bench : Bench
    estimator : EqProp
        Turns a batch's phases into a gradient of every conductance.
    programmer : Programmer
        Turns conductance updates into pulses on ``bench``.
    data : Dataset
    schedule : Schedule
    rng : numpy Generator
        Orders the batches (the programmer may share it).
    listeners : list of callables, optional
        Called with every :mod:`hil.events` event; more with :meth:`subscribe`.

    Attributes
    ----------
    history : list of EpochMetrics
        One record per finished epoch (restored by :meth:`load_state_dict`).
    """

    def __init__(
        self,
        bench: Bench,
        estimator: EqProp,
        programmer: Programmer,
        data: Dataset,
        schedule: Schedule,
        rng: np.random.Generator,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.bench = bench
        self.estimator = estimator
        self.programmer = programmer
        self.data = data
        self.schedule = schedule
        self.rng = rng
        self.listeners = list(listeners or [])
        self.history: list[EpochMetrics] = []
        self.running_rms = RunningRms(len(bench.network.tiles), schedule.rms_steps)
        self._progress: _EpochProgress | None = None  # the epoch in progress, if any
        self._stop = threading.Event()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event from now on."""
        self.listeners.append(listener)

    def _emit(self, event: Event) -> None:
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
            losses.append(self.estimator.loss(out, self.estimator.targets(yb, net.n_classes)))
            correct += int(np.sum(out.argmax(axis=1) == yb))
        return float(np.concatenate(losses).mean()), correct / len(labels)

    # --- training -----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop at the next step boundary: :meth:`fit` raises :class:`StopRequested` there
        (thread-safe; the state is then consistent and can be checkpointed)."""
        self._stop.set()

    def fit(self) -> list[EpochMetrics]:
        """Train up to ``schedule.epochs`` (continuing a resumed run); returns the history.

        The bench is left in its safe state on every way out (errors, Ctrl-C, a stop).

        Raises
        ------
        StopRequested
            :meth:`request_stop` was called; raised at a step boundary.
        """
        with in_safe_hands(self.bench):
            for epoch in range(len(self.history) + 1, self.schedule.epochs + 1):
                if self._progress is None or self._progress.epoch != epoch:
                    self._progress = self._start_epoch(epoch)
                progress = self._progress
                while progress.step < progress.steps:
                    self._step(progress)
                    self._emit(
                        StepFinished(
                            epoch,
                            progress.step,
                            progress.steps,
                            progress.loss_sum / progress.seen,
                            progress.correct / progress.seen,
                        )
                    )
                    if self._stop.is_set():
                        raise StopRequested(f"stopped after epoch {epoch} step {progress.step}")
                metrics = self._finish_epoch(progress)
                self._progress = None
                self.history.append(metrics)
                self._emit(EpochFinished(metrics))
        return self.history

    def _start_epoch(self, epoch: int) -> _EpochProgress:
        start = time.perf_counter()
        self.programmer.resync()
        order = self.rng.permutation(len(self.data.y_train))
        return _EpochProgress(
            epoch=epoch,
            order=order,
            steps=-(-len(order) // self.schedule.batch_size),
            capped_before=self.programmer.capped,
            seconds=time.perf_counter() - start,
        )

    def _step(self, p: _EpochProgress) -> None:
        start = time.perf_counter()
        schedule, programmer = self.schedule, self.programmer
        net = self.bench.network
        lr = schedule.learning_rate_at(p.epoch)
        idx = p.order[p.step * schedule.batch_size : (p.step + 1) * schedule.batch_size]
        labels = self.data.y_train[idx]
        result = self.estimator.estimate(
            self.bench, net.encode_inputs(self.data.x_train[idx]), labels
        )
        rms = self.running_rms.update(tile_rms(net, result.gradient))
        report = programmer.apply(layer_normalised_update(net, result.gradient, lr, rms))
        p.step += 1
        p.pulses += report.pulses
        p.refused += report.refused
        p.reads += report.reads
        p.unconverged += report.unconverged.size
        p.residual_sq += float(np.sum(report.residual**2))
        p.residual_n += report.residual.size
        if report.notes:
            self._emit(PulseNotes(p.epoch, p.step, tuple(report.notes)))
        p.seen += len(idx)
        p.correct += int(np.sum(result.free.outputs.argmax(axis=1) == labels))
        p.loss_sum += float(result.loss.sum())
        if schedule.resync_every and p.step % schedule.resync_every == 0:
            programmer.resync()
        p.seconds += time.perf_counter() - start

    def _finish_epoch(self, p: _EpochProgress) -> EpochMetrics:
        start = time.perf_counter()
        train_loss, train_acc = self.evaluate(self.data.x_train, self.data.y_train)
        test_loss, test_acc = self.evaluate(self.data.x_test, self.data.y_test)
        return EpochMetrics(
            epoch=p.epoch,
            train_loss=train_loss,
            train_accuracy=train_acc,
            test_loss=test_loss,
            test_accuracy=test_acc,
            pulses=p.pulses,
            pulses_capped=self.programmer.capped - p.capped_before,
            learning_rate=self.schedule.learning_rate_at(p.epoch),
            seconds=p.seconds + time.perf_counter() - start,
            pulses_refused=p.refused,
            reads=p.reads,
            residual_rms=float(np.sqrt(p.residual_sq / p.residual_n)) if p.residual_n else 0.0,
            unconverged=p.unconverged,
        )

    # --- state for checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs, as numpy arrays (``np.savez``-ready).

        Keys: ``bench.*`` (when the bench can save its devices), ``programmer.*``,
        ``rms.*`` (the running gradient RMS, when averaged over steps), ``rng_state`` and
        ``history`` (JSON strings), ``epoch`` (epochs finished) and, between the steps of
        an epoch, ``progress.*`` (its batch order and running sums).
        """
        arrays: dict[str, np.ndarray] = {}
        if isinstance(self.bench, StatefulBench):
            arrays.update({f"bench.{k}": v for k, v in self.bench.state_dict().items()})
        arrays.update({f"programmer.{k}": v for k, v in self.programmer.state_dict().items()})
        if self.running_rms.steps > 1:
            arrays.update({f"rms.{k}": v for k, v in self.running_rms.state_dict().items()})
        arrays["rng_state"] = np.array(json.dumps(self.rng.bit_generator.state))
        arrays["history"] = np.array(json.dumps([m.as_dict() for m in self.history]))
        arrays["epoch"] = np.array(len(self.history))
        if self._progress is not None:
            arrays.update({f"progress.{k}": v for k, v in self._progress.state_dict().items()})
        return arrays

    def load_state_dict(self, state: dict[str, np.ndarray]) -> int:
        """Restore :meth:`state_dict`; returns the number of epochs already done."""
        missing = {"rng_state", "history", "epoch"} - set(state)
        if missing:
            raise ConfigError(
                f"checkpoint lacks {', '.join(sorted(missing))}: not a hil checkpoint"
            )
        bench_state = _section(state, "bench.")
        if bench_state and isinstance(self.bench, StatefulBench):
            self.bench.load_state_dict(bench_state)
        self.programmer.load_state_dict(_section(state, "programmer."))
        self.running_rms.load_state_dict(_section(state, "rms."))
        self.rng.bit_generator.state = json.loads(str(state["rng_state"]))
        records = json.loads(str(state["history"]))
        self.history = [EpochMetrics.from_dict(r) for r in records]
        progress = _section(state, "progress.")
        self._progress = _EpochProgress.from_state_dict(progress) if progress else None
        if self._progress is not None and not restores_devices(self.bench):
            # mid-epoch on devices the checkpoint did not bring back (a physical crossbar):
            # they are where the last pulses left them, not where the estimate says
            self.programmer.resync()
        return int(state["epoch"])

    @property
    def steps_done(self) -> int:
        """Steps finished in the epoch in progress (0 between epochs)."""
        return 0 if self._progress is None else self._progress.step


class StopRequested(Exception):
    """:meth:`Trainer.request_stop` was honoured at a step boundary (not an error)."""


@dataclass
class _EpochProgress:
    """An epoch between two steps: its batch order and running sums (checkpointed)."""

    epoch: int
    order: np.ndarray
    steps: int
    capped_before: int
    step: int = 0
    seconds: float = 0.0
    pulses: int = 0
    refused: int = 0
    reads: int = 0
    unconverged: int = 0
    residual_sq: float = 0.0
    residual_n: int = 0
    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> _EpochProgress:
        values = {f.name: state[f.name] for f in fields(cls)}
        return cls(
            order=np.asarray(values.pop("order"), dtype=np.int64),
            **{k: v.item() for k, v in values.items()},
        )


def _section(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
