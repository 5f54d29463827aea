"""The run store: every run, its metrics, checkpoints, pulse counters and events, in SQLite.

One database per data folder (``DATA/hil.sqlite3``, default ``./runs``), next to the run
folders (``DATA/RUN_ID/``) that hold the checkpoint files. SQLite runs in WAL mode with a
busy timeout, so readers (``hil runs``, the API) never block the writer and several
processes can share a data folder; within a process one connection, guarded by a lock, does
all the writing. The schema carries its version (``PRAGMA user_version``); migrations run
once, at open, inside one exclusive transaction.

Statuses: ``queued`` (created, not started), ``running``, ``stopped`` (a stop request or an
emergency stop; resumable), ``finished``, ``failed``, ``interrupted`` (Ctrl-C, SIGTERM, or
its process died: a ``running`` run whose lock nobody holds; resumable).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from hil.errors import ConfigError, InUseError, StoreError
from hil.events import EpochMetrics
from hil.locks import ExclusiveLock

RunStatus = Literal["queued", "running", "stopped", "finished", "failed", "interrupted"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
#: Statuses from which ``--resume`` continues a run.
RESUMABLE: tuple[RunStatus, ...] = ("stopped", "interrupted", "failed", "finished", "queued")

DATA_DIR_ENV = "HIL_DATA_DIR"
DATABASE = "hil.sqlite3"
LOCKS = ".locks"  # one lock file per run, beside the database

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        bench_kind TEXT NOT NULL,
        status TEXT NOT NULL,
        seed INTEGER NOT NULL,
        git_revision TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        epochs_done INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_status ON runs (status, created_at);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (id),
        epoch INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, epoch)
    );
    CREATE TABLE step_metrics (
        run_id TEXT NOT NULL REFERENCES runs (id),
        epoch INTEGER NOT NULL,
        step INTEGER NOT NULL,
        loss REAL NOT NULL,
        accuracy REAL NOT NULL,
        PRIMARY KEY (run_id, epoch, step)
    );
    CREATE TABLE checkpoints (
        run_id TEXT NOT NULL REFERENCES runs (id),
        epoch INTEGER NOT NULL,
        step INTEGER NOT NULL,
        file TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, epoch, step)
    );
    CREATE TABLE pulse_counts (
        run_id TEXT NOT NULL REFERENCES runs (id),
        device_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, device_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id),
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, id);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class RunRecord:
    """One row of the ``runs`` table.

    Attributes
    ----------
    id : str
        Also the name of the run's folder under the data folder.
    config : dict
        The resolved run config (what a resume uses).
    status : RunStatus
    created_at, started_at, ended_at : float or None
        Unix times (s).
    epochs_done : int
    error : str or None
        The last error, for ``failed`` runs.
    """

    id: str
    name: str
    config: dict[str, Any]
    bench_kind: str
    status: RunStatus
    seed: int
    git_revision: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    epochs_done: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The record without its config (listings)."""
        return {k: v for k, v in self.__dict__.items() if k != "config"}


