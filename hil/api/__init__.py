"""The REST API for lab dashboards (FastAPI; ``hil serve``). See ``docs/api.md``.

Layout: :mod:`~hil.api.app` (the app factory and its lifespan), :mod:`~hil.api.settings`
(what a server starts with, tokens), :mod:`~hil.api.auth` (bearer tokens, scopes),
:mod:`~hil.api.deps` (the routes' dependencies: services, caller, lease), one router per
resource in :mod:`hil.api.routers`, :mod:`~hil.api.schemas` (the contract),
:mod:`~hil.api.errors` (the one mapping of errors to status codes), :mod:`~hil.api.pool`,
:mod:`~hil.api.guard` and :mod:`~hil.api.leases` (benches, their emergency-stop guard and
their leases), :mod:`~hil.api.training` (runs in background threads), :mod:`~hil.api.sse`
(event streams), :mod:`~hil.api.server` (uvicorn and signals).
"""

from hil.api.app import create_app
from hil.api.settings import Settings

__all__ = ["Settings", "create_app"]
