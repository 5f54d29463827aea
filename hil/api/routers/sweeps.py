"""``/sweeps``: start a sweep (a grid of simulated runs on a Dask LocalCluster of the
server), follow its cells, stop it.

A sweep runs in a background thread of the server (:class:`SweepManager`), through
:class:`hil.sweep.SweepRunner` with the server's store: the server's process stays the one
writer of the store, and the cells train in the LocalCluster's worker processes, not on the
server's benches (a sweep leases none). One sweep runs at a time: each starts a cluster of
its own, and two would share the server's CPUs anyway.

Each cell's status is in the sweep record (``GET /sweeps/{id}``: ``pending``, ``running``,
``finished``, ``failed``), and each finished cell is a run under ``/runs``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import StreamingResponse

from hil.api.deps import Operator, Reader, ServicesDep
from hil.api.errors import UnknownResource
from hil.api.schemas import ErrorOut, SweepCellOut, SweepOut, SweepPage, SweepRequest
from hil.api.services import Services
from hil.api.sse import sweep_events
from hil.errors import InUseError
from hil.store import SweepRecord
from hil.sweep import Axis, SweepRunner, SweepSpec, base_config, create_sweep, parse_seeds

log = logging.getLogger(__name__)

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    403: {"model": ErrorOut, "description": "the token lacks the scope"},
    404: {"model": ErrorOut, "description": "no sweep of that id"},
}


class SweepManager:
    """Runs the server's sweeps, one at a time, each in a thread of its own.

    Parameters
    ----------
    services : Services
        The server's store (the sweeps write through it) and its config resolution.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._active: dict[str, tuple[SweepRunner, threading.Thread]] = {}
        self._closing = False

    def spec_for(self, body: SweepRequest) -> SweepSpec:
        """The sweep a request means; ConfigError naming the field of a bad config."""
        ref = body.config
        if isinstance(ref, str):
            benches = {s.id: s for s in self.services.pool}
            if ref in benches:  # that bench's config, trained on simulated benches of its own
                raw = base_config(benches[ref].config.model_dump(mode="json"), f"of bench {ref}")
            else:  # a shipped config, or a file under the config folder (nowhere else)
                raw = base_config(self.services.runs._config_file(ref))
        else:
            raw = base_config(dict(ref), "in the request")
        grid = tuple(Axis(f, tuple(v)) for f, v in body.grid.items())
        return SweepSpec(raw, grid, parse_seeds(body.seeds))

    def submit(self, spec: SweepSpec, workers: int) -> str:
        """Record the sweep (every cell validated first) and start it; returns its id.

        Raises
        ------
        InUseError
            Another sweep runs on this server, or the server is shutting down.
        ConfigError
            A cell the config refuses; nothing was recorded.
        """
        with self._lock:
            if self._closing:
                raise InUseError("the server is shutting down: no new sweeps")
            if self._active:
                raise InUseError(
                    f"sweep {next(iter(self._active))} runs on this server: wait for it or "
                    "stop it (POST /sweeps/{id}/stop)"
                )
            store = self.services.store
            sweep_id = create_sweep(store, spec)
            runner = SweepRunner(store, sweep_id, workers=workers)
            thread = threading.Thread(
                target=self._run, args=(sweep_id, runner), name=f"hil-sweep-{sweep_id}"
            )
            self._active[sweep_id] = (runner, thread)
            thread.start()
        return sweep_id

    def _run(self, sweep_id: str, runner: SweepRunner) -> None:
        try:
            runner.execute()
        except BaseException as exc:  # the runner recorded the sweep's end; end quietly
            log.error("sweep %s ended with %s: %s", sweep_id, type(exc).__name__, exc)
        finally:
            with self._lock:
                self._active.pop(sweep_id, None)

    def is_active(self, sweep_id: str) -> bool:
        """True while this server runs the sweep."""
        return sweep_id in self._active

    def stop(self, sweep_id: str) -> None:
        """Cancel the cells not yet back (the sweep ends ``interrupted``, resumable)."""
        active = self._active.get(sweep_id)
        if active is not None:
            active[0].request_stop()

    def shutdown(self, grace_s: float) -> None:
        """Stop every sweep and wait for its thread (its cluster closes with it)."""
        with self._lock:
            self._closing = True
            actives = list(self._active.values())
        for runner, _ in actives:
            runner.request_stop()
        for _, thread in actives:
            thread.join(grace_s)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The sweeps of a running server: inside the app's lifespan, so the store is open."""
    services: Services = app.state.services
    await anyio.to_thread.run_sync(services.store.mark_orphan_sweeps)
    manager = SweepManager(services)
    app.state.sweeps = manager
    try:
        yield
    finally:
        app.state.sweeps = None
        await anyio.to_thread.run_sync(manager.shutdown, services.settings.shutdown_grace_s)


