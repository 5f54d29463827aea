"""Exact-bytes transcripts of every quantity and method of the four SMU drivers.

The command forms are the ones each driver module cites from its manual (Keithley 2400
User's Manual section 18, 2450 Reference Manual section 6, 2600B Reference Manual section 9,
Keysight B2900/B2960 SCPI Command Reference chapter 4), so these transcripts are where a form
that departs from the manual shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from drivers import ErrorEntry, Keithley2400, Keithley2600, KeysightB2900, Reading, Smu
from drivers.keithley2450 import Keithley2450
from drivers.smu import SafeStateResult
from hil.errors import InstrumentError, SafetyError
from tests.drivers.conftest import Unsolicited, WriteFails

TIMEOUT = VisaIOError(constants.StatusCode.error_timeout)


@dataclass
class Case:
    """Everything the transcript tests need about one driver."""

    driver: type[Smu]
    prelude: list[tuple[bytes, bytes | None]]  # connect: *IDN? and configure()
    channel: str
    sets: list[tuple[str, Any, bytes]]  # quantity, value, bytes sent
    gets: list[tuple[str, bytes, bytes, Any]]  # quantity, bytes sent, reply, parsed value
    methods: dict[str, tuple[list[Any], Any]] = field(default_factory=dict)


def scpi_safe_state(ch: str, out: str, volt: str, curr: str, func: str) -> list[Any]:
    """Safe-state transcript of a one-channel SCPI SMU: output off, levels 0, read back, V."""
    return [
        (f"{out} OFF\n".encode(), None),
        (f"{volt} 0\n".encode(), None),
        (f"{curr} 0\n".encode(), None),
        (f"{out}?\n".encode(), b"0\n"),
        (f"{func} VOLT\n".encode(), None),
    ]


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
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC VOLT\n", None),
                (b":SENS:CURR:PROT 0.001\n", None),
                (b":SENS:CURR:PROT?\n", b"+1.000000E-03\n"),
                (b":SOUR:VOLT:LEV 0.5\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC CURR\n", None),
                (b":SENS:VOLT:PROT 2\n", None),
                (b":SENS:VOLT:PROT?\n", b"+2.000000E+00\n"),
                (b":SOUR:CURR:LEV 1e-05\n", None),
            ],
            None,
        ),
        "configure_source": (
            [
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC CURR\n", None),
                (b":SOUR:VOLT:LEV 0\n", None),
                (b":SOUR:CURR:LEV 0\n", None),
                (b":SENS:VOLT:PROT 2\n", None),
                (b":SENS:VOLT:PROT?\n", b"+2.000000E+00\n"),
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
                (b"*CLS\n", None),
                (b":TRIG:COUN 1\n", None),
                (b":FORM:ELEM VOLT,CURR,STAT\n", None),
                (b':SENS:FUNC "VOLT","CURR"\n', None),
            ],
            None,
        ),
        "safe_state": (
            scpi_safe_state("1", ":OUTP", ":SOUR:VOLT:LEV", ":SOUR:CURR:LEV", ":SOUR:FUNC"),
            SafeStateResult("smu1"),
        ),
    },
)

K2450 = Case(
    Keithley2450,
    [(b"*IDN?\n", b"KEITHLEY INSTRUMENTS,MODEL 2450,04096218,1.7.12b\n")],
    "1",
    sets=[
        ("source_mode", "voltage", b":SOUR:FUNC VOLT\n"),
        ("source_mode", "current", b":SOUR:FUNC CURR\n"),
        ("voltage_setpoint", 1.5, b":SOUR:VOLT:LEV 1.5\n"),
        ("current_setpoint", -1e-6, b":SOUR:CURR:LEV -1e-06\n"),
        ("current_limit", 1e-3, b":SOUR:VOLT:ILIM 0.001\n"),
        ("voltage_limit", 2.0, b":SOUR:CURR:VLIM 2\n"),
        ("output_enabled", True, b":OUTP ON\n"),
        ("output_enabled", False, b":OUTP OFF\n"),
        ("sense_function", "voltage", b':SENS:FUNC "VOLT"\n'),
    ],
    gets=[
        ("source_mode", b":SOUR:FUNC?\n", b"VOLT\n", "voltage"),
        ("voltage_setpoint", b":SOUR:VOLT:LEV?\n", b"+1.500000E+00\n", 1.5),
        ("current_setpoint", b":SOUR:CURR:LEV?\n", b"-1.000000E-06\n", -1e-6),
        ("current_limit", b":SOUR:VOLT:ILIM?\n", b"+1.050000E-04\n", 1.05e-4),
        ("voltage_limit", b":SOUR:CURR:VLIM?\n", b"+2.100000E+01\n", 21.0),
        ("output_enabled", b":OUTP?\n", b"1\n", True),
        ("voltage", b":MEAS:VOLT?\n", b"+9.999800E-01\n", 0.99998),
        ("current", b":MEAS:CURR?\n", b"-3.100000E-07\n", -3.1e-7),
        ("current_limit_tripped", b":SOUR:VOLT:ILIM:TRIP?\n", b"1\n", True),
        ("voltage_limit_tripped", b":SOUR:CURR:VLIM:TRIP?\n", b"0\n", False),
    ],
    methods={
        "source_voltage": (
            [
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC VOLT\n", None),
                (b":SOUR:VOLT:ILIM 0.001\n", None),
                (b":SOUR:VOLT:ILIM?\n", b"+1.000000E-03\n"),
                (b":SOUR:VOLT:LEV 0.5\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC CURR\n", None),
                (b":SOUR:CURR:VLIM 2\n", None),
                (b":SOUR:CURR:VLIM?\n", b"+2.000000E+00\n"),
                (b":SOUR:CURR:LEV 1e-05\n", None),
            ],
            None,
        ),
        "configure_source": (
            [
                (b":OUTP?\n", b"0\n"),
                (b":SOUR:FUNC CURR\n", None),
                (b":SOUR:VOLT:LEV 0\n", None),
                (b":SOUR:CURR:LEV 0\n", None),
                (b":SOUR:CURR:VLIM 2\n", None),
                (b":SOUR:CURR:VLIM?\n", b"+2.000000E+00\n"),
            ],
            None,
        ),
        "measure_voltage": (
            [
                (b":MEAS:VOLT?\n", b"+5.000000E-01\n"),
                (b":SOUR:FUNC?\n", b"CURR\n"),  # the function unknown: read, then its trip
                (b":SOUR:CURR:VLIM:TRIP?\n", b"0\n"),
            ],
            Reading(0.5, "V", False),
        ),
        "measure_current": (
            [
                (b":MEAS:CURR?\n", b"+1.000000E-03\n"),
                (b":SOUR:FUNC?\n", b"VOLT\n"),
                (b":SOUR:VOLT:ILIM:TRIP?\n", b"1\n"),
            ],
            Reading(1e-3, "A", True),
        ),
        "in_compliance": (
            [(b":SOUR:FUNC?\n", b"VOLT\n"), (b":SOUR:VOLT:ILIM:TRIP?\n", b"0\n")],
            False,
        ),
        "errors": (
            [(b":SYST:ERR?\n", b'-113,"Undefined header"\n'), (b":SYST:ERR?\n", b'0,"No error"\n')],
            [ErrorEntry(-113, "Undefined header")],
        ),
        "reset": ([(b"*RST\n", None), (b"*CLS\n", None), (b":SENS:COUN 1\n", None)], None),
        "safe_state": (
            scpi_safe_state("1", ":OUTP", ":SOUR:VOLT:LEV", ":SOUR:CURR:LEV", ":SOUR:FUNC"),
            SafeStateResult("smu1"),
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
                (b"print(smub.source.output)\n", b"0.00000e+00\n"),
                (b"smub.source.func = smub.OUTPUT_DCVOLTS\n", None),
                (b"smub.source.limiti = 0.001\n", None),
                (b"print(smub.source.limiti)\n", b"1.00000e-03\n"),
                (b"smub.source.levelv = 0.5\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b"print(smub.source.output)\n", b"0.00000e+00\n"),
                (b"smub.source.func = smub.OUTPUT_DCAMPS\n", None),
                (b"smub.source.limitv = 2\n", None),
                (b"print(smub.source.limitv)\n", b"2.00000e+00\n"),
                (b"smub.source.leveli = 1e-05\n", None),
            ],
            None,
        ),
        "configure_source": (
            [
                (b"print(smub.source.output)\n", b"0.00000e+00\n"),
                (b"smub.source.func = smub.OUTPUT_DCAMPS\n", None),
                (b"smub.source.levelv = 0\n", None),
                (b"smub.source.leveli = 0\n", None),
                (b"smub.source.limitv = 2\n", None),
                (b"print(smub.source.limitv)\n", b"2.00000e+00\n"),
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
        "reset": (
            [
                (b"localnode.prompts = 0\n", None),
                (b"reset()\n", None),
                (b"errorqueue.clear()\n", None),
            ],
            None,
        ),
        "safe_state": (
            [
                (b"smua.source.output = smua.OUTPUT_OFF\n", None),
                (b"smub.source.output = smub.OUTPUT_OFF\n", None),
                (b"smua.source.levelv = 0\n", None),
                (b"smua.source.leveli = 0\n", None),
                (b"smub.source.levelv = 0\n", None),
                (b"smub.source.leveli = 0\n", None),
                (b"print(smua.source.output)\n", b"0.00000e+00\n"),
                (b"smua.source.func = smua.OUTPUT_DCVOLTS\n", None),
                (b"print(smub.source.output)\n", b"0.00000e+00\n"),
                (b"smub.source.func = smub.OUTPUT_DCVOLTS\n", None),
            ],
            SafeStateResult("smu1"),
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
        # the documented form: the channel is the header suffix, no channel list
        ("current_limit_tripped", b":SENS2:CURR:PROT:TRIP?\n", b"1\n", True),
        ("voltage_limit_tripped", b":SENS2:VOLT:PROT:TRIP?\n", b"0\n", False),
    ],
    methods={
        "source_voltage": (
            [
                (b":OUTP2?\n", b"0\n"),
                (b":SOUR2:FUNC:MODE VOLT\n", None),
                (b":SENS2:CURR:PROT 0.001\n", None),
                (b":SENS2:CURR:PROT?\n", b"+1.000000E-03\n"),
                (b":SOUR2:VOLT 0.5\n", None),
            ],
            None,
        ),
        "source_current": (
            [
                (b":OUTP2?\n", b"0\n"),
                (b":SOUR2:FUNC:MODE CURR\n", None),
                (b":SENS2:VOLT:PROT 2\n", None),
                (b":SENS2:VOLT:PROT?\n", b"+2.000000E+00\n"),
                (b":SOUR2:CURR 1e-05\n", None),
            ],
            None,
        ),
        "configure_source": (
            [
                (b":OUTP2?\n", b"0\n"),
                (b":SOUR2:FUNC:MODE CURR\n", None),
                (b":SOUR2:VOLT 0\n", None),
                (b":SOUR2:CURR 0\n", None),
                (b":SENS2:VOLT:PROT 2\n", None),
                (b":SENS2:VOLT:PROT?\n", b"+2.000000E+00\n"),
            ],
            None,
        ),
        "measure_voltage": (
            [
                (b":MEAS:VOLT? (@2)\n", b"+5.000000E-01\n"),
                (b":SENS2:CURR:PROT:TRIP?\n", b"0\n"),
                (b":SENS2:VOLT:PROT:TRIP?\n", b"0\n"),
            ],
            Reading(0.5, "V", False),
        ),
        "measure_current": (
            [
                (b":MEAS:CURR? (@2)\n", b"+1.000000E-03\n"),
                (b":SENS2:CURR:PROT:TRIP?\n", b"1\n"),
            ],
            Reading(1e-3, "A", True),
        ),
        "in_compliance": (
            [
                (b":SENS2:CURR:PROT:TRIP?\n", b"0\n"),
                (b":SENS2:VOLT:PROT:TRIP?\n", b"1\n"),
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
            [
                (b"*RST\n", None),
                (b"*CLS\n", None),
                (b":TRIG1:ALL:COUN 1\n", None),
                (b":TRIG2:ALL:COUN 1\n", None),
                (b":OUTP1:ON:AUTO OFF\n", None),
                (b":OUTP2:ON:AUTO OFF\n", None),
            ],
            None,
        ),
        "safe_state": (
            [
                (b":OUTP1 OFF\n", None),
                (b":OUTP2 OFF\n", None),
                (b":SOUR1:VOLT 0\n", None),
                (b":SOUR1:CURR 0\n", None),
                (b":SOUR2:VOLT 0\n", None),
                (b":SOUR2:CURR 0\n", None),
                (b":OUTP1?\n", b"0\n"),
                (b":SOUR1:FUNC:MODE VOLT\n", None),
                (b":OUTP2?\n", b"0\n"),
                (b":SOUR2:FUNC:MODE VOLT\n", None),
            ],
            SafeStateResult("smu1"),
        ),
    },
)

CASES = {"2400": K2400, "2450": K2450, "2600": K2600, "B2900": B2900}
CALLS = {  # method -> how the test calls it on (instrument, channel)
    "source_voltage": lambda smu, ch: ch.source_voltage(0.5, compliance_current=1e-3),
    "source_current": lambda smu, ch: ch.source_current(1e-5, compliance_voltage=2.0),
    "configure_source": lambda smu, ch: ch.configure_source("current", 2.0),
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


def armed(smu: Smu, channel: str, mode: str = "voltage") -> None:
    """Put the driver's knowledge of ``channel`` where every set is allowed: output off,
    function known, both compliances confirmed (as after configure_source)."""
    state = smu.channel_safety(channel)
    state.output, state.mode = False, mode
    state.compliance.update({"voltage": 1e-3, "current": 2.0})


@pytest.mark.parametrize(("key", "quantity", "value", "sent"), rows("sets"))
def test_set_sends_exact_bytes(expect, key: str, quantity: str, value: Any, sent: bytes) -> None:
    case = CASES[key]
    with expect(case.driver, [*case.prelude, (sent, None)]) as smu:
        armed(smu, case.channel)
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


# --- values outside the model's limits --------------------------------------------------------
@pytest.mark.parametrize("key", CASES)
@pytest.mark.parametrize(
    ("quantity", "value", "bounds"),
    [
        ("voltage_setpoint", 1e4, "outside [-{max_voltage:g}, {max_voltage:g}]"),
        ("current_setpoint", -20.0, "outside [-{max_current:g}, {max_current:g}]"),
        ("current_limit", 0.0, "outside [{min_current_limit:g}, {max_current:g}]"),
        ("voltage_limit", -1.0, "outside [{min_voltage_limit:g}, {max_voltage:g}]"),
        ("voltage_setpoint", float("nan"), "outside"),
        ("current_limit", None, "not a number in [{min_current_limit:g}, "),
        ("output_enabled", "yes", "not one of [True, False]"),
        ("source_mode", "resistance", "not one of ['voltage', 'current']"),
    ],
)
def test_out_of_range_raises_and_sends_nothing(
    expect, key: str, quantity: str, value: Any, bounds: str
) -> None:
    case = CASES[key]
    with expect(case.driver, case.prelude) as smu:  # nothing beyond connecting is allowed
        armed(smu, case.channel)
        with pytest.raises(SafetyError) as info:
            setattr(smu[case.channel], quantity, value)
        limits = vars(smu.limits)
    message = str(info.value)
    for part in ("'smu1'", f"channel {case.channel!r}", quantity, repr(value)):
        assert part in message
    assert bounds.format(**limits) in message


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
        with pytest.raises(SafetyError, match=r"current_limit = 0 A"):
            channel.configure_source("voltage", 0)
        with pytest.raises(TypeError):
            channel.source_voltage(1.0)  # type: ignore[call-arg]  # compliance is mandatory
    assert limits.max_voltage < 2000.0


# --- the safety rules: output on only with a confirmed compliance, function only when off ----
@pytest.mark.parametrize("key", CASES)
def test_output_on_without_a_confirmed_compliance_is_refused_before_sending(
    expect, key: str
) -> None:
    case = CASES[key]
    with expect(case.driver, case.prelude) as smu:  # nothing beyond connecting goes out
        channel = smu[case.channel]
        with pytest.raises(SafetyError, match="output_enabled = True refused: the source func"):
            channel.output_enabled = True  # just connected: nothing known
        state = smu.channel_safety(case.channel)
        state.mode, state.output = "current", False
        with pytest.raises(SafetyError, match=r"no voltage_limit confirmed for the current s"):
            channel.output_enabled = True
        state.compliance["voltage"] = 1e-3  # the other function's compliance does not count
        with pytest.raises(SafetyError, match="no voltage_limit confirmed") as info:
            channel.output_enabled = True
        with pytest.raises(SafetyError, match="no voltage_limit confirmed"):
            type(channel).output_enabled.command_for(channel, True)  # a bulk line's too
    assert f"'smu1' channel {case.channel!r}" in str(info.value)
    assert "nothing was sent" in str(info.value)


@pytest.mark.parametrize("key", CASES)
def test_a_compliance_written_again_must_be_read_back_again(expect, key: str) -> None:
    case = CASES[key]
    set_limit = next(sent for q, _, sent in case.sets if q == "current_limit")
    with expect(case.driver, [*case.prelude, (set_limit, None)]) as smu:
        armed(smu, case.channel)
        channel = smu[case.channel]
        channel.current_limit = dict((q, v) for q, v, _ in case.sets)["current_limit"]
        with pytest.raises(SafetyError, match="no current_limit confirmed"):
            channel.output_enabled = True


@pytest.mark.parametrize("key", CASES)
def test_the_source_function_never_changes_with_the_output_on(expect, key: str) -> None:
    case = CASES[key]
    with expect(case.driver, case.prelude) as smu:
        channel = smu[case.channel]
        with pytest.raises(SafetyError, match=r"source_mode = 'current' refused: the output is u"):
            channel.source_mode = "current"  # unknown output state
        armed(smu, case.channel)
        smu.channel_safety(case.channel).output = True
        with pytest.raises(SafetyError, match=r"refused: the output is on") as info:
            channel.source_mode = "current"
        with pytest.raises(SafetyError, match=r"source_current\(\) refused"):
            channel.source_current(1e-6, compliance_voltage=1.0)
        with pytest.raises(SafetyError, match=r"configure_source\('current'\) refused"):
            channel.configure_source("current", 1.0)
    assert "nothing was sent" in str(info.value)


@pytest.mark.parametrize("key", CASES)
def test_a_refused_compliance_raises_and_the_output_stays_off(expect, key: str) -> None:
    """The instrument keeps its previous 1 A limit: the read-back shows it, output on is
    refused."""
    case = CASES[key]
    exchanges, _ = case.methods["source_voltage"]
    readback = exchanges[3][0]
    old = b"1.00000e+00\n" if key == "2600" else b"+1.000000E+00\n"
    with expect(case.driver, [*case.prelude, *exchanges[:3], (readback, old)]) as smu:
        channel = smu[case.channel]
        with pytest.raises(InstrumentError) as info:
            channel.source_voltage(0.5, compliance_current=1e-3)
        with pytest.raises(SafetyError, match="no current_limit confirmed"):
            channel.output_enabled = True
    error = info.value
    assert error.instrument == "smu1" and error.command == readback.decode().strip()
    low, high = smu.limits.min_current_limit, smu.limits.max_current
    assert (
        f"channel {case.channel}: current_limit = 0.001 A (model range [{low:g}, {high:g}] A) "
        "was not applied: the instrument reports 1 A; the output stays off" == error.reason
    )


# --- safe state: every channel whatever fails ------------------------------------------------
BROKEN = VisaIOError(constants.StatusCode.error_io)


def test_safe_state_tries_every_channel_when_one_dies_midway(expect, caplog) -> None:
    """smua stops taking commands after the first; smub still goes safe, smua is reported."""
    exchanges = [
        (b"smua.source.output = smua.OUTPUT_OFF\n", WriteFails(BROKEN)),
        (b"smub.source.output = smub.OUTPUT_OFF\n", None),
        (b"smua.source.levelv = 0\n", WriteFails(BROKEN)),
        (b"smua.source.leveli = 0\n", WriteFails(BROKEN)),
        (b"smub.source.levelv = 0\n", None),
        (b"smub.source.leveli = 0\n", None),
        (b"print(smua.source.output)\n", TIMEOUT),
        # smua's reply is owed: the link is resynchronised before smub's read-back
        (b'print("hil-sync 1")\n', b"hil-sync 1\n"),
        (b"print(smub.source.output)\n", b"0.00000e+00\n"),
        (b"smub.source.func = smub.OUTPUT_DCVOLTS\n", None),
    ]
    with (
        expect(Keithley2600, [*K2600.prelude, *exchanges]) as smu,
        caplog.at_level(logging.ERROR),
    ):
        result = smu.safe_state()
    assert not result.confirmed and list(result.unconfirmed) == ["smua"]
    why = result.unconfirmed["smua"]
    assert "output_enabled = False failed" in why and "output state not read back" in why
    assert "could not confirm every output off" in caplog.text and "channel smua" in caplog.text


@pytest.mark.parametrize("key", ["2600", "B2900"])
def test_safe_state_reports_a_channel_still_on_and_never_switches_its_function(
    expect, key: str
) -> None:
    case = CASES[key]
    exchanges, _ = case.methods["safe_state"]
    on = b"1.00000e+00\n" if key == "2600" else b"1\n"
    # the first channel's read-back says on: no function change follows for it
    stuck = [*exchanges[:6], (exchanges[6][0], on), *exchanges[8:]]
    with expect(case.driver, [*case.prelude, *stuck]) as smu:
        result = smu.safe_state()
    first, second = smu.channels
    assert result.unconfirmed == {first: "its output is still on"}
    assert smu.channel_safety(second).output is False


@pytest.mark.parametrize("key", CASES)
def test_safe_state_never_raises_when_the_link_dies(expect, key: str, caplog) -> None:
    case = CASES[key]
    exchanges, _ = case.methods["safe_state"]
    dead = [(sent, WriteFails(BrokenPipeError(32, "Broken pipe"))) for sent, _ in exchanges]
    dead = [entry for entry in dead if not entry[0].endswith(b"VOLT\n")]
    dead = [e for e in dead if b"DCVOLTS" not in e[0] and b"FUNC:MODE" not in e[0]]
    # the read-back cannot be sent either: no function change is tried after it
    with expect(case.driver, [*case.prelude, *dead]) as smu, caplog.at_level(logging.ERROR):
        result = smu.safe_state()  # every write and read-back meets the dead link
    assert set(result.unconfirmed) == set(smu.channels)
    assert "safe_state could not confirm" in caplog.text and "Broken pipe" in caplog.text


# --- replies bound to their query ------------------------------------------------------------
@pytest.mark.parametrize("key", CASES)
def test_a_late_reply_is_discarded_not_taken_as_the_next_answer(expect, key: str, caplog) -> None:
    """A compliance query times out; its reply comes with the next message. The next query
    resynchronises first, so it gets its own reply, not the stale one."""
    case = CASES[key]
    gets = {q: (sent, reply, value) for q, sent, reply, value in case.gets}
    limit_q, late, _ = gets["current_limit"]
    volt_q, volt_reply, volt = gets["voltage_setpoint"]
    idn = case.prelude[0][1]
    sync = (b'print("hil-sync 1")\n', b"hil-sync 1\n") if key == "2600" else (b"*IDN?\n", idn)
    exchanges = [
        (limit_q, TIMEOUT),
        Unsolicited(late, with_next=True),  # sent just before the next reply
        sync,
        (volt_q, volt_reply),
    ]
    with (
        expect(case.driver, [*case.prelude, *exchanges]) as smu,
        caplog.at_level(logging.WARNING),
    ):
        channel = smu[case.channel]
        with pytest.raises(InstrumentError, match="timeout"):
            _ = channel.current_limit
        assert channel.voltage_setpoint == pytest.approx(volt)  # not the late limit
        assert smu.resyncs == 1
    assert "discarded 1 stale reply" in caplog.text and late.decode().strip() in caplog.text


@pytest.mark.parametrize("key", CASES)
def test_stale_input_is_discarded_before_a_query(expect, key: str, caplog) -> None:
    """Input nobody asked for (a prompt, a reply to a command that gave none) is dropped
    before the query, and the link resynchronised in case more follows."""
    case = CASES[key]
    sent, reply, value = next(g[1:] for g in case.gets if g[0] == "voltage_setpoint")
    idn = case.prelude[0][1]
    sync = (b'print("hil-sync 1")\n', b"hil-sync 1\n") if key == "2600" else (b"*IDN?\n", idn)
    exchanges = [Unsolicited(b"TSP>\n"), sync, (sent, reply)]
    with (
        expect(case.driver, [*case.prelude, *exchanges]) as smu,
        caplog.at_level(logging.WARNING),
    ):
        assert smu[case.channel].voltage_setpoint == pytest.approx(value)
    assert "unexpected input 'TSP>'" in caplog.text


@pytest.mark.parametrize("key", CASES)
def test_a_reply_of_the_wrong_form_is_refused_and_the_link_resynchronised(expect, key: str) -> None:
    """A reading answering a compliance-trip query (the stale-voltage case) is not taken as
    'tripped': it raises, and the next query resynchronises first."""
    case = CASES[key]
    trip = next(g for g in case.gets if g[0].endswith("tripped"))
    quantity, trip_q = trip[0], trip[1]
    sent, reply, value = next(g[1:] for g in case.gets if g[0] == "voltage_setpoint")
    idn = case.prelude[0][1]
    sync = (b'print("hil-sync 1")\n', b"hil-sync 1\n") if key == "2600" else (b"*IDN?\n", idn)
    voltage = b"5.00000e-01\n" if key == "2600" else b"+5.000000E-01\n"
    with expect(case.driver, [*case.prelude, (trip_q, voltage), sync, (sent, reply)]) as smu:
        channel = smu[case.channel]
        with pytest.raises(InstrumentError, match=r"(?i)unexpected reply '\+?5\.0+e-01'") as info:
            getattr(channel, quantity)
        assert channel.voltage_setpoint == pytest.approx(value)
    assert info.value.command == trip_q.decode().strip()


def test_timeout_names_instrument_and_command_and_long_commands_are_cut(expect) -> None:
    line = "; ".join(f"smua.source.leveli = {i}e-09" for i in range(400)) + "; print(1)"
    with expect(Keithley2600, [*K2600.prelude, (f"{line}\n".encode(), TIMEOUT)]) as smu:
        with pytest.raises(InstrumentError) as info:
            smu.ask(line)
    assert len(line) > 8000
    assert info.value.command.endswith(f"... ({len(line)} bytes)")
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("key", CASES)
def test_timeout_names_instrument_and_command(expect, key: str) -> None:
    case = CASES[key]
    quantity, sent, _, _ = case.gets[1]
    with expect(case.driver, [*case.prelude, (sent, TIMEOUT)]) as smu:
        with pytest.raises(InstrumentError) as info:
            getattr(smu[case.channel], quantity)
    assert info.value.instrument == "smu1"
    assert info.value.command == sent.decode().strip()
    assert "timeout" in info.value.reason


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
    idn = case.prelude[0][1]
    exchanges = [(b":SOUR:VOLT:LEV?\n", b"garbage\n"), (b"*IDN?\n", idn), (b":OUTP?\n", b"0\n")]
    with expect(case.driver, [*case.prelude, *exchanges]) as smu:
        with pytest.raises(InstrumentError, match="unexpected reply 'garbage'"):
            _ = smu["1"].voltage_setpoint
        assert smu["1"].output_enabled is False  # after a resync


def test_unknown_channel_names_the_known_ones(expect) -> None:
    with expect(Keithley2600, K2600.prelude) as smu:
        assert smu.channels == ("smua", "smub")
        with pytest.raises(KeyError, match="smuc.*'smua', 'smub'"):
            smu["smuc"]
