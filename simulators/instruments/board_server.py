"""Emulator of the XBAR DAC/ADC and crossbar-programming board, reached over a pseudo-terminal.

The emulator speaks the line protocol of ``docs/serial-board-protocol.md`` on the master side
of a pty pair; a host opens the slave path (``BoardServer.port``) with pyserial exactly as it
would open ``/dev/ttyUSB0``. The board's firmware (parsing, validation, modes, ADC quantisation)
lives here; the physics behind the DACs, ADCs and crossbar is a pluggable ``BoardBackend``.
"""

from __future__ import annotations

import math
import os
import re
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast, get_args

import numpy as np

from hil.vocabulary import DEFAULT_BOARD_MODEL, PULSE_SCHEMES, BoardMode, PulseScheme

#: The modes as the protocol spells them (``MODE NETWORK``).
MODES: tuple[str, ...] = tuple(mode.upper() for mode in get_args(BoardMode))


class BoardBackend(Protocol):
    """Physics behind the board; every argument arrives already validated by the firmware."""

    def set_dacs(self, values: dict[int, float]) -> None:
        """Drive DAC channel -> voltage (V); channels not given keep their value."""

    def read_adcs(self, channels: list[int]) -> list[float]:
        """Return the node voltages (V) on these ADC channels, unclipped, in order."""

    def set_mode(self, mode: BoardMode) -> None:
        """Reconnect the devices for ``mode``; DACs were already set to 0 V."""

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        """Apply ``count`` pulses of ``amplitude`` (V, signed) and ``width`` (s) to one device.

        All or nothing: a backend that raises has applied none of them (the firmware then
        reports the entries before this one as completed).
        """

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Return the current (A) through device (row, col) biased at ``v_read`` (V)."""

    def abort(self) -> None:
        """Return every DAC and crossbar line to 0 V and isolate the devices."""


@dataclass(frozen=True)
class BoardSpec:
    """Identity and limits the emulated board reports (``*IDN?`` and ``CAP?``)."""

    maker: str = "HILLAB"
    model: str = DEFAULT_BOARD_MODEL
    serial: str = "EMU0001"
    firmware: str = "1.0.0"
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


class LinearBackend:
    """Trivial physics for tests: linear ADC read-back and a stepping conductance matrix.

    Parameters
    ----------
    spec : BoardSpec
        Channel counts and crossbar size.
    gain : numpy.ndarray, optional
        Shape (n_adc, n_dac); ADC k reads ``gain[k] @ dac`` (V). Default: -0.5 on
        ``gain[k, k % n_dac]``, zero elsewhere.
    g_init, g_min, g_max : float
        Initial conductance and its bounds (S).
    g_step : float
        Conductance change per pulse (S), up for positive and down for negative voltages.
    v_threshold : float
        Smallest voltage magnitude (V) across a device that moves it; half-selected devices
        move too when they see at least this much.
    """

    def __init__(
        self,
        spec: BoardSpec,
        gain: np.ndarray | None = None,
        g_init: float = 50e-6,
        g_min: float = 10e-6,
        g_max: float = 100e-6,
        g_step: float = 1e-6,
        v_threshold: float = 0.9,
    ) -> None:
        if gain is None:
            gain = np.zeros((spec.n_adc, spec.n_dac))
            gain[np.arange(spec.n_adc), np.arange(spec.n_adc) % spec.n_dac] = -0.5
        self.gain = np.asarray(gain, dtype=float)
        self.dac = np.zeros(spec.n_dac)
        self.conductance = np.full((spec.rows, spec.cols), g_init)
        self.g_min, self.g_max, self.g_step = g_min, g_max, g_step
        self.v_threshold = v_threshold
        self.mode: BoardMode = "idle"

    def set_dacs(self, values: dict[int, float]) -> None:
        """Keep the DAC voltages (V) for the next ADC read."""
        for ch, v in values.items():
            self.dac[ch] = v

    def read_adcs(self, channels: list[int]) -> list[float]:
        """ADC k reads ``gain[k] @ dac`` (V)."""
        return [float(v) for v in (self.gain @ self.dac)[channels]]

    def set_mode(self, mode: BoardMode) -> None:
        """Record the mode; the linear physics does not depend on it."""
        self.mode = mode

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        """Step every device whose voltage reaches the threshold; ``width`` is ignored."""
        share = amplitude / 2 if scheme == "V/2" else amplitude / 3
        seen = np.full(self.conductance.shape, 0.0 if scheme == "V/2" else -share)
        seen[row, :] = share
        seen[:, col] = share
        seen[row, col] = amplitude
        moved = np.abs(seen) >= self.v_threshold
        self.conductance += moved * np.sign(seen) * self.g_step * count
        np.clip(self.conductance, self.g_min, self.g_max, out=self.conductance)

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Ohm's law through device (row, col): ``G * v_read`` (A)."""
        return float(self.conductance[row, col] * v_read)

    def abort(self) -> None:
        """DACs to 0 V, mode idle; the conductances keep their state."""
        self.dac[:] = 0.0
        self.mode = "idle"


