"""``GET /configs``: the configs a run may name (shipped ones and the server's benches)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hil.api.deps import Reader, ServicesDep
from hil.api.schemas import ConfigsOut, ErrorOut
from hil.config.loading import shipped_configs

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    403: {"model": ErrorOut, "description": "the token lacks the scope"},
}

router = APIRouter(prefix="/configs", tags=["configs"], responses=ERRORS)


@router.get("")
async def list_configs(_: Reader, services: ServicesDep) -> ConfigsOut:
    """The names ``POST /runs`` takes as ``config`` besides files under the config folder:
    the shipped configs (``hil configs``) and the benches (each its own config)."""
    return ConfigsOut(shipped=shipped_configs(), benches=[slot.id for slot in services.pool])
