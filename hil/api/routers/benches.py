"""``/benches``: describe, lease, operate by hand, and the emergency stop.

Routes that touch a bench are plain functions (FastAPI runs them in its worker pool); the
emergency stop is ``async`` and runs the stop in a thread of its own, so neither busy
workers nor a training thread can delay it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, status

from hil.api import operations
from hil.api.deps import AnyCaller, Leased, LeaseToken, Operator, Reader, ServicesDep, Slot
from hil.api.errors import FieldError
from hil.api.schemas import (
    BenchOut,
    ConductancesOut,
    ErrorOut,
    EStopOut,
    LeaseEnded,
    LeaseOut,
    LeaseRequest,
    PulsesOut,
    PulsesRequest,
    RenewRequest,
    SettleOut,
    SettleRequest,
)
from hil.api.settings import Settings

T = TypeVar("T")

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    403: {"model": ErrorOut, "description": "the token lacks the scope"},
    404: {"model": ErrorOut, "description": "no bench of that id"},
}
LEASED: Responses = {409: {"model": ErrorOut, "description": "the caller does not hold the lease"}}
REFUSED: Responses = {
    422: {"model": ErrorOut, "description": "outside a bench limit: nothing applied"}
}

router = APIRouter(prefix="/benches", tags=["benches"], responses=ERRORS)


@router.get("")
async def list_benches(_: Reader, services: ServicesDep) -> list[BenchOut]:
    """Every bench of the server."""
    return [operations.describe(slot) for slot in services.pool]


@router.get("/{bench_id}")
async def get_bench(_: Reader, slot: Slot) -> BenchOut:
    """A bench: kind, limits, topology, armed or safe, its lease, its pulse counters."""
    return operations.describe(slot)


# --- leases -----------------------------------------------------------------------------------
def _ttl(ttl_s: float | None, settings: Settings) -> float:
    ttl = settings.lease_ttl_s if ttl_s is None else ttl_s
    if ttl > settings.lease_ttl_max_s:
        raise FieldError(
            "ttl_s",
            f"ttl_s {ttl:g} s exceeds this server's maximum of "
            f"{settings.lease_ttl_max_s:g} s; renew the lease instead",
        )
    return ttl


@router.post("/{bench_id}/lease", status_code=status.HTTP_201_CREATED, responses=LEASED)
async def take_lease(
    _: Operator, slot: Slot, body: LeaseRequest, services: ServicesDep
) -> LeaseOut:
    """Lease the bench (409 naming the holder when someone has it); clears an emergency
    stop."""
    ttl = _ttl(body.ttl_s, services.settings)
    lease = slot.take_lease(body.holder, ttl)
    return LeaseOut(
        bench=slot.id, holder=lease.holder, lease_token=lease.token, ttl_s=ttl, expires_in_s=ttl
    )


@router.post("/{bench_id}/lease/renew", responses=LEASED)
async def renew_lease(
    _: Operator,
    slot: Slot,
    services: ServicesDep,
    token: LeaseToken = None,
    body: RenewRequest | None = None,
) -> LeaseOut:
    """Extend the caller's lease (send its ``X-Lease-Token``)."""
    ttl = _ttl(None if body is None else body.ttl_s, services.settings)
    lease = slot.leases.renew(token, ttl)
    return LeaseOut(
        bench=slot.id, holder=lease.holder, lease_token=lease.token, ttl_s=ttl, expires_in_s=ttl
    )


@router.delete("/{bench_id}/lease", responses=LEASED)
def end_lease(
    caller: Operator,
    slot: Slot,
    token: LeaseToken = None,
    force: Annotated[bool, Query(description="break anyone's lease (admin scope)")] = False,
) -> LeaseEnded:
    """Release the caller's lease, or with ``force=true`` (admin) break whoever's; the
    bench goes to its safe state."""
    if force:
        if not caller.allows("admin"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"token {caller.name!r} lacks the 'admin' scope"
            )
        lease = slot.leases.break_()
        slot.end_lease(lease, f"broken by {caller.name}")
    else:
        lease = slot.leases.release(token)
        slot.end_lease(lease, "released")
    report = slot.guard.last_safe_state
    return LeaseEnded(
        bench=slot.id,
        released=None if lease is None else lease.holder,
        confirmed=report is None or report.confirmed,
    )


# --- manual operations (the caller's lease) ----------------------------------------------
@router.post("/{bench_id}/settle", responses={**LEASED, **REFUSED})
def settle(leased: Leased, body: SettleRequest, services: ServicesDep) -> SettleOut:
    """Apply inputs (and nudges), settle, measure (node voltages, drops, outputs, flags)."""
    with leased.operate() as bench:
        return operations.settle(bench, body, services.settings.max_settle_batch)


@router.post("/{bench_id}/pulses", responses={**LEASED, **REFUSED})
def pulses(leased: Leased, body: PulsesRequest, services: ServicesDep) -> PulsesOut:
    """Programming pulses; what was applied and refused (endurance), with the bench's
    notes."""
    with leased.operate() as bench:
        return operations.pulse(bench, body, services.settings.max_pulse_devices)


@router.get("/{bench_id}/conductances", responses=LEASED)
def conductances(leased: Leased) -> ConductancesOut:
    """Read every conductance (S), per tile."""
    with leased.operate() as bench:
        return operations.bench_conductances(leased.slot, bench)


# --- the emergency stop -----------------------------------------------------------------------
@router.post("/{bench_id}/safe-state")
async def emergency_stop(caller: AnyCaller, slot: Slot) -> EStopOut:
    """The emergency stop: any valid token, no lease, idempotent. Refuses every operation
    until a new lease or run, stops the bench's run (it ends ``stopped``, checkpoint kept),
    puts the bench in its safe state and ends a person's lease."""
    outcome = await in_own_thread(lambda: slot.estop(caller.name))
    return operations.estop_out(outcome)


async def in_own_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a new thread and await it: not the worker pool, which busy routes may
    fill. The work finishes even when the client goes away."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            result = work()
        except BaseException as exc:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(exc)
        else:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_result(result)

    threading.Thread(target=target, name="hil-estop", daemon=True).start()
    return await asyncio.shield(asyncio.wrap_future(future))
