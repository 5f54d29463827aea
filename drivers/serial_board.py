"""Driver for the XBAR DAC/ADC and crossbar-programming board over a serial line.

The protocol is documented in ``docs/serial-board-protocol.md``. The line itself (exclusive
open, resync, version negotiation, version-2 frames with sequence numbers and CRC, the
watchdog's keepalive) is :class:`drivers.board_link.BoardLink`'s; this module speaks the
commands. Every argument is checked against the capabilities the board reported at connect
before anything is sent; an ``ERR`` reply, a timeout or a lost port raises
``InstrumentError``.

Pulses are the one thing a host must never lose count of, so :meth:`SerialBoard.pulse_many`
fills in a :class:`PulseTally` as the board confirms each line: how many entries it
delivered in full, how many pulses of the entry a fault or an ``ABORT`` cut short (``ERR ...
completed=<k> partial=<p>``), and how many entries are uncertain (sent, but never answered
for). A failed line raises :class:`PulseError`, an ``InstrumentError`` carrying the tally; a
Ctrl-C while a line is out waits (at most ``timeout``) for its reply before re-raising, to
learn its count.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np

from hil.errors import InstrumentError, SafetyError
from hil.vocabulary import DEFAULT_BOARD_MODEL, PULSE_SCHEMES, BoardMode, PulseScheme

from . import board_protocol
from .board_link import BoardLink, NotSent

log = logging.getLogger(__name__)

_MODES: tuple[BoardMode, ...] = get_args(BoardMode)

#: ``ERR <code> completed=<k> partial=<p> <message>``: a pulse command cut short.
_CUT_SHORT = re.compile(r"ERR (\d+) completed=(\d+)(?: partial=(\d+))?(?: |$)")

#: Error codes after which the board has changed nothing (it validates a command in full
#: before applying any of it; 120: it could not read the line).
_NOTHING_DONE = frozenset([*range(100, 106), 120])

#: Unrequested devices a bulk read may span between two requested ones of a row: reading
#: one costs about 16 bytes of reply, a command of its own about 50.
READ_GAP = 3


@dataclass(frozen=True)
class BoardIdentity:
    """Reply to ``*IDN?``."""

    maker: str
    model: str
    serial: str
    firmware: str


@dataclass(frozen=True)
class AdcReading:
    """Reply to one ``ADC:READ``: the values, and the channels that overflowed.

    Attributes
    ----------
    channels : tuple of int
        The channels read, in the order asked (they may repeat).
    values : ndarray, shape (len(channels),)
        Readings (V); an overflowed reading is the ADC range end, not the input.
    overflow : tuple of int
        Channels the board listed after ``OVR=`` (sorted, each once): their input was outside
        the ADC range in at least one of their readings.
    """

    channels: tuple[int, ...]
    values: np.ndarray
    overflow: tuple[int, ...] = ()

    @property
    def overflowed(self) -> np.ndarray:
        """Bool mask of shape (len(channels),): the reading's channel overflowed.

        The protocol names channels, not readings, so every reading of a channel listed
        after ``OVR=`` is flagged.
        """
        return np.isin(np.asarray(self.channels, dtype=int), self.overflow)


@dataclass(frozen=True)
class BoardCapabilities:
    """Reply to ``CAP?``: channel counts and inclusive (lo, hi) ranges in V, s or counts.

    ``read_n`` (most devices per bulk read) and ``watchdog_range`` (s) are reported by a
    board speaking protocol version 2; None otherwise.
    """

    n_dac: int
    dac_range: tuple[float, float]
    n_adc: int
    adc_range: tuple[float, float]
    adc_bits: int
    rows: int
    cols: int
    pulse_amplitude: tuple[float, float]
    pulse_width: tuple[float, float]
    pulse_count: tuple[int, int]
    read_voltage: tuple[float, float]
    max_line: int
    read_n: int | None = None
    watchdog_range: tuple[float, float] | None = None

    @classmethod
    def parse(cls, payload: str) -> BoardCapabilities:
        """Build from ``KEY=value`` tokens; unknown keys are ignored. Raises ValueError."""
        fields = dict(token.split("=", 1) for token in payload.split() if "=" in token)

        def pair(key: str) -> tuple[float, float]:
            lo, hi = (float(x) for x in fields[key].split(","))
            if not lo < hi:
                raise ValueError(f"{key} range {lo:g},{hi:g} is empty")
            return lo, hi

        caps = cls(
            n_dac=int(fields["DAC"]),
            dac_range=pair("DAC_V"),
            n_adc=int(fields["ADC"]),
            adc_range=pair("ADC_V"),
            adc_bits=int(fields["ADC_BITS"]),
            rows=int(fields["ROWS"]),
            cols=int(fields["COLS"]),
            pulse_amplitude=pair("PULSE_V"),
            pulse_width=pair("PULSE_W"),
            pulse_count=tuple(int(x) for x in fields["PULSE_N"].split(",")),  # type: ignore[arg-type]
            read_voltage=pair("READ_V"),
            max_line=int(fields["MAX_LINE"]),
            read_n=int(fields["READ_N"]) if "READ_N" in fields else None,
            watchdog_range=pair("WATCHDOG_S") if "WATCHDOG_S" in fields else None,
        )
        counts = [caps.n_dac, caps.n_adc, caps.adc_bits, caps.rows, caps.cols, caps.max_line]
        if caps.read_n is not None:
            counts.append(caps.read_n)
        if min(counts) < 1 or len(caps.pulse_count) != 2 or caps.pulse_count[0] < 1:
            raise ValueError(f"implausible capabilities {payload!r}")
        return caps


@dataclass
class PulseTally:
    """How far a :meth:`SerialBoard.pulse_many` got, filled in as the board answers.

    Entries are counted from the start of the list given to ``pulse_many``, in its order,
    so that the caller can credit each device exactly what it received, whatever stopped
    the call (an error reply, a timeout, Ctrl-C).

    Attributes
    ----------
    counts : tuple of int
        Pulses asked for per entry (set by ``pulse_many`` once the arguments are checked).
    completed : int
        Leading entries the board confirmed delivered in full.
    partial : int
        Pulses of entry ``completed`` the board reported delivered before it stopped
        (0 when no entry was cut short).
    uncertain : int
        Entries after those that were sent in a line whose outcome is unknown (no reply, a
        lost port, a reply that does not say how far the board got): they may or may not
        have been delivered.
    """

    counts: tuple[int, ...] = ()
    completed: int = 0
    partial: int = 0
    uncertain: int = 0

    @property
    def done(self) -> bool:
        """Every entry confirmed delivered."""
        return self.completed == len(self.counts)

    def delivered(self) -> np.ndarray:
        """Pulses known delivered per entry, shape (len(counts),), int64."""
        out = np.zeros(len(self.counts), dtype=np.int64)
        out[: self.completed] = self.counts[: self.completed]
        if self.partial:
            out[self.completed] = self.partial
        return out

    @property
    def pulses_delivered(self) -> int:
        """Pulses known delivered, over all entries."""
        return sum(self.counts[: self.completed]) + self.partial

    @property
    def pulses_uncertain(self) -> int:
        """Pulses of the uncertain entries."""
        return sum(self.counts[self.completed : self.completed + self.uncertain])

    def words(self) -> str:
        """E.g. ``3 of 5 devices pulsed in full (+2 of 7 pulses to the next), 17 of 40
        pulses delivered``, then ``; 2 device(s) (9 pulses) uncertain: ...`` if any are."""
        n = len(self.counts)
        text = f"{self.completed} of {n} devices pulsed in full"
        if self.partial:
            text += f" (+{self.partial} of {self.counts[self.completed]} pulses to the next)"
        text += f", {self.pulses_delivered} of {sum(self.counts)} pulses delivered"
        if self.uncertain:
            text += (
                f"; {self.uncertain} device(s) ({self.pulses_uncertain} pulses) uncertain: "
                "the board did not say whether it pulsed them"
            )
        return text


class PulseError(InstrumentError):
    """A ``pulse_many`` line failed; ``tally`` says exactly what was delivered before.

    Parameters
    ----------
    instrument, command, reason : str
        As for :class:`~hil.errors.InstrumentError`; the reason ends with the tally's words.
    tally : PulseTally
    """

    def __init__(self, instrument: str, command: str, reason: str, tally: PulseTally) -> None:
        super().__init__(instrument, command, f"{reason}; {tally.words()}")
        self.tally = tally


class SerialBoard:
    """One XBAR board on a serial port.

    Parameters
    ----------
    url : str
        Anything ``serial.serial_for_url`` opens: ``/dev/ttyUSB0``, a pty path such as
        ``BoardServer.port``, ``loop://``, ``socket://host:port``.
    name : str
        Instrument name used in every error message.
    baudrate : int
        Line speed (baud).
    timeout : float
        Longest wait for one reply line (s); a ``PULSE:MANY`` line is also given the time of
        its pulses (``count * (width + pulse_allowance)``).
    pulse_allowance : float
        Time (s) one pulse may take on the board beyond its width (switching the crossbar,
        settling), allowed for when waiting for a ``PULSE:MANY`` reply.
    models : sequence of str
        Models this driver accepts at connect.
    protocol : int, optional
        Protocol version to speak: 1 or 2; default the newest the board offers.
    watchdog : float, optional
        Arm the board's watchdog at connect (protocol 2): after this many seconds without a
        line from the host the board goes to its safe state. The driver then pings the board
        whenever it has sent nothing for a quarter of it. Default: off.

    Attributes
    ----------
    requested_protocol : int or None
    watchdog : float or None
        As given.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "board",
        baudrate: int = 115200,
        timeout: float = 1.0,
        models: Sequence[str] = (DEFAULT_BOARD_MODEL,),
        protocol: int | None = None,
        watchdog: float | None = None,
        pulse_allowance: float = 1e-4,
    ) -> None:
        if protocol is not None and protocol not in board_protocol.VERSIONS:
            raise ValueError(f"{name}: protocol must be one of {board_protocol.VERSIONS}")
        if watchdog is not None and not watchdog > 0:
            raise ValueError(f"{name}: watchdog must be > 0 s, got {watchdog}")
        if not 0 <= pulse_allowance <= 1:  # (NaN fails too)
            raise ValueError(f"{name}: pulse_allowance must be in [0, 1] s, got {pulse_allowance}")
        self.pulse_allowance = float(pulse_allowance)
        self.url, self.name, self.baudrate, self.timeout = url, name, baudrate, timeout
        self.models = tuple(models)
        self.requested_protocol = protocol
        self.watchdog = watchdog
        self._link = BoardLink(url, name=name, baudrate=baudrate, timeout=timeout)
        self._identity: BoardIdentity | None = None
        self._caps: BoardCapabilities | None = None
        self._offered: tuple[int, ...] = ()
        self._watchdog_armed: float | None = None

    # -- connection -----------------------------------------------------------------------
    def open(self) -> SerialBoard:
        """Open the port (exclusively), resync it, agree on the protocol version, identify
        the board, read its capabilities and arm its watchdog; returns ``self``."""
        self._identity = self._caps = None
        self._watchdog_armed = None
        self._link.open()
        try:
            self._offered = self._link.negotiate(self.requested_protocol)
            fields = [f.strip() for f in self._query("*IDN?").split(",")]
            if len(fields) != 4:
                raise InstrumentError(self.name, "*IDN?", f"malformed identity {fields!r}")
            identity = BoardIdentity(*fields)
            if identity.model not in self.models:
                known = ", ".join(self.models)
                raise InstrumentError(
                    self.name, "*IDN?", f"model {identity.model!r} is not one of: {known}"
                )
            payload = self._query("CAP?")
            try:
                self._caps = BoardCapabilities.parse(payload)
            except (KeyError, ValueError) as exc:
                raise InstrumentError(self.name, "CAP?", f"bad capabilities: {exc}") from exc
            self._link.max_line = self._caps.max_line
            self._identity = identity
            self._arm_watchdog()
        except BaseException:
            self.close()
            raise
        return self

    def _arm_watchdog(self) -> None:
        if self.watchdog is None:
            return
        caps = self.capabilities
        if self.protocol < 2 or caps.watchdog_range is None:
            log.warning(
                "%s: the board speaks protocol %d and has no watchdog: nothing makes it safe "
                "if this host dies",
                self.name,
                self.protocol,
            )
            return
        lo, hi = caps.watchdog_range
        if not lo <= self.watchdog <= hi:
            raise InstrumentError(
                self.name,
                "WATCHDOG",
                f"watchdog {self.watchdog:g} s out of the board's range [{lo:g}, {hi:g}] s",
            )
        command = f"WATCHDOG {float(self.watchdog)!r}"
        payload = self._query(command)
        armed = payload.removeprefix("WATCHDOG ")
        try:
            ok = math.isclose(float(armed), self.watchdog, rel_tol=1e-9)
        except ValueError:
            ok = False
        if not payload.startswith("WATCHDOG ") or not ok:
            raise InstrumentError(self.name, command, f"unexpected reply 'OK {payload}'")
        self._watchdog_armed = self.watchdog
        self._link.keep_alive(self.watchdog / 4)

    def close(self) -> None:
        """Close the port (no command is sent; call ``safe_state`` first). An armed
        watchdog stays armed: the board goes safe by itself if nothing follows."""
        self._link.close()

    def __enter__(self) -> SerialBoard:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.safe_state()
        self.close()

    @property
    def identity(self) -> BoardIdentity:
        """What ``*IDN?`` answered at connect."""
        if self._identity is None:
            raise InstrumentError(self.name, "", "not connected; call open() first")
        return self._identity

    @property
    def capabilities(self) -> BoardCapabilities:
        """What ``CAP?`` answered at connect."""
        if self._caps is None:
            raise InstrumentError(self.name, "", "not connected; call open() first")
        return self._caps

    @property
    def protocol(self) -> int:
        """The protocol version spoken (agreed at connect)."""
        return self._link.protocol

    @property
    def offered_protocols(self) -> tuple[int, ...]:
        """The versions the board offered at connect (``(1,)``: firmware before version 2)."""
        return self._offered

    @property
    def watchdog_armed(self) -> float | None:
        """The watchdog timeout (s) the board confirmed at connect; None: not armed."""
        return self._watchdog_armed

    @property
    def max_command(self) -> int:
        """Longest command text (bytes) one line can carry: ``MAX_LINE`` less the frame."""
        frame = board_protocol.FRAME_OVERHEAD if self.protocol >= 2 else 0
        return self.capabilities.max_line - frame

    @property
    def commands_sent(self) -> int:
        """Command lines written to the port since construction (keepalives apart)."""
        return self._link.commands_sent

    @property
    def pings_sent(self) -> int:
        """Keepalive ``PING`` lines written."""
        return self._link.pings_sent

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the port (at 10 bits a byte, the wire time is 10 x this / baud)."""
        return self._link.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes read from the port."""
        return self._link.bytes_received

    @property
    def stale_replies(self) -> int:
        """Late replies (to earlier commands) recognised and discarded (protocol 2)."""
        return self._link.stale_replies

    @property
    def frame_retries(self) -> int:
        """Commands sent again because the board refused them as corrupted (protocol 2)."""
        return self._link.frame_retries

    # -- network mode ---------------------------------------------------------------------
    def set_dacs(self, values: Mapping[int, float] | Sequence[float] | np.ndarray) -> None:
        """Set many DAC outputs (V) in one command.

        Parameters
        ----------
        values : mapping or array_like
            ``{channel: volts}``, or a 1-D array of shape (n,) for channels 0..n-1.
        """
        caps = self.capabilities
        if isinstance(values, Mapping):
            items = [(operator.index(ch), float(v)) for ch, v in values.items()]
        else:
            array = np.asarray(values, dtype=float)
            if array.ndim != 1:
                raise ValueError(f"{self.name}: DAC values must be 1-D, got shape {array.shape}")
            items = list(enumerate(array.tolist()))
        if not items:
            raise ValueError(f"{self.name}: set_dacs needs at least one channel")
        for ch, v in items:
            self._check_index("DAC channel", ch, caps.n_dac)
            self._check_range(f"DAC channel {ch} voltage", v, caps.dac_range, "V")
        command = "DAC:SET " + ",".join(f"{ch}:{v!r}" for ch, v in items)
        self._query(command, expect=f"DAC:SET {len(items)}")

    def read_adcs(self, channels: Sequence[int] | None = None) -> AdcReading:
        """Read ADC channels (V) in one command, default all.

        An overflow is data, not an error (the protocol's view): a reading outside the ADC
        range comes back as the range end, and its channel in :attr:`AdcReading.overflow`.
        """
        caps = self.capabilities
        chans = (
            list(range(caps.n_adc)) if channels is None else [operator.index(c) for c in channels]
        )
        if not chans:
            raise ValueError(f"{self.name}: read_adcs needs at least one channel")
        for ch in chans:
            self._check_index("ADC channel", ch, caps.n_adc)
        command = "ADC:READ " + ",".join(str(ch) for ch in chans)
        values, _, overflow = self._query(command).partition(" OVR=")
        result = self._floats(command, values, len(chans))
        over = sorted({int(c) for c in self._floats(command, overflow, None)})
        return AdcReading(tuple(chans), result, tuple(over))

    def read_dacs(self) -> np.ndarray:
        """DAC setpoints (V) as the board holds them, shape (n_dac,)."""
        return self._floats("DAC?", self._query("DAC?"), self.capabilities.n_dac)

    # -- modes ----------------------------------------------------------------------------
    def mode(self, mode: BoardMode) -> None:
        """Switch to ``"idle"``, ``"network"`` or ``"programming"``; DACs go to 0 V on a change."""
        if mode not in _MODES:
            raise ValueError(f"{self.name}: mode must be one of {_MODES}, got {mode!r}")
        self._query(f"MODE {mode.upper()}", expect=f"MODE {mode.upper()}")

    def read_mode(self) -> BoardMode:
        """The board's current mode."""
        return self._query("MODE?").lower()  # type: ignore[return-value]

    # -- programming mode -----------------------------------------------------------------
    def pulse(
        self,
        row: int,
        col: int,
        amplitude: float,
        width: float,
        count: int = 1,
        scheme: PulseScheme = "V/3",
    ) -> None:
        """Apply ``count`` pulses of ``amplitude`` (V, signed) and ``width`` (s) to one device.

        Positive amplitudes raise the conductance, negative ones lower it. ``scheme`` biases
        the other lines at 0 V (``"V/2"``: half-selected devices see amplitude/2) or at thirds
        (``"V/3"``: every unselected device sees amplitude/3).
        """
        self._check_pulse(row, col, amplitude, count)
        self._check_width_scheme(width, scheme)
        command = f"PULSE {row} {col} {float(amplitude)!r} {float(width)!r} {count} {scheme}"
        self._query(command, expect=f"PULSE {row} {col} {count}")

    def pulse_many(
        self,
        pulses: Iterable[tuple[int, int, float, int]],
        width: float,
        scheme: PulseScheme = "V/3",
        *,
        tally: PulseTally | None = None,
    ) -> PulseTally:
        """Pulse many devices, in order, with as few command lines as ``MAX_LINE`` allows.

        Parameters
        ----------
        pulses : iterable of (row, col, amplitude, count)
            Amplitude in V (signed), count of pulses per device.
        width : float
            Pulse width (s), common to all.
        scheme : {"V/2", "V/3"}
            Biasing of the unselected lines, common to all.
        tally : PulseTally, optional
            Filled in as the board confirms each line (reset first), so that a caller
            learns what was delivered however the call ends; default a new one.

        Returns
        -------
        PulseTally
            ``tally``, every entry completed.

        Raises
        ------
        PulseError
            A line failed (error reply, timeout, lost port); its ``tally`` says how many
            entries were delivered, cut short or left uncertain. Later lines are not sent.
        KeyboardInterrupt
            Re-raised after waiting (at most ``timeout``) for the reply of the line in
            flight, whose outcome is then in ``tally``.
        """
        entries = list(pulses)
        if not entries:
            raise ValueError(f"{self.name}: pulse_many needs at least one pulse")
        self._check_width_scheme(width, scheme)
        for row, col, amplitude, count in entries:
            self._check_pulse(row, col, amplitude, count)
        tally = PulseTally() if tally is None else tally
        tally.counts = tuple(int(count) for *_, count in entries)
        tally.completed = tally.partial = tally.uncertain = 0
        head = f"PULSE:MANY {float(width)!r} {scheme} "
        chunk: list[str] = []
        for row, col, amplitude, count in entries:
            item = f"{row}:{col}:{float(amplitude)!r}:{count}"
            if chunk and len(head) + len(",".join([*chunk, item])) > self.max_command:
                self._pulse_line(head + ",".join(chunk), len(chunk), tally, float(width))
                chunk = []
            chunk.append(item)
        self._pulse_line(head + ",".join(chunk), len(chunk), tally, float(width))
        return tally

    def _pulse_line(self, command: str, n: int, tally: PulseTally, width: float) -> None:
        """Send one ``PULSE:MANY`` line of the ``n`` entries after ``tally.completed``; on
        return they are completed, on any exception ``tally`` says what they got. The reply
        is awaited for ``timeout`` plus the line's pulse train (its pulses times ``width +
        pulse_allowance``): a line of long pulses is no timeout."""
        first = tally.completed
        busy = sum(tally.counts[first : first + n]) * (width + self.pulse_allowance)

        def interrupted(reply: str | None) -> None:
            if reply is None:
                tally.uncertain = n
                return
            try:
                self._count_reply(command, reply, n, tally)
            except InstrumentError as exc:  # the interrupt goes on; the error is known now
                log.error("%s: %s", self.name, exc)

        try:
            reply = self._link.exchange(command, interrupted, busy=busy)
        except NotSent as exc:
            raise PulseError(exc.instrument, exc.command, exc.reason, tally) from exc
        except InstrumentError as exc:  # a timeout or a lost port: it may have run
            tally.uncertain = n
            raise PulseError(exc.instrument, exc.command, exc.reason, tally) from exc
        self._count_reply(command, reply, n, tally)

    def _count_reply(self, command: str, reply: str, n: int, tally: PulseTally) -> None:
        """Credit ``tally`` with what the reply to a line of ``n`` entries says was done;
        raise PulseError unless all were."""
        if reply == f"OK PULSE:MANY {n}":
            tally.completed += n
            return
        cut = _CUT_SHORT.match(reply)
        if cut is not None:
            k, p = int(cut[2]), int(cut[3] or 0)
            first = tally.completed
            if (k < n and p < tally.counts[first + k]) or (k == n and p == 0):
                tally.completed, tally.partial = first + k, p
            else:
                tally.uncertain = n  # an impossible count: trust none of it
                reply += f" (completed={k} partial={p} cannot be: the line had {n} entries)"
        elif reply.startswith("ERR") and _code(reply) in _NOTHING_DONE:
            pass  # validated before anything was applied: nothing of this line ran
        else:
            # an older firmware's ERR 110 (no completed=), an unknown code, an odd OK
            tally.uncertain = n
            if not reply.startswith("ERR"):
                reply = f"expected 'OK PULSE:MANY {n}', got {reply!r}"
        raise PulseError(self.name, command, reply, tally)

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Current (A) through device (row, col) biased at ``v_read`` (V); G = I / v_read."""
        caps = self.capabilities
        self._check_index("row", row, caps.rows)
        self._check_index("column", col, caps.cols)
        self._check_range("read voltage", v_read, caps.read_voltage, "V")
        command = f"READ {row} {col} {float(v_read)!r}"
        return float(self._floats(command, self._query(command), 1)[0])

    def read_block(self, rows: tuple[int, int], cols: tuple[int, int], v_read: float) -> np.ndarray:
        """Currents (A) of every device of a block in one command (protocol 2).

        Parameters
        ----------
        rows, cols : (first, last)
            Inclusive line ranges; at most ``capabilities.read_n`` devices in all.
        v_read : float
            Read bias (V).

        Returns
        -------
        ndarray, shape (last_row - first_row + 1, last_col - first_col + 1)
            Each current as ``READ`` would read it (``READ:ROW`` for one row, else
            ``READ:TILE``).
        """
        caps = self.capabilities
        if self.protocol < 2 or caps.read_n is None:
            raise InstrumentError(
                self.name,
                "READ:TILE",
                f"bulk reads need protocol 2 (the board speaks {self.protocol})",
            )
        (r0, r1), (c0, c1) = rows, cols
        for what, (first, last), n in (("row", rows, caps.rows), ("column", cols, caps.cols)):
            self._check_index(what, first, n)
            self._check_index(what, last, n)
            if last < first:
                raise ValueError(f"{self.name}: {what} range {first}-{last} is empty")
        shape = (r1 - r0 + 1, c1 - c0 + 1)
        if shape[0] * shape[1] > caps.read_n:
            raise ValueError(
                f"{self.name}: a block of {shape[0] * shape[1]} devices exceeds READ_N "
                f"{caps.read_n}"
            )
        self._check_range("read voltage", v_read, caps.read_voltage, "V")
        v = float(v_read)
        command = (
            f"READ:ROW {r0} {c0} {c1} {v!r}" if r0 == r1 else f"READ:TILE {r0} {r1} {c0} {c1} {v!r}"
        )
        return self._floats(command, self._query(command), shape[0] * shape[1]).reshape(shape)

    def read_devices(
        self, rows: Sequence[int] | np.ndarray, cols: Sequence[int] | np.ndarray, v_read: float
    ) -> np.ndarray:
        """Currents (A) through devices ``(rows[k], cols[k])`` biased at ``v_read`` (V).

        In protocol 2 the devices are read in blocks (:func:`plan_reads`: runs of a row,
        rows with the same runs stacked into tiles of at most ``READ_N`` devices), a few
        commands for a whole crossbar; in protocol 1 one ``READ`` each. A block may read
        devices that were not asked for (a small gap in a row): reads do not disturb.

        Returns
        -------
        ndarray, shape (len(rows),)
        """
        r = np.asarray(rows, dtype=np.int64).ravel()
        c = np.asarray(cols, dtype=np.int64).ravel()
        if r.shape != c.shape:
            raise ValueError(f"{self.name}: rows and cols differ in length ({r.size}, {c.size})")
        caps = self.capabilities
        if r.size:
            for what, lines, n in (("row", r, caps.rows), ("column", c, caps.cols)):
                bad = lines[(lines < 0) | (lines >= n)]
                if bad.size:
                    self._check_index(what, int(bad[0]), n)
        self._check_range("read voltage", v_read, caps.read_voltage, "V")
        if self.protocol < 2 or caps.read_n is None:
            pairs = zip(r.tolist(), c.tolist(), strict=True)
            return np.array([self.read_device(i, j, v_read) for i, j in pairs], dtype=float)
        out = np.empty(r.size)
        for (r0, r1), (c0, c1) in plan_reads(r, c, caps.read_n):
            block = self.read_block((r0, r1), (c0, c1), v_read)
            inside = (r0 <= r) & (r <= r1) & (c0 <= c) & (c <= c1)  # blocks do not overlap
            out[inside] = block[r[inside] - r0, c[inside] - c0]
        return out

    # -- safety ---------------------------------------------------------------------------
    def abort(self) -> None:
        """All DACs and crossbar lines to 0 V, mode idle. Raises InstrumentError on failure.

        From another thread while a command is out (protocol 2), the board is told at once
        (:meth:`interrupt`: a pulse batch stops between two pulses and says how far it got),
        then this ``ABORT`` is confirmed once that command has been answered.
        """
        if self._link.busy:
            self.interrupt()
        self._query("ABORT", expect="ABORT")

    def interrupt(self) -> bool:
        """Send ``ABORT`` now, without waiting for the command in flight (protocol 2).

        Returns at once; the ``ABORT``'s own reply is discarded. Returns whether it was
        sent (False in protocol 1, whose board reads nothing while it executes).
        """
        return self._link.send_now("ABORT")

    def safe_state(self) -> None:
        """``abort()`` that never raises: a failure (e.g. the port is gone) is logged."""
        try:
            self.abort()
        except InstrumentError as exc:
            log.error("%s: could not reach the safe state: %s", self.name, exc)

    def ping(self) -> None:
        """``PING`` (protocol 2): feeds the watchdog; raises InstrumentError on failure."""
        self._query("PING", expect="PING")

    # -- internals ------------------------------------------------------------------------
    def _check_index(self, what: str, index: int, n: int) -> None:
        if not 0 <= index < n:
            raise SafetyError(
                f"{self.name}: {what} {index} out of range [0, {n - 1}]; nothing sent"
            )

    def _check_range(self, what: str, value: float, bounds: tuple[float, float], unit: str) -> None:
        lo, hi = bounds
        if not (math.isfinite(value) and lo <= value <= hi):
            raise SafetyError(
                f"{self.name}: {what} {value:g} {unit} out of range [{lo:g}, {hi:g}] {unit}; "
                "nothing sent"
            )

    def _check_pulse(self, row: int, col: int, amplitude: float, count: int) -> None:
        caps = self.capabilities
        self._check_index("row", operator.index(row), caps.rows)
        self._check_index("column", operator.index(col), caps.cols)
        self._check_range("pulse amplitude", amplitude, caps.pulse_amplitude, "V")
        lo, hi = caps.pulse_count
        if not lo <= operator.index(count) <= hi:
            raise SafetyError(
                f"{self.name}: pulse count {count} out of range [{lo}, {hi}]; nothing sent"
            )

    def _check_width_scheme(self, width: float, scheme: str) -> None:
        if scheme not in PULSE_SCHEMES:
            raise ValueError(f"{self.name}: scheme must be one of {PULSE_SCHEMES}, got {scheme!r}")
        self._check_range("pulse width", width, self.capabilities.pulse_width, "s")

    def _floats(self, command: str, payload: str, n: int | None) -> np.ndarray:
        """Parse a comma-separated reply into shape (n,); '' is shape (0,)."""
        try:
            values = np.array([float(v) for v in payload.split(",")] if payload else [])
        except ValueError as exc:
            raise InstrumentError(self.name, command, f"unreadable reply {payload!r}") from exc
        if n is not None and values.shape != (n,):
            raise InstrumentError(self.name, command, f"expected {n} values, got {payload!r}")
        return values

    def _query(self, command: str, expect: str | None = None) -> str:
        """Send one command line and return the reply's payload after ``OK``."""
        reply = self._link.exchange(command)
        if reply.startswith("ERR"):
            raise InstrumentError(self.name, command, reply)
        if reply != "OK" and not reply.startswith("OK "):
            raise InstrumentError(self.name, command, f"unexpected reply {reply!r}")
        payload = reply[3:]
        if expect is not None and payload != expect:
            raise InstrumentError(self.name, command, f"expected 'OK {expect}', got {reply!r}")
        return payload


