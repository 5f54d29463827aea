"""Declarative instrument driver base: quantities with a command, a validator and units.

An :class:`Instrument` wraps one message-based VISA resource. Its quantities are declared at
class level with :func:`control` (get and set), :func:`measurement` (get only) and
:func:`setting` (set only). Multi-channel instruments declare their per-channel quantities on
a :class:`Channel` subclass; command templates name the channel as ``{ch}`` and the value as
``{value}``.

Every value is checked before anything is sent: a value outside its validator raises
:class:`~hil.errors.SafetyError` naming the instrument, the channel, the quantity, the value and
the bounds. Values are never clamped. Communication faults (timeout, connection reset or closed)
raise :class:`~hil.errors.InstrumentError` naming the instrument and the command (a long
command quoted shortened, see :func:`short`).

Replies are bound to their query. Before every query the driver discards whatever input is
waiting (a reply that arrived after its query timed out, a prompt), and while a reply is
owed (a query timed out, or its reply did not have the form its quantity expects) it first
resynchronises the link: it sends a query whose reply it knows (:meth:`Instrument.sync_query`)
and discards every reply before that one. So a late reply is logged and dropped, never taken
as the answer to the next query.
"""

from __future__ import annotations

import logging
import math
import numbers
import select
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

import pyvisa
from pyvisa import constants
from pyvisa import errors as visa_errors

from hil.errors import InstrumentError, SafetyError

log = logging.getLogger(__name__)

#: Read and write termination used by every driver here.
TERMINATION = "\n"
#: Longest command an error message quotes whole (a TSP line setting many channels can be
#: kilobytes long).
QUOTE_LIMIT = 160
#: Most stale replies one resynchronisation discards before it gives up.
MAX_STALE_REPLIES = 32


def short(command: str, limit: int = QUOTE_LIMIT) -> str:
    """A command as error messages quote it: one longer than ``limit`` is cut, its size said.

    Examples
    --------
    >>> short("smua.source.leveli = 0; " * 3, limit=30)
    'smua.source.leveli = 0; smua.s... (72 bytes)'
    """
    return command if len(command) <= limit else f"{command[:limit]}... ({len(command)} bytes)"


class Resource(Protocol):
    """The part of a pyvisa message-based resource that drivers use.

    A pyvisa ``MessageBasedResource`` satisfies it; so does a test transcript adapter.
    ``timeout`` is in milliseconds, as in pyvisa.

    A resource may also have a ``discard_input() -> list[str]`` method (the test transcript
    does) returning and dropping whatever input is waiting; without one the driver drains
    the input itself (see :func:`discard_input`).
    """

    read_termination: str | None
    write_termination: str
    timeout: float | None

    def write(self, message: str) -> Any:
        """Send one message (the write termination appended)."""
        ...

    def read(self) -> str:
        """One reply, its read termination stripped."""
        ...

    def close(self) -> None:
        """Release the resource."""
        ...


class Owner(Protocol):
    """What a quantity needs from the object it is declared on (instrument or channel)."""

    command_id: str

    @property
    def label(self) -> str:
        """How messages name the owner."""
        ...

    @property
    def instrument_name(self) -> str:
        """The instrument's name (for errors)."""
        ...

    @property
    def limits(self) -> Any:
        """The limit table validators read their bounds from."""
        ...

    def write(self, command: str) -> None:
        """Send one command."""
        ...

    def ask(self, command: str) -> str:
        """Send one query and return its reply."""
        ...

    def guard(self, quantity: Quantity, value: Any) -> None:
        """Refuse (SafetyError, nothing sent) a checked value the owner's state forbids."""
        ...

    def record(self, quantity: Quantity, value: Any, *, sent: bool) -> None:
        """Note a value set (``sent``) or read back, for the owner's state; None after a
        set that failed (the value is then unknown)."""
        ...

    def desync(self, reason: str) -> None:
        """Note that the link may be out of step (resynchronise before the next query)."""
        ...


def format_number(value: float) -> str:
    """Format a number for a command: up to 9 significant digits, e.g. ``1.5``, ``1e-06``."""
    return f"{value:.9g}"


def parse_bool(reply: str) -> bool:
    """Parse an on/off reply: ``1``/``0``, ``ON``/``OFF``, ``true``/``false``, or a number
    that is exactly 1 or 0 (TSP prints ``1.00000e+00``).

    Anything else raises ValueError: a reading (``+5.000000E-01``) answering an on/off query
    is a reply to another query, not an answer.
    """
    text = reply.strip().strip('"').upper()
    if text in ("ON", "TRUE"):
        return True
    if text in ("OFF", "FALSE"):
        return False
    number = float(text)
    if number not in (0.0, 1.0):
        raise ValueError(f"{reply!r} is not an on/off reply")
    return number == 1.0


