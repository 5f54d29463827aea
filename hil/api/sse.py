"""Server-sent events of a run, read from the run store's events table.

Each event goes out as ``id: N`` (the table's id, increasing), ``event: KIND`` and one line
of JSON ``data:``. A client that reconnects sends ``Last-Event-ID: N`` and gets what came
after N, so a stream is resumable across reconnects and server restarts. The stream ends
once the run has ended and every event has been sent; an idle stream sends a comment now and
then so that proxies keep it open.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread

from hil.store import RunStore

#: Events read from the store per query.
BATCH = 500
#: Milliseconds a client should wait before reconnecting.
RETRY_MS = 2000


def sse_message(event_id: int, kind: str, data: Any) -> bytes:
    """One event in the SSE wire format (``id``, ``event``, one ``data`` line)."""
    return f"id: {event_id}\nevent: {kind}\ndata: {_json_line(data)}\n\n".encode()


def _json_line(data: Any) -> str:
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or infinity in a metric: JSON has no word for them, say null
        return json.dumps(_finite(data), allow_nan=False, separators=(",", ":"))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


async def run_events(
    store: RunStore,
    run_id: str,
    after: int,
    live: Callable[[], bool],
    stopping: threading.Event,
    poll_s: float,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """The events of ``run_id`` after the id ``after``, until the run has ended.

    Parameters
    ----------
    store : RunStore
        Read in worker threads (the event loop never waits for SQLite).
    live : callable
        True while the run may still produce events (this server trains it, or another
        process does); called in a worker thread.
    stopping : threading.Event
        Set when the server shuts down: the stream ends at once.
    poll_s, keepalive_s : float
        How often to look for new events, and to send a comment when there are none (s).
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    idle = 0.0
    while not stopping.is_set():
        # asked before reading: whatever the run wrote before it ended is in the read below
        alive = await anyio.to_thread.run_sync(live)
        events = await anyio.to_thread.run_sync(store.events, run_id, after, BATCH)
        for event in events:
            yield sse_message(event["id"], event["kind"], event["data"])
            after = event["id"]
        if events:
            idle = 0.0
            continue
        if not alive:
            return
        await anyio.sleep(poll_s)
        idle += poll_s
        if idle >= keepalive_s:
            idle = 0.0
            yield b": keepalive\n\n"


async def sweep_events(
    store: RunStore,
    sweep_id: str,
    after: int,
    live: Callable[[], bool],
    stopping: threading.Event,
    poll_s: float,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """A ``cell`` event for every cell of ``sweep_id`` that finished or failed, in the order
    they ended, then one ``sweep`` event with the sweep's record once it has ended.

    The k-th cell to end has the event id k, so ``Last-Event-ID: k`` resumes after it (a
    failed cell that a resumed sweep runs again ends again, later). Parameters as in
    :func:`run_events`.
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    idle = 0.0
    while not stopping.is_set():
        alive = await anyio.to_thread.run_sync(live)
        cells = await anyio.to_thread.run_sync(store.sweep_cells, sweep_id)
        ended = sorted(
            (c for c in cells if c.status in ("finished", "failed")),
            key=lambda c: (c.updated_at, c.cell),
        )
        fresh = ended[after:]
        for rank, cell in enumerate(fresh, start=after + 1):
            yield sse_message(rank, "cell", cell.as_dict())
        after += len(fresh)
        if fresh:
            idle = 0.0
            continue
        if not alive:
            record = await anyio.to_thread.run_sync(store.get_sweep, sweep_id)
            yield f"event: sweep\ndata: {_json_line(record.as_dict())}\n\n".encode()
            return
        await anyio.sleep(poll_s)
        idle += poll_s
        if idle >= keepalive_s:
            idle = 0.0
            yield b": keepalive\n\n"
