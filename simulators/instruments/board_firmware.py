"""The XBAR board's firmware, emulated: command parsing, validation, modes, ADC quantisation,
pulse delivery and the watchdog's safe state, all I/O-free.

:class:`Firmware` turns one command text into one reply text (``docs/serial-board-protocol.md``);
the transport (pty, framing, timing) is :class:`~simulators.instruments.board_server.BoardServer`'s.
A board whose :attr:`BoardSpec.protocol` is 1 is the firmware before version 2: no
``PROTO``, no bulk reads, no watchdog, and an ``ABORT`` waits for the command before it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast, get_args

from hil.vocabulary import DEFAULT_BOARD_MODEL, PULSE_SCHEMES, BoardMode, PulseScheme
from simulators.instruments.board_backends import BoardBackend

#: The modes as the protocol spells them (``MODE NETWORK``).
MODES: tuple[str, ...] = tuple(mode.upper() for mode in get_args(BoardMode))

#: Highest protocol version this emulator can speak.
NEWEST_PROTOCOL = 2


@dataclass(frozen=True)
class BoardSpec:
    """Identity and limits the emulated board reports (``*IDN?``, ``CAP?``, ``PROTO?``).

    ``protocol`` is the newest protocol version its firmware speaks (1: a board from
    before version 2); ``read_n`` and ``watchdog_range`` are version-2 capabilities.
    """

    maker: str = "HILLAB"
    model: str = DEFAULT_BOARD_MODEL
    serial: str = "EMU0001"
    firmware: str = "2.0.0"
    n_dac: int = 16
    dac_range: tuple[float, float] = (-1.0, 1.0)
    n_adc: int = 16
    adc_range: tuple[float, float] = (-1.0, 1.0)
    adc_bits: int = 16
    rows: int = 8
    cols: int = 8
    pulse_amplitude: tuple[float, float] = (-2.0, 2.0)
    pulse_width: tuple[float, float] = (1e-8, 1e-6)
    pulse_count: tuple[int, int] = (1, 1000)
    read_voltage: tuple[float, float] = (-0.5, 0.5)
    max_line: int = 4096
    protocol: int = NEWEST_PROTOCOL
    read_n: int = 1024
    watchdog_range: tuple[float, float] = (0.1, 3600.0)

    def __post_init__(self) -> None:
        if not 1 <= self.protocol <= NEWEST_PROTOCOL:
            raise ValueError(f"protocol must be in [1, {NEWEST_PROTOCOL}], got {self.protocol}")


class Reply(Exception):
    """An ``ERR`` reply raised inside the firmware."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ERR {code} {message}")


@dataclass
class PulseFault:
    """A pulse fault armed by :meth:`BoardServer.fail_after`.

    Attributes
    ----------
    pulses : int
        Pulses the board still delivers before the fault.
    code : int
        Error code of the reply.
    message : str
        Message of the reply, after its ``completed=`` and ``partial=`` fields.
    """

    pulses: int
    code: int = 110
    message: str = "hardware fault: injected"


class _Command(NamedTuple):
    handler: Callable[[list[str]], str]
    n_args: int
    mode: str | None  # the mode it needs, None: any
    since: int  # first protocol version (of the session) that has it


_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INDEX = re.compile(r"\d+")


