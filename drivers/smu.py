"""Common interface of source-measure units (SMUs): channels, readings, limits, safe state.

Family modules (:mod:`drivers.keithley2400`, :mod:`drivers.keithley2450`,
:mod:`drivers.keithley2600`, :mod:`drivers.keysight_b2900`) declare the same quantity names on
their channel classes: ``source_mode`` ('voltage' | 'current'), ``voltage_setpoint`` [V],
``current_setpoint`` [A], ``current_limit`` [A] and ``voltage_limit`` [V] (compliance),
``output_enabled`` (bool). :class:`SmuChannel` builds the bench-facing methods on top of them.

Safety rules every family obeys, whatever the caller does (each refusal is a
:class:`~hil.errors.SafetyError` raised before anything is sent):

- an output goes on only after the compliance of the channel's source function was set *and
  read back* (:meth:`SmuChannel.set_compliance`) since the last connect or reset;
- the source function changes only while the output is known to be off;
- values outside the model's limits (:class:`SmuLimits`, each figure cited from the
  manufacturer's manual in the family module) are refused, never clamped.

The safe order of arming a channel is :meth:`Smu.reset` (known state, outputs off), then
:meth:`SmuChannel.configure_source` (function, levels 0, compliance read back), the error queue
read empty, and only then ``output_enabled = True``; :class:`drivers.lab_ports.SmuPort` does
exactly that. :meth:`Smu.safe_state` tries every channel whatever fails and reports the
channels it could not confirm off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple, Self

from hil.errors import InstrumentError, SafetyError
from hil.vocabulary import SourceMode

from .instrument import Channel, Instrument, Quantity, Range, measurement, short

log = logging.getLogger(__name__)

#: Validators shared by every SMU family; bounds come from the model's :class:`SmuLimits`.
VOLTAGE_LEVEL = Range("-max_voltage", "max_voltage")
CURRENT_LEVEL = Range("-max_current", "max_current")
CURRENT_LIMIT = Range("min_current_limit", "max_current")
VOLTAGE_LIMIT = Range("min_voltage_limit", "max_voltage")
#: Python value -> instrument word for on/off switches.
ON_OFF = {True: "ON", False: "OFF"}
#: The compliance quantity that limits each source function.
COMPLIANCE_OF: Mapping[SourceMode, str] = MappingProxyType(
    {"voltage": "current_limit", "current": "voltage_limit"}
)
#: Largest relative difference between a compliance asked for and the one read back that
#: still counts as applied: the instruments print 6 significant digits; a real refusal
#: leaves the previous limit, orders of magnitude away.
COMPLIANCE_RTOL = 1e-4


@dataclass(frozen=True)
class SmuLimits:
    """Limits of one SMU model; validators read their bounds from here.

    Attributes
    ----------
    channels : tuple of str
        Channel names of the model.
    max_voltage : float
        Largest source voltage magnitude and voltage compliance [V].
    max_current : float
        Largest source current magnitude and current compliance [A].
    min_current_limit : float
        Smallest current compliance accepted [A].
    min_voltage_limit : float
        Smallest voltage compliance accepted [V].
    """

    channels: tuple[str, ...]
    max_voltage: float
    max_current: float
    min_current_limit: float
    min_voltage_limit: float


@dataclass(frozen=True)
class Reading:
    """One measured value with its compliance status.

    Attributes
    ----------
    value : float
        The measured value, in ``unit``.
    unit : {'V', 'A'}
        Volts or amperes.
    in_compliance : bool
        True when the channel was limited by its compliance while measuring.
    """

    value: float
    unit: Literal["V", "A"]
    in_compliance: bool


class ErrorEntry(NamedTuple):
    """One entry of an instrument's error queue."""

    code: int
    message: str


@dataclass(frozen=True)
class SafeStateResult:
    """What :meth:`Smu.safe_state` could confirm.

    Attributes
    ----------
    instrument : str
        The instrument's name.
    unconfirmed : mapping of str to str
        Channel -> why its output could not be confirmed off (empty when every channel
        was); ``'*'`` when the instrument is not connected at all.
    """

    instrument: str
    unconfirmed: Mapping[str, str] = field(default_factory=dict)

    @property
    def confirmed(self) -> bool:
        """Every channel was confirmed off."""
        return not self.unconfirmed

    def words(self) -> str:
        """The unconfirmed channels as messages name them."""
        return "; ".join(f"channel {ch}: {why}" for ch, why in self.unconfirmed.items())


