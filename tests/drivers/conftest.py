"""Protocol-level test helpers: a transcript resource that replays exact bytes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivers.instrument import Instrument

HERE = Path(__file__).parent

#: One exchange: the exact bytes the driver must send, and the bytes answered. None: no reply;
#: an exception instance: raised by the driver's next read or write (the link died).
Exchange = tuple[bytes, "bytes | BaseException | None"]


class Transcript:
    """A fake pyvisa message-based resource replaying expected exchanges.

    It behaves like pyvisa for terminations (``write`` appends ``write_termination``; ``read``
    strips ``read_termination``), starting from pyvisa's defaults, so a driver that forgets to
    set ``'\\n'`` fails. Any unexpected write or read fails the test at once (``pytest.fail``
    raises a BaseException, so no driver ``except Exception`` can hide it);
    :meth:`assert_done` fails on leftover exchanges.
    """

    def __init__(self, exchanges: Sequence[Exchange]) -> None:
        self.expected = deque(exchanges)
        self.write_termination = "\r\n"
        self.read_termination: str | None = None
        self.timeout: float | None = 2000.0
        self.pending: bytes | BaseException | None = None
        self.closed = False

    def write(self, message: str) -> int:
        data = (message + self.write_termination).encode("ascii")
        if isinstance(self.pending, BaseException):
            fault, self.pending = self.pending, None
            raise fault
        if self.pending is not None:
            pytest.fail(f"sent {data!r} before reading the reply {self.pending!r}")
        if not self.expected:
            pytest.fail(f"unexpected write {data!r}: the transcript is finished")
        sent, self.pending = self.expected.popleft()
        if data != sent:
            pytest.fail(f"sent {data!r}, expected {sent!r}")
        return len(data)

    def read(self) -> str:
        reply, self.pending = self.pending, None
        if isinstance(reply, BaseException):
            raise reply
        if reply is None:
            pytest.fail("read although no reply is expected")
        text = reply.decode("ascii")
        term = self.read_termination or ""
        if not text.endswith(term):
            pytest.fail(f"reply {reply!r} does not end with the read termination {term!r}")
        return text[: len(text) - len(term)]

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        if self.pending is not None:
            pytest.fail(f"reply {self.pending!r} was never read")
        if self.expected:
            pytest.fail(f"exchanges left over: {list(self.expected)!r}")


@pytest.fixture
def expect() -> Callable[..., object]:
    """``with expect(Driver, exchanges) as inst:`` connects through a :class:`Transcript`.

    The instrument is named 'smu1' and connected (so ``exchanges`` start with its connect
    prelude); at the end every exchange must have been used.
    """

    @contextmanager
    def run(driver: type[Instrument], exchanges: Sequence[Exchange]) -> Iterator[Instrument]:
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
