"""Exclusive locks between processes: one holder per run, per bench, per instrument.

A lock is ``flock`` on a small file. The operating system releases it when its process
dies, however it dies (SIGKILL included), so a stale lock never blocks anyone; the file
only records who holds it (PID, host, since when) for the message the next process gets:
``run sim-digits-... is in use by PID 1234 on lab-pc since 2026-12-01 19:30:02``. A
process that cannot take a lock touches nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from hil.errors import InUseError

#: Where locks for things that are not files (benches, instrument addresses) live.
LOCK_DIR_ENV = "HIL_LOCK_DIR"


def lock_dir() -> Path:
    """The folder of bench and instrument locks: ``$HIL_LOCK_DIR`` or ``/tmp/hil-locks``."""
    folder = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "hil-locks")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lock_path_for(kind: str, name: str) -> Path:
    """A lock file for a named thing (``bench``, ``instrument``), safe as a file name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] or "_"
    return lock_dir() / f"{kind}-{slug}.lock"


class ExclusiveLock:
    """An exclusive, non-blocking, process-wide lock on ``path``.

    Parameters
    ----------
    path : Path
        The lock file (created if needed).
    what : str
        What it protects, for the error message (``run X``, ``bench Y``).

    Notes
    -----
    Use as a context manager or call :meth:`acquire` / :meth:`release`. The lock is held
    by the open file: two locks on one path in the same process also exclude each other.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> Self:
        """Take the lock or raise :class:`~hil.errors.InUseError` naming the holder."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InUseError(f"{self.what} is in use by {holder}; nothing was touched") from None
        except BaseException:
            os.close(fd)
            raise
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale holder shown once released
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"PID {record['pid']} on {record['host']} since {record['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
