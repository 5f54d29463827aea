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
from collections.abc import Iterator, Sequence
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
    # 2: sweeps (hil.sweep): one row per sweep, one per cell; each cell's run is in `runs`
    """
    CREATE TABLE sweeps (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        error TEXT
    );
    CREATE TABLE sweep_cells (
        sweep_id TEXT NOT NULL REFERENCES sweeps (id),
        cell INTEGER NOT NULL,
        params TEXT NOT NULL,
        seed INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        test_accuracy REAL,
        seconds REAL,
        worker TEXT,
        error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (sweep_id, cell)
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

SweepStatus = Literal["queued", "running", "finished", "failed", "interrupted"]
SWEEP_STATUSES: tuple[SweepStatus, ...] = get_args(SweepStatus)
CellStatus = Literal["pending", "running", "finished", "failed"]
CELL_STATUSES: tuple[CellStatus, ...] = get_args(CellStatus)


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


@dataclass(frozen=True)
class SweepRecord:
    """One row of the ``sweeps`` table (see :mod:`hil.sweep`).

    Attributes
    ----------
    id : str
        The sweep id; its cells' runs are ``ID-cNNN``.
    spec : dict
        What the sweep runs: ``{"config": base config mapping, "grid": [[field, [values]],
        ...], "seeds": [...]}``; a resume plans its cells from it again.
    status : SweepStatus
    created_at, started_at, ended_at : float or None
        Unix times (s).
    error : str or None
    """

    id: str
    name: str
    spec: dict[str, Any]
    status: SweepStatus
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The record without its spec (listings)."""
        return {k: v for k, v in self.__dict__.items() if k != "spec"}