def parse_floats(reply: str) -> tuple[float, ...]:
    """Parse a comma- or tab-separated list of numbers."""
    return tuple(float(part) for part in reply.replace("\t", ",").split(","))


# --------------------------------------------------------------------------------- validators


class Validator(Protocol):
    """Checks one value for one owner; raises ``ValueError`` describing the allowed values."""

    def __call__(self, owner: Owner, value: Any) -> Any:
        """The checked value; ValueError describing the allowed values if not allowed."""
        ...


@dataclass(frozen=True)
class Range:
    """Closed interval ``[low, high]`` of real numbers.

    Each bound is a number or the name of a field of the owner's limit table; a leading ``-``
    negates the field, so ``Range("-max_voltage", "max_voltage")`` is symmetric.
    """

    low: float | str
    high: float | str

    def bounds(self, owner: Owner) -> tuple[float, float]:
        """Return the numeric bounds for ``owner``."""
        return self._resolve(owner, self.low), self._resolve(owner, self.high)

    @staticmethod
    def _resolve(owner: Owner, bound: float | str) -> float:
        if not isinstance(bound, str):
            return float(bound)
        sign = -1.0 if bound.startswith("-") else 1.0
        return sign * float(getattr(owner.limits, bound.lstrip("-")))

    def __call__(self, owner: Owner, value: Any) -> float:
        """``value`` as a float; ValueError unless it is a real number within the bounds."""
        low, high = self.bounds(owner)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ValueError(f"not a number in [{low:g}, {high:g}]")
        number = float(value)
        if math.isnan(number) or not low <= number <= high:
            raise ValueError(f"outside [{low:g}, {high:g}]")
        return number


@dataclass(frozen=True)
class OneOf:
    """A value from a fixed set."""

    values: tuple[Any, ...]

    def __call__(self, owner: Owner, value: Any) -> Any:
        """``value`` itself; ValueError unless it is one of :attr:`values`."""
        if value not in self.values:
            raise ValueError(f"not one of {list(self.values)}")
        return value


# --------------------------------------------------------------------------------- quantities


class Quantity:
    """A class-level declaration of one instrument quantity (see :func:`control`)."""

    def __init__(
        self,
        get_command: str | None,
        set_command: str | None,
        *,
        validator: Validator | None = None,
        values: Mapping[Any, str] | None = None,
        parse: Callable[[str], Any] | None = None,
        units: str = "",
        doc: str = "",
    ) -> None:
        self.get_command = get_command
        self.set_command = set_command
        self.values = values
        self.validator = validator or (OneOf(tuple(values)) if values is not None else None)
        self.parse = parse or (self._lookup if values is not None else float)
        self.units = units
        self.name = ""
        self.__doc__ = f"{doc} [{units}]".strip() if units else doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Owner | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        if self.get_command is None:
            raise AttributeError(f"{self.name} is write-only")
        command = self.get_command.format(ch=obj.command_id)
        reply = obj.ask(command)
        try:
            value = self.parse(reply)
        except (ValueError, KeyError, IndexError) as exc:
            # A reply of the wrong form may be a late reply to another query, the real one
            # still on its way: resynchronise before the next query.
            obj.desync(f"unexpected reply {reply!r} to {short(command)!r}")
            reason = f"unexpected reply {short(reply)!r} for {obj.label}: {self.name}"
            raise InstrumentError(obj.instrument_name, short(command), reason) from exc
        obj.record(self, value, sent=False)
        return value

    def __set__(self, obj: Owner, value: Any) -> None:
        if self.set_command is None:
            raise AttributeError(f"{self.name} is read-only")
        checked = self.check(obj, value)
        obj.guard(self, checked)
        try:
            obj.write(self._format(obj, checked))
        except BaseException:
            obj.record(self, None, sent=True)  # it may or may not have been applied
            raise
        obj.record(self, checked, sent=True)

    def check(self, obj: Owner, value: Any) -> Any:
        """Validate ``value`` for ``obj``; raise SafetyError (nothing sent) if it is not allowed."""
        if self.validator is None:
            return value
        try:
            return self.validator(obj, value)
        except ValueError as exc:
            unit = f" {self.units}" if self.units else ""
            raise SafetyError(
                f"{obj.label}: {self.name} = {value!r}{unit} is {exc}{unit}; nothing was sent"
            ) from None

    def command_for(self, obj: Owner, value: Any) -> str:
        """Return the set command for ``value`` after validating it and asking the owner's
        :meth:`~Owner.guard`; sends nothing (and so records nothing: use it for quantities
        the owner keeps no state of, such as source levels)."""
        if self.set_command is None:
            raise AttributeError(f"{self.name} is read-only")
        checked = self.check(obj, value)
        obj.guard(self, checked)
        return self._format(obj, checked)

    def _format(self, obj: Owner, checked: Any) -> str:
        """The set command for an already checked value."""
        assert self.set_command is not None
        if self.values is not None:
            text = self.values[checked]
        elif isinstance(checked, float):
            text = format_number(checked)
        else:
            text = str(checked)
        return self.set_command.format(ch=obj.command_id, value=text)

    def _lookup(self, reply: str) -> Any:
        text = reply.strip().strip('"').upper()
        for key, word in (self.values or {}).items():
            if word.upper() == text:
                return key
        raise KeyError(text)