@dataclass
class ChannelSafety:
    """What the driver knows of one channel: what it set or read back since connect.

    Attributes
    ----------
    output : bool or None
        Output on; None while unknown (after connect, or after a failed switch).
    mode : {'voltage', 'current'} or None
        Source function; None while unknown.
    compliance : dict
        Source function -> the compliance confirmed by reading it back.
    """

    output: bool | None = None
    mode: SourceMode | None = None
    compliance: dict[SourceMode, float] = field(default_factory=dict)


def parse_scpi_error(reply: str) -> ErrorEntry:
    """Parse a SCPI ``:SYST:ERR?`` reply such as ``-113,"Undefined header"``."""
    code, _, message = reply.partition(",")
    return ErrorEntry(int(code), message.strip().strip('"'))


class SmuChannel(Channel):
    """One SMU channel. Subclasses declare the shared quantities and :meth:`in_compliance`.

    The channel refuses unsafe sequences (see the module docstring) from the state its
    instrument keeps (:attr:`safety`), whatever path a value takes: a quantity set, a
    method, or a command built with ``command_for`` for a bulk line.
    """

    #: What the channel sources; every family maps the vocabulary's words to its own
    #: (a bare annotation: the family classes assign the descriptor).
    source_mode: SourceMode
    output_enabled: bool
    instrument: Smu

    @property
    def safety(self) -> ChannelSafety:
        """What the driver knows of this channel (kept by the instrument)."""
        return self.instrument.channel_safety(self.name)

    def quantity(self, name: str) -> Quantity:
        """The family's declaration of quantity ``name`` (to build a command for a bulk line
        with :meth:`~drivers.instrument.Quantity.command_for`, which checks it and asks
        :meth:`guard`)."""
        found = getattr(type(self), name)
        assert isinstance(found, Quantity), name
        return found

    # -- the guards (drivers.instrument calls them for every value sent)

    def guard(self, quantity: Quantity, value: Any) -> None:
        """Refuse output on without a confirmed compliance and a function change unless the
        output is known to be off; SafetyError, nothing sent."""
        state = self.safety
        if quantity.name == "output_enabled" and value is True:
            if state.mode is None:
                raise SafetyError(
                    f"{self.label}: output_enabled = True refused: the source function is "
                    "unknown (set it with configure_source() first); nothing was sent"
                )
            need = COMPLIANCE_OF[state.mode]
            if state.mode not in state.compliance:
                raise SafetyError(
                    f"{self.label}: output_enabled = True refused: no {need} confirmed for "
                    f"the {state.mode} source (set_compliance() sets it and reads it back); "
                    "nothing was sent"
                )
        elif quantity.name == "source_mode" and state.output is not False:
            now = "on" if state.output else "unknown (read output_enabled first)"
            raise SafetyError(
                f"{self.label}: source_mode = {value!r} refused: the output is {now}; the "
                "source function changes only with the output off; nothing was sent"
            )

    def record(self, quantity: Quantity, value: Any, *, sent: bool) -> None:
        """Track output state, source function and compliance from what was set or read
        (None after a failed set: unknown, so nothing is assumed of it)."""
        state = self.safety
        if quantity.name == "output_enabled":
            state.output = None if value is None else bool(value)
        elif quantity.name == "source_mode":
            state.mode = value
        elif sent and quantity.name in ("current_limit", "voltage_limit"):
            # a compliance written is not confirmed until it is read back
            for mode, name in COMPLIANCE_OF.items():
                if name == quantity.name:
                    state.compliance.pop(mode, None)

    # -- bench-facing methods

    def ensure_output_known(self) -> bool:
        """Whether the output is on, reading it back if the driver does not know."""
        state = self.safety
        if state.output is None:
            return bool(self.output_enabled)  # recorded by the get
        return state.output

    def set_compliance(self, mode: SourceMode, value: float) -> float:
        """Set the compliance of source function ``mode`` and confirm it by reading it back.

        Parameters
        ----------
        mode : {'voltage', 'current'}
            The source function the compliance limits: a current compliance [A] for
            'voltage', a voltage compliance [V] for 'current'.
        value : float
            The compliance, checked against the model's limits before anything is sent.

        Returns
        -------
        float
            The compliance the instrument reports.

        Raises
        ------
        SafetyError
            ``value`` is outside the model's limits (nothing sent).
        InstrumentError
            The instrument reports another compliance (it refused the value and kept its
            previous one): the output must not go on.
        """
        name = COMPLIANCE_OF[mode]
        quantity = self.quantity(name)
        unit = quantity.units
        with self.lock:
            setattr(self, name, value)
            checked = float(quantity.check(self, value))
            found = float(getattr(self, name))
            if not math.isclose(found, checked, rel_tol=COMPLIANCE_RTOL):
                validator = CURRENT_LIMIT if unit == "A" else VOLTAGE_LIMIT
                low, high = validator.bounds(self)
                assert quantity.get_command is not None
                raise InstrumentError(
                    self.instrument_name,
                    short(quantity.get_command.format(ch=self.command_id)),
                    f"channel {self.name}: {name} = {checked:g} {unit} (model range "
                    f"[{low:g}, {high:g}] {unit}) was not applied: the instrument reports "
                    f"{found:g} {unit}; the output stays off",
                )
            self.safety.compliance[mode] = found
        return found

    def configure_source(self, mode: SourceMode, compliance: float) -> None:
        """Prepare the channel to source ``mode`` with its output off: function, both
        levels at 0, compliance set and read back.

        Parameters
        ----------
        mode : {'voltage', 'current'}
        compliance : float
            Current compliance [A] for a voltage source, voltage compliance [V] for a
            current source; checked before anything is sent.

        Raises
        ------
        SafetyError
            The compliance is outside the model's limits, or the output is on (the function
            never changes with the output on); nothing sent.
        InstrumentError
            The compliance was not applied (see :meth:`set_compliance`).
        """
        self.quantity(COMPLIANCE_OF[mode]).check(self, compliance)
        with self.lock:
            if self.ensure_output_known():
                raise SafetyError(
                    f"{self.label}: configure_source({mode!r}) refused: the output is on; "
                    "turn it off first"
                )
            self.source_mode = mode
            self.voltage_setpoint = 0.0
            self.current_setpoint = 0.0
            self.set_compliance(mode, compliance)

    def source_voltage(self, voltage: float, compliance_current: float) -> None:
        """Source a voltage with a current compliance; both are checked before anything is
        sent, and the compliance is read back before the level is set.

        Parameters
        ----------
        voltage : float
            Source level [V].
        compliance_current : float
            Current compliance [A], mandatory.

        Raises
        ------
        SafetyError
            A value is outside the model's limits, or the channel sources a current with its
            output on (the function never changes with the output on).
        """
        self._source("voltage", "voltage_setpoint", voltage, compliance_current)

    def source_current(self, current: float, compliance_voltage: float) -> None:
        """Source a current with a voltage compliance; both are checked before anything is
        sent, and the compliance is read back before the level is set.

        Parameters
        ----------
        current : float
            Source level [A].
        compliance_voltage : float
            Voltage compliance [V], mandatory.

        Raises
        ------
        SafetyError
            A value is outside the model's limits, or the channel sources a voltage with its
            output on.
        """
        self._source("current", "current_setpoint", current, compliance_voltage)

    def _source(self, mode: SourceMode, level_name: str, level: float, compliance: float) -> None:
        self.quantity(COMPLIANCE_OF[mode]).check(self, compliance)
        self.quantity(level_name).check(self, level)
        with self.lock:
            state = self.safety
            if state.mode != mode:
                if self.ensure_output_known():
                    raise SafetyError(
                        f"{self.label}: source_{mode}() refused: the channel sources "
                        f"{state.mode or 'an unknown function'} with its output on; turn it "
                        "off first"
                    )
                self.source_mode = mode
            self.set_compliance(mode, compliance)
            setattr(self, level_name, level)

    def measure_voltage(self) -> Reading:
        """Measure the voltage [V] at the channel, with its compliance status."""
        return self.measure("voltage")

    def measure_current(self) -> Reading:
        """Measure the current [A] through the channel, with its compliance status."""
        return self.measure("current")

    def measure(self, quantity: Literal["voltage", "current"]) -> Reading:
        """Measure ``quantity`` and the compliance status (one or more queries, one lock)."""
        with self.lock:
            value = getattr(self, quantity)
            return Reading(value, "V" if quantity == "voltage" else "A", self.in_compliance())

    def in_compliance(self) -> bool:
        """Whether the channel is limited by its compliance now."""
        raise NotImplementedError


