"""Sweeps: one run per cell of a grid of config values and seeds, on a Dask cluster.

A sweep is a base run config, a grid (config fields, each with its values) and seeds; its
cells are every combination (grid fields in order, seeds innermost), each one run of
:class:`hil.run.Run` on a simulated bench. Cells run as tasks of a Dask ``distributed``
cluster: a :class:`~distributed.LocalCluster` of worker processes on loopback by default, or
a lab's scheduler by address.

There is one writer: a worker trains its cell with ``Run(config).execute()`` (no store, no
files) and returns the history and pulse counts; the client records the cell's run in the
run store (``SWEEP_ID-cNNN``) when the cell's future completes, once, in one transaction.
So no SQLite database is written from two machines, a task Dask retries (a worker that
died, an exception under ``retries``) is counted once, and a sweep started again with its
id runs only the cells that have no finished result.

Lab benches are refused: their instruments cannot be shared by parallel runs, and a sweep's
cells would run wherever the cluster puts them.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hil.bench import PulseCounting
from hil.config.loading import find_config, load_config, validate_config
from hil.config.run import RunConfig
from hil.errors import ConfigError
from hil.events import EpochMetrics
from hil.run import Run, git_revision
from hil.store import CellRecord, RunStore, SweepStatus

if TYPE_CHECKING:
    from distributed import Client, Future
    from rich.console import Console

log = logging.getLogger(__name__)

#: Most cells one sweep may have (a typo in a range should not queue a million runs).
MAX_CELLS = 10_000
#: Default retries of a cell whose task raised (a worker that died is rescheduled by the
#: scheduler on its own, up to ``distributed.scheduler.allowed-failures`` times).
DEFAULT_RETRIES = 2
#: How often the client looks at the cluster for finished and running cells (s).
POLL_S = 0.25

Scalar = str | int | float | bool | None
CellFunction = Callable[[dict[str, Any]], dict[str, Any]]


# --- what a sweep is ---------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One swept config field and its values (YAML scalars: ``0.5``, ``reram``, ``true``).

    Attributes
    ----------
    field : str
        A dotted config path, ``training.beta`` or ``bench.device.preset``.
    values : tuple
    """

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Cell:
    """One run of a sweep.

    Attributes
    ----------
    index : int
        Its place in the grid order (``run_id`` ends in ``-c{index:03d}``).
    params : dict
        ``{field: value}`` of the grid, without the seed.
    seed : int
        Its ``training.seed``.
    config : RunConfig
        The validated config it trains with.
    """

    index: int
    params: dict[str, Scalar]
    seed: int
    config: RunConfig

    def describe(self) -> str:
        """``training.beta=0.5 bench.device.preset=reram seed=1``."""
        return " ".join([*(f"{k}={v}" for k, v in self.params.items()), f"seed={self.seed}"])


def cell_run_id(sweep_id: str, index: int) -> str:
    """The run id of a sweep's cell: ``SWEEP_ID-cNNN``."""
    return f"{sweep_id}-c{index:03d}"


