"""Loopback TCP emulator of source-measure units, with pluggable physics and fault injection.

One :class:`SmuServer` emulates one instrument model: a Keithley 2400 (SCPI), a Keithley 2636B
(TSP) or a Keysight B2902A (SCPI). It listens on 127.0.0.1 and is reachable from pyvisa-py as
``TCPIP::127.0.0.1::<port>::SOCKET`` (see :attr:`SmuServer.address`), one message per line.
The server keeps each channel's source settings and asks a :class:`SmuBackend` for what the
channel would measure; :class:`ResistorBackend` (one resistor per channel) is built in.

Examples
--------
>>> with SmuServer("2400", ResistorBackend(1e3)) as server:    # doctest: +SKIP
...     smu = Keithley2400(server.address, name="smu1").connect()

Notes
-----
The emulators understand the short command forms the drivers in :mod:`drivers` send, not
the full SCPI tree. Unknown or malformed commands go to the error queue as on the real
instruments (SCPI ``-113,"Undefined header"``; TSP ``-285`` syntax and ``-286`` runtime errors).
A TSP chunk may hold several statements separated by ``;`` and ``print`` may take several
arguments (printed tab-separated), so one line can set or read both channels of a 2600B.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import socketserver
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, Self

log = logging.getLogger(__name__)

SourceMode = Literal["voltage", "current"]


#: SCPI boolean arguments.
_ON_OFF = {"ON": True, "1": True, "OFF": False, "0": False}


class SmuBackend(Protocol):
    """Physics behind an emulated SMU: what a channel measures given its source settings."""

    def measure(
        self,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """Return (voltage [V], current [A]) at ``channel``.

        Parameters
        ----------
        channel : str
            Channel name ('1', 'smua', ...).
        source_mode : {'voltage', 'current'}
            What the channel sources.
        level : float
            Source level [V or A, following ``source_mode``].
        compliance : float
            Compliance [A when sourcing voltage, V when sourcing current], > 0.
        output_on : bool
            Whether the output relay is closed.
        """
        ...


@dataclass
class ResistorBackend:
    """One resistor from each channel to ground, clipped at compliance.

    Parameters
    ----------
    resistance : float or Mapping[str, float]
        Load resistance [ohm], one for all channels or one per channel name.
    """

    resistance: float | Mapping[str, float] = 1e3

    def measure(
        self,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """Return (V, I) with V = I R; a source beyond compliance is clipped to it."""
        if not output_on:
            return 0.0, 0.0
        r = self.resistance[channel] if isinstance(self.resistance, Mapping) else self.resistance
        if source_mode == "voltage":
            current = level / r
            if abs(current) > compliance:
                current = math.copysign(compliance, current)
            return current * r, current
        voltage = level * r
        if abs(voltage) > compliance:
            voltage = math.copysign(compliance, voltage)
        return voltage, voltage / r


@dataclass
class ChannelState:
    """Source settings of one emulated channel (values in V and A)."""

    source_mode: SourceMode = "voltage"
    voltage_level: float = 0.0
    current_level: float = 0.0
    current_limit: float = 1e-4
    voltage_limit: float = 20.0
    output_on: bool = False
    auto_output_on: bool = True
    forced_compliance: bool = False


@dataclass(frozen=True)
class EmulatedModel:
    """An instrument model the server can emulate."""

    idn: str
    dialect: Literal["2400", "tsp", "b2900"]
    channels: tuple[str, ...]
    max_voltage: float
    max_current: float


EMULATED_MODELS: dict[str, EmulatedModel] = {
    "2400": EmulatedModel(
        "KEITHLEY INSTRUMENTS INC.,MODEL 2400,0000001,C32 emulated", "2400", ("1",), 210, 1.05
    ),
    "2636B": EmulatedModel(
        "Keithley Instruments Inc., Model 2636B, 0000001, 3.2.2",
        "tsp",
        ("smua", "smub"),
        202,
        1.515,
    ),
    "B2902A": EmulatedModel(
        "Keysight Technologies,B2902A,MY00000001,3.4.2011.5100",
        "b2900",
        ("1", "2"),
        210,
        1.515,
    ),
}

# field -> (limit attribute of EmulatedModel, smallest allowed value or None for symmetric)
_FIELDS = {
    "voltage_level": ("max_voltage", None),
    "current_level": ("max_current", None),
    "current_limit": ("max_current", 1e-9),
    "voltage_limit": ("max_voltage", 1e-2),
}


class OutOfRange(ValueError):
    """A parameter outside the instrument's range (error -222)."""


