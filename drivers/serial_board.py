"""Driver for the XBAR DAC/ADC and crossbar-programming board over a serial line.

The protocol is documented in ``docs/serial-board-protocol.md``. Every argument is checked
against the capabilities the board reported at connect before anything is sent; an ``ERR``
reply, a timeout or a lost port raises ``InstrumentError``.

Pulses are the one thing a host must never lose count of, so :meth:`SerialBoard.pulse_many`
fills in a :class:`PulseTally` as the board confirms each line: how many entries it
delivered in full, how many pulses of the entry a fault cut short (``ERR ... completed=<k>
partial=<p>``), and how many entries are uncertain (sent, but never answered for). A failed
line raises :class:`PulseError`, an ``InstrumentError`` carrying the tally; a Ctrl-C while a
line is out waits (at most ``timeout``) for its reply before re-raising, to learn its count.
"""

from __future__ import annotations

import logging
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import serial

from hil.errors import InstrumentError, SafetyError
from hil.vocabulary import DEFAULT_BOARD_MODEL, PULSE_SCHEMES, BoardMode, PulseScheme

log = logging.getLogger(__name__)

_MODES: tuple[BoardMode, ...] = get_args(BoardMode)

#: ``ERR <code> completed=<k> partial=<p> <message>``: a pulse command cut short.
_CUT_SHORT = re.compile(r"ERR (\d+) completed=(\d+)(?: partial=(\d+))?(?: |$)")

#: Error codes after which the board has changed nothing (it validates a command in full
#: before applying any of it).
_NOTHING_DONE = frozenset(range(100, 106))


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
    """Reply to ``CAP?``: channel counts and inclusive (lo, hi) ranges in V, s or counts."""

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
        )
        counts = (caps.n_dac, caps.n_adc, caps.adc_bits, caps.rows, caps.cols, caps.max_line)
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


