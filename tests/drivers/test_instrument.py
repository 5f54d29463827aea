"""The declarative driver base and the transcript adapter the protocol tests rely on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from drivers.instrument import (
    Instrument,
    OneOf,
    Range,
    control,
    measurement,
    parse_bool,
    setting,
    short,
)
from hil.errors import InstrumentError, SafetyError


@dataclass(frozen=True)
class Limits:
    max_level: float


class Box(Instrument):
    """A toy single-channel instrument with one quantity of each kind."""

    models = {"BOX1": Limits(max_level=5.0)}
    level = control("LEV?", "LEV {value}", validator=Range("-max_level", "max_level"), units="V")
    mode = control("MODE?", "MODE {value}", values={"fast": "FAST", "slow": "SLOW"})
    temperature = measurement("TEMP?", units="K")
    beep = setting("BEEP {value}", validator=OneOf((1, 2, 3)))


IDN = (b"*IDN?\n", b"ACME,BOX1,42,1.0\n")


def test_quantities_of_each_kind(expect) -> None:
    exchanges = [
        IDN,
        (b"LEV -2.5\n", None),
        (b"LEV?\n", b"-2.5\n"),
        (b"MODE SLOW\n", None),
        (b"MODE?\n", b"FAST\n"),
        (b"TEMP?\n", b"300.5\n"),
        (b"BEEP 2\n", None),
    ]
    with expect(Box, exchanges) as box:
        box.level = -2.5
        assert box.level == -2.5
        box.mode = "slow"
        assert box.mode == "fast"
        assert box.temperature == 300.5
        box.beep = 2
        assert (box.model, box.idn) == ("BOX1", "ACME,BOX1,42,1.0")


def test_read_only_and_write_only_quantities_refuse(expect) -> None:
    with expect(Box, [IDN]) as box:
        with pytest.raises(AttributeError, match="read-only"):
            box.temperature = 1.0
        with pytest.raises(AttributeError, match="write-only"):
            _ = box.beep


def test_validators_name_value_and_bounds_and_never_clamp(expect) -> None:
    with expect(Box, [IDN, (b"LEV 3\n", None), (b"LEV -1.5\n", None)]) as box:
        message = r"Box 'smu1': level = 5\.01 V is outside \[-5, 5\] V; nothing was sent"
        with pytest.raises(SafetyError, match=message):
            box.level = 5.01
        with pytest.raises(SafetyError, match=r"level = True V is not a number in \[-5, 5\]"):
            box.level = True
        box.level = np.int64(3)  # numpy scalars are numbers too
        box.level = np.float32(-1.5)
        with pytest.raises(SafetyError, match=r"beep = 4 is not one of \[1, 2, 3\]"):
            box.beep = 4
    assert Box.level.__doc__ == "[V]"


def test_connection_reset_becomes_instrument_error(expect) -> None:
    with expect(Box, [IDN, (b"TEMP?\n", ConnectionResetError(104, "reset by peer"))]) as box:
        with pytest.raises(InstrumentError, match="smu1 during 'TEMP\\?': connection lost"):
            _ = box.temperature


def test_other_visa_errors_become_instrument_error(expect) -> None:
    lost = VisaIOError(constants.StatusCode.error_connection_lost)
    with expect(Box, [IDN, (b"TEMP?\n", lost)]) as box:
        with pytest.raises(InstrumentError, match="I/O error"):
            _ = box.temperature


def test_not_connected_and_closed_instruments_say_so(expect) -> None:
    box = Box("TCPIP::127.0.0.1::1::SOCKET", name="box")
    with pytest.raises(InstrumentError, match="not connected"):
        _ = box.temperature
    with expect(Box, [IDN]) as box:
        box.close()
        with pytest.raises(InstrumentError, match="smu1.*not connected"):
            box.write("X")


def test_unreachable_address_is_an_instrument_error() -> None:
    box = Box("TCPIP::127.0.0.1::1::SOCKET", name="box", timeout=0.2)
    with pytest.raises(InstrumentError) as info:
        box.connect()
    assert info.value.instrument == "box"


def test_long_commands_are_quoted_short() -> None:
    line = "smua.source.leveli = 1e-06; " * 200
    assert short("*IDN?") == "*IDN?"
    assert short(line) == f"{line[:160]}... ({len(line)} bytes)"
    box = Box("TCPIP::127.0.0.1::1::SOCKET", name="box")
    with pytest.raises(InstrumentError) as info:
        box.write(line)  # not connected: the error quotes the line cut
    assert info.value.command == short(line) and len(str(info.value)) < 250


@pytest.mark.parametrize(
    "reply, value",
    [("1", True), ("0", False), ("ON", True), ("off", False), ("true", True)]
    + [("1.00000e+00", True), ("0.00000e+00", False), ("+0.000000E+00", False)],
)
def test_on_off_replies_parse(reply: str, value: bool) -> None:
    assert parse_bool(reply) is value


@pytest.mark.parametrize("reply", ["+5.000000E-01", "2", "-1", "garbage", ""])
def test_a_reading_is_not_an_on_off_reply(reply: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(reply)


def test_a_query_with_a_reply_owed_resynchronises_first(expect, caplog) -> None:
    timeout = VisaIOError(constants.StatusCode.error_timeout)
    exchanges = [IDN, (b"TEMP?\n", timeout), IDN, (b"LEV?\n", b"1.5\n")]
    with expect(Box, exchanges) as box:
        with pytest.raises(InstrumentError, match="timeout"):
            _ = box.temperature
        assert box.level == 1.5
        assert box.resyncs == 1 and box.commands_sent == 4


class TestTranscriptAdapter:
    """The adapter must fail loudly, or the transcript tests would prove nothing."""

    def test_unexpected_write_fails(self, expect) -> None:
        with pytest.raises(pytest.fail.Exception, match="sent b'LEV 1\\\\n', expected b'LEV 2"):
            with expect(Box, [IDN, (b"LEV 2\n", None)]) as box:
                box.level = 1

    def test_write_after_the_end_fails(self, expect) -> None:
        with pytest.raises(pytest.fail.Exception, match="transcript is finished"):
            with expect(Box, [IDN]) as box:
                box.level = 1

    def test_leftover_exchange_fails(self, expect) -> None:
        with pytest.raises(pytest.fail.Exception, match="left over"):
            with expect(Box, [IDN, (b"LEV 2\n", None)]):
                pass

    def test_unset_terminations_fail(self, transcript) -> None:
        fake = transcript([(b"*IDN?\n", b"x\n")])
        with pytest.raises(pytest.fail.Exception, match="expected b'\\*IDN\\?\\\\n'"):
            fake.write("*IDN?")  # pyvisa's default write termination is \r\n