@dataclass(frozen=True)
class SweepSpec:
    """A base config, a grid and seeds: everything a sweep runs (stored with the sweep).

    Attributes
    ----------
    config : dict
        The base config mapping as written (defaults that depend on other fields, such as a
        device preset's, are then computed per cell).
    grid : tuple of Axis
    seeds : tuple of int
    """

    config: dict[str, Any]
    grid: tuple[Axis, ...]
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        """The base config's name."""
        return str(self.config.get("name") or "sweep")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (what the store keeps)."""
        return {
            "config": self.config,
            "grid": [[a.field, list(a.values)] for a in self.grid],
            "seeds": list(self.seeds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """Read back :meth:`as_dict`."""
        return cls(
            dict(data["config"]),
            tuple(Axis(str(f), tuple(v)) for f, v in data["grid"]),
            tuple(int(s) for s in data["seeds"]),
        )

    def cells(self) -> list[Cell]:
        """Every cell, each config validated: nothing is submitted unless all are good.

        Raises
        ------
        ConfigError
            A grid value the config refuses (the message names the cell and the field), a
            field that is not a config section's, ``training.seed`` in the grid, a lab bench,
            duplicate fields or values, or more than :data:`MAX_CELLS` cells.
        """
        fields = [a.field for a in self.grid]
        if len(set(fields)) != len(fields):
            raise ConfigError(f"a grid field appears twice: {', '.join(fields)}")
        if "training.seed" in fields:
            raise ConfigError("sweep seeds with --seeds (or `seeds:`), not a grid on training.seed")
        for axis in self.grid:
            if not axis.values:
                raise ConfigError(f"grid field {axis.field} has no values")
            if len({repr(v) for v in axis.values}) != len(axis.values):
                raise ConfigError(f"grid field {axis.field} repeats a value: {list(axis.values)}")
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"the seeds repeat one: {list(self.seeds)}")
        count = len(self.seeds)
        for axis in self.grid:
            count *= len(axis.values)
        if count > MAX_CELLS:
            raise ConfigError(f"the sweep has {count} cells, more than {MAX_CELLS}")
        cells = []
        combos = itertools.product(*(a.values for a in self.grid))
        for index, (values, seed) in enumerate(itertools.product(combos, self.seeds)):
            params = dict(zip(fields, values, strict=True))
            raw = copy.deepcopy(self.config)
            for field, value in params.items():
                _set_field(raw, field, value)
            cell = Cell(index, params, seed, _validate_cell(raw, params, seed))
            cells.append(cell)
        return cells


def _set_field(raw: dict[str, Any], field: str, value: Scalar) -> None:
    """Set a dotted field in a config mapping, creating missing sections."""
    parts = field.split(".")
    if not all(parts):
        raise ConfigError(f"grid field {field!r} is not a dotted config path (training.beta)")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"grid field {field}: {where} is a value, not a config section")
        node = child
    node[parts[-1]] = value


def _validate_cell(raw: dict[str, Any], params: dict[str, Scalar], seed: int) -> RunConfig:
    training = raw.setdefault("training", {})
    if not isinstance(training, dict):
        raise ConfigError("invalid config: training must be a mapping")
    training["seed"] = seed
    where = " ".join([*(f"{k}={v!r}" for k, v in params.items()), f"seed={seed}"])
    try:
        config = validate_config(raw, f"of sweep cell {where}")
    except ConfigError as exc:
        raise ConfigError(f"grid value refused: {exc}") from None
    if config.bench.kind != "simulated":
        raise ConfigError(
            f"a sweep runs on simulated benches only, and cell {where} has a "
            f"{config.bench.kind} bench: instruments cannot be shared by parallel runs "
            "(train a lab bench with `hil train`)"
        )
    return config


def parse_scalar(text: str) -> Scalar:
    """A grid value as YAML reads it (``0.5`` a float, ``1`` an int, ``reram`` a string)."""
    try:
        value = yaml.safe_load(text.strip())
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid value {text!r} is not a YAML scalar: {exc}") from None
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise ConfigError(f"grid value {text!r} is not a scalar (a number, a word, true/false)")
    return value


def parse_grid(text: str) -> Axis:
    """``FIELD=V1,V2,...`` (``--grid training.beta=0.25,0.5,1``) as an :class:`Axis`."""
    field, sep, values = text.partition("=")
    field = field.strip()
    if not sep or not field or not values.strip():
        raise ConfigError(f"--grid {text!r}: write FIELD=VALUE1,VALUE2,... (training.beta=0.5,1)")
    return Axis(field, tuple(parse_scalar(v) for v in values.split(",")))


def parse_seeds(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """Seeds from ``0-4``, ``0,2,5``, ``0-2,7``, one number, or a list of numbers."""
    if isinstance(spec, bool):
        raise ConfigError(f"seeds {spec!r}: write 0-4, 0,2,5 or a list of numbers")
    if isinstance(spec, int):
        return (spec,)
    if not isinstance(spec, str):
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
            raise ConfigError(f"seeds {list(spec)!r}: a list of whole numbers")
        return tuple(spec)
    seeds: list[int] = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ConfigError(f"seeds {spec!r}: write 0-4, 0,2,5 or 0-2,7") from None
        if high < low:
            raise ConfigError(f"seeds {spec!r}: a range must be FIRST-LAST with FIRST <= LAST")
        if high - low >= MAX_CELLS:
            raise ConfigError(
                f"seeds {spec!r}: {high - low + 1} seeds, more than the {MAX_CELLS} cells a "
                "sweep may have"
            )
        seeds.extend(range(low, high + 1))
    return tuple(seeds)


def base_config(ref: str | Path | dict[str, Any], source: str = "") -> dict[str, Any]:
    """The base config mapping of a sweep: a config file (a path or a shipped name) as
    written, or an inline mapping; validated as it is.

    Raises
    ------
    ConfigError
        The config cannot be read or is invalid.
    """
    if isinstance(ref, dict):
        validate_config(ref, source or "of the sweep")
        return copy.deepcopy(ref)
    path = find_config(ref)
    load_config(path)  # every check of a config file (size, encoding, YAML bombs, fields)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(raw)


def load_sweep_file(path: Path) -> tuple[dict[str, Any], list[Axis], tuple[int, ...] | None]:
    """A sweep file: YAML with ``config`` (a path relative to the file, a shipped config's
    name, or a mapping), ``grid`` (``{field: [values]}``) and optionally ``seeds``.

    Returns
    -------
    config : dict
        The base config mapping.
    grid : list of Axis
    seeds : tuple of int or None
        None when the file names none.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"sweep file {path} cannot be read: {exc}") from None
    if not is_sweep_file(data):
        raise ConfigError(f"sweep file {path} needs `config:` and `grid:` at the top level")
    unknown = set(data) - {"config", "grid", "seeds"}
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown keys {', '.join(sorted(unknown))}")
    ref = data["config"]
    if isinstance(ref, str) and (Path(path).parent / ref).is_file():
        ref = Path(path).parent / ref
    if not isinstance(ref, str | Path | dict):
        raise ConfigError(f"sweep file {path}: config must be a file, a name or a mapping")
    grid_data = data["grid"]
    if not isinstance(grid_data, dict):
        raise ConfigError(f"sweep file {path}: grid must map fields to lists of values")
    grid = []
    for field, values in grid_data.items():
        values = values if isinstance(values, list) else [values]
        for value in values:
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise ConfigError(f"sweep file {path}: grid {field} value {value!r} is no scalar")
        grid.append(Axis(str(field), tuple(values)))
    seeds = None if data.get("seeds") is None else parse_seeds(data["seeds"])
    return base_config(ref, f"in sweep file {path}"), grid, seeds