@dataclass(frozen=True)
class CellRecord:
    """One row of the ``sweep_cells`` table: a cell of a sweep and its outcome.

    Attributes
    ----------
    cell : int
        Its index in the sweep's grid order (grid fields in order, seeds innermost).
    params : dict
        The grid values of the cell (``{"training.beta": 0.5, ...}``), without the seed.
    seed : int
        Its ``training.seed``.
    run_id : str
        Its run in the ``runs`` table (recorded when the cell's result came back).
    status : CellStatus
    test_accuracy : float or None
        After the last epoch (None until finished).
    seconds : float or None
        Training time on the worker (s).
    worker : str or None
        The Dask worker that trained it.
    error : str or None
        Why it failed.
    """

    sweep_id: str
    cell: int
    params: dict[str, Any]
    seed: int
    run_id: str
    status: CellStatus
    test_accuracy: float | None
    seconds: float | None
    worker: str | None
    error: str | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return dict(self.__dict__)


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

    def add_step(
        self,
        run_id: str,
        epoch: int,
        step: int,
        loss: float,
        accuracy: float,
        event: dict[str, Any] | None = None,
    ) -> None:
        """Record the running loss and accuracy at a step, and its ``step`` event when
        given, in one transaction (a run writes this every step: one commit, not two)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO step_metrics VALUES (?, ?, ?, ?, ?)",
                (run_id, epoch, step, loss, accuracy),
            )
            if event is not None:
                db.execute(
                    "INSERT INTO events (run_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
                    (run_id, "step", json.dumps(event), time.time()),
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

    # --- sweeps ---------------------------------------------------------------------------
    def sweep_lock(self, sweep_id: str) -> ExclusiveLock:
        """The lock held by the client running a sweep (not yet acquired)."""
        return ExclusiveLock(self.root / LOCKS / f"sweep-{sweep_id}.lock", f"sweep {sweep_id}")

    def new_sweep_id(self, name: str) -> str:
        """A fresh id ``NAME-sweep-YYYYmmdd-HHMMSS`` (plus ``-2``, ``-3``... if taken)."""
        base = f"{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        sweep_id, n = base, 1
        while self.find_sweep(sweep_id) is not None:
            n += 1
            sweep_id = f"{base}-{n}"
        return sweep_id

    def create_sweep(
        self,
        sweep_id: str,
        name: str,
        spec: dict[str, Any],
        cells: list[tuple[int, dict[str, Any], int, str]],
    ) -> SweepRecord:
        """Insert a ``queued`` sweep and its cells ``(cell, params, seed, run_id)``, all
        ``pending``, in one transaction."""
        now = time.time()
        with self._write() as db:
            if db.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone():
                raise ConfigError(
                    f"a sweep {sweep_id!r} exists already in {self.root}: continue it with "
                    f"--resume {sweep_id}"
                )
            db.execute(
                "INSERT INTO sweeps (id, name, spec, status, created_at) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (sweep_id, name, json.dumps(spec), now),
            )
            db.executemany(
                "INSERT INTO sweep_cells (sweep_id, cell, params, seed, run_id, status, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(sweep_id, c, json.dumps(p), s, r, now) for c, p, s, r in cells],
            )
        return self.get_sweep(sweep_id)

    def find_sweep(self, sweep_id: str) -> SweepRecord | None:
        """The sweep of that id, or None."""
        with self._lock:
            row = self.db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            return None
        values = dict(row)
        values["spec"] = json.loads(values["spec"])
        return SweepRecord(**values)

    def get_sweep(self, sweep_id: str) -> SweepRecord:
        """The sweep of that id; ConfigError naming the id if there is none."""
        record = self.find_sweep(sweep_id)
        if record is None:
            raise ConfigError(f"no sweep {sweep_id!r} in the run store {self.root}")
        return record

    def list_sweeps(self, limit: int = 50, offset: int = 0) -> list[SweepRecord]:
        """Sweeps, newest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id FROM sweeps ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [self.get_sweep(r[0]) for r in rows]

    def set_sweep_status(
        self, sweep_id: str, status: SweepStatus, error: str | None = None
    ) -> None:
        """Change a sweep's status (``running`` stamps ``started_at``, the others
        ``ended_at``)."""
        now = time.time()
        with self._write() as db:
            if status == "running":
                db.execute(
                    "UPDATE sweeps SET status = ?, started_at = ?, ended_at = NULL, "
                    "error = NULL WHERE id = ?",
                    (status, now, sweep_id),
                )
            else:
                db.execute(
                    "UPDATE sweeps SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                    (status, now, error, sweep_id),
                )

    def sweep_cells(self, sweep_id: str) -> list[CellRecord]:
        """The cells of a sweep, in order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT * FROM sweep_cells WHERE sweep_id = ? ORDER BY cell", (sweep_id,)
            ).fetchall()
        cells = []
        for row in rows:
            values = dict(row)
            values["params"] = json.loads(values["params"])
            cells.append(CellRecord(**values))
        return cells

    def set_cells_status(self, sweep_id: str, cells: list[int], status: CellStatus) -> None:
        """Mark cells ``pending`` or ``running`` (finished and failed cells are written by
        :meth:`record_cell`, and are left alone here)."""
        with self._write() as db:
            db.executemany(
                "UPDATE sweep_cells SET status = ?, updated_at = ? "
                "WHERE sweep_id = ? AND cell = ? AND status IN ('pending', 'running')",
                [(status, time.time(), sweep_id, c) for c in cells],
            )

    def record_cell(
        self,
        sweep_id: str,
        cell: int,
        *,
        config: dict[str, Any],
        bench_kind: str,
        seed: int,
        status: Literal["finished", "failed"],
        history: Sequence[EpochMetrics] = (),
        pulse_counts: np.ndarray | None = None,
        seconds: float | None = None,
        worker: str | None = None,
        error: str | None = None,
        git_revision: str | None = None,
    ) -> CellRecord:
        """Record the outcome of a sweep cell and its run, in one transaction.

        The cell's run (``run_id`` of the cell row) is created if missing, or rewritten
        where an earlier attempt left it (an interrupted or failed cell run again): epochs
        are keyed by number and the pulse counts replaced, so nothing is counted twice.
        """
        now = time.time()
        last = history[-1] if history else None
        with self._write() as db:
            row = db.execute(
                "SELECT run_id FROM sweep_cells WHERE sweep_id = ? AND cell = ?",
                (sweep_id, cell),
            ).fetchone()
            if row is None:
                raise ConfigError(f"sweep {sweep_id!r} has no cell {cell}")
            run_id = str(row[0])
            self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
            db.execute(
                "INSERT OR IGNORE INTO runs (id, name, config, bench_kind, status, seed, "
                "git_revision, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (
                    run_id,
                    str(config.get("name", "run")),
                    json.dumps(config),
                    bench_kind,
                    seed,
                    git_revision,
                    now,
                ),
            )
            started = now - seconds if seconds is not None else now
            db.execute(
                "UPDATE runs SET config = ?, status = ?, started_at = ?, ended_at = ?, "
                "epochs_done = ?, error = ? WHERE id = ?",
                (json.dumps(config), status, started, now, len(history), error, run_id),
            )
            db.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, epoch, record) VALUES (?, ?, ?)",
                [(run_id, m.epoch, json.dumps(m.as_dict())) for m in history],
            )
            if pulse_counts is not None:
                db.execute("DELETE FROM pulse_counts WHERE run_id = ?", (run_id,))
                db.executemany(
                    "INSERT INTO pulse_counts VALUES (?, ?, ?)",
                    [(run_id, d, int(c)) for d, c in enumerate(np.asarray(pulse_counts).ravel())],
                )
            db.execute(
                "INSERT INTO events (run_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
                (
                    run_id,
                    "ended",
                    json.dumps(
                        {
                            "status": status,
                            "epochs_done": len(history),
                            "error": error,
                            "sweep": sweep_id,
                            "cell": cell,
                            "worker": worker,
                        }
                    ),
                    now,
                ),
            )
            db.execute(
                "UPDATE sweep_cells SET status = ?, test_accuracy = ?, seconds = ?, worker = ?, "
                "error = ?, updated_at = ? WHERE sweep_id = ? AND cell = ?",
                (
                    status,
                    None if last is None else last.test_accuracy,
                    seconds,
                    worker,
                    error,
                    now,
                    sweep_id,
                    cell,
                ),
            )
        return next(c for c in self.sweep_cells(sweep_id) if c.cell == cell)

    def mark_orphan_sweeps(self) -> list[str]:
        """``running`` sweeps whose client died (nobody holds their lock) become
        ``interrupted``, their running cells ``pending``; returns their ids."""
        with self._lock:
            rows = self.db.execute("SELECT id FROM sweeps WHERE status = 'running'").fetchall()
        orphans = []
        for (sweep_id,) in rows:
            lock = self.sweep_lock(sweep_id)
            try:
                lock.acquire()
            except InUseError:  # held: its client is alive
                continue
            try:
                running = [c.cell for c in self.sweep_cells(sweep_id) if c.status == "running"]
                self.set_cells_status(sweep_id, running, "pending")
                self.set_sweep_status(sweep_id, "interrupted", "its client ended without a goodbye")
                orphans.append(sweep_id)
            finally:
                lock.release()
        return orphans


def default_data_dir() -> Path:
    """``$HIL_DATA_DIR`` or ``./runs``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "runs")


def _record(row: sqlite3.Row) -> RunRecord:
    values = dict(row)
    values["config"] = json.loads(values["config"])
    return RunRecord(**values)