class Smu(Instrument):
    """A source-measure unit with one or more :class:`SmuChannel`.

    Use as a context manager: leaving it runs :meth:`safe_state` and closes the resource.
    Channels are reached by name: ``smu["smua"].source_voltage(0.2, compliance_current=1e-4)``.
    """

    channel_class: ClassVar[type[SmuChannel]] = SmuChannel
    models: ClassVar[Mapping[str, SmuLimits]] = {}
    #: Commands :meth:`reset` sends, in order: the instrument's defaults (outputs off), an
    #: empty error queue, a fixed trigger count. One naming ``{ch}`` is sent for every
    #: channel. Each family cites its manual.
    reset_commands: ClassVar[tuple[str, ...]] = ("*RST", "*CLS")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._safety: dict[str, ChannelSafety] = {}

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names of the connected model."""
        return self.limits.channels

    def channel(self, name: str) -> SmuChannel:
        """Return channel ``name``; raises KeyError naming the known channels."""
        if name not in self.channels:
            raise KeyError(f"{self.label} has no channel {name!r}; channels: {self.channels}")
        return self.channel_class(self, name)

    def __getitem__(self, name: str) -> SmuChannel:
        return self.channel(name)

    def channel_safety(self, name: str) -> ChannelSafety:
        """What the driver knows of channel ``name`` (created unknown)."""
        return self._safety.setdefault(name, ChannelSafety())

    def connect(self) -> Self:
        """Open, identify and configure; every channel's state is unknown until read or set."""
        with self.lock:
            if self._session is None:
                self._safety = {}
            super().connect()
        return self

    def close(self) -> None:
        """Close the resource (never raises); the channels' state is forgotten."""
        with self.lock:
            self._safety = {}
            super().close()

    next_error = measurement(
        ":SYST:ERR?", parse=parse_scpi_error, doc="Oldest error queue entry (0 when empty)."
    )

    def errors(self, max_entries: int = 100) -> list[ErrorEntry]:
        """Read the error queue until it answers ``0,"No error"``; return the errors read."""
        entries: list[ErrorEntry] = []
        with self.lock:
            while len(entries) < max_entries:
                entry = self.next_error
                if entry.code == 0:
                    break
                entries.append(entry)
        return entries

    def reset(self) -> None:
        """Reset to a known state: the instrument's defaults with every output off, an empty
        error queue (:attr:`reset_commands`), then the driver's setup (:meth:`configure`).

        Afterwards every output is known off and no compliance is confirmed.
        """
        with self.lock:
            for template in self.reset_commands:
                per_channel = "{ch}" in template
                for name in self.channels if per_channel else ("",):
                    self.write(
                        template.format(ch=self.channel(name).command_id) if name else template
                    )
            self._safety = {name: ChannelSafety(output=False) for name in self.channels}
            self.configure()

    def safe_state(self) -> SafeStateResult:
        """Every channel's output off, levels 0, voltage function; never raises.

        Every channel is tried whatever fails on another: first every output is switched
        off (the step that matters most, done for all channels before anything else), then
        every level set to 0, then each output read back, and the function set to voltage
        on the channels confirmed off (never with an output on).

        Returns
        -------
        SafeStateResult
            The channels whose output could not be confirmed off, and why (also logged).
        """
        if self.model is None:
            log.info("%s: not connected, nothing to make safe", self.label)
            return SafeStateResult(self.name, {"*": "not connected"})
        problems: dict[str, list[str]] = {}

        def attempt(name: str, quantity: str, value: Any) -> None:
            try:
                setattr(self.channel(name), quantity, value)
            except Exception as exc:  # noqa: BLE001 - the safe path must not raise
                problems.setdefault(name, []).append(f"{quantity} = {value!r} failed: {exc}")

        unconfirmed: dict[str, str] = {}
        with self.lock:
            names = self.channels
            for name in names:
                attempt(name, "output_enabled", False)
            for name in names:
                attempt(name, "voltage_setpoint", 0.0)
                attempt(name, "current_setpoint", 0.0)
            for name in names:
                try:
                    still_on = bool(self.channel(name).output_enabled)
                except Exception as exc:  # noqa: BLE001
                    problems.setdefault(name, []).append(f"output state not read back: {exc}")
                    unconfirmed[name] = "; ".join(problems[name])
                    continue
                if still_on:
                    problems.setdefault(name, []).append("its output is still on")
                    unconfirmed[name] = "; ".join(problems[name])
                    continue
                # confirmed off: back to the voltage function (never with the output on)
                attempt(name, "source_mode", "voltage")
        for name, notes in problems.items():
            if name not in unconfirmed:
                log.warning("%s channel %s: off, but %s", self.label, name, "; ".join(notes))
        result = SafeStateResult(self.name, unconfirmed)
        if unconfirmed:
            log.error(
                "%s: safe_state could not confirm every output off, check by hand: %s",
                self.label,
                result.words(),
            )
        return result

    def __exit__(self, *exc_info: object) -> None:
        self.safe_state()
        self.close()
