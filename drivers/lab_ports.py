"""The instrument ports of a lab bench: one board or SMU and the network channels on it.

A port turns the bench's per-sample work into the fewest commands its instrument allows:
a board sets every DAC in one line and reads every ADC in one line; a 2600-series SMU sets
(and confirms) every channel's level in one TSP line and measures every channel in another;
SCPI SMUs take one command per channel and quantity. :func:`overlapped` writes to many
instruments first and reads their replies after, so their round trips overlap.

A reading comes back with its status: :class:`HiddenReading` flags the ADC channels that
overflowed, :class:`SmuReading` the SMU channels found in compliance, each with the
:class:`~hil.errors.InstrumentError` the first flag is (a port never raises for a flag: the
bench decides, by its ``flagged_samples`` setting).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np

from hil.bench import SafetyLimits
from hil.config.lab import Wiring
from hil.errors import InstrumentError, SafetyError

from .instrument import parse_bool, short
from .serial_board import SerialBoard
from .smu import Smu, SmuChannel


def output_label(k: int) -> str:
    """Output node ``k`` as error messages name it, with its class and sign."""
    return f"output node {k} (class {k // 2} {'+-'[k % 2]})"


def fmt_range(bounds: tuple[float, float], unit: str) -> str:
    """An inclusive range as messages and check rows print it: ``[lo, hi] unit``."""
    return f"[{bounds[0]:g}, {bounds[1]:g}] {unit}"


class SmuRoles(NamedTuple):
    """What the wiring puts on one SMU's channels.

    Attributes
    ----------
    sources : list of (channel, source node)
        Channels sourcing an input or bias voltage.
    senses : list of (channel, output index)
        Channels sourcing a nudge current into an output node and measuring its voltage.
    """

    sources: list[tuple[str, int]]
    senses: list[tuple[str, int]]

    @property
    def channels(self) -> list[str]:
        """Every wired channel: the sources', then the senses'."""
        return [ch for ch, _ in [*self.sources, *self.senses]]


def smu_roles(wiring: Wiring, name: str) -> SmuRoles:
    """The channels of SMU ``name`` that ``wiring`` uses, and what for."""
    sources = [(r.channel, n) for n, r in enumerate(wiring.sources) if r and r.instrument == name]
    senses = [(r.channel, k) for k, r in enumerate(wiring.outputs) if r.instrument == name]
    return SmuRoles(sources, senses)


@dataclass(frozen=True)
class HiddenReading:
    """What a board port read in one sample.

    Attributes
    ----------
    voltages : ndarray, shape (m,)
        Hidden node voltages (V), in the port's ``adc_nodes`` order; an overflowed one is
        not the node's (its readings were clipped at the ADC range end).
    overflow : ndarray of bool, shape (m,)
        The node's ADC channel overflowed in at least one of its readings.
    fault : InstrumentError or None
        The fault the overflow is, naming the board, the command and the channels; None when
        nothing overflowed.
    """

    voltages: np.ndarray
    overflow: np.ndarray
    fault: InstrumentError | None = None


@dataclass(frozen=True)
class SmuReading:
    """What an SMU port read in one sample.

    Attributes
    ----------
    voltages : ndarray, shape (n_senses,)
        Output node voltages (V), in the port's ``senses`` order.
    compliance : ndarray of bool, shape (n_wired,)
        The channel was limited by its compliance, in the port's ``wired`` order (sources,
        then senses).
    fault : InstrumentError or None
        The fault the first channel found in compliance is, naming the SMU, the command, the
        channel and its node; None when no channel was.
    """

    voltages: np.ndarray
    compliance: np.ndarray
    fault: InstrumentError | None = None


# ------------------------------------------------------------------------------ board port
class BoardPort:
    """One board and the network channels wired to it.

    Parameters
    ----------
    name : str
    board : SerialBoard
    dac_channels, dac_nodes : ndarray of int, shape (n,)
        DAC channels and the source nodes they drive.
    adc_channels, adc_nodes : ndarray of int, shape (m,)
        ADC channels and the hidden nodes they read.
    """

    def __init__(
        self,
        name: str,
        board: SerialBoard,
        dac_channels: np.ndarray,
        dac_nodes: np.ndarray,
        adc_channels: np.ndarray,
        adc_nodes: np.ndarray,
    ) -> None:
        self.name, self.board = name, board
        self.dac_channels, self.dac_nodes = dac_channels, dac_nodes
        self.adc_channels, self.adc_nodes = adc_channels, adc_nodes

    def set_sources(self, sources: np.ndarray) -> None:
        """Set every wired DAC from the source voltages (n_sources,) V: one ``DAC:SET`` line
        (more only if the board's MAX_LINE is too short for them all)."""
        if not len(self.dac_channels):
            return
        items = [
            (int(c), float(v))
            for c, v in zip(self.dac_channels, sources[self.dac_nodes], strict=True)
        ]
        room = self.board.max_command - len("DAC:SET ")  # MAX_LINE less the frame
        chunk: list[tuple[int, float]] = []
        used = 0
        for ch, v in items:
            size = len(f"{ch}:{v!r}") + 1
            if chunk and used + size > room:
                self.board.set_dacs(dict(chunk))
                chunk, used = [], 0
            chunk.append((ch, v))
            used += size
        self.board.set_dacs(dict(chunk))

    def read_hidden(self, repeats: int) -> HiddenReading:
        """Hidden node voltages, each the mean of ``repeats`` readings of one ``ADC:READ``,
        and which overflowed (a node outside the ADC range: its mean is not the node's)."""
        if not len(self.adc_channels):
            return HiddenReading(np.zeros(0), np.zeros(0, dtype=bool))
        channels = np.tile(self.adc_channels, repeats).tolist()
        reading = self.board.read_adcs(channels)
        voltages = reading.values.reshape(repeats, -1).mean(axis=0)
        overflow = np.isin(self.adc_channels, reading.overflow)
        if not reading.overflow:
            return HiddenReading(voltages, overflow)
        fault = InstrumentError(
            self.name,
            short("ADC:READ " + ",".join(map(str, channels))),
            f"ADC overflow on channel(s) {list(reading.overflow)}: hidden node voltage outside "
            f"the ADC range {fmt_range(self.board.capabilities.adc_range, 'V')}",
        )
        return HiddenReading(voltages, overflow, fault)


# ------------------------------------------------------------------------------ SMU ports
class SmuPort:
    """One SMU and the network nodes wired to its channels (SCPI families: one command per
    channel and quantity, sent and answered one after the other).

    Every operation comes in two halves so that several SMUs can work at once: ``send_*``
    writes, ``finish_*`` reads the replies and checks them. Here ``send_*`` does all the
    work and ``finish_*`` returns its result.

    Parameters
    ----------
    name : str
    smu : Smu
    sources : list of (channel, source node)
        Channels sourcing an input or bias voltage.
    senses : list of (channel, output index)
        Channels sourcing a nudge current into an output node and measuring its voltage.
    """

    def __init__(
        self,
        name: str,
        smu: Smu,
        sources: list[tuple[str, int]],
        senses: list[tuple[str, int]],
    ) -> None:
        self.name, self.smu = name, smu
        self.sources, self.senses = sources, senses
        self.source_nodes = np.array([n for _, n in sources], dtype=int)
        self.sense_outputs = np.array([k for _, k in senses], dtype=int)
        self.wired = [ch for ch, _ in [*sources, *senses]]

    def channel(self, name: str) -> SmuChannel:
        """The SMU's channel ``name``."""
        return self.smu.channel(name)

    def label(self, channel: str) -> str:
        """What ``channel`` is wired to, for messages: a source node, an output node."""
        for ch, node in self.sources:
            if ch == channel:
                return f"source node {node}"
        for ch, k in self.senses:
            if ch == channel:
                return output_label(k)
        return "unwired"

    def arm(self, limits: SafetyLimits) -> None:
        """Arm every wired channel in the safe order, its output going on last.

        Reset to a known state (outputs off, error queue empty); per channel the source
        function, both levels 0 and the compliance set and read back, output still off;
        the error queue read empty; only then every output on (at 0 V / 0 A), and the queue
        read once more. A compliance the instrument refuses (it keeps its previous one)
        stops the arming with the output off.

        Raises
        ------
        SafetyError
            A compliance is outside the model's limits (nothing sent for it).
        InstrumentError
            A compliance was not applied, or the error queue held an entry; no output of
            this SMU was switched on when it is raised before the outputs step.
        """
        self.smu.reset()
        for ch, _ in self.sources:
            self.channel(ch).configure_source("voltage", limits.compliance_current)
        for ch, _ in self.senses:
            self.channel(ch).configure_source("current", limits.compliance_voltage)
        self.check_errors("arm (before any output on)")
        for ch in self.wired:
            self.channel(ch).output_enabled = True
        self.check_errors("arm (outputs on)")

    def check_errors(self, command: str) -> None:
        """Raise InstrumentError if the error queue holds anything."""
        entries = self.smu.errors()
        if entries:
            text = "; ".join(f"{e.code} {e.message}" for e in entries)
            raise InstrumentError(self.name, short(command), f"reported error(s): {text}")

    def compliance(self, channel: str, command: str, value: float | None = None) -> InstrumentError:
        """The InstrumentError of ``channel`` found in compliance by ``command``."""
        reading = "" if value is None else f" (reading {value:g})"
        return InstrumentError(
            self.name,
            short(command),
            f"compliance: channel {channel} ({self.label(channel)}) reached its limit{reading}",
        )

    def wired_nodes(self, output_nodes: np.ndarray) -> np.ndarray:
        """The network node each wired channel drives, in ``wired`` order.

        Parameters
        ----------
        output_nodes : ndarray of int
            The network's output node indices (``Network.output_nodes``); source nodes are
            node indices already.
        """
        return np.concatenate([self.source_nodes, output_nodes[self.sense_outputs]]).astype(int)

    def send_apply(self, volts: np.ndarray, amps: np.ndarray) -> str:
        """Set source levels (V) and nudge currents (A), then check the error queue (which
        also confirms the levels were applied)."""
        for (ch, _), v in zip(self.sources, volts, strict=True):
            self.channel(ch).voltage_setpoint = float(v)
        for (ch, _), i in zip(self.senses, amps, strict=True):
            self.channel(ch).current_setpoint = float(i)
        self.check_errors(":SYST:ERR?")
        return ""

    def finish_apply(self, sent: str) -> None:
        """Nothing left to do here."""

    def send_read(self, repeats: int) -> str:
        """Nothing to send ahead: :meth:`finish_read` measures channel by channel."""
        return ""

    def finish_read(self, sent: str, repeats: int) -> SmuReading:
        """Output node voltages, each the mean of ``repeats`` readings, and every wired
        channel's compliance; the fault is the first sense channel in compliance, else the
        first source channel."""
        values = np.empty(len(self.senses))
        flagged: dict[str, InstrumentError] = {}
        for j, (ch, _) in enumerate(self.senses):
            readings = [self.channel(ch).measure_voltage() for _ in range(repeats)]
            if any(r.in_compliance for r in readings):
                command = self._command(ch, "reading", "voltage")
                flagged[ch] = self.compliance(ch, command, readings[-1].value)
            values[j] = np.mean([r.value for r in readings])
        for ch, _ in self.sources:
            if self.channel(ch).in_compliance():
                trip = self._command(ch, "current_limit_tripped", "compliance_tripped")
                flagged[ch] = self.compliance(ch, trip)
        compliance = np.array([ch in flagged for ch in self.wired], dtype=bool)
        return SmuReading(values, compliance, next(iter(flagged.values()), None))

    def _command(self, channel: str, *quantities: str) -> str:
        """The query of the first of ``quantities`` the channel declares (for messages)."""
        ch = self.channel(channel)
        for name in quantities:
            quantity = getattr(type(ch), name, None)
            if quantity is not None and quantity.get_command:
                return str(quantity.get_command.format(ch=ch.command_id))
        return f"{quantities[0]} of channel {channel}"

    def apply(self, volts: np.ndarray, amps: np.ndarray) -> None:
        """Set the levels and wait until they are applied."""
        self.finish_apply(self.send_apply(volts, amps))

    def make_safe(self) -> None:
        """Every channel's output off, levels 0, voltage function, each output read back
        (:meth:`drivers.smu.Smu.safe_state`: every channel is tried whatever fails).

        Raises
        ------
        InstrumentError
            Naming every channel whose output could not be confirmed off, and why.
        """
        result = self.smu.safe_state()
        if not result.confirmed:
            raise InstrumentError(self.name, "safe state", f"not confirmed: {result.words()}")


class TspPort(SmuPort):
    """A 2600-series SMU: one TSP line sets every channel, one measures every channel."""

    def _expression(self, channel: str, quantity: str) -> str:
        """The TSP expression a driver quantity prints, e.g. ``smua.measure.v()``."""
        ch = self.channel(channel)
        command = getattr(type(ch), quantity).get_command.format(ch=ch.command_id)
        m = re.fullmatch(r"print\((.*)\)", command)
        assert m is not None, command
        return m.group(1)

    def send_apply(self, volts: np.ndarray, amps: np.ndarray) -> str:
        """Write one line: every level (checked by the driver's validators first) and
        ``print(errorqueue.count)``, whose reply confirms the line ran."""
        parts = [
            self.channel(ch).quantity("voltage_setpoint").command_for(self.channel(ch), float(v))
            for (ch, _), v in zip(self.sources, volts, strict=True)
        ]
        parts += [
            self.channel(ch).quantity("current_setpoint").command_for(self.channel(ch), float(i))
            for (ch, _), i in zip(self.senses, amps, strict=True)
        ]
        count = type(self.smu).error_count.get_command  # type: ignore[attr-defined]
        line = "; ".join([*parts, count])
        self.smu.send_query(line)  # a query: stale input is discarded first
        return line

    def finish_apply(self, sent: str) -> None:
        """Read the error count; fetch the errors if there are any."""
        reply = self.smu.read(sent)
        try:
            n_errors = int(float(reply))
        except ValueError as exc:
            self.smu.desync(f"unexpected reply {reply!r} to the levels line")
            raise InstrumentError(
                self.name, short(sent), f"unexpected reply {short(reply)!r}"
            ) from exc
        if n_errors:
            self.check_errors(sent)

    def send_read(self, repeats: int) -> str:
        """Write one line printing ``repeats`` voltage readings of every sense channel, then
        every wired channel's compliance flag."""
        exprs = [self._expression(ch, "voltage") for ch, _ in self.senses for _ in range(repeats)]
        exprs += [self._expression(ch, "compliance_tripped") for ch in self.wired]
        line = f"print({', '.join(exprs)})"
        self.smu.send_query(line)
        return line

    def finish_read(self, sent: str, repeats: int) -> SmuReading:
        """Parse the readings and every wired channel's compliance flag; the fault is the
        first flagged channel in ``wired`` order."""
        reply = self.smu.read(sent)
        fields = reply.split("\t")
        n_values = len(self.senses) * repeats
        if len(fields) != n_values + len(self.wired):
            # the reply of another line (a late one): the right one may still be coming
            want = n_values + len(self.wired)
            self.smu.desync(f"{len(fields)} fields instead of {want} to the measuring line")
            raise InstrumentError(
                self.name,
                short(sent),
                f"expected {want} tab-separated fields, got {short(reply)!r}",
            )
        try:
            values = np.array([float(f) for f in fields[:n_values]])
            flags = [parse_bool(f) for f in fields[n_values:]]
        except ValueError as exc:
            self.smu.desync(f"unexpected reply {reply!r} to the measuring line")
            raise InstrumentError(
                self.name, short(sent), f"unexpected reply {short(reply)!r}"
            ) from exc
        compliance = np.array(flags, dtype=bool)
        first = next((ch for ch, flag in zip(self.wired, flags, strict=True) if flag), None)
        fault = None if first is None else self.compliance(first, sent)
        return SmuReading(values.reshape(len(self.senses), repeats).mean(axis=1), compliance, fault)


T = TypeVar("T")
R = TypeVar("R")


def overlapped(
    ports: Sequence[SmuPort],
    send: Callable[[SmuPort], T],
    finish: Callable[[SmuPort, T], R],
) -> list[R]:
    """Send to every port, then finish every port that was sent to (so that no reply is
    left unread), then raise the first error, if any."""
    sent: list[tuple[SmuPort, T]] = []
    error: BaseException | None = None
    for port in ports:
        try:
            sent.append((port, send(port)))
        except (InstrumentError, SafetyError) as exc:
            error = exc
            break
    results = []
    for port, token in sent:
        try:
            results.append(finish(port, token))
        except InstrumentError as exc:
            error = error or exc
    if error is not None:
        raise error
    return results
