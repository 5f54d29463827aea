"""The resources a running server shares: settings, tokens, store, benches and runs.

Built by the app's lifespan (:func:`hil.api.app.create_app`), never at import time; every
route reaches them through :mod:`hil.api.deps`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from hil.api.auth import TokenTable
from hil.api.pool import BenchPool
from hil.api.settings import Settings
from hil.api.training import RunManager
from hil.bench import SafeStateReport
from hil.store import RunStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the routes share.

    Attributes
    ----------
    settings : Settings
    tokens : TokenTable
    store : RunStore
        The connection runs write through.
    reads : RunStore
        A second connection for the routes' reads, so that dashboards polling the store
        never queue behind a run's writes on one connection.
    pool : BenchPool
    runs : RunManager
    stopping : threading.Event
        Set when the server begins to shut down (event streams end at once).
    """

    settings: Settings
    tokens: TokenTable
    store: RunStore
    reads: RunStore
    pool: BenchPool
    runs: RunManager
    stopping: threading.Event
    _closed: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def begin_shutdown(self) -> None:
        """Tell every stream and run to stop; returns at once (a signal handler calls it)."""
        self.stopping.set()
        self.runs.request_stop_all()

    def shutdown(self) -> dict[str, SafeStateReport]:
        """Stop the runs (checkpoints kept) and join their threads, then safe state and
        close every bench and the store; idempotent. Returns each bench's safe state."""
        with self._lock:
            if self._closed:
                return {}
            self._closed = True
        self.begin_shutdown()
        try:
            self.runs.shutdown(self.settings.shutdown_grace_s)
        finally:
            reports = self.pool.close()
            self.reads.close()
            self.store.close()
        return reports
