"""Declarative instrument driver base: quantities with a command, a validator and units.

An :class:`Instrument` wraps one message-based VISA resource. Its quantities are declared at
class level with :func:`control` (get and set), :func:`measurement` (get only) and
:func:`setting` (set only). Multi-channel instruments declare their per-channel quantities on
a :class:`Channel` subclass; command templates name the channel as ``{ch}`` and the value as
``{value}``.

Every value is checked before anything is sent: a value outside its validator raises
:class:`~hil.errors.SafetyError` naming the instrument, the channel, the quantity, the value and
the bounds. Values are never clamped. Communication faults (timeout, connection reset or closed)
raise :class:`~hil.errors.InstrumentError` naming the instrument and the command.
"""

from __future__ import annotations

import logging
import math
import numbers
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


class Resource(Protocol):
    """The part of a pyvisa message-based resource that drivers use.

    A pyvisa ``MessageBasedResource`` satisfies it; so does a test transcript adapter.
    ``timeout`` is in milliseconds, as in pyvisa.
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

    label: str
    command_id: str
    instrument_name: str

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


def format_number(value: float) -> str:
    """Format a number for a command: up to 9 significant digits, e.g. ``1.5``, ``1e-06``."""
    return f"{value:.9g}"


def parse_bool(reply: str) -> bool:
    """Parse an on/off reply: ``1``/``0``, ``ON``/``OFF``, ``true``/``false`` or a float."""
    text = reply.strip().strip('"').upper()
    if text in ("ON", "TRUE"):
        return True
    if text in ("OFF", "FALSE"):
        return False
    return float(text) != 0.0


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
        if math.isnan(value) or not low <= value <= high:
            raise ValueError(f"outside [{low:g}, {high:g}]")
        return float(value)


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
            return self.parse(reply)
        except (ValueError, KeyError, IndexError) as exc:
            reason = f"unexpected reply {reply!r} for {obj.label}: {self.name}"
            raise InstrumentError(obj.instrument_name, command, reason) from exc

    def __set__(self, obj: Owner, value: Any) -> None:
        obj.write(self.command_for(obj, value))

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
        """Return the set command for ``value`` after validating it; sends nothing."""
        if self.set_command is None:
            raise AttributeError(f"{self.name} is read-only")
        checked = self.check(obj, value)
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
        Messages written to the instrument since construction (commands and queries).

    Notes
    -----
    The constructor only stores its arguments; :meth:`connect` (or ``with``) opens the resource
    and checks ``*IDN?`` against :attr:`models`.
    """

    #: Supported models: model name as found in ``*IDN?`` -> that model's limit table.
    models: ClassVar[Mapping[str, Any]] = {}
    command_id = ""

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
        self._session: Resource | None = None
        self._own_manager: pyvisa.ResourceManager | None = None

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
                    session = manager.open_resource(self.resource)
                except (visa_errors.Error, OSError, ValueError) as exc:
                    self.close()
                    raise InstrumentError(self.name, "", f"cannot open: {exc}") from exc
            else:
                session = self.resource
            session.read_termination = TERMINATION
            session.write_termination = TERMINATION
            session.timeout = self.timeout * 1000.0
            self._session = session
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

    def close(self) -> None:
        """Close the resource; never raises."""
        with self.lock:
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
        """Send one command."""
        with self.lock:
            self.commands_sent += 1
            self._io(command, lambda session: session.write(command))

    def ask(self, command: str) -> str:
        """Send one query and return its reply (termination stripped)."""
        with self.lock:
            self.commands_sent += 1
            self._io(command, lambda session: session.write(command))
            return self._io(command, lambda session: session.read()).strip()

    def read(self, command: str = "") -> str:
        """Read one reply (termination stripped) to a query already sent with :meth:`write`.

        Writing queries to several instruments first and reading the replies after lets
        their round trips overlap. ``command`` is the query answered, for error messages.
        """
        with self.lock:
            return self._io(command, lambda session: session.read()).strip()

    def _io(self, command: str, action: Callable[[Resource], Any]) -> Any:
        if self._session is None:
            raise InstrumentError(self.name, command, "not connected: call connect() first")
        try:
            return action(self._session)
        except visa_errors.VisaIOError as exc:
            if exc.error_code == constants.StatusCode.error_timeout:
                reason = f"no reply within {self.timeout:g} s (timeout)"
            else:
                reason = f"I/O error: {exc.description}"
            raise InstrumentError(self.name, command, reason) from exc
        except (visa_errors.InvalidSession, OSError, EOFError) as exc:
            raise InstrumentError(self.name, command, f"connection lost: {exc}") from exc


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

    def send_all(self, commands: Iterable[str]) -> None:
        """Send already validated commands in order, holding the lock."""
        with self.lock:
            for command in commands:
                self.write(command)