def is_sweep_file(data: object) -> bool:
    """True for a YAML mapping with ``config`` and ``grid`` (a run config has neither)."""
    return isinstance(data, dict) and "grid" in data and "config" in data


def create_sweep(store: RunStore, spec: SweepSpec, sweep_id: str | None = None) -> str:
    """Plan a sweep's cells (validating each) and record it ``queued``; returns its id.

    Raises
    ------
    ConfigError
        A cell the config refuses (see :meth:`SweepSpec.cells`); nothing is recorded.
    """
    cells = spec.cells()
    sweep_id = sweep_id or store.new_sweep_id(spec.name)
    rows = [(c.index, dict(c.params), c.seed, cell_run_id(sweep_id, c.index)) for c in cells]
    store.create_sweep(sweep_id, spec.name, spec.as_dict(), rows)
    return sweep_id


# --- on a worker ------------------------------------------------------------------------
def run_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one cell: what a Dask worker runs.

    ``Run(config).execute()`` with no store and no files: the client is the only writer.
    The bench is built here (as the run would build it) so that its pulse counters can be
    returned.

    Returns
    -------
    dict
        ``history`` (EpochMetrics as dicts), ``pulse_counts`` (per device, or None),
        ``seconds``, ``status`` and ``worker`` (its address).
    """
    from hil.composition import build_bench

    run_config = RunConfig.model_validate(config)
    bench = build_bench(run_config)
    try:
        result = Run(run_config, bench=bench).execute()
        counts = bench.pulse_counts if isinstance(bench, PulseCounting) else None
    finally:
        bench.close()
    return {
        "history": [m.as_dict() for m in result.history],
        "pulse_counts": None if counts is None else [int(c) for c in counts],
        "seconds": result.seconds,
        "status": result.status,
        "worker": _worker_address(),
    }


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not on a Dask worker (a direct call)
        return None


# --- on the client ----------------------------------------------------------------------
@dataclass(frozen=True)
class SweepUpdate:
    """Where a sweep stands, given to listeners after every change.

    Attributes
    ----------
    total, done, running, failed : int
        Cells of the sweep; ``done`` counts finished cells (earlier ones included).
    cell : CellRecord or None
        The cell whose result just came back, if any.
    """

    total: int
    done: int
    running: int
    failed: int
    cell: CellRecord | None = None


SweepListener = Callable[[SweepUpdate], None]


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A Dask client: of the scheduler at ``scheduler``, or of a new LocalCluster of
    ``workers`` processes (one thread each: a cell is single-threaded numpy) on loopback.

    Raises
    ------
    ConfigError
        ``distributed`` is not installed (the ``sweep`` extra), or the scheduler cannot be
        reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("sweeps need Dask distributed: pip install 'hil-eqprop[sweep]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=max(1, workers or os.cpu_count() or 1),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # the scheduler serves HTTP (health, metrics) even without a dashboard, on every
        # interface at :8787 unless told otherwise: loopback, any free port
        dashboard_address="127.0.0.1:0",
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


class SweepRunner:
    """Runs the cells of a recorded sweep that have no finished result, and records them.

    Parameters
    ----------
    store : RunStore
        Where the sweep is recorded; the only writer of its cells' runs.
    sweep_id : str
    scheduler : str, optional
        A Dask scheduler's address (``tcp://host:8786``); None starts a LocalCluster.
    workers : int, optional
        Worker processes of the LocalCluster (default: one per CPU, at most one per cell).
    client : distributed.Client, optional
        Use this client (tests, notebooks) instead of ``scheduler``/``workers``.
    listeners : sequence of callables
        Called with a :class:`SweepUpdate` after every change (the progress bar).
    cell_function : callable
        What a worker runs with a cell's config (default :func:`run_cell`; must be
        importable on the workers).
    retries : int
        Dask retries of a cell whose task raised.
    """

    def __init__(
        self,
        store: RunStore,
        sweep_id: str,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        client: Client | None = None,
        listeners: Sequence[SweepListener] = (),
        cell_function: CellFunction = run_cell,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.store = store
        self.sweep_id = sweep_id
        self.scheduler = scheduler
        self.workers = workers
        self.client = client
        self.listeners = list(listeners)
        self.cell_function = cell_function
        self.retries = retries
        self.submitted = 0
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Cancel the cells not yet back and end the sweep ``interrupted`` (thread-safe)."""
        self._stop.set()

    def execute(self) -> list[CellRecord]:
        """Run the missing cells; returns every cell's record.

        Raises
        ------
        InUseError
            Another client runs this sweep now.
        ConfigError
            No such sweep, or a cell its stored spec no longer validates.
        """
        lock = self.store.sweep_lock(self.sweep_id).acquire()
        try:
            self.store.mark_orphan_sweeps()
            return self._execute_locked()
        finally:
            lock.release()

    def _execute_locked(self) -> list[CellRecord]:
        record = self.store.get_sweep(self.sweep_id)
        cells = SweepSpec.from_dict(record.spec).cells()
        rows = {c.cell: c for c in self.store.sweep_cells(self.sweep_id)}
        todo = [c for c in cells if rows[c.index].status != "finished"]
        if not todo:  # a rerun of a complete sweep: nothing to start, not even a cluster
            self._end("finished")
            return self.store.sweep_cells(self.sweep_id)
        self.store.set_sweep_status(self.sweep_id, "running")
        status: SweepStatus = "interrupted"
        error = None
        try:
            if self.client is not None:
                self._run(self.client, todo, len(cells))
            else:
                workers = self.workers or min(len(todo), os.cpu_count() or 1)
                with dask_client(self.scheduler, workers) as client:
                    self._run(client, todo, len(cells))
            failed = [c for c in self.store.sweep_cells(self.sweep_id) if c.status != "finished"]
            if self._stop.is_set():
                error = "stopped on request"
            elif failed:
                status, error = "failed", f"{len(failed)} cell(s) failed"
            else:
                status = "finished"
        except KeyboardInterrupt:
            error = "interrupted (Ctrl-C or a signal)"
            raise
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._end(status, error)
        return self.store.sweep_cells(self.sweep_id)

    def _end(self, status: SweepStatus, error: str | None = None) -> None:
        running = [c.cell for c in self.store.sweep_cells(self.sweep_id) if c.status == "running"]
        self.store.set_cells_status(self.sweep_id, running, "pending")
        self.store.set_sweep_status(self.sweep_id, status, error)

    def _run(self, client: Client, todo: list[Cell], total: int) -> None:
        from distributed import wait

        futures: dict[str, tuple[Future, Cell]] = {}
        for cell in todo:
            # a fresh key per attempt of the sweep: a resumed sweep on a long-lived
            # scheduler must not be handed the (failed) task of an earlier client
            key = f"{cell_run_id(self.sweep_id, cell.index)}-{uuid.uuid4().hex[:8]}"
            future = client.submit(
                self.cell_function,
                cell.config.model_dump(mode="json"),
                key=key,
                retries=self.retries,
                pure=False,
            )
            futures[key] = (future, cell)
        self.submitted += len(futures)
        pending = {f for f, _ in futures.values()}
        recorded: set[int] = set()
        revision = git_revision()
        running: set[int] = set()
        self._tell(total, running)
        try:
            while pending and not self._stop.is_set():
                try:
                    done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                for future in done:
                    cell = futures[future.key][1]
                    if cell.index in recorded:  # a future reports once, but be sure
                        continue
                    recorded.add(cell.index)
                    running.discard(cell.index)
                    row = self._record(future, cell, revision)
                    self._tell(total, running, row)
                now_running = self._running(client, futures, recorded)
                if now_running != running:
                    self.store.set_cells_status(
                        self.sweep_id, sorted(running - now_running), "pending"
                    )
                    self.store.set_cells_status(self.sweep_id, sorted(now_running), "running")
                    running = now_running
                    self._tell(total, running)
        finally:
            if pending:  # stopped or interrupted: the cluster should not go on with them
                client.cancel(list(pending))

    def _running(
        self, client: Client, futures: dict[str, tuple[Future, Cell]], recorded: set[int]
    ) -> set[int]:
        """Cells a worker is processing now (the scheduler's view)."""
        try:
            processing = client.processing()
        except Exception as exc:  # the progress display is not worth failing the sweep
            log.debug("cannot ask the scheduler what runs: %s", exc)
            return set()
        keys = {str(k) for tasks in processing.values() for k in tasks}
        return {c.index for k, (_, c) in futures.items() if k in keys} - recorded

    def _record(self, future: Future, cell: Cell, revision: str | None) -> CellRecord:
        config = cell.config.model_dump(mode="json")
        common: dict[str, Any] = {
            "config": config,
            "bench_kind": cell.config.bench.kind,
            "seed": cell.seed,
            "git_revision": revision,
        }
        if future.status == "finished":
            try:
                outcome = future.result()
                history = [EpochMetrics.from_dict(m) for m in outcome["history"]]
                counts = outcome.get("pulse_counts")
                return self.store.record_cell(
                    self.sweep_id,
                    cell.index,
                    status="finished",
                    history=history,
                    pulse_counts=None if counts is None else _int_array(counts),
                    seconds=float(outcome["seconds"]),
                    worker=outcome.get("worker"),
                    **common,
                )
            except (KeyError, TypeError, ValueError) as exc:
                error = f"the worker's result is not a cell's: {type(exc).__name__}: {exc}"
        else:
            raised = future.exception()
            error = f"{type(raised).__name__}: {raised}"
        log.error(
            "sweep %s cell %d (%s) failed: %s", self.sweep_id, cell.index, cell.describe(), error
        )
        return self.store.record_cell(
            self.sweep_id, cell.index, status="failed", error=error, **common
        )

    def _tell(self, total: int, running: set[int], cell: CellRecord | None = None) -> None:
        cells = self.store.sweep_cells(self.sweep_id)
        done = sum(c.status == "finished" for c in cells)
        failed = sum(c.status == "failed" for c in cells)
        update = SweepUpdate(total, done, len(running), failed, cell)
        for listener in self.listeners:
            listener(update)


