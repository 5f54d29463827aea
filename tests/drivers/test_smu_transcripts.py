"""Exact-bytes transcripts of every quantity and method of the three SMU drivers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from drivers import ErrorEntry, Keithley2400, Keithley2600, KeysightB2900, Reading, Smu
from hil.errors import InstrumentError, SafetyError


@dataclass
class Case:
    """Everything the transcript tests need about one driver."""

    driver: type[Smu]
    prelude: list[tuple[bytes, bytes | None]]  # connect: *IDN? and configure()
    channel: str
    sets: list[tuple[str, Any, bytes]]  # quantity, value, bytes sent
    gets: list[tuple[str, bytes, bytes, Any]]  # quantity, bytes sent, reply, parsed value
    methods: dict[str, tuple[list[tuple[bytes, bytes | None]], Any]] = field(default_factory=dict)


K2400 = Case(
    Keithley2400,
    [
        (b"*IDN?\n", b"KEITHLEY INSTRUMENTS INC.,MODEL 2400,4097215,C32 Oct 4 2010/A02 /K/J\n"),
        (b":FORM:ELEM VOLT,CURR,STAT\n", None),
        (b':SENS:FUNC "VOLT","CURR"\n', None),
    ],
    "1",
    sets=[
        ("source_mode", "voltage", b":SOUR:FUNC VOLT\n"),
        ("source_mode", "current", b":SOUR:FUNC CURR\n"),
        ("voltage_setpoint", 1.5, b":SOUR:VOLT:LEV 1.5\n"),
        ("voltage_setpoint", -210, b":SOUR:VOLT:LEV -210\n"),
        ("current_setpoint", 1e-6, b":SOUR:CURR:LEV 1e-06\n"),
        ("current_limit", 1e-3, b":SENS:CURR:PROT 0.001\n"),
        ("voltage_limit", 2.0, b":SENS:VOLT:PROT 2\n"),
        ("output_enabled", True, b":OUTP ON\n"),
        ("output_enabled", False, b":OUTP OFF\n"),
        ("sense_functions", "current", b':SENS:FUNC "CURR"\n'),
    ],
    gets=[
        ("source_mode", b":SOUR:FUNC?\n", b"CURR\n", "current"),
        ("voltage_setpoint", b":SOUR:VOLT:LEV?\n", b"+1.500000E+00\n", 1.5),
        ("current_setpoint", b":SOUR:CURR:LEV?\n", b"-1.000000E-06\n", -1e-6),
        ("current_limit", b":SENS:CURR:PROT?\n", b"+1.050000E-04\n", 1.05e-4),
        ("voltage_limit", b":SENS:VOLT:PROT?\n", b"+2.100000E+01\n", 21.0),
        ("output_enabled", b":OUTP?\n", b"1\n", True),
        ("reading", b":READ?\n", b"+1.000000E+00,+1.000000E-03,+8.000000E+00\n", (1.0, 1e-3, 8)),
        ("current_limit_tripped", b":SENS:CURR:PROT:TRIP?\n", b"1\n", True),
        ("voltage_limit_tripped", b":SENS:VOLT:PROT:TRIP?\n", b"0\n", False),
    ],
    methods={
        "source_voltage": (
            [
                (b":SENS:CURR:PROT 0.001\n", None),
                (b":SOUR:VOLT:LEV 0.5\n", None),
                (b":SOUR:FUNC VOLT\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b":SENS:VOLT:PROT 2\n", None),
                (b":SOUR:CURR:LEV 1e-05\n", None),
                (b":SOUR:FUNC CURR\n", None),
            ],
            None,
        ),
        "measure_voltage": (
            [(b":READ?\n", b"+5.000000E-01,+5.000000E-04,+0.000000E+00\n")],
            Reading(0.5, "V", False),
        ),
        "measure_current": (
            [(b":READ?\n", b"+1.000000E-01,+1.000000E-04,+8.000000E+00\n")],
            Reading(1e-4, "A", True),
        ),
        "in_compliance": (
            [(b":SENS:CURR:PROT:TRIP?\n", b"0\n"), (b":SENS:VOLT:PROT:TRIP?\n", b"1\n")],
            True,
        ),
        "errors": (
            [(b":SYST:ERR?\n", b'-113,"Undefined header"\n'), (b":SYST:ERR?\n", b'0,"No error"\n')],
            [ErrorEntry(-113, "Undefined header")],
        ),
        "reset": (
            [
                (b"*RST\n", None),
                (b":FORM:ELEM VOLT,CURR,STAT\n", None),
                (b':SENS:FUNC "VOLT","CURR"\n', None),
            ],
            None,
        ),
        "safe_state": (
            [(b":SOUR:VOLT:LEV 0\n", None), (b":SOUR:FUNC VOLT\n", None), (b":OUTP OFF\n", None)],
            None,
        ),
    },
)

K2600 = Case(
    Keithley2600,
    [(b"*IDN?\n", b"Keithley Instruments Inc., Model 2636B, 4321337, 3.2.2\n")],
    "smub",
    sets=[
        ("source_mode", "voltage", b"smub.source.func = smub.OUTPUT_DCVOLTS\n"),
        ("source_mode", "current", b"smub.source.func = smub.OUTPUT_DCAMPS\n"),
        ("voltage_setpoint", -1.25, b"smub.source.levelv = -1.25\n"),
        ("current_setpoint", 2e-3, b"smub.source.leveli = 0.002\n"),
        ("current_limit", 1e-4, b"smub.source.limiti = 0.0001\n"),
        ("voltage_limit", 5, b"smub.source.limitv = 5\n"),
        ("output_enabled", True, b"smub.source.output = smub.OUTPUT_ON\n"),
        ("output_enabled", False, b"smub.source.output = smub.OUTPUT_OFF\n"),
    ],
    gets=[
        ("source_mode", b"print(smub.source.func)\n", b"1.00000e+00\n", "voltage"),
        ("source_mode", b"print(smub.source.func)\n", b"0.00000e+00\n", "current"),
        ("voltage_setpoint", b"print(smub.source.levelv)\n", b"-1.25000e+00\n", -1.25),
        ("current_setpoint", b"print(smub.source.leveli)\n", b"2.00000e-03\n", 2e-3),
        ("current_limit", b"print(smub.source.limiti)\n", b"1.00000e-04\n", 1e-4),
        ("voltage_limit", b"print(smub.source.limitv)\n", b"5.00000e+00\n", 5.0),
        ("output_enabled", b"print(smub.source.output)\n", b"0.00000e+00\n", False),
        ("voltage", b"print(smub.measure.v())\n", b"9.99980e-01\n", 0.99998),
        ("current", b"print(smub.measure.i())\n", b"-3.10000e-07\n", -3.1e-7),
        ("compliance_tripped", b"print(smub.source.compliance)\n", b"true\n", True),
    ],
    methods={
        "source_voltage": (
            [
                (b"smub.source.limiti = 0.001\n", None),
                (b"smub.source.levelv = 0.5\n", None),
                (b"smub.source.func = smub.OUTPUT_DCVOLTS\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b"smub.source.limitv = 2\n", None),
                (b"smub.source.leveli = 1e-05\n", None),
                (b"smub.source.func = smub.OUTPUT_DCAMPS\n", None),
            ],
            None,
        ),
        "measure_voltage": (
            [
                (b"print(smub.measure.v())\n", b"5.00000e-01\n"),
                (b"print(smub.source.compliance)\n", b"false\n"),
            ],
            Reading(0.5, "V", False),
        ),
        "measure_current": (
            [
                (b"print(smub.measure.i())\n", b"1.00000e-03\n"),
                (b"print(smub.source.compliance)\n", b"true\n"),
            ],
            Reading(1e-3, "A", True),
        ),
        "in_compliance": ([(b"print(smub.source.compliance)\n", b"false\n")], False),
        "errors": (
            [
                (b"print(errorqueue.count)\n", b"1.00000e+00\n"),
                (
                    b"print(errorqueue.next())\n",
                    b"-2.85000e+02\tTSP Syntax error at line 1\t2.00000e+00\t0.00000e+00\n",
                ),
                (b"print(errorqueue.count)\n", b"0.00000e+00\n"),
            ],
            [ErrorEntry(-285, "TSP Syntax error at line 1")],
        ),
        "reset": ([(b"reset()\n", None)], None),
        "safe_state": (
            [
                (b"smua.source.levelv = 0\n", None),
                (b"smua.source.func = smua.OUTPUT_DCVOLTS\n", None),
                (b"smua.source.output = smua.OUTPUT_OFF\n", None),
                (b"smub.source.levelv = 0\n", None),
                (b"smub.source.func = smub.OUTPUT_DCVOLTS\n", None),
                (b"smub.source.output = smub.OUTPUT_OFF\n", None),
            ],
            None,
        ),
    },
)

B2900 = Case(
    KeysightB2900,
    [
        (b"*IDN?\n", b"Keysight Technologies,B2902A,MY51141234,3.4.2011.5100\n"),
        (b":OUTP1:ON:AUTO OFF\n", None),
        (b":OUTP2:ON:AUTO OFF\n", None),
    ],
    "2",
    sets=[
        ("source_mode", "voltage", b":SOUR2:FUNC:MODE VOLT\n"),
        ("source_mode", "current", b":SOUR2:FUNC:MODE CURR\n"),
        ("voltage_setpoint", 3.3, b":SOUR2:VOLT 3.3\n"),
        ("current_setpoint", -1e-3, b":SOUR2:CURR -0.001\n"),
        ("current_limit", 1e-6, b":SENS2:CURR:PROT 1e-06\n"),
        ("voltage_limit", 10.0, b":SENS2:VOLT:PROT 10\n"),
        ("output_enabled", True, b":OUTP2 ON\n"),
        ("output_enabled", False, b":OUTP2 OFF\n"),
        ("auto_output_on", True, b":OUTP2:ON:AUTO ON\n"),
    ],
    gets=[
        ("source_mode", b":SOUR2:FUNC:MODE?\n", b"VOLT\n", "voltage"),
        ("voltage_setpoint", b":SOUR2:VOLT?\n", b"+3.300000E+00\n", 3.3),
        ("current_setpoint", b":SOUR2:CURR?\n", b"-1.000000E-03\n", -1e-3),
        ("current_limit", b":SENS2:CURR:PROT?\n", b"+1.000000E-06\n", 1e-6),
        ("voltage_limit", b":SENS2:VOLT:PROT?\n", b"+1.000000E+01\n", 10.0),
        ("output_enabled", b":OUTP2?\n", b"0\n", False),
        ("voltage", b":MEAS:VOLT? (@2)\n", b"+3.299990E+00\n", 3.29999),
        ("current", b":MEAS:CURR? (@2)\n", b"+1.234000E-05\n", 1.234e-5),
        ("current_limit_tripped", b":SENS2:CURR:PROT:TRIP? (@2)\n", b"1\n", True),
        ("voltage_limit_tripped", b":SENS2:VOLT:PROT:TRIP? (@2)\n", b"0\n", False),
    ],
    methods={
        "source_voltage": (
            [
                (b":SENS2:CURR:PROT 0.001\n", None),
                (b":SOUR2:VOLT 0.5\n", None),
                (b":SOUR2:FUNC:MODE VOLT\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b":SENS2:VOLT:PROT 2\n", None),
                (b":SOUR2:CURR 1e-05\n", None),
                (b":SOUR2:FUNC:MODE CURR\n", None),
            ],
            None,
        ),
        "measure_voltage": (
            [
                (b":MEAS:VOLT? (@2)\n", b"+5.000000E-01\n"),
                (b":SENS2:CURR:PROT:TRIP? (@2)\n", b"0\n"),
                (b":SENS2:VOLT:PROT:TRIP? (@2)\n", b"0\n"),
            ],
            Reading(0.5, "V", False),
        ),
        "measure_current": (
            [
                (b":MEAS:CURR? (@2)\n", b"+1.000000E-03\n"),
                (b":SENS2:CURR:PROT:TRIP? (@2)\n", b"1\n"),
            ],
            Reading(1e-3, "A", True),
        ),
        "in_compliance": (
            [
                (b":SENS2:CURR:PROT:TRIP? (@2)\n", b"0\n"),
                (b":SENS2:VOLT:PROT:TRIP? (@2)\n", b"1\n"),
            ],
            True,
        ),
        "errors": (
            [
                (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
                (b":SYST:ERR?\n", b'-113,"Undefined header"\n'),
                (b":SYST:ERR?\n", b'+0,"No error"\n'),
            ],
            [ErrorEntry(-222, "Data out of range"), ErrorEntry(-113, "Undefined header")],
        ),
        "reset": (
            [(b"*RST\n", None), (b":OUTP1:ON:AUTO OFF\n", None), (b":OUTP2:ON:AUTO OFF\n", None)],
            None,
        ),
        "safe_state": (
            [
                (b":SOUR1:VOLT 0\n", None),
                (b":SOUR1:FUNC:MODE VOLT\n", None),
                (b":OUTP1 OFF\n", None),
                (b":SOUR2:VOLT 0\n", None),
                (b":SOUR2:FUNC:MODE VOLT\n", None),
                (b":OUTP2 OFF\n", None),
            ],
            None,
        ),
    },
)

CASES = {"2400": K2400, "2600": K2600, "B2900": B2900}
CALLS = {  # method -> how the test calls it on (instrument, channel)
    "source_voltage": lambda smu, ch: ch.source_voltage(0.5, compliance_current=1e-3),
    "source_current": lambda smu, ch: ch.source_current(1e-5, compliance_voltage=2.0),
    "measure_voltage": lambda smu, ch: ch.measure_voltage(),
    "measure_current": lambda smu, ch: ch.measure_current(),
    "in_compliance": lambda smu, ch: ch.in_compliance(),
    "errors": lambda smu, ch: smu.errors(),
    "reset": lambda smu, ch: smu.reset(),
    "safe_state": lambda smu, ch: smu.safe_state(),
}


def rows(table: str) -> list[Any]:
    return [
        pytest.param(key, *row, id=f"{key}-{row[0]}-{i}")
        for key, case in CASES.items()
        for i, row in enumerate(getattr(case, table))
    ]


@pytest.mark.parametrize(("key", "quantity", "value", "sent"), rows("sets"))
def test_set_sends_exact_bytes(expect, key: str, quantity: str, value: Any, sent: bytes) -> None:
    case = CASES[key]
    with expect(case.driver, [*case.prelude, (sent, None)]) as smu:
        setattr(smu[case.channel], quantity, value)


@pytest.mark.parametrize(("key", "quantity", "sent", "reply", "value"), rows("gets"))
def test_get_parses_reply(
    expect, key: str, quantity: str, sent: bytes, reply: bytes, value: Any
) -> None:
    case = CASES[key]
    with expect(case.driver, [*case.prelude, (sent, reply)]) as smu:
        assert getattr(smu[case.channel], quantity) == pytest.approx(value)


@pytest.mark.parametrize("key", CASES)
@pytest.mark.parametrize("method", CALLS)
def test_method_transcript(expect, key: str, method: str) -> None:
    case = CASES[key]
    exchanges, result = case.methods[method]
    with expect(case.driver, [*case.prelude, *exchanges]) as smu:
        assert CALLS[method](smu, smu[case.channel]) == result


@pytest.mark.parametrize("key", CASES)
def test_context_manager_runs_safe_state_and_closes(expect, key: str) -> None:
    case = CASES[key]
    exchanges, _ = case.methods["safe_state"]
    with expect(case.driver, [*case.prelude, *exchanges]) as smu, smu:
        pass
    with pytest.raises(InstrumentError, match="not connected"):
        smu.errors()


@pytest.mark.parametrize("key", CASES)
@pytest.mark.parametrize(
    ("quantity", "value", "bounds"),
    [
        ("voltage_setpoint", 1e3, "outside [-"),
        ("current_setpoint", -20.0, "outside [-"),
        ("current_limit", 0.0, "outside [1e-09, "),
        ("voltage_limit", -1.0, "outside [0.01, "),
        ("voltage_setpoint", float("nan"), "outside"),
        ("current_limit", None, "not a number in [1e-09, "),
        ("output_enabled", "yes", "not one of [True, False]"),
        ("source_mode", "resistance", "not one of ['voltage', 'current']"),
    ],
)
def test_out_of_range_raises_and_sends_nothing(
    expect, key: str, quantity: str, value: Any, bounds: str
) -> None:
    case = CASES[key]
    with expect(case.driver, case.prelude) as smu:  # nothing beyond connecting is allowed
        with pytest.raises(SafetyError) as info:
            setattr(smu[case.channel], quantity, value)
    message = str(info.value)
    for part in ("'smu1'", f"channel {case.channel!r}", quantity, repr(value), bounds):
        assert part in message


@pytest.mark.parametrize("key", CASES)
def test_source_checks_both_values_before_sending(expect, key: str) -> None:
    case = CASES[key]
    limits = case.driver.models[next(iter(case.driver.models))]
    with expect(case.driver, case.prelude) as smu:
        channel = smu[case.channel]
        with pytest.raises(SafetyError, match=r"current_limit = 5\.0 A is outside"):
            channel.source_voltage(1.0, compliance_current=5.0)
        with pytest.raises(SafetyError, match=r"voltage_setpoint = 2000\.0 V"):
            channel.source_voltage(2000.0, compliance_current=1e-3)
        with pytest.raises(SafetyError, match=r"voltage_limit = 0 V"):
            channel.source_current(1e-3, compliance_voltage=0)
        with pytest.raises(TypeError):
            channel.source_voltage(1.0)  # type: ignore[call-arg]  # compliance is mandatory
    assert limits.max_voltage < 2000.0


@pytest.mark.parametrize("key", CASES)
def test_timeout_names_instrument_and_command(expect, key: str) -> None:
    case = CASES[key]
    quantity, sent, _, _ = case.gets[1]
    timeout = VisaIOError(constants.StatusCode.error_timeout)
    with expect(case.driver, [*case.prelude, (sent, timeout)]) as smu:
        with pytest.raises(InstrumentError) as info:
            getattr(smu[case.channel], quantity)
    assert info.value.instrument == "smu1"
    assert info.value.command == sent.decode().strip()
    assert "timeout" in info.value.reason


@pytest.mark.parametrize("key", CASES)
def test_safe_state_logs_instead_of_raising_when_link_dies(expect, key: str, caplog) -> None:
    case = CASES[key]
    first, *_ = case.methods["safe_state"][0]
    with (
        expect(case.driver, [*case.prelude, (first[0], BrokenPipeError(32, "Broken pipe"))]) as smu,
        caplog.at_level(logging.ERROR),
    ):
        smu.safe_state()  # the second command meets the dead link; nothing is raised
    assert "safe_state failed" in caplog.text and "Broken pipe" in caplog.text


@pytest.mark.parametrize("key", CASES)
def test_unknown_model_is_refused_listing_known_models(transcript, key: str) -> None:
    case = CASES[key]
    transcript = transcript([(b"*IDN?\n", b"ACME,Model 9999,1,1.0\n")])
    smu = case.driver(transcript, name="smu1")
    with pytest.raises(InstrumentError, match="'9999'.*known models: ") as info:
        smu.connect()
    assert info.value.command == "*IDN?"
    assert ", ".join(case.driver.models) in info.value.reason
    assert transcript.closed


def test_reply_that_does_not_parse_is_an_instrument_error(expect) -> None:
    case = K2400
    with expect(case.driver, [*case.prelude, (b":SOUR:VOLT:LEV?\n", b"garbage\n")]) as smu:
        with pytest.raises(InstrumentError, match="unexpected reply 'garbage'"):
            _ = smu["1"].voltage_setpoint


def test_unknown_channel_names_the_known_ones(expect) -> None:
    with expect(Keithley2600, K2600.prelude) as smu:
        assert smu.channels == ("smua", "smub")
        with pytest.raises(KeyError, match="smuc.*'smua', 'smub'"):
            smu["smuc"]