def _real(token: str, what: str) -> float:
    if not _REAL.fullmatch(token):
        raise Reply(101, f"{what} {token!r} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise Reply(101, f"{what} {token!r} is not a finite number")
    return value


def _index(token: str, what: str) -> int:
    if not _INDEX.fullmatch(token):
        raise Reply(101, f"{what} {token!r} is not a non-negative integer")
    return int(token)


def _in_range(value: float, bounds: tuple[float, float], what: str, unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        u = f" {unit}" if unit else ""
        raise Reply(103, f"{what} {value:g}{u} out of range [{lo:g}, {hi:g}]{u}")


def _channel(token: str, n: int, what: str) -> int:
    index = _index(token, what)
    if index >= n:
        raise Reply(104, f"{what} {index} out of range [0, {n - 1}]")
    return index


def _fmt(value: float) -> str:
    return f"{value:.10g}"


def _pair(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g},{bounds[1]:g}"


class Firmware:
    """Command interpreter: board state, validation and replies; I/O-free.

    Parameters
    ----------
    spec : BoardSpec
    backend : BoardBackend
    interrupted : callable, optional
        Asked between pulses whether an ``ABORT`` has arrived (version 2 only); default never.
    wait : callable, optional
        Called with the seconds a paced pulse takes (see :attr:`pulse_seconds`).

    Attributes
    ----------
    protocol : int
        The version the session speaks: 1 at power-up, changed by ``PROTO``.
    watchdog_s : float
        Host silence (s) after which the board goes to its safe state; 0: off.
    watchdog_trips : int
        Times the watchdog sent the board to its safe state.
    pulse_seconds : float
        Time one pulse takes (s); 0 delivers every entry at once. Above 0 the board
        delivers pulse by pulse, looking for an ``ABORT`` between pulses.
    pulse_fault : PulseFault or None
        Armed by ``BoardServer.fail_after``; used up by the pulse command it cuts short.
    """

    def __init__(
        self,
        spec: BoardSpec,
        backend: BoardBackend,
        interrupted: Callable[[], bool] = lambda: False,
        wait: Callable[[float], object] = lambda seconds: None,
    ) -> None:
        self.spec, self.backend = spec, backend
        self.interrupted, self.wait = interrupted, wait
        self.mode = "IDLE"
        self.dac = [0.0] * spec.n_dac
        self.protocol = 1
        self.watchdog_s = 0.0
        self.watchdog_trips = 0
        self.pulse_seconds = 0.0
        self.pulse_fault: PulseFault | None = None
        self._tripped = False  # the safe state the board is in is the watchdog's
        self.commands: dict[str, _Command] = {
            "*IDN?": _Command(self._idn, 0, None, 1),
            "CAP?": _Command(self._cap, 0, None, 1),
            "MODE?": _Command(lambda a: self.mode, 0, None, 1),
            "MODE": _Command(self._set_mode, 1, None, 1),
            "DAC:SET": _Command(self._dac_set, 1, "NETWORK", 1),
            "DAC?": _Command(lambda a: ",".join(_fmt(v) for v in self.dac), 0, None, 1),
            "ADC:READ": _Command(self._adc_read, 1, "NETWORK", 1),
            "PULSE": _Command(self._pulse, 6, "PROGRAMMING", 1),
            "PULSE:MANY": _Command(self._pulse_many, 3, "PROGRAMMING", 1),
            "READ": _Command(self._read, 3, "PROGRAMMING", 1),
            "ABORT": _Command(self._abort, 0, None, 1),
        }
        if spec.protocol >= 2:
            self.commands |= {
                # negotiation is answered in a version-1 session too: any host may ask
                "PROTO?": _Command(self._proto_query, 0, None, 1),
                "PROTO": _Command(self._proto, 1, None, 1),
                "READ:ROW": _Command(self._read_row, 4, "PROGRAMMING", 2),
                "READ:TILE": _Command(self._read_tile, 5, "PROGRAMMING", 2),
                "WATCHDOG": _Command(self._watchdog, 1, None, 2),
                "WATCHDOG?": _Command(self._watchdog_query, 0, None, 2),
                "PING": _Command(lambda a: "PING", 0, None, 2),
            }

    @property
    def versions(self) -> tuple[int, ...]:
        """Protocol versions this firmware speaks."""
        return tuple(range(1, self.spec.protocol + 1))

    def handle(self, line: str) -> str:
        """Execute one non-empty command line and return its reply line (no terminator)."""
        keyword, *args = line.split()
        keyword = keyword.upper()
        try:
            command = self.commands.get(keyword)
            if command is None or command.since > self.protocol:
                raise Reply(100, f"unknown command {keyword[:40]!r}")
            if len(args) != command.n_args:
                raise Reply(101, f"{keyword} expects {command.n_args} arguments, got {len(args)}")
            if command.mode is not None and self.mode != command.mode:
                why = ""
                if self._tripped:
                    why = f" (the watchdog tripped after {self.watchdog_s:g} s of host silence)"
                raise Reply(
                    105, f"{keyword} needs mode {command.mode}, board is in {self.mode}{why}"
                )
            return f"OK {command.handler(args)}"
        except Reply as reply:
            return str(reply)
        except Exception as exc:  # a backend fault must not kill the board
            return f"ERR 110 hardware fault: {type(exc).__name__}: {exc}"

    def trip_watchdog(self) -> bool:
        """The host fell silent: safe state (DACs and lines at 0 V, idle), counted; False
        (nothing done) when the board is in it already, e.g. after a host's ABORT and exit."""
        if self.mode == "IDLE" and not any(self.dac):
            return False
        self._safe()
        self._tripped = True
        self.watchdog_trips += 1
        return True

    # -- identification and negotiation --------------------------------------------------
    def _idn(self, args: list[str]) -> str:
        s = self.spec
        return f"{s.maker},{s.model},{s.serial},{s.firmware}"

    def _cap(self, args: list[str]) -> str:
        s = self.spec
        text = (
            f"DAC={s.n_dac} DAC_V={_pair(s.dac_range)} ADC={s.n_adc} ADC_V={_pair(s.adc_range)} "
            f"ADC_BITS={s.adc_bits} ROWS={s.rows} COLS={s.cols} "
            f"PULSE_V={_pair(s.pulse_amplitude)} PULSE_W={_pair(s.pulse_width)} "
            f"PULSE_N={s.pulse_count[0]},{s.pulse_count[1]} READ_V={_pair(s.read_voltage)} "
            f"MAX_LINE={s.max_line}"
        )
        if self.protocol >= 2:
            text += f" READ_N={s.read_n} WATCHDOG_S={_pair(s.watchdog_range)}"
        return text

    def _proto_query(self, args: list[str]) -> str:
        return ",".join(str(v) for v in self.versions)

    def _proto(self, args: list[str]) -> str:
        version = _index(args[0], "protocol version")
        if version not in self.versions:
            spoken = ", ".join(str(v) for v in self.versions)
            raise Reply(103, f"protocol version {version} not spoken (this board speaks {spoken})")
        self.protocol = version
        self.watchdog_s = 0.0  # a new session: its host arms the watchdog it wants
        return f"PROTO {version}"

    def _watchdog(self, args: list[str]) -> str:
        seconds = _real(args[0], "watchdog timeout")
        if seconds != 0:
            _in_range(seconds, self.spec.watchdog_range, "watchdog timeout", "s")
        self.watchdog_s = seconds
        return f"WATCHDOG {_fmt(seconds)}"

    def _watchdog_query(self, args: list[str]) -> str:
        return f"{_fmt(self.watchdog_s)} {self.watchdog_trips}"

    # -- modes and network ---------------------------------------------------------------
    def _set_mode(self, args: list[str]) -> str:
        mode = args[0].upper()
        if mode not in MODES:
            raise Reply(101, f"mode {args[0]!r} is not one of {', '.join(MODES)}")
        if mode != self.mode:
            self.dac = [0.0] * self.spec.n_dac
            self.backend.set_dacs(dict(enumerate(self.dac)))
            self.backend.set_mode(mode.lower())  # type: ignore[arg-type]
            self.mode = mode
        self._tripped = False
        return f"MODE {mode}"

    def _dac_set(self, args: list[str]) -> str:
        values: dict[int, float] = {}
        for item in args[0].split(","):
            ch_token, sep, v_token = item.partition(":")
            if not sep:
                raise Reply(101, f"DAC entry {item!r} is not <channel>:<volts>")
            ch = _channel(ch_token, self.spec.n_dac, "DAC channel")
            value = _real(v_token, f"DAC channel {ch} value")
            _in_range(value, self.spec.dac_range, f"DAC channel {ch} value", "V")
            if ch in values:
                raise Reply(101, f"DAC channel {ch} appears twice")
            values[ch] = value
        self.backend.set_dacs(values)
        for ch, value in values.items():
            self.dac[ch] = value
        return f"DAC:SET {len(values)}"

    def _adc_read(self, args: list[str]) -> str:
        channels = [_channel(t, self.spec.n_adc, "ADC channel") for t in args[0].split(",")]
        lo, hi = self.spec.adc_range
        lsb = (hi - lo) / (2**self.spec.adc_bits - 1)
        values, overflow = [], []
        for ch, v in zip(channels, self.backend.read_adcs(channels), strict=True):
            if math.isnan(v):
                raise Reply(110, f"hardware fault: ADC channel {ch} gave no reading")
            if not lo <= v <= hi:
                overflow.append(str(ch))
            values.append(_fmt(lo + round((min(max(v, lo), hi) - lo) / lsb) * lsb))
        tail = f" OVR={','.join(overflow)}" if overflow else ""
        return ",".join(values) + tail

    # -- programming ---------------------------------------------------------------------
    def _device(self, row: str, col: str) -> tuple[int, int]:
        return _channel(row, self.spec.rows, "row"), _channel(col, self.spec.cols, "column")

    def _pulse_args(
        self, amp: str, width: str, count: str, scheme: str
    ) -> tuple[float, float, int, PulseScheme]:
        s = self.spec
        a, w = _real(amp, "pulse amplitude"), _real(width, "pulse width")
        n = _index(count, "pulse count")
        if scheme.upper() not in PULSE_SCHEMES:
            raise Reply(101, f"scheme {scheme!r} is not one of {', '.join(PULSE_SCHEMES)}")
        _in_range(a, s.pulse_amplitude, "pulse amplitude", "V")
        _in_range(w, s.pulse_width, "pulse width", "s")
        _in_range(n, s.pulse_count, "pulse count", "")
        return a, w, n, cast(PulseScheme, scheme.upper())

    def _pulse(self, args: list[str]) -> str:
        row, col = self._device(args[0], args[1])
        amp, width, count, scheme = self._pulse_args(*args[2:])
        self._deliver([(row, col, amp, width, count, scheme)])
        return f"PULSE {row} {col} {count}"

    def _pulse_many(self, args: list[str]) -> str:
        width_token, scheme_token, entries = args
        todo: list[tuple[int, int, float, float, int, PulseScheme]] = []
        for item in entries.split(","):
            parts = item.split(":")
            if len(parts) != 4:
                raise Reply(101, f"pulse entry {item!r} is not <row>:<col>:<amp>:<count>")
            row, col = self._device(parts[0], parts[1])
            amp, width, count, scheme = self._pulse_args(
                parts[2], width_token, parts[3], scheme_token
            )
            todo.append((row, col, amp, width, count, scheme))
        self._deliver(todo)
        return f"PULSE:MANY {len(todo)}"

    def _deliver(self, todo: list[tuple[int, int, float, float, int, PulseScheme]]) -> None:
        """Apply validated pulse entries in order. Anything that stops it part-way (an
        ``ABORT`` read between pulses, an armed :class:`PulseFault` running out, the backend
        failing) is ``ERR <code> completed=<k> partial=<p> ...``: the host learns exactly
        what the devices got."""
        interruptible = self.protocol >= 2  # a version-1 board reads nothing while it pulses
        for k, (row, col, amp, width, count, scheme) in enumerate(todo):
            fault = self.pulse_fault
            n = count if fault is None else min(count, fault.pulses)
            step = 1 if self.pulse_seconds > 0 else max(n, 1)  # paced: pulse by pulse
            done = 0
            while done < n:
                if interruptible and self.interrupted():
                    self._spend(fault, done)
                    raise Reply(111, f"completed={k} partial={done} aborted by ABORT")
                m = min(step, n - done)
                if self.pulse_seconds > 0:
                    self.wait(m * self.pulse_seconds)
                try:
                    self.backend.pulse(row, col, amp, width, m, scheme)
                except Exception as exc:
                    # the backend refused these pulses as a whole: none of them landed
                    self._spend(fault, done)
                    raise Reply(
                        110,
                        f"completed={k} partial={done} hardware fault: {type(exc).__name__}: {exc}",
                    ) from exc
                done += m
            self._spend(fault, n)
            if fault is not None and n < count:
                self.pulse_fault = None
                raise Reply(fault.code, f"completed={k} partial={n} {fault.message}")

    @staticmethod
    def _spend(fault: PulseFault | None, pulses: int) -> None:
        if fault is not None:
            fault.pulses -= pulses

    def _read(self, args: list[str]) -> str:
        row, col = self._device(args[0], args[1])
        v_read = self._read_voltage(args[2])
        return _fmt(self.backend.read_device(row, col, v_read))

    def _read_voltage(self, token: str) -> float:
        v_read = _real(token, "read voltage")
        _in_range(v_read, self.spec.read_voltage, "read voltage", "V")
        return v_read

    def _read_row(self, args: list[str]) -> str:
        return self._read_block(args[0], args[0], args[1], args[2], args[3])

    def _read_tile(self, args: list[str]) -> str:
        return self._read_block(*args)

    def _read_block(self, r0: str, r1: str, c0: str, c1: str, v: str) -> str:
        """Every device of rows r0..r1, columns c0..c1 (inclusive), row-major."""
        row0, col0 = self._device(r0, c0)
        row1, col1 = self._device(r1, c1)
        if row1 < row0 or col1 < col0:
            raise Reply(101, f"empty block: rows {row0}-{row1}, columns {col0}-{col1}")
        n = (row1 - row0 + 1) * (col1 - col0 + 1)
        _in_range(n, (1, self.spec.read_n), "bulk read of devices", "")
        v_read = self._read_voltage(v)
        currents = self.backend.read_block(row0, row1, col0, col1, v_read)
        return ",".join(_fmt(i) for i in currents)

    # -- safety --------------------------------------------------------------------------
    def _abort(self, args: list[str]) -> str:
        self._safe()
        return "ABORT"

    def _safe(self) -> None:
        self.backend.abort()
        self.dac = [0.0] * self.spec.n_dac
        self.mode = "IDLE"
        self._tripped = False