def control(get_command: str, set_command: str, **kwargs: Any) -> Any:
    """Declare a read/write quantity.

    Parameters
    ----------
    get_command, set_command : str
        Command templates; ``{ch}`` is the channel's command id, ``{value}`` the value.
    validator : Validator, optional
        :class:`Range` or :class:`OneOf`; defaults to the keys of ``values``.
    values : Mapping, optional
        Python value -> instrument word (e.g. ``{True: "ON", False: "OFF"}``).
    parse : callable, optional
        Reply -> Python value; defaults to ``float`` (or reverse lookup in ``values``).
    units : str
        Units of the value (V, A, ...), used in messages and docs.
    """
    return Quantity(get_command, set_command, **kwargs)


def measurement(get_command: str, **kwargs: Any) -> Any:
    """Declare a read-only quantity (see :func:`control`)."""
    return Quantity(get_command, None, **kwargs)


def setting(set_command: str, **kwargs: Any) -> Any:
    """Declare a write-only quantity (see :func:`control`)."""
    return Quantity(None, set_command, **kwargs)


# --------------------------------------------------------------------------------- instrument


class Instrument:
    """One message-based instrument behind a VISA resource, with one lock.

    Parameters
    ----------
    resource : str or Resource
        VISA address (opened on :meth:`connect`) or an already open resource-like object.
    name : str, optional
        Name in the bench config, used in every message; defaults to the address.
    resource_manager : pyvisa.ResourceManager, optional
        Manager used to open an address; defaults to the pyvisa-py backend ``'@py'``.
        Tests pass ``ResourceManager('file.yaml@sim')``.
    timeout : float
        I/O timeout [s].

    Attributes
    ----------
    commands_sent : int
        Messages written to the instrument since construction (commands and queries, the
        resynchronisation queries included).
    resyncs : int
        Times the link was resynchronised (see :meth:`resync`).

    Notes
    -----
    The constructor only stores its arguments; :meth:`connect` (or ``with``) opens the resource
    and checks ``*IDN?`` against :attr:`models`.

    Every query (:meth:`ask`, :meth:`send_query`) first discards stale input, and
    resynchronises the link when a reply is owed; see the module docstring.
    """

    #: Supported models: model name as found in ``*IDN?`` -> that model's limit table.
    models: ClassVar[Mapping[str, Any]] = {}
    command_id = ""
    #: Whether :meth:`sync_query` makes a new reply every time (so an earlier sync query's
    #: late reply cannot be mistaken for the present one's).
    sync_reply_unique: ClassVar[bool] = False

    def __init__(
        self,
        resource: str | Resource,
        *,
        name: str | None = None,
        resource_manager: pyvisa.ResourceManager | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.resource = resource
        self.name = name or (resource if isinstance(resource, str) else type(self).__name__)
        self.resource_manager = resource_manager
        self.timeout = timeout
        self.lock = threading.RLock()
        self.idn: str | None = None
        self.model: str | None = None
        self.commands_sent = 0
        self.resyncs = 0
        self._session: Resource | None = None
        self._own_manager: pyvisa.ResourceManager | None = None
        self._owed = 0  # replies to queries sent and not read (a timeout leaves one owed)
        self._suspect: str | None = None  # why the link may be out of step, if it may be
        self._socket: Any = None  # pyvisa-py's socket session, drained without waiting
        self._syncs_owed = 0  # sync queries sent whose known reply has not come yet

    @property
    def label(self) -> str:
        """How messages name this instrument, e.g. ``Keithley2400 'smu1'``."""
        return f"{type(self).__name__} {self.name!r}"

    @property
    def instrument_name(self) -> str:
        """The instrument's name (for errors)."""
        return self.name

    @property
    def limits(self) -> Any:
        """The limit table of the connected model."""
        if self.model is None:
            raise InstrumentError(self.name, "", "not connected: call connect() first")
        return self.models[self.model]

    # -- connection

    def connect(self) -> Self:
        """Open the resource, set terminations and timeout, and identify the model."""
        with self.lock:
            if self._session is not None:
                return self
            if isinstance(self.resource, str):
                manager = self.resource_manager
                if manager is None:
                    manager = self._own_manager = pyvisa.ResourceManager("@py")
                try:
                    session: Any = manager.open_resource(self.resource)
                except (visa_errors.Error, OSError, ValueError) as exc:
                    self.close()
                    raise InstrumentError(self.name, "", f"cannot open: {exc}") from exc
            else:
                session = self.resource
            session.read_termination = TERMINATION
            session.write_termination = TERMINATION
            session.timeout = self.timeout * 1000.0
            self._session = session
            self._owed, self._suspect, self._syncs_owed = 0, None, 0
            self._socket = _pyvisa_py_socket(session)
            try:
                self.identify()
                self.configure()
            except BaseException:
                self.close()
                raise
        return self

    def identify(self) -> str:
        """Query ``*IDN?`` and check the model is one this driver supports; return the model."""
        idn = self.ask("*IDN?")
        model = self.model_from_idn(idn)
        if model not in self.models:
            known = ", ".join(self.models)
            raise InstrumentError(
                self.name,
                "*IDN?",
                f"model {model!r} (from {idn!r}) is not supported by {type(self).__name__}; "
                f"known models: {known}",
            )
        self.idn, self.model = idn, model
        return model

    @staticmethod
    def model_from_idn(idn: str) -> str:
        """Model from an ``*IDN?`` reply: the last word of its second field."""
        fields = idn.split(",")
        words = fields[1].split() if len(fields) > 1 else []
        return words[-1].upper() if words else ""

    def configure(self) -> None:
        """Put the instrument in the state the driver relies on (called after identify)."""

    def sync_query(self) -> tuple[str, str] | None:
        """A query and the exact reply it must get, to find the end of stale replies.

        ``*IDN?`` and the identity read at connect: no reading or setting looks like it.
        None before the instrument is identified (then stale input is only discarded).
        """
        return None if self.idn is None else ("*IDN?", self.idn)

    def close(self) -> None:
        """Close the resource; never raises."""
        with self.lock:
            self._socket = None
            session, self._session = self._session, None
            manager, self._own_manager = self._own_manager, None
            for thing in (session, manager):
                try:
                    if thing is not None:
                        thing.close()
                except Exception as exc:  # noqa: BLE001 - closing must not raise
                    log.warning("%s: closing failed: %s", self.label, exc)

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- I/O

    def write(self, command: str) -> None:
        """Send one command (no reply expected).

        Never waits for a resynchronisation: a command that makes the instrument safe must
        go out even while the link is out of step.
        """
        with self.lock:
            self.commands_sent += 1
            self._io(command, lambda session: session.write(command))

    def ask(self, command: str) -> str:
        """Send one query and return its reply (termination stripped)."""
        with self.lock:
            self.send_query(command)
            return self.read(command)

    def send_query(self, command: str) -> None:
        """Send a query whose reply :meth:`read` will take (possibly after other instruments'
        queries, so that their round trips overlap).

        Stale input is discarded first, and the link resynchronised if a reply is owed or
        stale input was found, so that the next reply read is this query's.
        """
        with self.lock:
            self._prepare_query(command)
            self.commands_sent += 1
            self._io(command, lambda session: session.write(command))
            self._owed += 1

    def read(self, command: str = "") -> str:
        """Read one reply (termination stripped) to a query sent with :meth:`send_query`.

        ``command`` is the query answered, for error messages. A reply that does not arrive
        stays owed: the next query resynchronises the link first.
        """
        with self.lock:
            reply = self._io(command, lambda session: session.read()).strip()
            self._owed = max(0, self._owed - 1)
            return reply

    def desync(self, reason: str) -> None:
        """Note that the link may be out of step: the next query resynchronises it first.

        Called when a reply does not have the form its query expects (it may answer another
        query, the real reply still on its way).
        """
        with self.lock:
            self._suspect = reason

    def guard(self, quantity: Quantity, value: Any) -> None:
        """Instrument-level quantities have no state to guard."""

    def record(self, quantity: Quantity, value: Any, *, sent: bool) -> None:
        """Instrument-level quantities keep no state."""

    def resync(self, reason: str, discarded: Iterable[str] = ()) -> list[str]:
        """Bring the link back in step: discard waiting input, send :meth:`sync_query` and
        discard every reply before its known reply.

        Replies come back in the order of their queries, so a late reply to an earlier query
        arrives before the sync query's and is dropped here, logged, instead of being taken
        as the answer to the next query.

        Parameters
        ----------
        reason : str
            Why, for the log.
        discarded : iterable of str
            Stale input already discarded (logged with the rest).

        Returns
        -------
        list of str
            The stale replies discarded.

        Raises
        ------
        InstrumentError
            The sync query's reply did not come (a silent instrument), or too many stale
            replies came before it; the link stays marked out of step.
        """
        with self.lock:
            stale = [*discarded, *self.discard_input()]
            sync = self.sync_query()
            if sync is None:
                self._owed, self._suspect = 0, None
                self._log_stale(reason, stale)
                return stale
            command, expected = sync

            def failed(exc: InstrumentError) -> InstrumentError:
                why = f"link out of step ({reason}) and not resynchronised: {exc.reason}"
                return InstrumentError(self.name, command, why)

            try:
                self.commands_sent += 1
                self._io(command, lambda session: session.write(command))
            except InstrumentError as exc:
                raise failed(exc) from exc
            self._owed += 1
            self._syncs_owed += 1
            # A reusable known reply (*IDN?'s) is also the reply of every earlier sync query
            # that timed out: wait for all of them, the last one being this query's.
            needed = 1 if self.sync_reply_unique else self._syncs_owed
            for _ in range(MAX_STALE_REPLIES):
                try:
                    reply = self._io(command, lambda session: session.read()).strip()
                except InstrumentError as exc:
                    raise failed(exc) from exc
                if reply != expected:
                    stale.append(reply)
                    continue
                needed -= 1
                if needed == 0:
                    self.resyncs += 1
                    self._owed, self._suspect, self._syncs_owed = 0, None, 0
                    self._log_stale(reason, stale)
                    return stale
            raise InstrumentError(
                self.name,
                command,
                f"link out of step ({reason}): {len(stale)} replies came before the known reply "
                f"to {command!r}; the last: {short(stale[-1])!r}",
            )

    def _log_stale(self, reason: str, stale: list[str]) -> None:
        if stale:
            shown = ", ".join(repr(short(line, 60)) for line in stale[:5])
            more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
            log.warning(
                "%s: link resynchronised (%s); discarded %d stale repl%s: %s%s",
                self.label,
                reason,
                len(stale),
                "y" if len(stale) == 1 else "ies",
                shown,
                more,
            )
        else:
            log.info("%s: link resynchronised (%s); no stale reply", self.label, reason)

    def discard_input(self) -> list[str]:
        """Drop whatever input is waiting, without waiting for more; return its lines."""
        with self.lock:
            if self._session is None:
                return []
            try:
                return discard_input(self._session, self._socket)
            except (visa_errors.Error, OSError) as exc:
                # the next write or read names the fault with its command
                log.debug("%s: discarding input failed: %s", self.label, exc)
                return []

    def _prepare_query(self, command: str) -> None:
        """Before a query: resynchronise if a reply is owed or the link is suspect, else
        discard stale input (and resynchronise if there was any: more may follow)."""
        if self._owed:
            what = f"{self._owed} repl{'y' if self._owed == 1 else 'ies'} still owed"
            self.resync(f"{what} before {short(command, 60)!r}")
        elif self._suspect is not None:
            self.resync(self._suspect)
        else:
            stale = self.discard_input()
            if stale:
                shown = ", ".join(repr(short(line, 60)) for line in stale[:3])
                self.resync(f"unexpected input {shown} before {short(command, 60)!r}", stale)

    def _io(self, command: str, action: Callable[[Resource], Any]) -> Any:
        quoted = short(command)
        if self._session is None:
            raise InstrumentError(self.name, quoted, "not connected: call connect() first")
        try:
            return action(self._session)
        except visa_errors.VisaIOError as exc:
            if exc.error_code == constants.StatusCode.error_timeout:
                reason = f"no reply within {self.timeout:g} s (timeout)"
            else:
                reason = f"I/O error: {exc.description}"
            raise InstrumentError(self.name, quoted, reason) from exc
        except (visa_errors.InvalidSession, OSError, EOFError) as exc:
            raise InstrumentError(self.name, quoted, f"connection lost: {exc}") from exc


def discard_input(session: Resource, raw_socket: Any = None) -> list[str]:
    """Drop the input waiting on ``session`` without waiting for more; return its lines.

    Parameters
    ----------
    session : Resource
        The open resource. One with a ``discard_input()`` method is asked to do it.
    raw_socket : object, optional
        pyvisa-py's socket session behind ``session`` (:func:`_pyvisa_py_socket`): its
        buffer and socket are drained at once, without the 1 ms a read with a zero timeout
        costs there. Otherwise the resource is read with an immediate timeout until empty.
    """
    own = getattr(session, "discard_input", None)
    if callable(own):
        return list(own())
    if raw_socket is not None:
        data = _drain_socket(raw_socket)
    else:
        data = _drain_by_reading(session)
    return [line.strip() for line in data.decode("ascii", "replace").split("\n") if line.strip()]


def _pyvisa_py_socket(session: Any) -> Any:
    """pyvisa-py's TCPIP SOCKET session behind a pyvisa resource, or None.

    pyvisa has no call that says whether input is waiting; pyvisa-py keeps it in the
    session's ``_pending_buffer`` and its ``interface`` socket, which a zero-timeout
    ``select`` checks without waiting.
    """
    try:
        inner = session.visalib.sessions[session.session]
    except (AttributeError, KeyError, TypeError, visa_errors.Error):
        return None
    sock = getattr(inner, "interface", None)
    buffer = getattr(inner, "_pending_buffer", None)
    if isinstance(sock, socket.socket) and isinstance(buffer, bytearray):
        return inner
    return None


def _drain_socket(inner: Any) -> bytes:
    sock = inner.interface
    if sock is None:
        return b""
    pending = inner._pending_buffer
    while select.select([sock], [], [], 0)[0]:
        chunk = sock.recv(65536)
        if not chunk:  # closed by the peer: the next write or read reports it
            break
        pending.extend(chunk)
    data = bytes(pending)
    del pending[:]
    return data


def _drain_by_reading(session: Resource) -> bytes:
    """Read with an immediate timeout until nothing is left (any VISA backend)."""
    saved = session.timeout
    lines: list[str] = []
    try:
        session.timeout = 0
        for _ in range(MAX_STALE_REPLIES):
            try:
                lines.append(session.read())
            except visa_errors.VisaIOError as exc:
                if exc.error_code != constants.StatusCode.error_timeout:
                    raise
                break
    finally:
        session.timeout = saved
    return "\n".join(lines).encode("ascii", "replace")


class Channel:
    """One channel of a multi-channel instrument; quantities are declared on subclasses.

    Parameters
    ----------
    instrument : Instrument
        The instrument the channel belongs to (its lock and resource are shared).
    name : str
        Channel name, also its id in command templates (``smua``, ``1``).
    """

    def __init__(self, instrument: Instrument, name: str) -> None:
        self.instrument = instrument
        self.name = name
        self.command_id = name

    @property
    def label(self) -> str:
        """How messages name this channel, e.g. ``Keithley2600 'smu2' channel 'smua'``."""
        return f"{self.instrument.label} channel {self.name!r}"

    @property
    def instrument_name(self) -> str:
        """The instrument's name (for errors)."""
        return self.instrument.name

    @property
    def lock(self) -> threading.RLock:
        """The instrument's lock."""
        return self.instrument.lock

    @property
    def limits(self) -> Any:
        """The instrument's limit table."""
        return self.instrument.limits

    def write(self, command: str) -> None:
        """Send one command through the instrument."""
        self.instrument.write(command)

    def ask(self, command: str) -> str:
        """Send one query through the instrument and return its reply."""
        return self.instrument.ask(command)

    def desync(self, reason: str) -> None:
        """Mark the instrument's link as possibly out of step (see Instrument.desync)."""
        self.instrument.desync(reason)

    def guard(self, quantity: Quantity, value: Any) -> None:
        """No state to guard here; SMU channels refuse unsafe sequences (drivers.smu)."""

    def record(self, quantity: Quantity, value: Any, *, sent: bool) -> None:
        """No state kept here; SMU channels track output, function and compliance."""

    def send_all(self, commands: Iterable[str]) -> None:
        """Send already validated commands in order, holding the lock."""
        with self.lock:
            for command in commands:
                self.write(command)
