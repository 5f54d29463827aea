"""A dependency-free progress bar for long work, fed by trainer events."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Draws ``epoch 3/10 [#####.....] 45/90 loss 0.123 acc 91.2%`` on one line.

    On a terminal the line is redrawn in place (at most 10 times a second); elsewhere (CI
    logs) only the end of each epoch is printed, so logs stay readable.
    """

    def __init__(self, epochs: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.width = width
        self.live = self.stream.isatty()
        self._last_draw = 0.0

    def __call__(self, event: dict) -> None:
        if event["type"] == "step" and self.live:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or event["step"] == event["steps"]:
                self._last_draw = now
                self._draw(event)
        elif event["type"] == "epoch":
            line = (
                f"epoch {event['epoch']}/{self.epochs}  train loss {event['train_loss']:.4f} "
                f"acc {100 * event['train_accuracy']:.1f}%  test loss {event['test_loss']:.4f} "
                f"acc {100 * event['test_accuracy']:.1f}%  pulses {event['pulses']}  "
                f"{event['seconds']:.1f}s"
            )
            self.stream.write(("\r\x1b[K" if self.live else "") + line + "\n")
            self.stream.flush()

    def _draw(self, event: dict) -> None:
        done = int(self.width * event["step"] / event["steps"])
        bar = "#" * done + "." * (self.width - done)
        self.stream.write(
            f"\r\x1b[Kepoch {event['epoch']}/{self.epochs} [{bar}] {event['step']}/"
            f"{event['steps']} loss {event['loss']:.4f} acc {100 * event['accuracy']:.1f}%"
        )
        self.stream.flush()
