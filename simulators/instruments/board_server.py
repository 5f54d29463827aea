"""Emulator of the XBAR DAC/ADC and crossbar-programming board, reached over a pseudo-terminal.

The emulator speaks the line protocol of ``docs/serial-board-protocol.md`` (versions 1 and 2)
on the master side of a pty pair; a host opens the slave path (``BoardServer.port``) with
pyserial exactly as it would open ``/dev/ttyUSB0``. This module is the transport: lines,
version-2 frames (:mod:`~simulators.instruments.board_framing`), the watchdog's timer, the
UART polled for ``ABORT`` while a pulse batch runs, an optional baud-rate pace, and fault
injection. The firmware is :mod:`~simulators.instruments.board_firmware`'s, the physics a
:class:`~simulators.instruments.board_backends.BoardBackend`.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
import tty

from simulators.instruments.board_backends import BoardBackend, LinearBackend
from simulators.instruments.board_firmware import MODES, BoardSpec, Firmware, PulseFault
from simulators.instruments.board_framing import (
    UNATTRIBUTED,
    BadFrame,
    frame,
    looks_framed,
    unframe,
)

__all__ = [
    "MODES",
    "BoardBackend",
    "BoardServer",
    "BoardSpec",
    "LinearBackend",
    "PulseFault",
]

#: Bits on the wire per byte (8N1: a start bit, 8 data bits, a stop bit).
BITS_PER_BYTE = 10

#: Bytes a paced link writes at a time (a UART's FIFO, roughly).
_PACED_CHUNK = 64

#: Lines a version-2 board still takes unframed: a new host cannot know which version the
#: session it inherits speaks, so negotiation must get through in either.
_NEGOTIATION = re.compile(rb"\s*PROTO\??(?:\s.*)?", re.IGNORECASE)


class BoardServer:
    """The emulated board on a pty pair, served by a background thread.

    Parameters
    ----------
    backend : BoardBackend, optional
        Physics of the DACs, ADCs and crossbar; default a ``LinearBackend(spec)``.
    spec : BoardSpec, optional
        Identity and limits reported to the host; default ``BoardSpec()``.
    baudrate : float, optional
        Pace the link as a UART at this many baud would (10 bits a byte, each line's bytes
        waited for before it is executed and each reply's before it is written); default as
        fast as the pty.
    pulse_seconds : float
        Time one pulse takes (s); default 0 (a batch is applied at once). Above 0 a batch
        is delivered pulse by pulse, so that a test can interrupt it with ``ABORT``.

    Attributes
    ----------
    commands_received : int
        Command lines received (a keepalive ``PING`` is counted in ``pings_received``).
    pings_received : int
    frames_refused : int
        Lines refused with ``ERR 120`` (bad frame).

    Examples
    --------
    >>> with BoardServer() as server:  # doctest: +SKIP
    ...     port = serial.serial_for_url(server.port, baudrate=115200, timeout=1.0)
    """

    def __init__(
        self,
        backend: BoardBackend | None = None,
        spec: BoardSpec | None = None,
        *,
        baudrate: float | None = None,
        pulse_seconds: float = 0.0,
    ) -> None:
        if baudrate is not None and baudrate <= 0:
            raise ValueError(f"baudrate must be > 0, got {baudrate}")
        self.spec = spec or BoardSpec()
        self.backend = backend if backend is not None else LinearBackend(self.spec)
        self.baudrate = baudrate
        self.commands_received = 0
        self.pings_received = 0
        self.frames_refused = 0
        self._firmware = Firmware(self.spec, self.backend, self._abort_waiting, self._sleep)
        self._firmware.pulse_seconds = pulse_seconds
        self._buffer = bytearray()  # received, not yet executed
        self._heard_at: float | None = time.monotonic()  # None: the watchdog has tripped
        self._faults = threading.Lock()
        self._silent = False
        self._fail_next: str | None = None
        self._corrupt_command = False
        self._corrupt_reply = False
        self._delay: tuple[float, str | None, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self._port: str | None = None

    @property
    def port(self) -> str:
        """Path of the pty slave (e.g. ``/dev/pts/7``): the URL a host opens with pyserial."""
        if self._port is None:
            raise RuntimeError("BoardServer is not started; call start() first")
        return self._port

    @property
    def protocol(self) -> int:
        """The protocol version the board's session speaks now."""
        return self._firmware.protocol

    @property
    def mode(self) -> str:
        """The firmware's mode: ``IDLE``, ``NETWORK`` or ``PROGRAMMING``."""
        return self._firmware.mode

    @property
    def watchdog_s(self) -> float:
        """The watchdog timeout the host set (s); 0 when off."""
        return self._firmware.watchdog_s

    @property
    def watchdog_trips(self) -> int:
        """Times the watchdog put the board in its safe state."""
        return self._firmware.watchdog_trips

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

    def corrupt_next_command(self) -> None:
        """Flip one bit of the next command line as it arrives (line noise, host to board)."""
        with self._faults:
            self._corrupt_command = True

    def corrupt_next_reply(self) -> None:
        """Flip one bit of the next reply as it leaves (line noise, board to host)."""
        with self._faults:
            self._corrupt_reply = True

    def pace_pulses(self, seconds: float) -> None:
        """Make every pulse take ``seconds`` from now on (0: a batch lands at once), so
        that a batch lasts long enough to be interrupted by ``ABORT``."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        with self._faults:
            self._firmware.pulse_seconds = seconds

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
        buffer, discarded = self._buffer, 0
        limit = self.spec.max_line + 1  # room for a '\r'
        try:
            while True:
                ready, _, _ = select.select(
                    [self._master, self._wake_r], [], [], self._watchdog_left()
                )
                if self._wake_r in ready:
                    return
                if not ready:  # the host has been silent for the watchdog's time
                    self._firmware.trip_watchdog()
                    self._heard_at = None  # tripped once; the next line re-arms it
                    continue
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
                    self._heard_at = time.monotonic()
                    if not self._pace(end + 1):
                        return
                    if length > self.spec.max_line:
                        self._send(self._too_long(length))
                    elif line.strip():
                        reply = self._answer(line)
                        if not self._wait_if_delayed(line):
                            return
                        self._send(reply)
                    # the host waited for the board meanwhile: its silence starts now
                    self._heard_at = time.monotonic()
                if len(buffer) > limit:
                    discarded += len(buffer)
                    buffer.clear()
        finally:
            os.close(self._master)

    def _watchdog_left(self) -> float | None:
        """Seconds until the watchdog trips (select's timeout); None when it cannot."""
        seconds = self._firmware.watchdog_s
        if seconds <= 0 or self._heard_at is None:
            return None
        return max(0.0, self._heard_at + seconds - time.monotonic())

    def _too_long(self, length: int) -> bytes:
        text = f"ERR 102 line too long ({length} > {self.spec.max_line} bytes)"
        # the line was dropped unread, its sequence number with it
        return frame(UNATTRIBUTED, text) if self.protocol >= 2 else (text + "\n").encode()

    def _wait_if_delayed(self, line: bytes) -> bool:
        """Sit on the reply to ``line`` if :meth:`delay_next` asked for it; False when the
        server is stopped meanwhile."""
        with self._faults:
            delay = self._delay
            if delay is None or (delay[1] is not None and _keyword(line) != delay[1]):
                return True
            self._delay = None
        seconds, _, started = delay
        started.set()
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        return not ready

    def _answer(self, line: bytes) -> bytes | None:
        """The reply bytes to one non-empty line (None: no reply), framed as the line was."""
        with self._faults:
            if self._silent:
                self.commands_received += 1
                return None
            corrupt, self._corrupt_command = self._corrupt_command, False
            failure, self._fail_next = self._fail_next, None
        if corrupt:
            line = _flip_bit(line)
        seq: int | None = None  # None: the line came unframed, and so goes the reply
        if self.protocol >= 2 and not _NEGOTIATION.fullmatch(line):
            try:
                seq, text = unframe(line)
            except BadFrame as bad:
                self.commands_received += 1
                self.frames_refused += 1
                return frame(bad.seq, f"ERR 120 {bad}")
        else:
            try:
                text = line.decode("ascii")
            except UnicodeDecodeError:
                self.commands_received += 1
                return b"ERR 101 line contains non-ASCII bytes\n"
        if _keyword(line) == "PING":
            self.pings_received += 1
        else:
            self.commands_received += 1
        reply = failure if failure is not None else self._firmware.handle(text)
        return (reply + "\n").encode("ascii", "replace") if seq is None else frame(seq, reply)

    def _abort_waiting(self) -> bool:
        """The firmware's look at its UART between pulses: has a valid ``ABORT`` frame
        arrived behind the command it is executing? The lines stay queued, in order."""
        try:
            self._buffer += os.read(self._master, 4096)
        except OSError:  # nothing waiting (BlockingIOError), or the host went away
            pass
        for line in bytes(self._buffer).split(b"\n")[:-1]:  # complete lines only
            try:
                unframe(line.rstrip(b"\r"))  # only a valid frame counts: noise aborts nothing
            except BadFrame:
                continue
            if _keyword(line) == "ABORT":
                return True
        return False

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once) when the server is being stopped."""
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        return not ready

    def _pace(self, n_bytes: int) -> bool:
        """Take the wire time of ``n_bytes`` at :attr:`baudrate`; False when stopped."""
        if self.baudrate is None:
            return True
        return self._sleep(n_bytes * BITS_PER_BYTE / self.baudrate)

    def _send(self, data: bytes | None) -> None:
        if data is None:
            return
        with self._faults:
            corrupt, self._corrupt_reply = self._corrupt_reply, False
        if corrupt:
            data = _flip_bit(data[:-1]) + data[-1:]
        if self.baudrate is None:
            self._write(data)
            return
        for k in range(0, len(data), _PACED_CHUNK):  # streamed, as a UART sends it
            chunk = data[k : k + _PACED_CHUNK]
            if not self._pace(len(chunk)):
                return
            self._write(chunk)

    def _write(self, data: bytes) -> None:
        try:
            while data:
                try:
                    data = data[os.write(self._master, data) :]
                except BlockingIOError:  # the pty's buffer is full: wait for the host to read
                    _, writable, _ = select.select([], [self._master], [], 1.0)
                    if not writable:
                        return  # nobody is reading: the reply is lost, as on a real UART
        except OSError:
            pass  # the host end is gone


def _keyword(line: bytes) -> str:
    """The upper-case keyword of a command line, framed or not ('' for none)."""
    if looks_framed(line.rstrip(b"\r")):
        line = line.split(b" ", 1)[1].rpartition(b"*")[0]
    words = line.split(maxsplit=1)
    return words[0].decode("ascii", "replace").upper() if words else ""


def _flip_bit(data: bytes) -> bytes:
    """``data`` with one bit flipped, in the middle (so a frame keeps its shape)."""
    if not data:
        return data
    k = len(data) // 2
    return data[:k] + bytes([data[k] ^ 0x04]) + data[k + 1 :]