class _NotSent(InstrumentError):
    """The command was refused before a byte of it left the host."""


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
        Longest wait for one reply line (s).
    models : sequence of str
        Models this driver accepts at connect.

    Attributes
    ----------
    commands_sent : int
        Command lines written to the port since construction.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "board",
        baudrate: int = 115200,
        timeout: float = 1.0,
        models: Sequence[str] = (DEFAULT_BOARD_MODEL,),
    ) -> None:
        self.url, self.name, self.baudrate, self.timeout = url, name, baudrate, timeout
        self.models = tuple(models)
        self.commands_sent = 0
        self._port: serial.SerialBase | None = None
        self._identity: BoardIdentity | None = None
        self._caps: BoardCapabilities | None = None
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------
    def open(self) -> SerialBoard:
        """Open the port, identify the board and read its capabilities; returns ``self``."""
        try:
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=self.timeout, write_timeout=self.timeout
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InstrumentError(self.name, "open", f"cannot open {self.url!r}: {exc}") from exc
        try:
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
            self._identity = identity
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the port (no command is sent; call ``safe_state`` first)."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.warning("%s: closing %s failed: %s", self.name, self.url, exc)

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
            if chunk and len(head) + len(",".join([*chunk, item])) > self.capabilities.max_line:
                self._pulse_line(head + ",".join(chunk), len(chunk), tally)
                chunk = []
            chunk.append(item)
        self._pulse_line(head + ",".join(chunk), len(chunk), tally)
        return tally

    def _pulse_line(self, command: str, n: int, tally: PulseTally) -> None:
        """Send one ``PULSE:MANY`` line of the ``n`` entries after ``tally.completed``; on
        return they are completed, on any exception ``tally`` says what they got."""

        def interrupted(reply: str | None) -> None:
            if reply is None:
                tally.uncertain = n
                return
            try:
                self._count_reply(command, reply, n, tally)
            except InstrumentError as exc:  # the interrupt goes on; the error is known now
                log.error("%s: %s", self.name, exc)

        try:
            reply = self._exchange(command, interrupted)
        except _NotSent as exc:
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

    # -- safety ---------------------------------------------------------------------------
    def abort(self) -> None:
        """All DACs and crossbar lines to 0 V, mode idle. Raises InstrumentError on failure."""
        self._query("ABORT", expect="ABORT")

    def safe_state(self) -> None:
        """``abort()`` that never raises: a failure (e.g. the port is gone) is logged."""
        try:
            self.abort()
        except InstrumentError as exc:
            log.error("%s: could not reach the safe state: %s", self.name, exc)

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

    def _read_line(self, port: serial.SerialBase, raw: bytearray) -> bytes:
        """One reply line, read into ``raw`` in chunks (``read_until`` reads a byte per call,
        which makes an 800-byte ``ADC:READ`` reply cost 800 system calls); ends early on
        timeout. ``raw`` keeps what arrived if the read is interrupted."""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in raw:  # (an interrupted read may have got the whole line already)
            chunk = port.read(max(1, port.in_waiting))
            raw += chunk
            if b"\n" not in raw and (not chunk or time.monotonic() >= deadline):
                return bytes(raw)  # timed out
        return bytes(raw[: raw.index(b"\n") + 1])  # the protocol sends nothing after a reply

    def _drain(self, port: serial.SerialBase, raw: bytearray) -> str | None:
        """After an interrupt: the rest of the reply line begun in ``raw`` (at most
        ``timeout`` more), stripped, or None when it does not come whole."""
        try:
            line = self._read_line(port, raw)
        except (KeyboardInterrupt, serial.SerialException, OSError):
            return None  # a second Ctrl-C, or the port went: give up on it
        if not line.endswith(b"\n"):
            return None
        return line.decode("ascii", "replace").strip()

    def _exchange(
        self, command: str, interrupted: Callable[[str | None], None] | None = None
    ) -> str:
        """Send one command line and return its reply line, stripped.

        Parameters
        ----------
        command : str
        interrupted : callable, optional
            On a KeyboardInterrupt after the line was (perhaps partly) written, called with
            the reply drained from the port (None when it did not come) before re-raising.

        Raises
        ------
        InstrumentError
            No reply within ``timeout``, or the port failed (``_NotSent`` when the port was
            closed, so nothing was sent).
        """
        line = (command + "\n").encode("ascii")
        if self._caps is not None and len(line) - 1 > self._caps.max_line:
            raise ValueError(
                f"{self.name}: command of {len(line) - 1} bytes exceeds MAX_LINE "
                f"{self._caps.max_line}; nothing sent"
            )
        raw = bytearray()
        with self._lock:
            port = self._port
            if port is None or not port.is_open:
                raise _NotSent(self.name, command, "port is closed")
            writing = False
            try:
                if port.in_waiting:  # a late reply to a command that timed out
                    port.read(port.in_waiting)
                writing = True
                port.write(line)
                self.commands_sent += 1
                reply = self._read_line(port, raw)
            except KeyboardInterrupt:
                if writing and interrupted is not None:
                    interrupted(self._drain(port, raw))
                raise
            except (serial.SerialException, OSError) as exc:
                raise InstrumentError(self.name, command, f"port failed: {exc}") from exc
        if not reply.endswith(b"\n"):
            got = f" (partial {reply!r})" if reply else ""
            raise InstrumentError(self.name, command, f"no reply within {self.timeout} s{got}")
        return reply.decode("ascii", "replace").strip()

    def _query(self, command: str, expect: str | None = None) -> str:
        """Send one command line and return the reply's payload after ``OK``."""
        reply = self._exchange(command)
        if reply.startswith("ERR"):
            raise InstrumentError(self.name, command, reply)
        if reply != "OK" and not reply.startswith("OK "):
            raise InstrumentError(self.name, command, f"unexpected reply {reply!r}")
        payload = reply[3:]
        if expect is not None and payload != expect:
            raise InstrumentError(self.name, command, f"expected 'OK {expect}', got {reply!r}")
        return payload


def _code(reply: str) -> int | None:
    """The code of an ``ERR <code> ...`` reply (None when it has none)."""
    fields = reply.split(maxsplit=2)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