def plan_reads(
    rows: np.ndarray, cols: np.ndarray, max_devices: int, gap: int = READ_GAP
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The blocks that read every device ``(rows[k], cols[k])`` in few bulk commands.

    Each row's requested columns are cut into runs wherever more than ``gap`` columns in a
    row were not asked for; runs wider than ``max_devices`` are cut to it; consecutive rows
    whose runs span the same columns are stacked while the block holds at most
    ``max_devices`` devices.

    Returns
    -------
    list of ((first_row, last_row), (first_col, last_col))
        Inclusive ranges, each block at most ``max_devices`` devices.
    """
    pairs = np.unique(np.stack([rows, cols], axis=1), axis=0) if len(rows) else np.zeros((0, 2))
    runs: dict[tuple[int, int], list[int]] = {}  # (first col, last col) -> rows
    for row in np.unique(pairs[:, 0]).tolist():
        used = pairs[pairs[:, 0] == row, 1]
        cuts = np.flatnonzero(np.diff(used) > gap + 1) + 1
        for run in np.split(used, cuts):
            for start in range(int(run[0]), int(run[-1]) + 1, max_devices):
                end = min(int(run[-1]), start + max_devices - 1)
                runs.setdefault((start, end), []).append(int(row))
    blocks = []
    for (c0, c1), run_rows in sorted(runs.items()):
        height = max(1, max_devices // (c1 - c0 + 1))
        first = last = run_rows[0]
        for row in [*run_rows[1:], None]:
            if row is not None and row == last + 1 and row - first + 1 <= height:
                last = row
                continue
            blocks.append(((first, last), (c0, c1)))
            if row is not None:
                first = last = row
    return blocks


def _code(reply: str) -> int | None:
    """The code of an ``ERR <code> ...`` reply (None when it has none)."""
    fields = reply.split(maxsplit=2)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
