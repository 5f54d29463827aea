"""``GET /health``: the one route without a token (for load balancers and uptime checks)."""

from __future__ import annotations

from importlib import metadata

from fastapi import APIRouter

from hil.api.deps import ServicesDep
from hil.api.schemas import HealthOut

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return metadata.version("hil-eqprop")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


@router.get("/health")
async def health(services: ServicesDep) -> HealthOut:
    """The server is up and its benches are built."""
    return HealthOut(benches=len(services.pool), version=_version())
