"""Stopping on signals: SIGINT, SIGTERM and SIGHUP all take Ctrl-C's path.

``timeout``, systemd, ``docker stop`` and Slurm send SIGTERM; a closed terminal sends SIGHUP.
Inside :func:`stop_on_signals` the first of them raises :class:`Stopped` (a
KeyboardInterrupt, so every ``except KeyboardInterrupt`` path that leaves a bench in its
safe state and keeps the checkpoint runs for it too); later ones are logged and ignored, so
a second Ctrl-C cannot cut the safe state short.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

#: The signals that stop a run (the exit status is 128 + the signal's number).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; handled like Ctrl-C.

    Attributes
    ----------
    signum : int
    exit_status : int
        ``128 + signum``: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_status = 128 + signum
        super().__init__(signal.Signals(signum).name)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status for an interrupt: ``128 + signal`` (130 for a plain Ctrl-C)."""
    return interrupt.exit_status if isinstance(interrupt, Stopped) else 128 + signal.SIGINT


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM/SIGHUP into :class:`Stopped`, ignore the ones after it.

    A no-op outside the main thread (Python delivers signals to the main thread only).
    The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopping:
            log.warning(
                "%s ignored: already stopping (the bench is being put in its safe state)",
                signal.Signals(signum).name,
            )
            return
        stopping.append(signum)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
