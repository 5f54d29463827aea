"""``/runs``: start, list, follow (server-sent events), stop and resume runs."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from hil.api import operations
from hil.api.deps import LeaseToken, Operator, Reader, ServicesDep
from hil.api.schemas import (
    ConductancesOut,
    EpochOut,
    ErrorOut,
    PulseCountsOut,
    ResumeRequest,
    RunOut,
    RunPage,
    RunRequest,
)
from hil.api.sse import run_events
from hil.store import RunStatus

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    403: {"model": ErrorOut, "description": "the token lacks the scope"},
    404: {"model": ErrorOut, "description": "no run (or bench) of that id"},
}
BUSY: Responses = {409: {"model": ErrorOut, "description": "the bench or the run is busy"}}
INVALID: Responses = {422: {"model": ErrorOut, "description": "a bad config, naming the field"}}

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, responses={**BUSY, **INVALID})
def start_run(
    _: Operator,
    body: RunRequest,
    services: ServicesDep,
    response: Response,
    token: LeaseToken = None,
) -> RunOut:
    """Start a run on a bench: it trains in the background and holds the bench's lease
    (send your ``X-Lease-Token`` to pass your own lease to it)."""
    slot = services.pool.get(body.bench)
    config = services.runs.config_for(slot, body.config, body.epochs, body.seed)
    record = services.runs.submit(slot, config, token)
    response.headers["Location"] = f"/runs/{record.id}"
    return operations.run_out(services.runs, services.reads, record)


@router.get("")
def list_runs(
    _: Reader,
    services: ServicesDep,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> RunPage:
    """Runs, newest first, optionally of one status."""
    reads = services.reads
    records = reads.list_runs(status, limit=limit, offset=offset)
    return RunPage(
        runs=[operations.run_out(services.runs, reads, r) for r in records],
        total=reads.count_runs(status),
        limit=limit,
        offset=offset,
    )


@router.get("/{run_id}")
def get_run(_: Reader, run_id: str, services: ServicesDep) -> RunOut:
    """A run's record."""
    record = services.runs.record(run_id, services.reads)
    return operations.run_out(services.runs, services.reads, record)


@router.get("/{run_id}/metrics")
def run_metrics(_: Reader, run_id: str, services: ServicesDep) -> list[EpochOut]:
    """One record per finished epoch, in order."""
    services.runs.record(run_id, services.reads)
    return [EpochOut.model_validate(r) for r in services.reads.metrics(run_id)]


@router.get("/{run_id}/config")
def run_config(_: Reader, run_id: str, services: ServicesDep) -> dict[str, Any]:
    """The run's resolved config, as recorded (what a resume uses)."""
    return services.runs.record(run_id, services.reads).config


@router.get("/{run_id}/conductances", responses=BUSY)
def run_conductances(_: Reader, run_id: str, services: ServicesDep) -> ConductancesOut:
    """The run's latest conductances per tile (its checkpoint's, else its bench's)."""
    return operations.run_conductances(services.runs, services.reads, run_id)


@router.get("/{run_id}/pulse-counts")
def run_pulse_counts(_: Reader, run_id: str, services: ServicesDep) -> PulseCountsOut:
    """Pulses per device at the run's last checkpoint."""
    return operations.pulse_counts_out(services.runs, services.reads, run_id)


@router.post("/{run_id}/stop", status_code=status.HTTP_202_ACCEPTED, responses=BUSY)
def stop_run(_: Operator, run_id: str, services: ServicesDep) -> RunOut:
    """Stop at the next step boundary, keeping a checkpoint there (the run ends
    ``stopped``); a run that is not training is left as it is."""
    record = services.runs.stop(run_id)
    return operations.run_out(services.runs, services.reads, record)


@router.post(
    "/{run_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses={**BUSY, **INVALID}
)
def resume_run(
    _: Operator,
    run_id: str,
    services: ServicesDep,
    token: LeaseToken = None,
    body: ResumeRequest | None = None,
) -> RunOut:
    """Continue a stopped or interrupted run from its checkpoint, with its stored config."""
    body = body or ResumeRequest()
    record = services.runs.resume(run_id, body.bench, body.epochs, token)
    return operations.run_out(services.runs, services.reads, record)


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def run_event_stream(
    _: Reader,
    run_id: str,
    services: ServicesDep,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=2**62, description="resume after it")
    ] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="as Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events: ``started``, ``step``, ``pulse_notes``, ``epoch``, ``ended`` ...;
    resumable with ``Last-Event-ID``; the stream ends when the run has ended."""
    runs, reads = services.runs, services.reads
    await anyio.to_thread.run_sync(runs.record, run_id, reads)  # 404 before the stream starts

    def live() -> bool:
        record = reads.find_run(run_id)
        return runs.is_active(run_id) or (record is not None and record.status == "running")

    settings = services.settings
    stream = run_events(
        reads,
        run_id,
        last_event_id if last_event_id is not None else (after or 0),
        live,
        services.stopping,
        settings.sse_poll_s,
        settings.sse_keepalive_s,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