class RunStore:
    """The SQLite store of one data folder (module docstring).

    Parameters
    ----------
    root : Path
        The data folder (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    @classmethod
    def open(cls, root: Path | None = None) -> RunStore:
        """Open (and migrate) the store of ``root``, ``$HIL_DATA_DIR`` or ``./runs``."""
        return cls(default_data_dir() if root is None else root).connect()

    def connect(self) -> RunStore:
        """Open the database, create or migrate its schema; returns self."""
        if self._db is not None:
            return self
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.root / DATABASE, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the run store in {self.root}: {exc}") from None
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast commits
        db.execute("PRAGMA foreign_keys=ON")
        db.row_factory = sqlite3.Row
        self._db = db
        self._migrate()
        return self

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> RunStore:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("the run store is not open (call connect())")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (IMMEDIATE: it takes the write lock at once).

        A failing database (disk full, read-only folder) raises StoreError naming it.
        """
        with self._lock:
            db = self.db
            try:
                if db.in_transaction:  # an earlier write was cut short (a signal mid-call)
                    db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"run store {self.root / DATABASE}: {exc}") from None

    def _migrate(self) -> None:
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the run store in {self.root} has schema version {version}, newer than "
                    f"this hil-eqprop's {SCHEMA_VERSION}: upgrade hil-eqprop"
                )
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- runs -----------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of a run's files."""
        return self.root / run_id

    def run_lock(self, run_id: str) -> ExclusiveLock:
        """The lock held by whichever process trains the run (not yet acquired)."""
        return ExclusiveLock(self.root / LOCKS / f"{run_id}.lock", f"run {run_id}")

    def new_run_id(self, name: str) -> str:
        """A fresh id ``NAME-YYYYmmdd-HHMMSS`` (plus ``-2``, ``-3``... if taken)."""
        base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_id, n = base, 1
        while self.find_run(run_id) is not None or self.run_dir(run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def create_run(
        self,
        run_id: str,
        config: dict[str, Any],
        *,
        bench_kind: str,
        seed: int,
        git_revision: str | None = None,
    ) -> RunRecord:
        """Insert a ``queued`` run; its folder is created too."""
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                raise ConfigError(
                    f"a run {run_id!r} exists already in {self.root}: resume it with "
                    f"--resume {self.run_dir(run_id)}, or choose another name"
                )
            db.execute(
                "INSERT INTO runs (id, name, config, bench_kind, status, seed, git_revision, "
                "created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (
                    run_id,
                    str(config.get("name", "run")),
                    json.dumps(config),
                    bench_kind,
                    seed,
                    git_revision,
                    time.time(),
                ),
            )
        return self.get_run(run_id)

    def find_run(self, run_id: str) -> RunRecord | None:
        """The run of that id, or None."""
        with self._lock:
            row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

    def get_run(self, run_id: str) -> RunRecord:
        """The run of that id; ConfigError naming the id if there is none."""
        record = self.find_run(run_id)
        if record is None:
            raise ConfigError(f"no run {run_id!r} in the run store {self.root}")
        return record

    def list_runs(
        self, status: RunStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunRecord]:
        """Runs, newest first, optionally of one status."""
        query, args = "SELECT * FROM runs", list[object]()
        if status is not None:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self.db.execute(query, args).fetchall()
        return [_record(r) for r in rows]

    def count_runs(self, status: RunStatus | None = None) -> int:
        """How many runs (of one status)."""
        query = "SELECT COUNT(*) FROM runs" + (" WHERE status = ?" if status else "")
        with self._lock:
            return int(self.db.execute(query, (status,) if status else ()).fetchone()[0])

    def set_status(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """Change a run's status (``running`` stamps ``started_at``, the end states
        ``ended_at``)."""
        now = time.time()
        with self._write() as db:
            if status == "running":
                db.execute(
                    "UPDATE runs SET status = ?, started_at = ?, ended_at = NULL, error = NULL "
                    "WHERE id = ?",
                    (status, now, run_id),
                )
            else:
                db.execute(
                    "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                    (status, now, error, run_id),
                )

    def set_config(self, run_id: str, config: dict[str, Any]) -> None:
        """Replace a run's stored config (a resume that extended its epochs)."""
        with self._write() as db:
            db.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config), run_id))

    def mark_orphans(self) -> list[str]:
        """``running`` runs whose process died (nobody holds their lock) become
        ``interrupted``; returns their ids."""
        orphans = []
        for record in self.list_runs("running", limit=10_000):
            lock = self.run_lock(record.id)
            try:
                lock.acquire()
            except InUseError:  # held: its process is alive and training
                continue
            try:
                self.set_status(record.id, "interrupted", "its process ended without a goodbye")
                orphans.append(record.id)
            finally:
                lock.release()
        return orphans

    # --- what a run produces --------------------------------------------------------------
    def add_epoch(self, run_id: str, metrics: EpochMetrics) -> None:
        """Record an epoch's metrics (replacing a record of the same epoch)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO metrics (run_id, epoch, record) VALUES (?, ?, ?)",
                (run_id, metrics.epoch, json.dumps(metrics.as_dict())),
            )
            db.execute("UPDATE runs SET epochs_done = ? WHERE id = ?", (metrics.epoch, run_id))

    def add_step(self, run_id: str, epoch: int, step: int, loss: float, accuracy: float) -> None:
        """Record the running loss and accuracy at a step."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO step_metrics VALUES (?, ?, ?, ?, ?)",
                (run_id, epoch, step, loss, accuracy),
            )

    def add_checkpoint(self, run_id: str, epoch: int, step: int, file: Path, sha256: str) -> None:
        """Record a checkpoint file written for ``epoch`` (epochs done) and ``step``."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, epoch, step, str(file), sha256, time.time()),
            )

    def set_pulse_counts(self, run_id: str, counts: np.ndarray) -> None:
        """The pulses every device has received so far (replaces the previous counts)."""
        rows = [(run_id, int(d), int(c)) for d, c in enumerate(np.asarray(counts).ravel())]
        with self._write() as db:
            db.execute("DELETE FROM pulse_counts WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO pulse_counts VALUES (?, ?, ?)", rows)

    def add_event(self, run_id: str, kind: str, data: dict[str, Any]) -> int:
        """Append an event; returns its id (increasing: SSE's ``Last-Event-ID``)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO events (run_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
                (run_id, kind, json.dumps(data), time.time()),
            )
            return int(cursor.lastrowid or 0)

    # --- reading --------------------------------------------------------------------------
    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """One record per finished epoch, in order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT record FROM metrics WHERE run_id = ? ORDER BY epoch", (run_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def step_metrics(self, run_id: str) -> list[dict[str, Any]]:
        """The recorded steps (epoch, step, loss, accuracy), in order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT epoch, step, loss, accuracy FROM step_metrics WHERE run_id = ? "
                "ORDER BY epoch, step",
                (run_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The recorded checkpoints, oldest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT epoch, step, file, sha256, created_at FROM checkpoints "
                "WHERE run_id = ? ORDER BY epoch, step",
                (run_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def pulse_counts(self, run_id: str) -> np.ndarray:
        """Pulses per device (int64, by device id); empty before the first epoch."""
        with self._lock:
            rows = self.db.execute(
                "SELECT device_id, count FROM pulse_counts WHERE run_id = ? ORDER BY device_id",
                (run_id,),
            ).fetchall()
        counts = np.zeros(len(rows), dtype=np.int64)
        for device, count in rows:
            counts[device] = count
        return counts

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after the id ``after``: ``{"id", "kind", "data", "created_at"}``."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, kind, data, created_at FROM events WHERE run_id = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (run_id, after, limit),
            ).fetchall()
        return [
            {"id": r["id"], "kind": r["kind"], "data": json.loads(r["data"]), "created_at": r[3]}
            for r in rows
        ]


def default_data_dir() -> Path:
    """``$HIL_DATA_DIR`` or ``./runs``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "runs")


def _record(row: sqlite3.Row) -> RunRecord:
    values = dict(row)
    values["config"] = json.loads(values["config"])
    return RunRecord(**values)
