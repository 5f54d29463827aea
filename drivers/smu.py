"""Common interface of source-measure units (SMUs): channels, readings, limits, safe state.

Family modules (:mod:`drivers.keithley2400`, :mod:`drivers.keithley2600`,
:mod:`drivers.keysight_b2900`) declare the same quantity names on their channel classes:
``source_mode`` ('voltage' | 'current'), ``voltage_setpoint`` [V], ``current_setpoint`` [A],
``current_limit`` [A] and ``voltage_limit`` [V] (compliance), ``output_enabled`` (bool).
:class:`SmuChannel` builds the bench-facing methods on top of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from hil.vocabulary import SourceMode

from .instrument import Channel, Instrument, Range, measurement

log = logging.getLogger(__name__)

#: Validators shared by every SMU family; bounds come from the model's :class:`SmuLimits`.
VOLTAGE_LEVEL = Range("-max_voltage", "max_voltage")
CURRENT_LEVEL = Range("-max_current", "max_current")
CURRENT_LIMIT = Range("min_current_limit", "max_current")
VOLTAGE_LIMIT = Range("min_voltage_limit", "max_voltage")
#: Python value -> instrument word for on/off switches.
ON_OFF = {True: "ON", False: "OFF"}


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
    min_current_limit: float = 1e-9
    min_voltage_limit: float = 1e-2


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


def parse_scpi_error(reply: str) -> ErrorEntry:
    """Parse a SCPI ``:SYST:ERR?`` reply such as ``-113,"Undefined header"``."""
    code, _, message = reply.partition(",")
    return ErrorEntry(int(code), message.strip().strip('"'))


class SmuChannel(Channel):
    """One SMU channel. Subclasses declare the shared quantities and :meth:`in_compliance`."""

    #: What the channel sources; every family maps the vocabulary's words to its own
    #: (a bare annotation: the family classes assign the descriptor).
    source_mode: SourceMode

    def _command(self, quantity: str, value: Any) -> str:
        return getattr(type(self), quantity).command_for(self, value)

    def source_voltage(self, voltage: float, compliance_current: float) -> None:
        """Source a voltage with a current compliance; both are checked before anything is sent.

        Parameters
        ----------
        voltage : float
            Source level [V].
        compliance_current : float
            Current compliance [A], mandatory.
        """
        self.send_all(
            [
                self._command("current_limit", compliance_current),
                self._command("voltage_setpoint", voltage),
                self._command("source_mode", "voltage"),
            ]
        )

    def source_current(self, current: float, compliance_voltage: float) -> None:
        """Source a current with a voltage compliance; both are checked before anything is sent.

        Parameters
        ----------
        current : float
            Source level [A].
        compliance_voltage : float
            Voltage compliance [V], mandatory.
        """
        self.send_all(
            [
                self._command("voltage_limit", compliance_voltage),
                self._command("current_setpoint", current),
                self._command("source_mode", "current"),
            ]
        )

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

    def safe_commands(self) -> list[str]:
        """Commands that bring the channel to 0 V, voltage mode, output off."""
        return [
            self._command("voltage_setpoint", 0.0),
            self._command("source_mode", "voltage"),
            self._command("output_enabled", False),
        ]


class Smu(Instrument):
    """A source-measure unit with one or more :class:`SmuChannel`.

    Use as a context manager: leaving it runs :meth:`safe_state` and closes the resource.
    Channels are reached by name: ``smu["smua"].source_voltage(0.2, compliance_current=1e-4)``.
    """

    channel_class: ClassVar[type[SmuChannel]] = SmuChannel
    models: ClassVar[Mapping[str, SmuLimits]] = {}

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
        """Reset the instrument to its defaults (output off) and re-apply the driver setup."""
        with self.lock:
            self.write("*RST")
            self.configure()

    def safe_state(self) -> None:
        """Source 0 V and turn the output off on every channel; never raises (logs instead)."""
        if self.model is None:
            log.info("%s: not connected, nothing to make safe", self.label)
            return
        try:
            with self.lock:
                for name in self.channels:
                    self.channel(name).send_all(self.channel(name).safe_commands())
        except Exception as exc:  # noqa: BLE001 - the safe path must not raise
            log.error("%s: safe_state failed, check the instrument by hand: %s", self.label, exc)

    def __exit__(self, *exc_info: object) -> None:
        self.safe_state()
        self.close()
