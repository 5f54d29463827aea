"""Learning-curve plots (PNG), drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hil.trainer import EpochMetrics  # noqa: E402


def plot_learning_curves(history: list[EpochMetrics], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and test, side by side; returns the path."""
    epochs = [m.epoch for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
