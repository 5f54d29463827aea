"""The serial line to one XBAR board: a command line out, its reply line back.

:class:`BoardLink` owns the port and everything below the commands
(``docs/serial-board-protocol.md``): it opens the port exclusively, resynchronises it (a bare
newline ends a line a dead host left half written), negotiates the protocol version, frames
version-2 lines (:mod:`drivers.board_protocol`), matches each reply to its command by
sequence number (a late reply is discarded, not taken as an answer), sends a command again
when the board refused it as corrupted, and pings the board when the host is idle so that
its watchdog is fed. :class:`~drivers.serial_board.SerialBoard` speaks the commands over it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import serial

from hil.errors import InstrumentError

from . import board_protocol as frames

log = logging.getLogger(__name__)

#: Reply to ``PROTO?``: the versions a board speaks.
_VERSIONS_REPLY = re.compile(r"OK (\d+(?:,\d+)*)")

#: Bits a UART sends per byte (8N1: start, 8 data, stop).
BITS_PER_BYTE = 10

#: How often a command the board refused as corrupted (``ERR 120``: nothing was executed)
#: is sent again.
FRAME_RETRIES = 1


class NotSent(InstrumentError):
    """The command was refused before a byte of it left the host."""


class BoardLink:
    """The serial line to one board; one exchange at a time (thread-safe).

    Parameters
    ----------
    url : str
        Anything ``serial.serial_for_url`` opens.
    name : str
        Instrument name used in every error message.
    baudrate : int
    timeout : float
        Longest wait for one reply line (s).

    Attributes
    ----------
    protocol : int
        The version spoken: 1 until :meth:`negotiate` agrees on another.
    max_line : int or None
        The board's ``MAX_LINE`` (bytes of a line, its frame included, without the newline);
        longer commands are refused before sending. None until known.
    commands_sent, pings_sent : int
        Command lines written (keepalive ``PING`` lines apart).
    bytes_sent, bytes_received : int
        Bytes written to and read from the port (for wire-time accounting).
    stale_replies : int
        Replies discarded because they answered another command (a late reply).
    frame_retries : int
        Commands sent again after the board refused them as corrupted.
    """

    def __init__(self, url: str, *, name: str, baudrate: int, timeout: float) -> None:
        self.url, self.name, self.baudrate, self.timeout = url, name, baudrate, timeout
        self.protocol = 1
        self.max_line: int | None = None
        self.commands_sent = self.pings_sent = 0
        self.bytes_sent = self.bytes_received = 0
        self.stale_replies = self.frame_retries = 0
        self._port: serial.SerialBase | None = None
        self._rx = bytearray()  # read from the port, not yet taken as a line
        self._seq = 0
        self._in_flight: int | None = None  # sequence number of the last line written
        self._lock = threading.RLock()  # one exchange at a time
        self._write_lock = threading.Lock()  # one line on the wire at a time (an ABORT too)
        self._last_write = time.monotonic()
        self._keepalive: tuple[threading.Thread, threading.Event] | None = None

    # -- the port -------------------------------------------------------------------------
    def open(self) -> None:
        """Open the port, exclusively: a second opener (another process) is refused.

        Raises
        ------
        InstrumentError
            The port cannot be opened or is held by another process.
        """
        self.protocol, self.max_line, self._rx = 1, None, bytearray()
        try:
            self._port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                timeout=self.timeout,
                write_timeout=self.timeout,
                exclusive=True,  # flock: two hosts interleaving commands would be chaos
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InstrumentError(self.name, "open", f"cannot open {self.url!r}: {exc}") from exc

    def close(self) -> None:
        """Stop the keepalive and close the port (nothing is sent)."""
        self.keep_alive(None)
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.warning("%s: closing %s failed: %s", self.name, self.url, exc)

    @property
    def busy(self) -> bool:
        """Whether another thread is in an exchange (waiting for a reply)."""
        if not self._lock.acquire(blocking=False):
            return True
        self._lock.release()
        return False

    def negotiate(self, want: int | None) -> tuple[int, ...]:
        """Resynchronise the line and agree on a protocol version.

        Writes a bare newline (which ends any line a dead host left half written; the board
        answers that line with an error) and ``PROTO?``, unframed, skipping every line
        before its answer: the error, late replies to the dead host. A board from before
        version 2 answers ``ERR 100``: it speaks version 1.

        Parameters
        ----------
        want : int or None
            The version to speak; None: the newest both sides speak.

        Returns
        -------
        tuple of int
            The versions the board offered.

        Raises
        ------
        InstrumentError
            No answer, or the board does not speak ``want``.
        """
        with self._lock:
            port = self._require_port("PROTO?")
            try:
                port.reset_input_buffer()
                self._rx.clear()
                self.protocol = 1
                self._write(port, b"\nPROTO?\n", counted=True)
                offered = self._await_versions(port)
            except (serial.SerialException, OSError) as exc:
                raise InstrumentError(self.name, "PROTO?", f"port failed: {exc}") from exc
            common = [v for v in offered if v in frames.VERSIONS]
            version = max(common, default=1) if want is None else want
            if version not in offered:
                spoken = ", ".join(map(str, offered))
                raise InstrumentError(
                    self.name,
                    "PROTO?",
                    f"the board speaks protocol version(s) {spoken}, not {version} as configured",
                )
            if offered != (1,):  # a board that negotiates: say which, whatever its session
                reply = self.exchange(f"PROTO {version}")
                if reply != f"OK PROTO {version}":
                    raise InstrumentError(
                        self.name, f"PROTO {version}", f"unexpected reply {reply!r}"
                    )
            self.protocol = version
            return offered

    def _await_versions(self, port: serial.SerialBase) -> tuple[int, ...]:
        deadline = time.monotonic() + self.timeout
        while True:
            line, deadline = self._next_line(port, deadline)
            if line is None:
                break
            text = line.decode("ascii", "replace").strip()
            if m := _VERSIONS_REPLY.fullmatch(text):
                return tuple(int(v) for v in m[1].split(","))
            if text.startswith("ERR 100 ") and "PROTO?" in text:
                return (1,)  # firmware from before version 2
            log.info("%s: resync skipped %r", self.name, text[:120])
        raise InstrumentError(self.name, "PROTO?", f"no reply within {self.timeout} s")

    # -- exchanges ------------------------------------------------------------------------
    def exchange(
        self,
        command: str,
        interrupted: Callable[[str | None], None] | None = None,
        *,
        counted: bool = True,
        busy: float = 0.0,
    ) -> str:
        """Send one command line and return its reply line (the text, unframed, stripped).

        Parameters
        ----------
        command : str
        interrupted : callable, optional
            On a KeyboardInterrupt after the line was (perhaps partly) written, called with
            the reply drained from the port (None when it did not come) before re-raising.
        counted : bool
            Count the line in ``commands_sent`` (False: a keepalive, in ``pings_sent``).
        busy : float
            Seconds the board needs to carry the command out (a pulse train), waited for on
            top of ``timeout`` before its silence counts as a timeout.

        Raises
        ------
        NotSent
            The port is closed: nothing was sent.
        InstrumentError
            No reply within ``timeout + busy``, a reply that fails its checksum, or the port
            failed.
        ValueError
            The line would exceed ``max_line``; nothing sent.
        """
        with self._lock:
            port = self._require_port(command)
            reply = self._once(port, command, interrupted, counted, busy)
            for _ in range(FRAME_RETRIES):
                if not (self.protocol >= 2 and reply.startswith("ERR 120 ")):
                    break
                # the board could not read the line and executed nothing: safe to repeat
                self.frame_retries += 1
                log.warning(
                    "%s: %r arrived corrupted (%s); sending it again",
                    self.name,
                    command[:60],
                    reply,
                )
                reply = self._once(port, command, interrupted, counted, busy)
            return reply

    def send_now(self, command: str) -> bool:
        """Write ``command`` at once, even while another thread waits for its reply
        (version 2; its own reply is later discarded as another command's).

        Returns
        -------
        bool
            Whether it was written: False in version 1 (replies cannot be told apart) or on
            a closed or failing port.
        """
        port = self._port
        if self.protocol < 2 or port is None or not port.is_open:
            return False
        try:
            self._send(port, command, counted=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            log.error("%s: could not send %r: %s", self.name, command, exc)
            return False
        return True

    def keep_alive(self, period: float | None) -> None:
        """Ping the board whenever nothing was written for ``period`` s (None: stop).

        The board's watchdog counts host silence: a host that computes for long (an
        evaluation on other instruments, a checkpoint) must not trip it. A ping is only sent
        when no exchange is in progress (the board is not waiting for the host then).
        """
        if self._keepalive is not None:
            thread, stop = self._keepalive
            self._keepalive = None
            stop.set()
            if thread is not threading.current_thread():
                thread.join(timeout=self.timeout + 1.0)
        if period is None:
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=self._keep, args=(period, stop), name=f"{self.name}-keepalive", daemon=True
        )
        self._keepalive = (thread, stop)
        thread.start()

    def _keep(self, period: float, stop: threading.Event) -> None:
        failing = False
        while not stop.wait(period / 2):
            if time.monotonic() - self._last_write < period:
                continue
            if not self._lock.acquire(blocking=False):
                continue  # a command is out: the board is busy, not waiting for the host
            try:
                reply = self.exchange("PING", counted=False)
            except NotSent:
                return
            except (InstrumentError, ValueError) as exc:
                reply = str(exc)
            finally:
                self._lock.release()
            if reply != "OK PING" and not failing:
                log.warning("%s: keepalive PING got %r; the watchdog may trip", self.name, reply)
            failing = reply != "OK PING"

    # -- internals ------------------------------------------------------------------------
    def _require_port(self, command: str) -> serial.SerialBase:
        port = self._port
        if port is None or not port.is_open:
            raise NotSent(self.name, command, "port is closed")
        return port

    def _once(
        self,
        port: serial.SerialBase,
        command: str,
        interrupted: Callable[[str | None], None] | None,
        counted: bool,
        busy: float = 0.0,
    ) -> str:
        writing = False
        wait = self.timeout + busy
        try:
            if self.protocol < 2:  # no sequence numbers: drop a late reply before asking
                self._rx.clear()
                if port.in_waiting:
                    self.bytes_received += len(port.read(port.in_waiting))
            writing = True
            seq = self._send(port, command, counted)
            reply = self._await(port, seq, command, time.monotonic() + wait)
        except KeyboardInterrupt:
            if writing and interrupted is not None:
                interrupted(self._drain(port, command))
            raise
        except (serial.SerialException, OSError) as exc:
            raise InstrumentError(self.name, command, f"port failed: {exc}") from exc
        if reply is None:
            part = bytes(self._rx[:80]) + (b"..." if len(self._rx) > 80 else b"")
            got = f" (partial {part!r}, {len(self._rx)} bytes)" if self._rx else ""
            self._rx.clear()
            raise InstrumentError(self.name, command, f"no reply within {wait:.3g} s{got}")
        return reply

    def _send(self, port: serial.SerialBase, command: str, counted: bool) -> int | None:
        """Frame and write one line; its sequence number (None in version 1)."""
        framed = self.protocol >= 2
        size = len(command) + (frames.FRAME_OVERHEAD if framed else 0)
        if self.max_line is not None and size > self.max_line:
            raise ValueError(
                f"{self.name}: command of {size} bytes exceeds MAX_LINE {self.max_line}; "
                "nothing sent"
            )
        with self._write_lock:
            seq = None
            if framed:
                seq = self._seq = frames.next_seq(self._seq)
                data = frames.encode(seq, command)
            else:
                data = (command + "\n").encode("ascii")
            self._in_flight = seq
            self._write(port, data, counted)
        return seq

    def _write(self, port: serial.SerialBase, data: bytes, counted: bool) -> None:
        port.write(data)
        self.bytes_sent += len(data)
        self._last_write = time.monotonic()
        if counted:
            self.commands_sent += 1
        else:
            self.pings_sent += 1

    def _await(
        self, port: serial.SerialBase, seq: int | None, command: str, deadline: float
    ) -> str | None:
        """The reply to the command numbered ``seq`` (any line in version 1), stripped;
        None on timeout. Replies to other commands are discarded on the way."""
        while True:
            line, deadline = self._next_line(port, deadline)
            if line is None:
                return None
            if seq is None:
                return line.decode("ascii", "replace").strip()
            try:
                got, text = frames.decode(line)
            except frames.FrameError as exc:
                # ours or not, it cannot be trusted: the command's outcome is unknown
                raise InstrumentError(self.name, command, f"corrupted reply ({exc})") from exc
            if got == seq:
                return text.strip()
            if got == frames.UNATTRIBUTED:
                log.warning("%s: the board answered a line it could not read: %r", self.name, text)
            else:
                self.stale_replies += 1
                log.info(
                    "%s: discarded a late reply (to #%04X, waiting for #%04X): %r",
                    self.name,
                    got,
                    seq,
                    text[:120],
                )

    def _next_line(self, port: serial.SerialBase, deadline: float) -> tuple[bytes | None, float]:
        """One line from the port, newline included (None when none is whole by the
        deadline), and the deadline, moved on by the wire time of the bytes that came: the
        timeout bounds the board's silence, not the length of a bulk reply at the line's
        baud rate. Reads in chunks (``read_until`` reads a byte per call, which makes an
        800-byte ``ADC:READ`` reply cost 800 system calls)."""
        while b"\n" not in self._rx:
            chunk = port.read(max(1, port.in_waiting))
            self.bytes_received += len(chunk)
            self._rx += chunk
            deadline += len(chunk) * BITS_PER_BYTE / self.baudrate
            if b"\n" in self._rx:
                break
            # an empty read was a whole ``timeout`` of silence: the end, unless the board
            # was given longer (a pulse train) and at least half a timeout of it is left
            left = deadline - time.monotonic()
            if left <= 0 or (not chunk and left < 0.5 * self.timeout):
                return None, deadline
        end = self._rx.index(b"\n") + 1
        line = bytes(self._rx[:end])
        del self._rx[:end]
        return line, deadline

    def _drain(self, port: serial.SerialBase, command: str) -> str | None:
        """After an interrupt: the reply to the line in flight (at most ``timeout`` more),
        or None when it does not come whole."""
        try:
            return self._await(port, self._in_flight, command, time.monotonic() + self.timeout)
        except (KeyboardInterrupt, InstrumentError, serial.SerialException, OSError):
            return None  # a second Ctrl-C, a corrupted reply, or the port went: give up
