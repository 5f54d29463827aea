"""The files of a run directory, each written atomically.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.json`` and
``metrics.csv`` (one row per finished epoch), ``checkpoint.npz`` (everything a resumed run
needs, see :meth:`hil.trainer.Trainer.state_dict`) and ``curves.png`` (learning curves).
Every file is written to a temporary file in the same folder, flushed to disk and renamed
over the old one, so a crash or a full disk leaves the previous version intact, never a
truncated one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from hil.errors import ConfigError
from hil.events import EpochMetrics

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary sibling, fsync, then rename.

    The temporary file has a unique name (two writers never share one) and is removed if
    writing fails, so no partial file is ever left behind.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files are as any other
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file: name the one we meant
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def metrics_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Epoch records as CSV text: a header from the first record, one line per record."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


class RunDirectory:
    """Reads and writes the files of one run directory (module docstring).

    Parameters
    ----------
    path : Path
        The folder; created by :meth:`create`.
    """

    CONFIG = "config.yaml"
    METRICS_JSON = "metrics.json"
    METRICS_CSV = "metrics.csv"
    CHECKPOINT = "checkpoint.npz"
    #: A physical bench's counters when the run last ended (they only grow; see
    #: :meth:`write_bench_at_exit`).
    BENCH_AT_EXIT = "bench_at_exit.npz"
    CURVES = "curves.png"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> RunDirectory:
        """Create the folder (and its parents) if needed."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # --- writing --------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> Path:
        """The resolved config, as YAML."""
        return atomic_write_text(self / self.CONFIG, yaml.safe_dump(config, sort_keys=False))

    def write_metrics(self, history: Sequence[EpochMetrics]) -> None:
        """``metrics.json`` and ``metrics.csv``: one record per finished epoch."""
        rows = [m.as_dict() for m in history]
        atomic_write_text(self / self.METRICS_JSON, json.dumps(rows, indent=1))
        if rows:
            atomic_write_text(self / self.METRICS_CSV, metrics_csv(rows))

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> Path:
        """``checkpoint.npz`` from a :meth:`~hil.trainer.Trainer.state_dict`."""

        def save(f: IO[bytes]) -> None:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds as bool

        return atomic_write(self / self.CHECKPOINT, save)

    def write_bench_at_exit(self, counters: dict[str, np.ndarray]) -> Path:
        """``bench_at_exit.npz``: a physical bench's counters as a run ends, merged with the
        file's (the larger of each: counters only grow, so a failed resume that ends with
        fewer cannot take counts away)."""
        merged = dict(counters)
        try:
            before = self.read_bench_at_exit() or {}
        except ConfigError as exc:  # a damaged file must not stop these counts being kept
            log.warning("%s; replacing it with the counters of now", exc)
            before = {}
        for key, value in before.items():
            mine = merged.get(key)
            if mine is not None and np.shape(mine) == value.shape:
                merged[key] = np.maximum(mine, value)

        def save(f: IO[bytes]) -> None:
            np.savez(f, **merged)  # type: ignore[arg-type]  # numpy's stub: **kwds as bool

        return atomic_write(self / self.BENCH_AT_EXIT, save)

    def discard_bench_at_exit(self) -> None:
        """Remove an earlier run's ``bench_at_exit.npz`` (a fresh run in this folder)."""
        (self / self.BENCH_AT_EXIT).unlink(missing_ok=True)

    # --- reading --------------------------------------------------------------------------
    def read_bench_at_exit(self) -> dict[str, np.ndarray] | None:
        """The arrays of ``bench_at_exit.npz``, or None when there is none.

        Raises
        ------
        ConfigError
            A file that is not readable; names it and what deleting it costs.
        """
        path = self / self.BENCH_AT_EXIT
        if not path.is_file():
            return None
        try:
            return _read_npz(path)
        except _DAMAGED as exc:
            raise ConfigError(
                f"{path} is not readable ({exc}); delete it to resume with the checkpoint's "
                "pulse counters (the pulses after the checkpoint are then not counted)"
            ) from None

    def read_checkpoint(self) -> dict[str, np.ndarray]:
        """The arrays of ``checkpoint.npz``.

        Raises
        ------
        ConfigError
            No checkpoint, or a file that is not one; names the path.
        """
        path = self / self.CHECKPOINT
        if not path.is_file():
            raise ConfigError(f"no {self.CHECKPOINT} in {self.path} to resume from")
        try:
            return _read_npz(path)
        except _DAMAGED as exc:
            raise ConfigError(f"{path} is not a readable checkpoint: {exc}") from None


#: What numpy raises for a file that is not a whole ``.npz`` (truncated, overwritten).
_DAMAGED = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}
