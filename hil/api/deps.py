"""The routes' dependencies: the shared services, the caller and its scope, the bench lease.

Every dependency here is ``async`` and does no I/O, so FastAPI runs it on the event loop
and never in the worker pool: the emergency stop's route depends on nothing that could wait
behind busy workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hil.api.auth import Caller
from hil.api.guard import GuardedBench
from hil.api.pool import BenchSlot
from hil.api.services import Services
from hil.api.settings import Scope

_bearer = HTTPBearer(auto_error=False, description="a token of the server (HIL_API_TOKEN)")
LEASE_HEADER = "X-Lease-Token"


async def get_services(request: Request) -> Services:
    """The services the lifespan built."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:  # a request before startup finished or after shutdown began
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is not running")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_caller(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a valid bearer token, whatever its scopes; 401 otherwise."""
    caller = services.tokens.identify(None if credentials is None else credentials.credentials)
    if caller is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token (send Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


AnyCaller = Annotated[Caller, Depends(get_caller)]


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, if its token holds ``scope`` (401 without a valid token,
    403 without the scope)."""

    async def dependency(caller: AnyCaller) -> Caller:
        if not caller.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"token {caller.name!r} lacks the {scope!r} scope"
            )
        return caller

    return dependency


Reader = Annotated[Caller, Depends(require("read"))]
Operator = Annotated[Caller, Depends(require("operate"))]
Admin = Annotated[Caller, Depends(require("admin"))]
LeaseToken = Annotated[
    str | None,
    Header(
        alias=LEASE_HEADER,
        max_length=256,
        description="the lease token of POST /benches/{bench_id}/lease",
    ),
]


async def get_slot(bench_id: str, services: ServicesDep) -> BenchSlot:
    """The bench a path names (404 for an unknown id)."""
    return services.pool.get(bench_id)


Slot = Annotated[BenchSlot, Depends(get_slot)]


@dataclass(frozen=True)
class LeasedBench:
    """A bench its caller holds the lease of (checked again by :meth:`operate`).

    Attributes
    ----------
    slot : BenchSlot
    token : str
        The caller's lease token.
    """

    slot: BenchSlot
    token: str

    def operate(self) -> AbstractContextManager[GuardedBench]:
        """The bench for one operation (the lease checked again, one operation at a time)."""
        return self.slot.operate(self.token)


async def leased_bench(_: Operator, slot: Slot, token: LeaseToken = None) -> LeasedBench:
    """A bench the caller leases: 409 naming the holder when the lease is not theirs."""
    lease = slot.leases.check(token)
    return LeasedBench(slot, lease.token)


Leased = Annotated[LeasedBench, Depends(leased_bench)]
