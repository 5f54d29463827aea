"""Typed events: what a run tells its listeners (progress bar, run files, the API's stream).

Every event is a frozen dataclass; a listener is any callable taking one. The trainer emits
:class:`StepFinished`, :class:`PulseNotes` and :class:`EpochFinished`; the run object
(:mod:`hil.run`) adds :class:`RunStarted` and :class:`RunEnded` around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics of one epoch (losses in V^2, accuracies in [0, 1]).

    Attributes
    ----------
    epoch : int
        1-based.
    pulses : int
        Programming pulses delivered during the epoch (every strategy, every round).
    pulses_capped : int
        Device updates cut by the per-request pulse limit.
    learning_rate : float
        The epoch's (decayed) learning rate.
    seconds : float
        Wall-clock time of the epoch (s).
    pulses_refused : int
        Pulses the bench refused (endurance); the bench's notes go out as
        :class:`PulseNotes`.
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

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a plain dict (JSON- and CSV-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EpochMetrics:
        """Read back :meth:`as_dict`; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class StepFinished:
    """One training step (a batch: phases, gradient, programming) is done.

    ``loss`` (V^2) and ``accuracy`` are running means over the epoch so far.
    """

    epoch: int
    step: int
    steps: int
    loss: float
    accuracy: float


@dataclass(frozen=True)
class PulseNotes:
    """The bench or the programmer noted something about a step's pulses (refusals,
    disturbs, retired devices)."""

    epoch: int
    step: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class EpochFinished:
    """An epoch is done and evaluated; the trainer's state is consistent (checkpoint now)."""

    metrics: EpochMetrics


@dataclass(frozen=True)
class RunStarted:
    """A run is about to train (``first_epoch`` > 1 when it resumes)."""

    name: str
    run_dir: Path
    description: str
    first_epoch: int
    epochs: int


@dataclass(frozen=True)
class RunEnded:
    """A run ended: ``finished``, ``interrupted`` (Ctrl-C; resumable) or ``failed``."""

    status: Literal["finished", "interrupted", "failed"]
    epochs_done: int
    error: str = ""


Event = StepFinished | PulseNotes | EpochFinished | RunStarted | RunEnded
Listener = Callable[[Event], None]
