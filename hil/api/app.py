"""The app factory: :func:`create_app` returns the FastAPI app of a server's settings.

Nothing is built at import time. The lifespan opens the run store (and marks the runs of a
server that died as ``interrupted``), builds every bench, starts the lease reaper, and at
shutdown stops the runs (checkpoints kept), then puts every bench in its safe state and
closes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from hil.api.auth import TokenTable
from hil.api.body_limit import BodyLimit
from hil.api.errors import install_error_handlers
from hil.api.pool import BenchFactory, BenchPool, load_bench_configs
from hil.api.routers import benches, configs, dashboard, health, runs, sweeps
from hil.api.services import Services
from hil.api.settings import Settings
from hil.api.training import RunManager
from hil.composition import build_bench
from hil.store import RunStore

log = logging.getLogger(__name__)

#: How often expired leases are looked for (s), and orphaned runs (in reaper rounds).
REAP_EVERY_S = 1.0
ORPHANS_EVERY = 30


def create_app(settings: Settings, *, bench_factory: BenchFactory = build_bench) -> FastAPI:
    """The API of a server.

    Parameters
    ----------
    settings : Settings
    bench_factory : callable
        Builds a bench from its config (tests pass a simulated bench with extra behaviour).

    Returns
    -------
    FastAPI
        ``app.state.services`` holds the :class:`~hil.api.services.Services` while the app
        runs; ``app.state.stopping`` is set when it begins to shut down;
        ``app.state.safe_states`` holds what each bench confirmed when it was closed.
    """
    stopping = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stopping.clear()
        if settings.threadpool_workers is not None:
            limiter = anyio.to_thread.current_default_thread_limiter()
            limiter.total_tokens = settings.threadpool_workers
        try:
            services = start_services(settings, bench_factory, stopping)
        except BaseException as exc:
            app.state.startup_error = exc  # for `hil serve`'s one-line error
            raise
        reaper = threading.Thread(
            target=_reap, args=(services,), name="hil-lease-reaper", daemon=True
        )
        reaper.start()
        app.state.services = services
        try:
            yield
        finally:
            app.state.services = None
            app.state.safe_states = services.shutdown()
            reaper.join(2 * REAP_EVERY_S)

    app = FastAPI(
        title="hil-eqprop",
        summary="Benches, leases, manual operations, runs and the emergency stop",
        version="1",
        lifespan=lifespan,
    )
    app.state.stopping = stopping
    app.state.services = None
    app.state.startup_error = None
    app.state.safe_states = {}
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for router in (
        health.router,
        benches.router,
        runs.router,
        sweeps.router,
        configs.router,
        dashboard.router,
    ):
        app.include_router(router)
    return app


def start_services(
    settings: Settings, bench_factory: BenchFactory, stopping: threading.Event
) -> Services:
    """Open the store, mark orphaned runs, build the benches; all or nothing."""
    configs = load_bench_configs(settings.benches)
    store = RunStore.open(settings.data_dir)
    reads = RunStore(store.root)
    try:
        reads.connect()
        orphans = store.mark_orphans()
        if orphans:
            log.warning("runs of a server that died are now interrupted: %s", ", ".join(orphans))
        pool = BenchPool.build(configs, bench_factory)
    except BaseException:
        reads.close()
        store.close()
        raise
    manager = RunManager(store, pool, settings.config_root)
    return Services(
        settings,
        TokenTable(settings.tokens, settings.anonymous),
        store,
        reads,
        pool,
        manager,
        stopping,
    )


def _reap(services: Services) -> None:
    """Expired leases: safe state; now and then, runs whose process died: interrupted."""
    rounds = 0
    while not services.stopping.wait(REAP_EVERY_S):
        rounds += 1
        try:
            services.pool.expire_leases()
            if rounds % ORPHANS_EVERY == 0:
                services.store.mark_orphans()
        except Exception as exc:  # keep reaping: the next round may succeed
            log.error("lease reaper: %s", exc)
