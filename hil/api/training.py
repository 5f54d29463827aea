"""Runs started through the API: each trains in its own thread on the bench it leases.

A run here is a :class:`hil.run.Run` given the bench's guard, the server's store and a
listener; the API adds only what a server needs around it: the config a request names,
checked against the bench; the bench's lease for as long as the run trains; a ``queued``
record before the thread starts; and the events a stream follows (``queued``, ``started``,
``ended``; the run itself records ``step``, ``pulse_notes`` and ``epoch``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.api.errors import UnknownResource
from hil.api.pool import BenchPool, BenchSlot
from hil.composition import build_data
from hil.config import RunConfig, config_differences, load_config, validate_config
from hil.errors import ConfigError, InUseError
from hil.events import Event, RunStarted
from hil.run import Run, check_resumable, event_data, git_revision, resume_config
from hil.run_files import RunDirectory
from hil.store import RunRecord, RunStore

log = logging.getLogger(__name__)

#: Statuses of a run that may still produce events.
LIVE = ("queued", "running")


@dataclass
class _Active:
    run: Run
    slot: BenchSlot
    thread: threading.Thread


class RunManager:
    """Starts, stops and resumes runs, and knows which ones this server trains.

    Parameters
    ----------
    store : RunStore
        Where runs are recorded (the runs write through it).
    pool : BenchPool
    config_root : Path
        Config files a request names must lie under this folder (or be shipped configs).
    """

    def __init__(self, store: RunStore, pool: BenchPool, config_root: Path) -> None:
        self.store = store
        self.pool = pool
        self.config_root = Path(config_root)
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._closing = False

    # --- which config --------------------------------------------------------------------
    def config_for(
        self,
        slot: BenchSlot,
        config: str | dict[str, Any],
        epochs: int | None = None,
        seed: int | None = None,
    ) -> RunConfig:
        """The run config a request means, checked like ``hil train`` checks it and against
        the bench it will train on.

        ``config`` is a bench id (that bench's config), a shipped config's name, a file under
        :attr:`config_root`, or an inline config, whose missing ``network`` and ``bench``
        sections are the bench's. The network and bench sections must be the bench's; the
        data must fit the network.

        Raises
        ------
        ConfigError
            Naming the field: invalid, outside the config folder, not what the bench
            realises, or data that does not fit.
        """
        overrides = {"epochs": epochs, "seed": seed}
        if isinstance(config, str):
            if config in {s.id for s in self.pool}:
                raw = self.pool.get(config).config.model_dump(mode="json")
                run_config = validate_config(raw, f"of bench {config}", **overrides)
            else:
                run_config = load_config(self._config_file(config), **overrides)
        else:
            raw = dict(config)
            for section in ("network", "bench"):
                raw.setdefault(section, getattr(slot.config, section).model_dump(mode="json"))
            run_config = validate_config(raw, "in the request", **overrides)
        check_realises(slot, run_config)
        build_data(run_config)  # the data must fit the network: ConfigError before any record
        return run_config

    def _config_file(self, ref: str) -> str | Path:
        path = Path(ref)
        root = self.config_root.resolve()
        try:
            if len(path.parts) == 1 and not (root / path).is_file():
                return ref  # a shipped config's name (load_config says so if it is none)
            full = (root / path).resolve()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            raise ConfigError(f"config {ref[:100]!r} is not a usable file name ({exc})") from None
        if not full.is_relative_to(root):
            raise ConfigError(
                f"config {ref!r} is outside this server's config folder {root}: name a shipped "
                "config, a bench, or a file in that folder"
            )
        return full

    # --- starting ----------------------------------------------------------------------
    def submit(self, slot: BenchSlot, config: RunConfig, lease_token: str | None) -> RunRecord:
        """Record a new run (``queued``) and start it on ``slot``'s bench.

        Raises
        ------
        InUseError
            The bench is leased (``lease_token`` passes the caller's own lease to the run)
            or trains another run; nothing was recorded.
        """
        with self._lock:
            self._refuse_when_closing()
            run_id = self.store.new_run_id(config.name)
            run = self._run(config, run_id, slot, resume=False)
            slot.attach_run(run_id, run, lease_token)
            try:
                self.store.create_run(
                    run_id,
                    config.model_dump(mode="json"),
                    bench_kind=config.bench.kind,
                    seed=config.training.seed,
                    git_revision=git_revision(),
                )
                self.store.add_event(run_id, "queued", {"status": "queued", "bench": slot.id})
            except BaseException:
                slot.detach_run(run_id)
                raise
            self._start(run_id, run, slot)
        return self.store.get_run(run_id)

    def resume(
        self,
        run_id: str,
        bench_id: str | None,
        epochs: int | None,
        lease_token: str | None,
    ) -> RunRecord:
        """Continue a run from its last checkpoint with its stored config (only
        ``training.epochs`` may change), on the bench it trained on or ``bench_id``.

        Raises
        ------
        UnknownResource
            No such run.
        InUseError
            The run trains (here or in another process), or the bench is busy.
        ConfigError
            No checkpoint, no known bench, or a config the bench does not realise.
        """
        with self._lock:
            self._refuse_when_closing()
            record = self.record(run_id)
            if run_id in self._active or record.status == "running":
                raise InUseError(f"run {run_id} is {record.status}: stop it before resuming")
            check_resumable(record.status, run_id)
            bench_id = bench_id or self.bench_of(run_id)
            if bench_id is None:
                raise ConfigError(
                    f"run {run_id} was not started by this server: name the bench to resume on"
                )
            slot = self.pool.get(bench_id)
            checkpoint = self.store.run_dir(run_id) / RunDirectory.CHECKPOINT
            if not checkpoint.is_file():
                raise ConfigError(f"run {run_id} has no checkpoint to resume from")
            config = resume_config(record.config, None, epochs=epochs)
            check_realises(slot, config)
            run = self._run(config, run_id, slot, resume=True)
            slot.attach_run(run_id, run, lease_token)
            try:
                if config.model_dump(mode="json") != record.config:
                    self.store.set_config(run_id, config.model_dump(mode="json"))
                self.store.add_event(run_id, "resumed", {"status": record.status, "bench": slot.id})
            except BaseException:
                slot.detach_run(run_id)
                raise
            self._start(run_id, run, slot)
        return self.store.get_run(run_id)

    def _refuse_when_closing(self) -> None:
        if self._closing:
            raise InUseError("the server is shutting down: no new runs")

    def _run(self, config: RunConfig, run_id: str, slot: BenchSlot, resume: bool) -> Run:
        def record_start(event: Event) -> None:
            # Run tells its own listeners when it starts; the stream needs it in the store
            if isinstance(event, RunStarted):
                self.store.add_event(run_id, "started", {"status": "running", **event_data(event)})

        return Run(
            config,
            store=self.store,
            run_id=run_id,
            resume=resume,
            bench=slot.guard,
            listeners=[record_start],
        )

    def _start(self, run_id: str, run: Run, slot: BenchSlot) -> None:
        thread = threading.Thread(
            target=self._train, args=(run_id,), name=f"hil-run-{run_id}", daemon=True
        )
        self._active[run_id] = _Active(run, slot, thread)
        thread.start()

    def _train(self, run_id: str) -> None:
        active = self._active[run_id]
        error = ""
        try:
            active.run.execute()
        except BaseException as exc:  # the run recorded it; this thread must end quietly
            error = f"{type(exc).__name__}: {exc}"
            log.error("run %s ended with %s", run_id, error)
            try:
                record = self.store.find_run(run_id)
                if record is not None and record.status in LIVE:  # failed before it could say
                    self.store.set_status(run_id, "failed", error)
            except Exception as store_error:
                log.error("run %s: could not record its failure: %s", run_id, store_error)
        finally:
            self._ended(run_id, active, error)

    def _ended(self, run_id: str, active: _Active, error: str) -> None:
        try:
            record = self.store.find_run(run_id)
            status = record.status if record is not None else active.run.status
            self.store.add_event(
                run_id,
                "ended",
                {
                    "status": status,
                    "epochs_done": record.epochs_done if record is not None else 0,
                    "error": (record.error if record is not None else None) or error or None,
                    "emergency_stop_by": active.slot.guard.stopped_by or None,
                },
            )
        except Exception as exc:
            log.error("run %s: could not record its end: %s", run_id, exc)
        finally:
            active.slot.detach_run(run_id)
            with self._lock:
                self._active.pop(run_id, None)

    # --- looking up ---------------------------------------------------------------------
    def record(self, run_id: str, store: RunStore | None = None) -> RunRecord:
        """The store's record of a run; UnknownResource if there is none."""
        record = (store or self.store).find_run(run_id)
        if record is None:
            raise UnknownResource(f"no run {run_id!r}")
        return record

    def is_active(self, run_id: str) -> bool:
        """True while this server trains (or is about to train) the run."""
        return run_id in self._active

    def bench_of(self, run_id: str, store: RunStore | None = None) -> str | None:
        """The bench this server started the run on (None for runs started elsewhere)."""
        active = self._active.get(run_id)
        if active is not None:
            return active.slot.id
        first = (store or self.store).events(run_id, after=0, limit=1)
        if first and first[0]["kind"] == "queued":
            bench = first[0]["data"].get("bench")
            return str(bench) if bench is not None else None
        return None

    # --- stopping -----------------------------------------------------------------------
    def stop(self, run_id: str) -> RunRecord:
        """Ask a run to stop at its next step boundary (checkpoint kept); a run that does not
        train is left as it is. Returns its record.

        Raises
        ------
        UnknownResource
            No such run.
        InUseError
            Another process trains it (stop it there).
        """
        record = self.record(run_id)
        active = self._active.get(run_id)
        if active is not None:
            active.run.request_stop()
        elif record.status == "running":
            raise InUseError(
                f"run {run_id} is trained by another process, not this server: stop it there"
            )
        return record

    def request_stop_all(self) -> None:
        """Ask every run to stop (thread-safe, returns at once); no new runs from now on."""
        self._closing = True
        for active in list(self._active.values()):
            active.run.request_stop()

    def shutdown(self, grace_s: float) -> list[str]:
        """Stop every run and wait for its thread: ``grace_s`` to reach a step boundary, then
        the emergency stop of its bench; returns the runs whose thread did not end."""
        self.request_stop_all()
        actives = list(self._active.values())
        for active in actives:
            active.thread.join(grace_s)
        late = [a for a in actives if a.thread.is_alive()]
        for active in late:
            active.slot.estop("server shutdown")
        for active in late:
            active.thread.join(grace_s)
        stuck = [a.run.run_id or "" for a in late if a.thread.is_alive()]
        for run_id in stuck:  # its process ends now: the next start marks it interrupted
            log.error("run %s did not stop in time", run_id)
        return stuck


def check_realises(slot: BenchSlot, config: RunConfig) -> None:
    """ConfigError unless ``config``'s network and bench sections are ``slot``'s, naming
    every field that differs."""
    differ = []
    for section in ("network", "bench"):
        changed = config_differences(
            {section: getattr(slot.config, section).model_dump(mode="json")},
            {section: getattr(config, section).model_dump(mode="json")},
        )
        differ += [f"{k}: bench has {a!r}, config has {b!r}" for k, (a, b) in changed.items()]
    if differ:
        raise ConfigError(
            f"the config is not what bench {slot.id} realises ({'; '.join(differ[:10])})"
        )
