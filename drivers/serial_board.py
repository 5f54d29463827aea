"""Driver for the XBAR DAC/ADC and crossbar-programming board over a serial line.

The protocol is documented in ``docs/serial-board-protocol.md``. Every argument is checked
against the capabilities the board reported at connect before anything is sent; an ``ERR``
reply, a timeout or a lost port raises ``InstrumentError``.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import serial

from hil.errors import InstrumentError, SafetyError
from hil.vocabulary import DEFAULT_BOARD_MODEL, PULSE_SCHEMES, BoardMode, PulseScheme

log = logging.getLogger(__name__)

_MODES: tuple[BoardMode, ...] = get_args(BoardMode)


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
    ) -> None:
        """Pulse many devices, in order, with as few command lines as ``MAX_LINE`` allows.

        Parameters
        ----------
        pulses : iterable of (row, col, amplitude, count)
            Amplitude in V (signed), count of pulses per device.
        width : float
            Pulse width (s), common to all.
        scheme : {"V/2", "V/3"}
            Biasing of the unselected lines, common to all.
        """
        entries = list(pulses)
        if not entries:
            raise ValueError(f"{self.name}: pulse_many needs at least one pulse")
        self._check_width_scheme(width, scheme)
        for row, col, amplitude, count in entries:
            self._check_pulse(row, col, amplitude, count)
        head = f"PULSE:MANY {float(width)!r} {scheme} "
        chunk: list[str] = []
        for row, col, amplitude, count in entries:
            item = f"{row}:{col}:{float(amplitude)!r}:{count}"
            if chunk and len(head) + len(",".join([*chunk, item])) > self.capabilities.max_line:
                self._query(head + ",".join(chunk), expect=f"PULSE:MANY {len(chunk)}")
                chunk = []
            chunk.append(item)
        self._query(head + ",".join(chunk), expect=f"PULSE:MANY {len(chunk)}")

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

    def _read_line(self, port: serial.SerialBase) -> bytes:
        """One reply line, read in chunks (``read_until`` reads a byte per call, which makes
        an 800-byte ``ADC:READ`` reply cost 800 system calls); ends early on timeout."""
        deadline = time.monotonic() + self.timeout
        raw = bytearray()
        while True:
            chunk = port.read(max(1, port.in_waiting))
            raw += chunk
            end = raw.find(b"\n")
            if end >= 0:
                return bytes(raw[: end + 1])  # the protocol sends nothing after a reply
            if not chunk or time.monotonic() >= deadline:
                return bytes(raw)

    def _query(self, command: str, expect: str | None = None) -> str:
        """Send one command line and return the reply's payload after ``OK``."""
        line = (command + "\n").encode("ascii")
        if self._caps is not None and len(line) - 1 > self._caps.max_line:
            raise ValueError(
                f"{self.name}: command of {len(line) - 1} bytes exceeds MAX_LINE "
                f"{self._caps.max_line}; nothing sent"
            )
        with self._lock:
            port = self._port
            if port is None or not port.is_open:
                raise InstrumentError(self.name, command, "port is closed")
            try:
                if port.in_waiting:  # a late reply to a command that timed out
                    port.read(port.in_waiting)
                port.write(line)
                self.commands_sent += 1
                raw = self._read_line(port)
            except (serial.SerialException, OSError) as exc:
                raise InstrumentError(self.name, command, f"port failed: {exc}") from exc
        if not raw.endswith(b"\n"):
            got = f" (partial {raw!r})" if raw else ""
            raise InstrumentError(self.name, command, f"no reply within {self.timeout} s{got}")
        reply = raw.decode("ascii", "replace").strip()
        if reply.startswith("ERR"):
            raise InstrumentError(self.name, command, reply)
        if reply != "OK" and not reply.startswith("OK "):
            raise InstrumentError(self.name, command, f"unexpected reply {reply!r}")
        payload = reply[3:]
        if expect is not None and payload != expect:
            raise InstrumentError(self.name, command, f"expected 'OK {expect}', got {reply!r}")
        return payload