async def get_sweeps(request: Request) -> SweepManager:
    """The server's sweep manager."""
    manager: SweepManager | None = getattr(request.app.state, "sweeps", None)
    if manager is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is not running")
    return manager


Sweeps = Annotated[SweepManager, Depends(get_sweeps)]

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=ERRORS, lifespan=lifespan)


def sweep_out(
    services: Services, manager: SweepManager, record: SweepRecord, cells: bool
) -> SweepOut:
    """A sweep's response model (its cells too when ``cells``)."""
    rows = services.reads.sweep_cells(record.id)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return SweepOut(
        id=record.id,
        name=record.name,
        status=record.status,
        active=manager.is_active(record.id),
        grid=record.spec["grid"],
        seeds=record.spec["seeds"],
        counts=counts,
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        error=record.error,
        cells=[SweepCellOut.model_validate(r.as_dict()) for r in rows] if cells else None,
    )


def _record(services: Services, sweep_id: str) -> SweepRecord:
    record = services.reads.find_sweep(sweep_id)
    if record is None:
        raise UnknownResource(f"no sweep {sweep_id!r}")
    return record


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        409: {"model": ErrorOut, "description": "another sweep runs on this server"},
        422: {"model": ErrorOut, "description": "a bad config or grid value, naming the field"},
    },
)
def start_sweep(
    _: Operator, body: SweepRequest, services: ServicesDep, manager: Sweeps, response: Response
) -> SweepOut:
    """Start a sweep: every cell's config is validated, then the cells train on a Dask
    LocalCluster of ``workers`` processes in the background; follow it at the Location."""
    spec = manager.spec_for(body)
    sweep_id = manager.submit(spec, body.workers)
    response.headers["Location"] = f"/sweeps/{sweep_id}"
    return sweep_out(services, manager, services.store.get_sweep(sweep_id), cells=True)


@router.get("")
def list_sweeps(
    _: Reader,
    services: ServicesDep,
    manager: Sweeps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepPage:
    """Sweeps, newest first (without their cells)."""
    records = services.reads.list_sweeps(limit=limit, offset=offset)
    return SweepPage(
        sweeps=[sweep_out(services, manager, r, cells=False) for r in records],
        limit=limit,
        offset=offset,
    )


@router.get("/{sweep_id}")
def get_sweep(_: Reader, sweep_id: str, services: ServicesDep, manager: Sweeps) -> SweepOut:
    """A sweep and every cell's status (and, when finished, its run and test accuracy)."""
    return sweep_out(services, manager, _record(services, sweep_id), cells=True)


@router.post("/{sweep_id}/stop", status_code=status.HTTP_202_ACCEPTED)
def stop_sweep(_: Operator, sweep_id: str, services: ServicesDep, manager: Sweeps) -> SweepOut:
    """Cancel the cells not yet back; the sweep ends ``interrupted`` (``hil sweep --resume``
    runs the rest). A sweep this server does not run is left as it is."""
    record = _record(services, sweep_id)
    manager.stop(sweep_id)
    return sweep_out(services, manager, record, cells=True)


@router.get(
    "/{sweep_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def sweep_event_stream(
    _: Reader,
    sweep_id: str,
    services: ServicesDep,
    manager: Sweeps,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=2**31, description="resume after it")
    ] = None,
) -> StreamingResponse:
    """Server-sent events: a ``cell`` event as each cell ends (its parameters, seed, run,
    status and test accuracy), then a ``sweep`` event with the sweep's final record;
    resumable with ``Last-Event-ID``."""
    await anyio.to_thread.run_sync(_record, services, sweep_id)  # 404 before the stream

    def live() -> bool:
        record = services.reads.find_sweep(sweep_id)
        return manager.is_active(sweep_id) or (
            record is not None and record.status in ("queued", "running")
        )

    stream = sweep_events(
        services.reads,
        sweep_id,
        last_event_id or 0,
        live,
        services.stopping,
        services.settings.sse_poll_s,
        services.settings.sse_keepalive_s,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
