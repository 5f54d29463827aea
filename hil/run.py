"""The run object: one experiment end to end.

:class:`Run` owns what running an experiment means: config -> data -> bench -> trainer ->
run directory -> close, on every way out (success, error, Ctrl-C). It is the only writer
of the run directory (:class:`hil.run_files.RunDirectory`); the CLI, the benchmarks and the
API to come all train through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.bench import Bench, SafeStateReport
from hil.composition import build_bench, build_data, build_trainer
from hil.config.run import RunConfig
from hil.errors import InstrumentError
from hil.events import (
    EpochFinished,
    EpochMetrics,
    Event,
    Listener,
    PulseNotes,
    RunEnded,
    RunStarted,
)
from hil.run_files import RunDirectory
from hil.trainer import Trainer

log = logging.getLogger(__name__)


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS``."""
    return root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced.

    Attributes
    ----------
    run_dir : Path or None
        Where its files are (None for a run that wrote none).
    history : list of EpochMetrics
        Every epoch, including those done before a resume.
    seconds : float
        Wall-clock time of this execution (s), not counting epochs done before a resume.
    """

    run_dir: Path | None
    history: list[EpochMetrics]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The one-line JSON summary ``hil train --json`` prints."""
        last = self.history[-1]
        return {
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "epochs": last.epoch,
            "test_accuracy": last.test_accuracy,
            "train_accuracy": last.train_accuracy,
            "test_loss": last.test_loss,
            "pulses": int(sum(m.pulses for m in self.history)),
            "pulses_refused": int(sum(m.pulses_refused for m in self.history)),
            "reads": int(sum(m.reads for m in self.history)),
            "seconds": round(self.seconds, 3),
        }


class Run:
    """One experiment: train the network of a config on its bench, keep its files.

    Parameters
    ----------
    config : RunConfig
        Validated config (see :func:`hil.config.load_config`).
    run_dir : Path or None
        Where the run's files go; None writes nothing (benchmarks, quick experiments).
    resume : bool
        Continue from ``run_dir``'s checkpoint instead of starting afresh.
    listeners : sequence of callables
        Called with every :mod:`hil.events` event (progress bars, the API's stream).

    Attributes
    ----------
    safe_state : SafeStateReport or None
        What the bench confirmed when the run ended (None before it ends).
    status : str
        ``created``, ``running``, ``finished``, ``interrupted`` or ``failed``.

    Notes
    -----
    The constructor only stores its arguments; :meth:`execute` does the work. Errors in the
    config, the data or the checkpoint are raised before a bench is built.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        *,
        resume: bool = False,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.config = config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = resume
        self.listeners = list(listeners)
        self.safe_state: SafeStateReport | None = None
        self.status = "created"

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def execute(self) -> RunResult:
        """Train to ``training.epochs`` and write the run's files; returns the result.

        The bench is closed on every way out, after a safe state whose report is kept in
        :attr:`safe_state`. On Ctrl-C the last finished epoch's checkpoint stays and
        KeyboardInterrupt propagates; an InstrumentError propagates with the safe-state
        outcome added to its reason.
        """
        config = self.config
        directory = None if self.run_dir is None else RunDirectory(self.run_dir)
        data = build_data(config)
        state = None
        if self.resume:
            if directory is None:
                raise ValueError("resume needs a run_dir")
            state = directory.read_checkpoint()
        bench = build_bench(config)
        epochs_done = 0
        try:
            trainer = build_trainer(bench, config.training, data)
            if directory is not None:  # first: the checkpoint is written whatever else fails
                trainer.subscribe(_Recorder(directory, trainer))
            trainer.subscribe(self._log_notes)
            for listener in self.listeners:
                trainer.subscribe(listener)
            if state is not None:
                epochs_done = trainer.load_state_dict(state)
            elif directory is not None:
                directory.create().write_config(config.model_dump(mode="json"))
            description = (
                f"{bench.network.describe()}; {len(data.y_train)} train / "
                f"{len(data.y_test)} test samples of {data.name}"
            )
            if epochs_done:
                description += f"; resuming after epoch {epochs_done}"
            self.status = "running"
            self._emit(
                RunStarted(
                    config.name,
                    self.run_dir or Path("."),
                    description,
                    epochs_done + 1,
                    config.training.epochs,
                )
            )
            start = time.perf_counter()
            history = trainer.fit()
            seconds = time.perf_counter() - start
            epochs_done = len(history)
        except KeyboardInterrupt:
            self._end(bench, "interrupted", epochs_done)
            raise
        except InstrumentError as exc:
            report = self._end(bench, "failed", epochs_done, str(exc))
            raise InstrumentError(
                exc.instrument, exc.command, f"{exc.reason}; {report.words()}"
            ) from exc
        except BaseException as exc:
            self._end(bench, "failed", epochs_done, str(exc))
            raise
        finally:
            bench.close()
        if directory is not None:
            _write_curves(directory, history, f"{config.name}: EqProp on {data.name}")
        self.status = "finished"
        self._emit(RunEnded("finished", epochs_done))
        return RunResult(self.run_dir, list(history), seconds)

    def _end(self, bench: Bench, status: str, epochs_done: int, error: str = "") -> SafeStateReport:
        self.safe_state = bench.safe_state()
        self.status = status
        self._emit(RunEnded(status, epochs_done, error))  # type: ignore[arg-type]
        return self.safe_state

    @staticmethod
    def _log_notes(event: Event) -> None:
        if isinstance(event, PulseNotes):
            for note in event.notes:
                log.info("epoch %d step %d: %s", event.epoch, event.step, note)


class _Recorder:
    """Writes the checkpoint and the metrics after every epoch (the trainer's state is
    consistent then)."""

    def __init__(self, directory: RunDirectory, trainer: Trainer) -> None:
        self.directory = directory
        self.trainer = trainer

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochFinished):
            self.directory.write_checkpoint(self.trainer.state_dict())
            self.directory.write_metrics(self.trainer.history)


def _write_curves(directory: RunDirectory, history: list[EpochMetrics], title: str) -> None:
    try:
        from hil.plots import plot_learning_curves

        plot_learning_curves(history, directory / RunDirectory.CURVES, title)
    except ImportError:
        log.warning(
            "matplotlib is not installed (pip install 'hil-eqprop[plots]'): no %s",
            RunDirectory.CURVES,
        )
