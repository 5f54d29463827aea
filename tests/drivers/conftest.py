"""Protocol-level test helpers: a transcript resource that replays exact bytes, and the
``--device-address DRIVER=ADDRESS`` option of the hardware tests (tests/drivers/test_hardware.py).

Run the hardware tests against a real instrument as PyMeasure does, naming the driver and
the VISA address (repeat the option for several instruments)::

    .venv/bin/python -m pytest -p no:cacheprovider tests/drivers/test_hardware.py \\
        --device-address keithley2450=USB0::0x05E6::0x2450::04096218::INSTR

The option is defined here, so give pytest a path under tests/drivers (it is read from this
conftest at start-up); without it every hardware test is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.instrument import Instrument

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Unsolicited:
    """Input the instrument sends unasked (a late reply, a prompt), in a transcript.

    It waits ahead of the next exchange's reply: from the moment the driver next looks
    (discards input, writes or reads), or, ``with_next``, only once the driver writes the
    next command (a late reply sent just before the next one, as
    ``SmuServer.answer_late`` does: discarding input before that write does not see it).
    """

    data: bytes
    with_next: bool = False


@dataclass(frozen=True)
class WriteFails:
    """In a transcript, the reply of a command whose write itself raises ``error``."""

    error: BaseException


#: One exchange: the exact bytes the driver must send, and the bytes answered. None: no reply;
#: an exception instance: raised by the driver's next read or write (the link died; a
#: VisaIOError timeout: the reply never comes); :class:`WriteFails`: raised by this write. An
#: :class:`Unsolicited` entry in the list instead is input waiting before the next exchange.
Exchange = tuple[bytes, "bytes | BaseException | WriteFails | None"]


class Transcript:
    """A fake pyvisa message-based resource replaying expected exchanges.

    It behaves like pyvisa for terminations (``write`` appends ``write_termination``; ``read``
    strips ``read_termination``), starting from pyvisa's defaults, so a driver that forgets to
    set ``'\\n'`` fails. Input is a queue, as on a real link: a reply waits until read, and
    :class:`Unsolicited` input waits ahead of the next reply until the driver discards it
    (``discard_input``, which the drivers call before every query) or reads it (the bug a
    transcript then shows: a stale reply taken as an answer).

    Any unexpected write or read fails the test at once (``pytest.fail`` raises a
    BaseException, so no driver ``except Exception`` can hide it); :meth:`assert_done` fails
    on leftover exchanges or input.
    """

    def __init__(self, exchanges: Sequence[Exchange | Unsolicited]) -> None:
        self.expected: deque[Exchange | Unsolicited] = deque(exchanges)
        self.write_termination = "\r\n"
        self.read_termination: str | None = None
        self.timeout: float | None = 2000.0
        self.inbox: deque[tuple[bytes, bool]] = deque()  # (data, solicited)
        self.fault: BaseException | None = None
        self.discarded: list[bytes] = []
        self.closed = False

    def _absorb(self, writing: bool = False) -> None:
        while self.expected and isinstance(self.expected[0], Unsolicited):
            item = self.expected[0]
            assert isinstance(item, Unsolicited)
            if item.with_next and not writing:
                return
            self.expected.popleft()
            self.inbox.append((item.data, False))

    def write(self, message: str) -> int:
        data = (message + self.write_termination).encode("ascii")
        if self.fault is not None:
            fault, self.fault = self.fault, None
            raise fault
        unread = [reply for reply, solicited in self.inbox if solicited]
        if unread:
            pytest.fail(f"sent {data!r} before reading the reply {unread[0]!r}")
        self._absorb(writing=True)
        if not self.expected:
            pytest.fail(f"unexpected write {data!r}: the transcript is finished")
        entry = self.expected.popleft()
        assert isinstance(entry, tuple), entry
        sent, reply = entry
        if data != sent:
            pytest.fail(f"sent {data!r}, expected {sent!r}")
        if isinstance(reply, WriteFails):
            raise reply.error
        if isinstance(reply, BaseException):
            self.fault = reply
        elif reply is not None:
            self.inbox.append((reply, True))
        self._absorb()
        return len(data)

    def read(self) -> str:
        if self.fault is not None:
            fault, self.fault = self.fault, None
            raise fault
        if not self.inbox:
            pytest.fail("read although no reply is expected")
        reply, _ = self.inbox.popleft()
        text = reply.decode("ascii")
        term = self.read_termination or ""
        if not text.endswith(term):
            pytest.fail(f"reply {reply!r} does not end with the read termination {term!r}")
        return text[: len(text) - len(term)]

    def discard_input(self) -> list[str]:
        """Drop and return the waiting input (what a driver does before a query)."""
        self._absorb()
        lines = [data.decode("ascii").strip() for data, _ in self.inbox]
        self.discarded += [data for data, _ in self.inbox]
        self.inbox.clear()
        return lines

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        if self.inbox:
            pytest.fail(f"input {list(self.inbox)!r} was never read nor discarded")
        if self.expected:
            pytest.fail(f"exchanges left over: {list(self.expected)!r}")


@pytest.fixture
def expect() -> Callable[..., object]:
    """``with expect(Driver, exchanges) as inst:`` connects through a :class:`Transcript`.

    The instrument is named 'smu1' and connected (so ``exchanges`` start with its connect
    prelude); at the end every exchange must have been used.
    """

    @contextmanager
    def run(
        driver: type[Instrument], exchanges: Sequence[Exchange | Unsolicited]
    ) -> Iterator[Instrument]:
        transcript = Transcript(exchanges)
        instrument = driver(transcript, name="smu1", timeout=0.5)
        instrument.connect()
        yield instrument
        transcript.assert_done()

    return run


@pytest.fixture
def transcript() -> type[Transcript]:
    """The :class:`Transcript` class, for tests that drive ``connect()`` themselves."""
    return Transcript


@pytest.fixture
def sim_yaml() -> Callable[[str], str]:
    """Path of a pyvisa-sim definition in tests/drivers, ready for ``ResourceManager``."""
    return lambda name: f"{HERE / name}@sim"


# --- hardware tests ----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device-address",
        action="append",
        default=[],
        metavar="DRIVER=ADDRESS",
        help="run tests/drivers/test_hardware.py against a real instrument: the config's "
        "driver name (keithley2400, keithley2450, keithley2600, keysight_b2900) and its "
        "VISA address; repeat for several instruments",
    )


def device_addresses(config: pytest.Config) -> dict[str, str]:
    """``--device-address`` values as driver name -> address (UsageError on a bad one)."""
    addresses: dict[str, str] = {}
    for item in config.getoption("device_address", default=None) or []:
        driver, sep, address = item.partition("=")
        if not sep or not driver or not address:
            raise pytest.UsageError(f"--device-address {item!r} is not DRIVER=ADDRESS")
        addresses[driver.strip()] = address.strip()
    return addresses
