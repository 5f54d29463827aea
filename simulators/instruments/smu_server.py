"""Loopback TCP emulator of source-measure units, with pluggable physics and fault injection.

One :class:`SmuServer` emulates one instrument model of
:data:`~simulators.instruments.smu_models.EMULATED_MODELS`: a Keithley 2400 or 2450 (SCPI),
a Keithley 2636B (TSP) or a Keysight B2902A (SCPI). It listens on 127.0.0.1 and is reachable
from pyvisa-py as ``TCPIP::127.0.0.1::<port>::SOCKET`` (see :attr:`SmuServer.address`), one
message per line. This module is the transport only: the instrument's state lives in
:mod:`~simulators.instruments.smu_models`, its command languages in
:mod:`~simulators.instruments.scpi_dialects` and :mod:`~simulators.instruments.tsp_interpreter`,
and what its channels measure in a :mod:`~simulators.instruments.smu_backends` backend.

Examples
--------
>>> with SmuServer("2400", ResistorBackend(1e3)) as server:    # doctest: +SKIP
...     smu = Keithley2400(server.address, name="smu1").connect()
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections import deque
from dataclasses import replace
from typing import Self

from simulators.instruments.scpi_dialects import ScpiDialect
from simulators.instruments.smu_backends import ResistorBackend, SmuBackend
from simulators.instruments.smu_models import EMULATED_MODELS, ChannelState, EmulatedSmu
from simulators.instruments.tsp_interpreter import TspDialect

log = logging.getLogger(__name__)


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: read lines, answer queries."""

    server: _TcpServer

    def handle(self) -> None:
        # Acknowledge every segment at once, as an instrument's small TCP stack does. With
        # Linux's delayed ACK, a client that writes twice before reading (pyvisa-py cannot
        # set TCP_NODELAY on SOCKET resources, so Nagle holds the second write until the
        # first is acknowledged) would otherwise stall 40 ms on every such exchange.
        quickack = getattr(socket, "TCP_QUICKACK", None)
        try:
            for raw in self.rfile:
                if quickack is not None:
                    self.connection.setsockopt(socket.IPPROTO_TCP, quickack, 1)
                replies = self.server.owner.respond(raw.decode("ascii", "replace").strip())
                if replies:
                    self.wfile.write(b"".join(r.encode("ascii") + b"\n" for r in replies))
        except OSError:
            pass  # connection dropped (by the client or by fault injection)