class _Reply(Exception):
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


_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INDEX = re.compile(r"\d+")


def _real(token: str, what: str) -> float:
    if not _REAL.fullmatch(token):
        raise _Reply(101, f"{what} {token!r} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise _Reply(101, f"{what} {token!r} is not a finite number")
    return value


def _index(token: str, what: str) -> int:
    if not _INDEX.fullmatch(token):
        raise _Reply(101, f"{what} {token!r} is not a non-negative integer")
    return int(token)


def _in_range(value: float, bounds: tuple[float, float], what: str, unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        u = f" {unit}" if unit else ""
        raise _Reply(103, f"{what} {value:g}{u} out of range [{lo:g}, {hi:g}]{u}")


def _channel(token: str, n: int, what: str) -> int:
    index = _index(token, what)
    if index >= n:
        raise _Reply(104, f"{what} {index} out of range [0, {n - 1}]")
    return index


def _fmt(value: float) -> str:
    return f"{value:.10g}"


class _Firmware:
    """Command interpreter: board state, validation and replies; I/O-free."""

    def __init__(self, spec: BoardSpec, backend: BoardBackend) -> None:
        self.spec, self.backend = spec, backend
        self.mode = "IDLE"
        self.dac = [0.0] * spec.n_dac
        #: Armed by BoardServer.fail_after; used up by the pulse command it cuts short.
        self.pulse_fault: PulseFault | None = None
        self.commands: dict[str, tuple[Callable[[list[str]], str], int | None, str | None]] = {
            "*IDN?": (self._idn, 0, None),
            "CAP?": (self._cap, 0, None),
            "MODE?": (lambda a: self.mode, 0, None),
            "MODE": (self._set_mode, 1, None),
            "DAC:SET": (self._dac_set, 1, "NETWORK"),
            "DAC?": (lambda a: ",".join(_fmt(v) for v in self.dac), 0, None),
            "ADC:READ": (self._adc_read, 1, "NETWORK"),
            "PULSE": (self._pulse, 6, "PROGRAMMING"),
            "PULSE:MANY": (self._pulse_many, 3, "PROGRAMMING"),
            "READ": (self._read, 3, "PROGRAMMING"),
            "ABORT": (self._abort, 0, None),
        }

    def handle(self, line: str) -> str:
        """Execute one non-empty command line and return its reply line (no terminator)."""
        keyword, *args = line.split()
        keyword = keyword.upper()
        try:
            if keyword not in self.commands:
                raise _Reply(100, f"unknown command {keyword[:40]!r}")
            handler, n_args, mode = self.commands[keyword]
            if n_args is not None and len(args) != n_args:
                raise _Reply(101, f"{keyword} expects {n_args} arguments, got {len(args)}")
            if mode is not None and self.mode != mode:
                raise _Reply(105, f"{keyword} needs mode {mode}, board is in {self.mode}")
            return f"OK {handler(args)}"
        except _Reply as reply:
            return str(reply)
        except Exception as exc:  # a backend fault must not kill the board
            return f"ERR 110 hardware fault: {type(exc).__name__}: {exc}"

    def _idn(self, args: list[str]) -> str:
        s = self.spec
        return f"{s.maker},{s.model},{s.serial},{s.firmware}"

    def _cap(self, args: list[str]) -> str:
        s = self.spec

        def pair(b: tuple[float, float]) -> str:
            return f"{b[0]:g},{b[1]:g}"

        return (
            f"DAC={s.n_dac} DAC_V={pair(s.dac_range)} ADC={s.n_adc} ADC_V={pair(s.adc_range)} "
            f"ADC_BITS={s.adc_bits} ROWS={s.rows} COLS={s.cols} "
            f"PULSE_V={pair(s.pulse_amplitude)} PULSE_W={pair(s.pulse_width)} "
            f"PULSE_N={s.pulse_count[0]},{s.pulse_count[1]} READ_V={pair(s.read_voltage)} "
            f"MAX_LINE={s.max_line}"
        )

    def _set_mode(self, args: list[str]) -> str:
        mode = args[0].upper()
        if mode not in MODES:
            raise _Reply(101, f"mode {args[0]!r} is not one of {', '.join(MODES)}")
        if mode != self.mode:
            self.dac = [0.0] * self.spec.n_dac
            self.backend.set_dacs(dict(enumerate(self.dac)))
            self.backend.set_mode(mode.lower())  # type: ignore[arg-type]
            self.mode = mode
        return f"MODE {mode}"

    def _dac_set(self, args: list[str]) -> str:
        values: dict[int, float] = {}
        for item in args[0].split(","):
            ch_token, sep, v_token = item.partition(":")
            if not sep:
                raise _Reply(101, f"DAC entry {item!r} is not <channel>:<volts>")
            ch = _channel(ch_token, self.spec.n_dac, "DAC channel")
            value = _real(v_token, f"DAC channel {ch} value")
            _in_range(value, self.spec.dac_range, f"DAC channel {ch} value", "V")
            if ch in values:
                raise _Reply(101, f"DAC channel {ch} appears twice")
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
                raise _Reply(110, f"hardware fault: ADC channel {ch} gave no reading")
            if not lo <= v <= hi:
                overflow.append(str(ch))
            values.append(_fmt(lo + round((min(max(v, lo), hi) - lo) / lsb) * lsb))
        tail = f" OVR={','.join(overflow)}" if overflow else ""
        return ",".join(values) + tail

    def _device(self, row: str, col: str) -> tuple[int, int]:
        return _channel(row, self.spec.rows, "row"), _channel(col, self.spec.cols, "column")

    def _pulse_args(
        self, amp: str, width: str, count: str, scheme: str
    ) -> tuple[float, float, int, PulseScheme]:
        s = self.spec
        a, w = _real(amp, "pulse amplitude"), _real(width, "pulse width")
        n = _index(count, "pulse count")
        if scheme.upper() not in PULSE_SCHEMES:
            raise _Reply(101, f"scheme {scheme!r} is not one of {', '.join(PULSE_SCHEMES)}")
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
                raise _Reply(101, f"pulse entry {item!r} is not <row>:<col>:<amp>:<count>")
            row, col = self._device(parts[0], parts[1])
            amp, width, count, scheme = self._pulse_args(
                parts[2], width_token, parts[3], scheme_token
            )
            todo.append((row, col, amp, width, count, scheme))
        self._deliver(todo)
        return f"PULSE:MANY {len(todo)}"

    def _deliver(self, todo: list[tuple[int, int, float, float, int, PulseScheme]]) -> None:
        """Apply validated pulse entries in order. A fault part-way (an armed
        :class:`PulseFault` running out, or the backend failing) is ``ERR <code>
        completed=<k> partial=<p> ...``: the host learns exactly what the devices got."""
        for k, (row, col, amp, width, count, scheme) in enumerate(todo):
            fault = self.pulse_fault
            n = count if fault is None else min(count, fault.pulses)
            try:
                if n:
                    self.backend.pulse(row, col, amp, width, n, scheme)
            except Exception as exc:
                # the backend refused the entry as a whole: none of its pulses landed
                raise _Reply(
                    110, f"completed={k} partial=0 hardware fault: {type(exc).__name__}: {exc}"
                ) from exc
            if fault is not None:
                fault.pulses -= n
                if n < count:
                    self.pulse_fault = None
                    raise _Reply(fault.code, f"completed={k} partial={n} {fault.message}")

    def _read(self, args: list[str]) -> str:
        row, col = self._device(args[0], args[1])
        v_read = _real(args[2], "read voltage")
        _in_range(v_read, self.spec.read_voltage, "read voltage", "V")
        return _fmt(self.backend.read_device(row, col, v_read))

    def _abort(self, args: list[str]) -> str:
        self.backend.abort()
        self.dac = [0.0] * self.spec.n_dac
        self.mode = "IDLE"
        return "ABORT"


class BoardServer:
    """The emulated board on a pty pair, served by a background thread.

    Parameters
    ----------
    backend : BoardBackend, optional
        Physics of the DACs, ADCs and crossbar; default a ``LinearBackend(spec)``.
    spec : BoardSpec, optional
        Identity and limits reported to the host; default ``BoardSpec()``.

    Examples
    --------
    >>> with BoardServer() as server:  # doctest: +SKIP
    ...     port = serial.serial_for_url(server.port, baudrate=115200, timeout=1.0)
    """

    def __init__(self, backend: BoardBackend | None = None, spec: BoardSpec | None = None) -> None:
        self.spec = spec or BoardSpec()
        self.backend = backend if backend is not None else LinearBackend(self.spec)
        self.commands_received = 0
        self._firmware = _Firmware(self.spec, self.backend)
        self._faults = threading.Lock()
        self._silent = False
        self._fail_next: str | None = None
        self._delay: tuple[float, str | None, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self._port: str | None = None

    @property
    def port(self) -> str:
        """Path of the pty slave (e.g. ``/dev/pts/7``): the URL a host opens with pyserial."""
        if self._port is None:
            raise RuntimeError("BoardServer is not started; call start() first")
        return self._port

    def start(self) -> BoardServer:
        """Open the pty pair and start answering; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("BoardServer is already started")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no newline translation before the host configures it
        os.set_blocking(self._master, False)  # a host that never reads must not hang the board
        self._port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="board-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close every descriptor; safe to call twice."""
        if self._thread is None:
            return
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in (self._slave, self._wake_r, self._wake_w):
            os.close(fd)
        self._thread = None

    def __enter__(self) -> BoardServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- fault injection ------------------------------------------------------------------
    def go_silent(self, silent: bool = True) -> None:
        """Swallow commands without executing or answering them (the host times out)."""
        with self._faults:
            self._silent = silent

    def fail_next(self, code: int = 110, message: str = "hardware fault: injected") -> None:
        """Answer the next command with ``ERR code message`` instead of executing it.

        The reply is exactly that: on a pulse command it carries no ``completed=`` field, so
        the host reads it as a board that does not say how far it got (see
        :meth:`fail_after` for one that does).
        """
        with self._faults:
            self._fail_next = f"ERR {code} {message}"

    def fail_after(
        self, pulses: int, code: int = 110, message: str = "hardware fault: injected"
    ) -> None:
        """Let the pulse commands from now on deliver ``pulses`` more pulses, then fail.

        The command that runs out stops there (the rest of its entries is not applied) and
        is answered ``ERR code completed=<k> partial=<p> message``: ``k`` entries delivered in
        full, ``p`` pulses of the next one. The fault is then disarmed.
        """
        if pulses < 0:
            raise ValueError(f"pulses must be >= 0, got {pulses}")
        with self._faults:
            self._firmware.pulse_fault = PulseFault(pulses, code, message)

    def delay_next(self, seconds: float, keyword: str | None = None) -> threading.Event:
        """Execute the next command (the next one starting with ``keyword``, when given)
        at once but answer it only ``seconds`` later, as a board busy with a long pulse
        train would; the board reads nothing meanwhile.

        Returns
        -------
        threading.Event
            Set when that command has been executed and the wait for its reply begins
            (a test interrupts the host then).
        """
        started = threading.Event()
        with self._faults:
            self._delay = (seconds, None if keyword is None else keyword.upper(), started)
        return started

    def disconnect(self) -> None:
        """Close the board's end of the pty, as if the USB cable were pulled."""
        if self._thread is not None:
            os.write(self._wake_w, b"x")  # the thread closes the master end on its way out
            self._thread.join(timeout=5.0)

    # -- serving --------------------------------------------------------------------------
    def _serve(self) -> None:
        buffer, discarded = bytearray(), 0
        limit = self.spec.max_line + 1  # room for a '\r'
        try:
            while True:
                ready, _, _ = select.select([self._master, self._wake_r], [], [])
                if self._wake_r in ready:
                    return
                try:
                    chunk = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end]).rstrip(b"\r")
                    length = discarded + len(line)
                    del buffer[: end + 1]
                    discarded = 0
                    if length > self.spec.max_line:
                        self._send(f"ERR 102 line too long ({length} > {self.spec.max_line} bytes)")
                    elif line.strip():
                        reply = self._answer(line)
                        if not self._wait_if_delayed(line):
                            return
                        self._send(reply)
                if len(buffer) > limit:
                    discarded += len(buffer)
                    buffer.clear()
        finally:
            os.close(self._master)

    def _wait_if_delayed(self, line: bytes) -> bool:
        """Sit on the reply to ``line`` if :meth:`delay_next` asked for it; False when the
        server is stopped meanwhile."""
        with self._faults:
            delay = self._delay
            if delay is None or (
                delay[1] is not None and line.split(maxsplit=1)[0].upper() != delay[1].encode()
            ):
                return True
            self._delay = None
        seconds, _, started = delay
        started.set()
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        return not ready

    def _answer(self, line: bytes) -> str | None:
        self.commands_received += 1
        with self._faults:
            if self._silent:
                return None
            failure, self._fail_next = self._fail_next, None
        if failure is not None:
            return failure
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return "ERR 101 line contains non-ASCII bytes"
        return self._firmware.handle(text)

    def _send(self, reply: str | None) -> None:
        if reply is None:
            return
        data = (reply + "\n").encode("ascii", "replace")
        try:
            while data:
                data = data[os.write(self._master, data) :]
        except OSError:
            pass  # nobody is reading: the reply is lost, as on a real UART