@dataclass
class EmulatedSmu:
    """Instrument state shared by the dialects: channels, error queue and measurements."""

    model: EmulatedModel
    backend: SmuBackend
    channels: dict[str, ChannelState] = field(default_factory=dict)
    errors: deque[tuple[int, str]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every channel back to its defaults: 0 V source, output off, no forced compliance."""
        self.channels = {name: ChannelState() for name in self.model.channels}

    def set_field(self, channel: str, name: str, value: float) -> None:
        """Set a numeric source setting; raise :class:`OutOfRange` if it is not allowed."""
        limit_name, low = _FIELDS[name]
        high = getattr(self.model, limit_name)
        low = -high if low is None else low
        if not low <= value <= high:
            raise OutOfRange(name)
        setattr(self.channels[channel], name, value)

    def measure(self, channel: str) -> tuple[float, float, bool]:
        """Return (voltage [V], current [A], in compliance) from the backend."""
        s = self.channels[channel]
        by_voltage = s.source_mode == "voltage"
        level = s.voltage_level if by_voltage else s.current_level
        compliance = s.current_limit if by_voltage else s.voltage_limit
        voltage, current = self.backend.measure(
            channel, s.source_mode, level, compliance, s.output_on
        )
        limited = abs(current if by_voltage else voltage) >= compliance * (1 - 1e-9)
        if s.forced_compliance and s.output_on:
            limited = True
            if by_voltage:
                current = math.copysign(compliance, level or 1.0)
            else:
                voltage = math.copysign(compliance, level or 1.0)
        return voltage, current, limited and s.output_on


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class ScpiDialect:
    """SCPI command handling for the Keithley 2400 and the Keysight B2900."""

    # header regex -> action; ``(?P<c>\d)`` is a channel suffix
    HEADERS_2400 = {
        "SOUR:FUNC": "func",
        "SOUR:VOLT:LEV": "voltage_level",
        "SOUR:CURR:LEV": "current_level",
        "SENS:CURR:PROT": "current_limit",
        "SENS:VOLT:PROT": "voltage_limit",
        "OUTP": "output",
        "SENS:CURR:PROT:TRIP": "trip_i",
        "SENS:VOLT:PROT:TRIP": "trip_v",
        "SENS:FUNC": "accept",
        "FORM:ELEM": "elements",
        "READ": "read",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    HEADERS_B2900 = {
        r"SOUR(?P<c>\d)?:FUNC:MODE": "func",
        r"SOUR(?P<c>\d)?:VOLT": "voltage_level",
        r"SOUR(?P<c>\d)?:CURR": "current_level",
        r"SENS(?P<c>\d)?:CURR:PROT": "current_limit",
        r"SENS(?P<c>\d)?:VOLT:PROT": "voltage_limit",
        r"OUTP(?P<c>\d)?": "output",
        r"OUTP(?P<c>\d)?:ON:AUTO": "auto_on",
        r"SENS(?P<c>\d)?:CURR:PROT:TRIP": "trip_i",
        r"SENS(?P<c>\d)?:VOLT:PROT:TRIP": "trip_v",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    COMMON = {r"\*IDN": "idn", r"\*RST": "rst", r"\*CLS": "cls", "SYST:ERR": "err"}
    QUERY_ONLY = {"idn", "err", "read", "meas_v", "meas_i", "trip_i", "trip_v"}
    COMMAND_ONLY = {"rst", "cls", "accept"}

    def __init__(self, smu: EmulatedSmu) -> None:
        self.smu = smu
        self.is_2400 = smu.model.dialect == "2400"
        headers = {**self.COMMON, **(self.HEADERS_2400 if self.is_2400 else self.HEADERS_B2900)}
        self.headers = [(re.compile(k), v) for k, v in headers.items()]
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]

    def error(self, code: int, message: str) -> None:
        """Queue an error; SCPI answers nothing to a failed command or query."""
        self.smu.errors.append((code, message))

    def lookup(self, header: str) -> tuple[re.Match[str], str] | None:
        """Return (header match, action) for ``header``, or None if it is undefined."""
        for pattern, action in self.headers:
            if m := pattern.fullmatch(header):
                return m, action
        return None

    def handle(self, message: str) -> str | None:
        """Execute one message; return the reply (no terminator) or None."""
        m = re.fullmatch(r"\s*:?([*A-Za-z0-9:]+?)(\?)?(?:\s+(.*?))?\s*", message)
        if m is None:
            return self.error(-102, "Syntax error")
        header, query, arg = m.group(1).upper(), bool(m.group(2)), (m.group(3) or "")
        found = self.lookup(header)
        if found is None:
            return self.error(-113, "Undefined header")
        hm, action = found
        if query != (action in self.QUERY_ONLY) and action in self.QUERY_ONLY | self.COMMAND_ONLY:
            return self.error(-113, "Undefined header")
        at = re.fullmatch(r"\(@(\d)\)", arg)
        channel = (
            hm.groupdict().get("c") or (at.group(1) if at else None) or self.smu.model.channels[0]
        )
        if at:
            arg = ""
        if channel not in self.smu.channels:
            return self.error(-114, "Header suffix out of range")
        try:
            return getattr(self, f"do_{action}", self.do_number)(action, channel, query, arg)
        except OutOfRange:
            return self.error(-222, "Parameter data out of range")
        except (ValueError, KeyError):
            return self.error(-224, "Illegal parameter value")

    def do_idn(self, action: str, channel: str, query: bool, arg: str) -> str:
        return self.smu.model.idn

    def do_rst(self, action: str, channel: str, query: bool, arg: str) -> None:
        self.smu.reset()
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]

    def do_cls(self, action: str, channel: str, query: bool, arg: str) -> None:
        self.smu.errors.clear()

    def do_err(self, action: str, channel: str, query: bool, arg: str) -> str:
        code, text = self.smu.errors.popleft() if self.smu.errors else (0, "No error")
        return f'{code:+d},"{text}"' if not self.is_2400 else f'{code},"{text}"'

    def do_number(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        if query:
            return f"{getattr(self.smu.channels[channel], action):+.6E}"
        if not re.fullmatch(_NUMBER, arg):
            return self.error(-104, "Data type error")
        self.smu.set_field(channel, action, float(arg))
        return None

    def do_func(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        state = self.smu.channels[channel]
        if query:
            return "VOLT" if state.source_mode == "voltage" else "CURR"
        state.source_mode = {"VOLT": "voltage", "CURR": "current"}[arg.upper()[:4]]
        return None

    def do_output(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        state = self.smu.channels[channel]
        if query:
            return "1" if state.output_on else "0"
        state.output_on = _ON_OFF[arg.upper()]
        return None

    def do_auto_on(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        state = self.smu.channels[channel]
        if query:
            return "1" if state.auto_output_on else "0"
        state.auto_output_on = _ON_OFF[arg.upper()]
        return None

    def do_trip_i(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        limited = self.smu.measure(channel)[2]
        by_voltage = self.smu.channels[channel].source_mode == "voltage"
        return "1" if limited and by_voltage == (action == "trip_i") else "0"

    do_trip_v = do_trip_i

    def do_accept(self, action: str, channel: str, query: bool, arg: str) -> None:
        words = [w.strip().strip('"').upper() for w in arg.split(",")]
        if not all(w[:4] in ("VOLT", "CURR", "RES") for w in words):
            raise ValueError(arg)

    def do_elements(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        if query:
            return ",".join(self.elements)
        words = [w.strip().upper()[:4] for w in arg.split(",")]
        if not set(words) <= {"VOLT", "CURR", "RES", "TIME", "STAT"}:
            raise ValueError(arg)
        self.elements = words
        return None

    def do_read(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        if not self.smu.channels[channel].output_on:
            return self.error(803, "Output disabled")
        v, i, limited = self.smu.measure(channel)
        values = {
            "VOLT": v,
            "CURR": i,
            "RES": v / i if i else 9.91e37,
            "TIME": 0.0,
            "STAT": 8.0 if limited else 0.0,
        }
        return ",".join(f"{values[e]:+.6E}" for e in self.elements)

    def do_meas_v(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        state = self.smu.channels[channel]
        if self.is_2400 or state.auto_output_on:
            state.output_on = True  # :MEAS? turns the output on by itself
        if self.is_2400:
            return self.do_read(action, channel, query, arg)
        v, i, _ = self.smu.measure(channel)
        return f"{v if action == 'meas_v' else i:+.6E}"

    do_meas_i = do_meas_v


class TspDialect:
    """TSP command handling for the Keithley 2600B series."""

    ASSIGN = re.compile(r"(smu\w)\.source\.(func|levelv|leveli|limitv|limiti|output)\s*=\s*(\S+)")
    ATTRIBUTE = re.compile(r"(smu\w)\.(source\.\w+|measure\.[vi]\(\))")
    FIELDS = {
        "levelv": "voltage_level",
        "leveli": "current_level",
        "limitv": "voltage_limit",
        "limiti": "current_limit",
    }
    CONSTANTS = {"OUTPUT_DCVOLTS": 1.0, "OUTPUT_DCAMPS": 0.0, "OUTPUT_ON": 1.0, "OUTPUT_OFF": 0.0}

    def __init__(self, smu: EmulatedSmu) -> None:
        self.smu = smu

    def handle(self, message: str) -> str | None:
        """Execute one TSP chunk; return what it prints (no terminator) or None."""
        text = message.strip()
        if text in ("*IDN?",):
            return self.smu.model.idn
        if text in ("reset()", "*RST"):
            self.smu.reset()
            return None
        if text in ("errorqueue.clear()", "*CLS"):
            self.smu.errors.clear()
            return None
        # A chunk may hold several statements separated by ';'. Like the instrument, the
        # whole chunk is compiled first (a syntax error runs nothing), then run in order; a
        # runtime error stops the chunk, and what was printed before it is still sent.
        statements: list[tuple[str, re.Match[str]]] = []
        for statement in (s.strip() for s in text.split(";")):
            if not statement:
                continue
            if m := self.ASSIGN.fullmatch(statement):
                statements.append(("assign", m))
            elif m := re.fullmatch(r"print\((.+)\)", statement):
                statements.append(("print", m))
            else:
                exc = _syntax_error(statement)
                self.smu.errors.append((exc.code, str(exc)))
                return None
        printed: list[str] = []
        try:
            for kind, m in statements:
                if kind == "assign":
                    self.assign(m.group(1), m.group(2), m.group(3))
                else:
                    args = [a.strip() for a in _split_arguments(m.group(1))]
                    printed.append("\t".join(self.evaluate(a) for a in args))
        except _TspError as exc:
            self.smu.errors.append((exc.code, str(exc)))
        return "\n".join(printed) if printed else None

    def channel(self, name: str) -> ChannelState:
        if name not in self.smu.channels:
            raise _runtime_error(f"attempt to index global `{name}' (a nil value)")
        return self.smu.channels[name]

    def number(self, token: str) -> float:
        constant = token.split(".")[-1]
        if constant in self.CONSTANTS:
            return self.CONSTANTS[constant]
        if re.fullmatch(_NUMBER, token):
            return float(token)
        raise _runtime_error(f"bad argument `{token}'")

    def assign(self, name: str, attribute: str, token: str) -> None:
        state = self.channel(name)
        value = self.number(token)
        if attribute == "func":
            state.source_mode = "voltage" if value == 1.0 else "current"
        elif attribute == "output":
            state.output_on = value != 0.0
        else:
            try:
                self.smu.set_field(name, self.FIELDS[attribute], value)
            except OutOfRange:
                raise _TspError(-222, "Parameter data out of range") from None

    def evaluate(self, expression: str) -> str:
        if expression == "errorqueue.count":
            return f"{len(self.smu.errors):.5e}"
        if expression == "errorqueue.next()":
            code, text = self.smu.errors.popleft() if self.smu.errors else (0, "Queue Is Empty")
            return f"{code:.5e}\t{text}\t{2 if code else 0:.5e}\t{0:.5e}"
        m = self.ATTRIBUTE.fullmatch(expression)
        if m is None:
            raise _syntax_error(expression)
        name, attribute = m.groups()
        state = self.channel(name)
        settings: dict[str, float] = {
            "source.func": 1.0 if state.source_mode == "voltage" else 0.0,
            "source.output": 1.0 if state.output_on else 0.0,
            **{f"source.{k}": getattr(state, v) for k, v in self.FIELDS.items()},
        }
        if attribute in settings:  # a setting is read back without measuring
            return f"{settings[attribute]:.5e}"
        if attribute not in ("source.compliance", "measure.v()", "measure.i()"):
            raise _runtime_error(f"attempt to index field `{attribute}'")
        voltage, current, limited = self.smu.measure(name)
        if attribute == "source.compliance":
            return "true" if limited else "false"
        return f"{voltage if attribute == 'measure.v()' else current:.5e}"


def _split_arguments(text: str) -> list[str]:
    """Split ``print`` arguments at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class _TspError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _syntax_error(text: str) -> _TspError:
    return _TspError(-285, f"TSP Syntax error at line 1: unexpected symbol near `{text[:20]}'")


def _runtime_error(what: str) -> _TspError:
    return _TspError(-286, f"TSP Runtime error at line 1: {what}")


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
                reply = self.server.owner.execute(raw.decode("ascii", "replace").strip())
                if reply is not None:
                    self.wfile.write(reply.encode("ascii") + b"\n")
        except OSError:
            pass  # connection dropped (by the client or by fault injection)


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: SmuServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        self.owner.track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        self.owner.untrack(request)
        super().shutdown_request(request)


class SmuServer:
    """An emulated SMU on a loopback TCP port, run in a background thread.

    Parameters
    ----------
    model : str
        One of :data:`EMULATED_MODELS`: ``'2400'``, ``'2636B'`` or ``'B2902A'``.
    backend : SmuBackend, optional
        Physics of the channels; defaults to ``ResistorBackend(1e3)``.
    host : str
        Interface to listen on.
    port : int
        TCP port; 0 picks a free one (read it back from :attr:`port`).

    Notes
    -----
    Fault injection for tests: :meth:`drop_connections`, :meth:`stop_answering`,
    :meth:`push_error` and :meth:`force_compliance`.
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
            if not self.answering or not message:
                return None
            try:
                return self.dialect.handle(message)
            except Exception as exc:  # noqa: BLE001 - a backend failure is a device error
                log.exception("%s: %r failed", self.model.idn, message)
                self.smu.errors.append((-300, f"Device-specific error: {exc}"))
                return None

    def state(self, channel: str) -> ChannelState:
        """A copy of ``channel``'s source settings."""
        with self._lock:
            return replace(self.smu.channels[channel])

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._clients.add(connection)

    def untrack(self, connection: socket.socket) -> None:
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
