"""The run object: one experiment end to end.

:class:`Run` owns what running an experiment means: config -> data -> bench -> trainer ->
run directory (and run store) -> close, on every way out (success, error, Ctrl-C, SIGTERM,
a stop request). It is the only writer of a run's files (:class:`hil.run_files.RunDirectory`)
and of its rows in the run store (:class:`hil.store.RunStore`); the CLI, the benchmarks and
the API all train through it.

A run in a store is locked for as long as a process trains it (:mod:`hil.locks`): a second
process gets "in use by PID n since t" and touches nothing. A resumed run uses its stored
config; :func:`resume_config` refuses any other change than the number of epochs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.bench import Bench, PulseCounting, SafeStateReport, StatefulBench, restores_devices
from hil.composition import build_bench, build_data, build_trainer
from hil.config.loading import config_differences
from hil.config.run import RunConfig
from hil.errors import ConfigError, EmergencyStop, InstrumentError
from hil.events import (
    EpochFinished,
    EpochMetrics,
    Event,
    Listener,
    PulseNotes,
    RunEnded,
    RunStarted,
    StepFinished,
)
from hil.run_files import RunDirectory
from hil.store import RESUMABLE, RunStatus, RunStore
from hil.trainer import StopRequested, Trainer

log = logging.getLogger(__name__)

#: Config fields a resume may change (anything else would make a different run).
RESUMABLE_CHANGES = ("training.epochs",)


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS``."""
    return root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes
    ----------
    run_dir : Path or None
        Where its files are (None for a run that wrote none).
    history : list of EpochMetrics
        Every epoch, including those done before a resume.
    seconds : float
        Wall-clock time of this execution (s), not counting epochs done before a resume.
    status : str
        ``finished``, or ``stopped`` when a stop request ended it early.
    """

    run_dir: Path | None
    history: list[EpochMetrics]
    seconds: float
    status: str = "finished"

    def summary(self) -> dict[str, Any]:
        """The one-line JSON summary ``hil train --json`` prints."""
        last = self.history[-1] if self.history else None
        return {
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "status": self.status,
            "epochs": last.epoch if last else 0,
            "test_accuracy": last.test_accuracy if last else None,
            "train_accuracy": last.train_accuracy if last else None,
            "test_loss": last.test_loss if last else None,
            "pulses": int(sum(m.pulses for m in self.history)),
            "pulses_refused": int(sum(m.pulses_refused for m in self.history)),
            "reads": int(sum(m.reads for m in self.history)),
            "seconds": round(self.seconds, 3),
        }


class Run:
    """One experiment: train the network of a config on its bench, keep its record.

    Parameters
    ----------
    config : RunConfig
        Validated config (see :func:`hil.config.load_config`); for a resume, the stored
        one (see :func:`resume_config`).
    run_dir : Path or None
        Where the run's files go when there is no store; None (and no store) writes
        nothing (benchmarks, quick experiments).
    resume : bool
        Continue from the checkpoint instead of starting afresh.
    listeners : sequence of callables
        Called with every :mod:`hil.events` event (progress bars, the API's stream).
    store : RunStore, optional
        Record the run there (status, metrics, checkpoints, pulse counters, events); its
        files then go to ``store.run_dir(run_id)``.
    run_id : str, optional
        The run's id in ``store`` (required with a store).
    bench : Bench, optional
        Train on this bench (the API's leased benches) instead of building one from the
        config; it is put in its safe state at the end but not closed.

    Attributes
    ----------
    safe_state : SafeStateReport or None
        What the bench confirmed when the run ended (None before it ends).
    status : str
        ``created``, ``running``, ``finished``, ``stopped``, ``interrupted`` or ``failed``.

    Notes
    -----
    The constructor only stores its arguments; :meth:`execute` does the work. Errors in the
    config, the data, the lock or the checkpoint are raised before a bench is built.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        *,
        resume: bool = False,
        listeners: Sequence[Listener] = (),
        store: RunStore | None = None,
        run_id: str | None = None,
        bench: Bench | None = None,
    ) -> None:
        if store is not None and run_id is None:
            raise ValueError("a run in a store needs its run_id")
        self.config = config
        self.store = store
        self.run_id = run_id
        if store is not None and run_id is not None:
            run_dir = store.run_dir(run_id)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = resume
        self.listeners = list(listeners)
        self.bench = bench
        self.safe_state: SafeStateReport | None = None
        self.status = "created"
        self._trainer: Trainer | None = None
        self._stop_requested = False

    def _emit(self, event: Event) -> None:
        # RunStarted/RunEnded go to the listeners only: the store has the run's status, and
        # a server streaming events records them with what it knows (an e-stop's author)
        for listener in self.listeners:
            listener(event)

    def request_stop(self) -> None:
        """Stop at the next step boundary, keeping a checkpoint there (thread-safe)."""
        self._stop_requested = True
        if self._trainer is not None:
            self._trainer.request_stop()

    def execute(self) -> RunResult:
        """Train to ``training.epochs`` and keep the run's record; returns the result.

        The bench is put in its safe state on every way out (its report is kept in
        :attr:`safe_state`) and closed if this run built it. On Ctrl-C (or SIGTERM,
        SIGHUP) the last checkpoint stays and KeyboardInterrupt propagates; an
        InstrumentError propagates with the safe-state outcome added to its reason.
        """
        config = self.config
        directory = None if self.run_dir is None else RunDirectory(self.run_dir)
        lock = None
        if self.store is not None and self.run_id is not None:
            lock = self.store.run_lock(self.run_id).acquire()
        try:
            return self._execute_locked(config, directory)
        finally:
            if lock is not None:
                lock.release()

    def _execute_locked(self, config: RunConfig, directory: RunDirectory | None) -> RunResult:
        data = build_data(config)
        store, run_id = self.store, self.run_id
        new_record = store is not None and run_id is not None and not self.resume
        if store is not None and run_id is not None and new_record:
            self._check_new(store, run_id)
        state = None
        if self.resume:
            if directory is None:
                raise ValueError("resume needs a run_dir or a store")
            state = directory.read_checkpoint()
        own_bench = self.bench is None
        bench = build_bench(config) if self.bench is None else self.bench
        epochs_done = 0
        try:
            if directory is not None and state is not None:
                state = _with_counters_at_exit(state, directory, bench)
            elif directory is not None:
                directory.discard_bench_at_exit()  # an earlier run's, in this folder
            if store is not None and run_id is not None and new_record:
                self._create_record(store, run_id)  # only now: a busy bench leaves no trace
            trainer = build_trainer(bench, config.training, data)
            self._trainer = trainer
            recorder = None if directory is None else _Recorder(self, directory, trainer, bench)
            if recorder is not None:  # first: the checkpoint is written whatever else fails
                trainer.subscribe(recorder)
            trainer.subscribe(self._log_notes)
            for listener in self.listeners:
                trainer.subscribe(listener)
            if state is not None:
                epochs_done = trainer.load_state_dict(state)
            if directory is not None:
                directory.create().write_config(config.model_dump(mode="json"))
            if self._stop_requested:
                trainer.request_stop()
            self._set_status("running")
            self._emit(self._started(bench, data.name, len(data.y_train), len(data.y_test)))
            start = time.perf_counter()
            status = "finished"
            try:
                history = trainer.fit()
            except StopRequested:  # at a step boundary: the state is consistent, keep it
                status = "stopped"
                history = trainer.history
                if recorder is not None:
                    recorder.checkpoint()
            except EmergencyStop:  # mid-step: the last checkpoint is the one to resume from
                status = "stopped"
                history = trainer.history
            seconds = time.perf_counter() - start
            epochs_done = len(history)
            if status == "stopped":
                self._end(bench, directory, "stopped", epochs_done)
            else:
                self.safe_state = bench.safe_state()
        except KeyboardInterrupt:
            self._end(
                bench, directory, "interrupted", epochs_done, "interrupted (Ctrl-C or a signal)"
            )
            raise
        except InstrumentError as exc:
            report = self._end(bench, directory, "failed", epochs_done, str(exc))
            raise InstrumentError(
                exc.instrument, exc.command, f"{exc.reason}; {report.words()}"
            ) from exc
        except BaseException as exc:
            self._end(bench, directory, "failed", epochs_done, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if own_bench:
                bench.close()
        if directory is not None and history:
            _write_curves(directory, history, f"{config.name}: EqProp on {data.name}")
        if status == "finished":
            self._set_status("finished")
            self._emit(RunEnded("finished", epochs_done))
        return RunResult(self.run_dir, list(history), seconds, status)

    @staticmethod
    def _check_new(store: RunStore, run_id: str) -> None:
        """ConfigError if a run of that id exists (a row the API queued is this run)."""
        record = store.find_run(run_id)
        if record is not None and record.status != "queued":
            raise ConfigError(
                f"a run {run_id!r} exists already in {store.root}: resume it with "
                f"--resume {store.run_dir(run_id)}, or choose another name"
            )

    def _create_record(self, store: RunStore, run_id: str) -> None:
        """The run's row in the store (a row the API queued is taken as it is)."""
        record = store.find_run(run_id)
        if record is not None and record.status == "queued":
            return
        store.create_run(  # ConfigError if a run of that id exists: runs are never mixed
            run_id,
            self.config.model_dump(mode="json"),
            bench_kind=self.config.bench.kind,
            seed=self.config.training.seed,
            git_revision=git_revision(),
        )

    def _started(self, bench: Bench, data: str, n_train: int, n_test: int) -> RunStarted:
        done = len(self._trainer.history) if self._trainer else 0
        description = (
            f"{bench.network.describe()}; {n_train} train / {n_test} test samples of {data}"
        )
        if self._trainer is not None and (done or self._trainer.steps_done):
            description += f"; resuming after epoch {done}"
            if self._trainer.steps_done:
                description += f" step {self._trainer.steps_done}"
        return RunStarted(
            self.config.name,
            self.run_dir or Path("."),
            description,
            done + 1,
            self.config.training.epochs,
        )

    def _set_status(self, status: RunStatus, error: str | None = None) -> None:
        self.status = status
        if self.store is not None and self.run_id is not None:
            self.store.set_status(self.run_id, status, error)

    def _end(
        self,
        bench: Bench,
        directory: RunDirectory | None,
        status: RunStatus,
        epochs_done: int,
        error: str = "",
    ) -> SafeStateReport:
        self.safe_state = bench.safe_state()
        try:
            self._set_status(status, error or None)
        except Exception as exc:  # the safe state matters more than the record
            log.error("could not record status %s of run %s: %s", status, self.run_id, exc)
        if directory is not None and isinstance(bench, StatefulBench):
            self._keep_counters(bench, directory)
        self._emit(RunEnded(status, epochs_done, error))  # type: ignore[arg-type]
        return self.safe_state

    def _keep_counters(self, bench: StatefulBench, directory: RunDirectory) -> None:
        """A physical bench's counters as the run ends (its devices got every pulse since
        the last checkpoint, which a resume must not forget); logged if it fails."""
        if bench.restores_devices:  # a resume rewinds the devices with their counters
            return
        try:
            directory.create().write_bench_at_exit(bench.state_dict())
            if self.store is not None and self.run_id is not None:
                if isinstance(bench, PulseCounting):
                    self.store.set_pulse_counts(self.run_id, bench.pulse_counts)
        except Exception as exc:
            log.error(
                "could not keep the pulse counters of run %s at its end (%s): a resume "
                "counts from the last checkpoint",
                self.run_id or directory.path,
                exc,
            )

    @staticmethod
    def _log_notes(event: Event) -> None:
        if isinstance(event, PulseNotes):
            for note in event.notes:
                log.info("epoch %d step %d: %s", event.epoch, event.step, note)


class _Recorder:
    """Keeps the run's record: a checkpoint and the metrics after every epoch (and every
    ``checkpoint_every`` steps), and, with a store, every event."""

    def __init__(self, run: Run, directory: RunDirectory, trainer: Trainer, bench: Bench):
        self.run = run
        self.directory = directory
        self.trainer = trainer
        self.bench = bench
        self.every = run.config.training.checkpoint_every

    def __call__(self, event: Event) -> None:
        store, run_id = self.run.store, self.run.run_id
        if isinstance(event, StepFinished):
            if self.every and event.step % self.every == 0 and event.step < event.steps:
                self.checkpoint()
            if store is not None and run_id is not None:
                store.add_step(
                    run_id, event.epoch, event.step, event.loss, event.accuracy, event_data(event)
                )
            return
        if isinstance(event, EpochFinished):
            self.checkpoint()
            self.directory.write_metrics(self.trainer.history)
            if store is not None and run_id is not None:
                store.add_epoch(run_id, event.metrics)
        if store is not None and run_id is not None:
            store.add_event(run_id, event_kind(event), event_data(event))

    def checkpoint(self) -> None:
        """Write the checkpoint now (the trainer's state is consistent between steps)."""
        path = self.directory.write_checkpoint(self.trainer.state_dict())
        store, run_id = self.run.store, self.run.run_id
        if store is not None and run_id is not None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            epoch, step = len(self.trainer.history), self.trainer.steps_done
            store.add_checkpoint(run_id, epoch, step, path, digest)
            if isinstance(self.bench, PulseCounting):
                store.set_pulse_counts(run_id, self.bench.pulse_counts)


def _with_counters_at_exit(
    state: dict[str, np.ndarray], directory: RunDirectory, bench: Bench
) -> dict[str, np.ndarray]:
    """The checkpoint, with the bench counters the last run left when it ended after it.

    Only for a bench whose devices a checkpoint does not bring back (a physical crossbar):
    its devices received every pulse up to the end, so its counters continue from there.
    Its state is counters only, which only grow: the larger of the two is the later.
    """
    if restores_devices(bench):
        return state
    at_exit = directory.read_bench_at_exit()
    if not at_exit:
        return state
    merged = dict(state)
    for key, value in at_exit.items():
        saved = state.get(f"bench.{key}")
        if saved is not None and saved.shape == value.shape:
            merged[f"bench.{key}"] = np.maximum(saved, value)
        else:
            log.warning("%s: %s does not match the checkpoint's; ignored", directory.path, key)
    return merged


def event_kind(event: Event) -> str:
    """The name of an event (``step``, ``epoch``, ``pulse_notes``, ``started``, ``ended``)."""
    return {
        StepFinished: "step",
        EpochFinished: "epoch",
        PulseNotes: "pulse_notes",
        RunStarted: "started",
        RunEnded: "ended",
    }[type(event)]


def event_data(event: Event) -> dict[str, Any]:
    """An event as JSON-ready data."""
    if isinstance(event, EpochFinished):
        return event.metrics.as_dict()
    data = dataclasses.asdict(event)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def resume_config(stored: dict[str, Any], given: RunConfig | None, **flags: object) -> RunConfig:
    """The config a resumed run continues with: its stored config, changed only where
    that is safe (``training.epochs``, to extend a run).

    Parameters
    ----------
    stored : dict
        The run's config as the store holds it.
    given : RunConfig or None
        The config named on the command line again, if any; every difference from the
        stored one outside :data:`RESUMABLE_CHANGES` is refused.
    **flags
        ``training`` overrides given at resume (``epochs``, ``seed``); None for unset.

    Raises
    ------
    ConfigError
        Naming every field that differs, with both values.
    """
    base = RunConfig.model_validate(stored)
    wanted = (given or base).model_dump(mode="json")
    for key, value in flags.items():
        if value is not None:
            wanted["training"][key] = value
    changed = config_differences(base.model_dump(mode="json"), wanted)
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES}
    if refused:
        details = "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, (a, b) in refused.items())
        raise ConfigError(
            f"a resumed run keeps its config; only {', '.join(RESUMABLE_CHANGES)} may change "
            f"({details})"
        )
    return RunConfig.model_validate(wanted)


def check_resumable(status: str, run_id: str) -> None:
    """ConfigError unless a run of this status can be resumed."""
    if status not in RESUMABLE:
        raise ConfigError(f"run {run_id} is {status}; only {', '.join(RESUMABLE)} runs resume")


def git_revision() -> str | None:
    """The project's git revision, when it runs from a checkout (None otherwise)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _write_curves(directory: RunDirectory, history: list[EpochMetrics], title: str) -> None:
    try:
        from hil.plots import plot_learning_curves

        plot_learning_curves(history, directory / RunDirectory.CURVES, title)
    except ImportError:
        log.warning(
            "matplotlib is not installed (pip install 'hil-eqprop[plots]'): no %s",
            RunDirectory.CURVES,
        )
