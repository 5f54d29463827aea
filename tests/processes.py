"""Running the `hil` command in its own process, for drills."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The installed `hil` entry point of this environment.
HIL = str(Path(sys.executable).parent / "hil")


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "it") -> None:
    """Poll ``condition`` every 20 ms; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
