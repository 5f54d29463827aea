"""The progress display of a run (rich), fed by :mod:`hil.events`.

On a terminal a bar is redrawn in place for the epoch in progress; elsewhere (CI logs, a
file) only one line per finished epoch is printed, so logs stay readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from hil.events import EpochFinished, Event, RunEnded, RunStarted, StepFinished


class ProgressBar:
    """Shows ``epoch 3/10 ━━━━━━━━━━ 45/90 loss 0.123 acc 91.2%`` and a line per epoch.

    Parameters
    ----------
    console : rich Console, optional
        Where to draw; standard error by default.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.epochs = 0
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[accuracy]:.1%}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._task: TaskID | None = None

    def __call__(self, event: Event) -> None:
        """Draw one event."""
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self._say(f"{event.name}: {event.description}; results in {event.run_dir}")
        elif isinstance(event, StepFinished):
            self._step(event)
        elif isinstance(event, EpochFinished):
            self._stop_bar()
            m = event.metrics
            self._say(
                f"epoch {m.epoch}/{self.epochs}  train loss {m.train_loss:.4f} "
                f"acc {100 * m.train_accuracy:.1f}%  test loss {m.test_loss:.4f} "
                f"acc {100 * m.test_accuracy:.1f}%  pulses {m.pulses}  {m.seconds:.1f}s"
            )
        elif isinstance(event, RunEnded):
            self._stop_bar()

    def _step(self, event: StepFinished) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(
                "", total=event.steps, epochs=self.epochs, epoch=event.epoch, loss=0.0, accuracy=0.0
            )
        self._progress.update(
            self._task,
            completed=event.step,
            epoch=event.epoch,
            loss=event.loss,
            accuracy=event.accuracy,
        )

    def _stop_bar(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._progress.stop()
            self._task = None

    def _say(self, line: str) -> None:
        # soft_wrap: a log line stays one line, whatever the (non-)terminal's width
        self.console.print(line, markup=False, soft_wrap=True)
