"""Learning-curve plots (PNG), drawn with matplotlib's object API.

Figures are made with :class:`matplotlib.figure.Figure` directly, not through pyplot, so
no backend is selected globally and nothing is drawn on a user's screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hil.events import EpochMetrics
from hil.run_files import atomic_write


def plot_learning_curves(history: Sequence[EpochMetrics], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and test, side by side; returns the path."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [m.epoch for m in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [m.train_loss for m in history], "o-", label="train")
    ax_loss.plot(epochs, [m.test_loss for m in history], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss (V$^2$)", title="squared error")
    ax_acc.plot(epochs, [100 * m.train_accuracy for m in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * m.test_accuracy for m in history], "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