def _int_array(values: Sequence[int]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.int64)


def sweep_summary(store: RunStore, sweep_id: str) -> dict[str, Any]:
    """A sweep and its cells as JSON-ready data (``hil sweep --json``, the API)."""
    record = store.get_sweep(sweep_id)
    cells = store.sweep_cells(sweep_id)
    return {
        "sweep_id": record.id,
        "name": record.name,
        "status": record.status,
        "error": record.error,
        "grid": record.spec["grid"],
        "seeds": record.spec["seeds"],
        "created_at": record.created_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "cells": [
            {
                "cell": c.cell,
                "params": c.params,
                "seed": c.seed,
                "run_id": c.run_id,
                "status": c.status,
                "test_accuracy": c.test_accuracy,
                "seconds": c.seconds,
                "worker": c.worker,
                "error": c.error,
            }
            for c in cells
        ],
    }


class SweepBar:
    """A rich bar over a sweep's cells: ``cells ━━━━━━ 5/8 running 2 failed 0``; off a
    terminal, one line per cell that comes back.

    Parameters
    ----------
    console : rich Console, optional
        Where to draw; standard error by default.
    """

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console or Console(stderr=True, highlight=False)
        self._progress = Progress(
            TextColumn("cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]} failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._task: Any = None
        self._finished = False

    def __call__(self, update: SweepUpdate) -> None:
        """Draw one update."""
        if self._finished:
            return
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("", total=update.total, running=0, failed=0)
        done = update.done + update.failed
        self._progress.update(
            self._task, completed=done, running=update.running, failed=update.failed
        )
        cell = update.cell
        if cell is not None:
            params = " ".join(f"{k}={v}" for k, v in cell.params.items())
            result = (
                f"test acc {100 * cell.test_accuracy:.1f}%"
                if cell.test_accuracy is not None
                else f"{cell.status}: {cell.error}"
            )
            self.console.print(
                f"cell {done}/{update.total} {params} seed={cell.seed}: {result} ({cell.run_id})",
                markup=False,
                soft_wrap=True,
            )
        if done >= update.total:
            self._finished = True
            self.close()

    def close(self) -> None:
        """Remove the bar (idempotent)."""
        if self._task is not None:
            self._progress.stop()
            self._task = None
