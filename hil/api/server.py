"""Serving the API with uvicorn: ``hil serve``, and a server in a thread for tests.

Signals take Ctrl-C's path (:mod:`hil.stopping`): the first SIGINT, SIGTERM or SIGHUP tells
every run to stop at its next step boundary and every event stream to end, uvicorn stops
accepting requests, the lifespan's shutdown joins the runs (checkpoints kept) and puts every
bench in its safe state before closing it; the exit status is ``128 + signal`` (130, 143,
129). Later signals are logged and ignored, so a second Ctrl-C cannot cut the safe state
short. Whatever way :func:`serve` is left, the benches are made safe before it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections.abc import Generator, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from hil.api.app import create_app
from hil.api.pool import load_bench_configs
from hil.api.services import Services
from hil.api.settings import Settings, is_loopback
from hil.errors import ConfigError, HilError
from hil.stopping import STOP_SIGNALS

log = logging.getLogger(__name__)

#: Seconds uvicorn waits for open connections at shutdown before it cancels them.
GRACEFUL_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server with :mod:`hil.stopping`'s signals: SIGHUP too, never a forced exit."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self.signal: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # serve() installs the handlers itself, around the final safe state too
        yield

    def install_signal_handlers(self) -> None:
        """Nothing: older uvicorns install their own handlers here (serve() has ours)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first stop signal: stop the runs and streams, then uvicorn; later ones: log."""
        name = signal.Signals(sig).name
        if self.signal is not None:
            log.warning("%s ignored: already stopping (the benches are being made safe)", name)
            return
        self.signal = sig
        log.warning("%s: stopping the runs and putting every bench in its safe state", name)
        self.should_exit = True
        begin_shutdown(self.app)


def begin_shutdown(app: FastAPI) -> None:
    """Tell the app's runs and event streams to stop (returns at once; signal-safe)."""
    app.state.stopping.set()
    services: Services | None = app.state.services
    if services is not None:
        services.begin_shutdown()


def check_listen(host: str, settings: Settings) -> Settings:
    """The settings to serve on ``host`` with: refuses a non-loopback address without a
    token; without one on loopback, every local caller gets every scope."""
    if settings.tokens:
        return settings
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: set HIL_API_TOKEN or give "
            "--tokens FILE (or listen on 127.0.0.1)"
        )
    log.warning("no token: every process on this machine may operate the benches")
    return dataclasses.replace(settings, anonymous=True)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve until a signal; returns the exit status (``128 + signal``, 0 without one).

    Raises
    ------
    ConfigError
        A bad bench config (before anything starts), or no token on a non-loopback address.
    HilError
        A bench could not be built at startup (an instrument in use or unreachable).
    """
    settings = check_listen(host, settings)
    load_bench_configs(settings.benches)  # a bad config stops here, before anything listens
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # hil's logging (-v, -q); uvicorn's access log at INFO
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_S),
    )
    server = _Server(config, app)
    quiet = _ExpectedStartupFailure(app)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, server.handle_exit) for s in STOP_SIGNALS} if main else {}
    try:
        server.run()
    except SystemExit as exc:  # uvicorn's answer to a failed startup: say why, in one line
        error = app.state.startup_error
        if isinstance(error, HilError):
            raise error from None
        raise ConfigError(f"the server did not start (status {exc.code}); see the log") from None
    finally:
        try:
            _make_safe(app)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logging.getLogger("uvicorn.error").removeFilter(quiet)
    if server.signal is None:
        return 0
    for bench_id, report in app.state.safe_states.items():
        level = logging.WARNING if report.confirmed else logging.ERROR
        log.log(level, "bench %s: %s", bench_id, report.words())
    return 128 + server.signal


class _ExpectedStartupFailure(logging.Filter):
    """Drops the traceback uvicorn logs for a startup that failed with a HilError (a bench
    in use, an instrument unreachable): serve() raises it, and the CLI says it in one line."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that traceback."""
        expected = isinstance(self.app.state.startup_error, HilError)
        return not (expected and str(record.msg).startswith("Traceback"))


def _make_safe(app: FastAPI) -> None:
    # The lifespan's shutdown normally did this already; if uvicorn skipped it (a failed
    # startup, an exception), the benches are made safe here all the same.
    services: Services | None = app.state.services
    if services is not None:
        app.state.services = None
        app.state.safe_states = services.shutdown()


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yields its base URL.

    For tests and benchmarks (loopback, no signal handling: signals stay the main
    thread's). The server, and the app's lifespan, are shut down on exit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))  # bound here, handed to uvicorn: no other process can take the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hil-api-server", daemon=True
    )
    thread.start()
    try:
        for _ in range(3000):  # bounded: up to 30 s for the lifespan to build the benches
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the API server did not start (see its log)")
        yield f"http://{host}:{port}"
    finally:
        begin_shutdown(app)
        server.should_exit = True
        thread.join(30)
        sock.close()