class _TcpServer(socketserver.ThreadingTCPServer):
    """The listening socket: one daemon thread per client, every one joined on close."""

    allow_reuse_address = True
    # Daemon threads, so that a script that leaves an emulator running (its client still
    # connected, as pyvisa keeps it until garbage collection) can still exit. socketserver
    # joins only non-daemon threads on close, so this server keeps and joins its own.
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: SmuServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self._handlers: list[threading.Thread] = []
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        self.owner.track(request)
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            daemon=self.daemon_threads,
        )
        self._handlers = [t for t in self._handlers if t.is_alive()]
        self._handlers.append(thread)
        thread.start()

    def shutdown_request(self, request: socket.socket) -> None:
        self.owner.untrack(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket and join every client thread (clients dropped first)."""
        super().server_close()
        handlers, self._handlers = self._handlers, []
        for thread in handlers:
            thread.join()


class SmuServer:
    """An emulated SMU on a loopback TCP port, run in a background thread.

    Parameters
    ----------
    model : str
        One of :data:`~simulators.instruments.smu_models.EMULATED_MODELS`: ``'2400'``,
        ``'2450'``, ``'2636B'`` or ``'B2902A'``.
    backend : SmuBackend, optional
        Physics of the channels; defaults to ``ResistorBackend(1e3)``.
    host : str
        Interface to listen on.
    port : int
        TCP port; 0 picks a free one (read it back from :attr:`port`).

    Notes
    -----
    Fault injection for tests: :meth:`drop_connections`, :meth:`stop_answering`,
    :meth:`push_error`, :meth:`force_compliance`, :meth:`answer_late` (a reply held back
    until the next message), :meth:`send_unsolicited`, :meth:`refuse_compliance`,
    :meth:`kill_channel` and :meth:`prompts` (TSP ``TSP>`` prompts).
    """

    def __init__(
        self,
        model: str = "2400",
        backend: SmuBackend | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if model not in EMULATED_MODELS:
            raise ValueError(f"model must be one of {list(EMULATED_MODELS)}, got {model!r}")
        self.model = EMULATED_MODELS[model]
        self.smu = EmulatedSmu(self.model, backend or ResistorBackend())
        dialect = TspDialect if self.model.dialect == "tsp" else ScpiDialect
        self.dialect: ScpiDialect | TspDialect = dialect(self.smu)
        self.host, self.requested_port = host, port
        self.answering = True
        self.log: deque[str] = deque(maxlen=1000)
        self._late = 0  # replies still to hold back, one message each
        self._kill_after: dict[str, int] = {}  # channel -> messages before it dies
        self._held: str | None = None  # a reply held back, sent before the next one
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._server: _TcpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port listened on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        """The pyvisa-py resource address, ``TCPIP::127.0.0.1::<port>::SOCKET``."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def start(self) -> Self:
        """Listen and serve in a background thread."""
        if self._server is None:
            self._server = _TcpServer(self, (self.host, self.requested_port))
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"SmuServer-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop every client and join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        self.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def execute(self, message: str) -> str | None:
        """Run one message as the instrument would; return its reply or None.

        Usable without :meth:`start`. Every message is kept in :attr:`log` (last 1000).
        A backend exception becomes error -300 in the queue and no reply.
        """
        with self._lock:
            self.log.append(message)
            for channel in list(self._kill_after):
                self._kill_after[channel] -= 1
                if self._kill_after[channel] < 0:
                    del self._kill_after[channel]
                    self.smu.dead.add(channel)
            if not self.answering or not message:
                return None
            try:
                return self.dialect.handle(message)
            except Exception as exc:  # noqa: BLE001 - a backend failure is a device error
                log.exception("%s: %r failed", self.model.idn, message)
                self.smu.errors.append((-300, f"Device-specific error: {exc}"))
                return None

    def respond(self, message: str) -> list[str]:
        """The lines to send for one message: its reply, after any reply held back from the
        message before (:meth:`answer_late`)."""
        reply = self.execute(message)
        with self._lock:
            out = [self._held] if self._held is not None else []
            self._held = None
            if reply is not None and self._late > 0:
                self._late -= 1
                self._held, reply = reply, None
            if reply is not None:
                out.append(reply)
        return out

    def state(self, channel: str) -> ChannelState:
        """A copy of ``channel``'s source settings."""
        with self._lock:
            return replace(self.smu.channels[channel])

    def track(self, connection: socket.socket) -> None:
        """Remember a client connection, for :meth:`drop_connections`."""
        with self._lock:
            self._clients.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forget a closed client connection."""
        with self._lock:
            self._clients.discard(connection)

    # -- fault injection

    def drop_connections(self) -> None:
        """Close every client connection now (the instrument was unplugged)."""
        with self._lock:
            clients = list(self._clients)
        for connection in clients:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop_answering(self, stopped: bool = True) -> None:
        """Ignore every message from now on (queries then time out); False resumes."""
        with self._lock:
            self.answering = not stopped

    def push_error(self, code: int, message: str) -> None:
        """Append an entry to the instrument's error queue."""
        with self._lock:
            self.smu.errors.append((code, message))

    def force_compliance(self, channel: str, forced: bool = True) -> None:
        """Report ``channel`` in compliance (reading clipped to the compliance) while on."""
        with self._lock:
            self.smu.channels[channel].forced_compliance = forced

    def answer_late(self, count: int = 1) -> None:
        """Answer the next ``count`` queries one message late: each reply is held back and
        sent just before the reply to the next message (or alone, if that one has none),
        as an instrument that answers after the client's timeout does."""
        with self._lock:
            self._late = count

    def send_unsolicited(self, line: str) -> None:
        """Send ``line`` to every client now, answering nothing (a stray prompt or reply)."""
        with self._lock:
            clients = list(self._clients)
        for connection in clients:
            try:
                connection.sendall(line.encode("ascii") + b"\n")
            except OSError:
                pass

    def refuse_compliance(self, refused: bool = True) -> None:
        """Refuse every compliance setting from now on (error -222, the previous one kept)."""
        with self._lock:
            self.smu.refuse_limits = refused

    def kill_channel(self, channel: str, dead: bool = True, *, after: int = 0) -> None:
        """Make ``channel`` refuse every command (error -300) and keep its state: a channel
        whose hardware failed, its output stuck as it is. Its state is still read back.

        Parameters
        ----------
        channel : str
        dead : bool
            False revives it.
        after : int
            Die only after this many more messages (to kill it in the middle of a sequence,
            a safe state say).
        """
        if channel not in self.smu.channels:
            raise KeyError(f"no channel {channel!r}; channels: {list(self.smu.channels)}")
        with self._lock:
            self._kill_after.pop(channel, None)
            if dead and after > 0:
                self._kill_after[channel] = after
            elif dead:
                self.smu.dead.add(channel)
            else:
                self.smu.dead.discard(channel)

    def prompts(self, on: bool = True) -> None:
        """TSP models: answer every message with a ``TSP>`` line, as with prompts on."""
        with self._lock:
            self.smu.prompts = on

    def switched_on(self, channel: str) -> int:
        """How many times ``channel``'s output was switched on since the server started."""
        with self._lock:
            return self.smu.switched_on[channel]
