"""The SMU drivers against real instruments: skipped unless ``--device-address`` names one.

As PyMeasure does, these run only when asked, with the instrument's VISA address::

    .venv/bin/python -m pytest -p no:cacheprovider tests/drivers/test_hardware.py \\
        --device-address keithley2450=USB0::0x05E6::0x2450::04096218::INSTR \\
        --device-address keithley2600=TCPIP::192.168.1.50::INSTR

(``DRIVER`` is the lab config's driver name.) Before running, disconnect the device under
test: leave the SMU's terminals open, or on a resistor of 1 Mohm or more. The tests source at
most 0.1 V and 1 uA, with compliances of 10 uA and 0.5 V, and end every test in the safe
state (read back). Each test checks one thing a bench relies on: the identity, a safe set /
measure loop with its read-backs, and a compliance trip (1 uA into open terminals, at most
0.5 V allowed: the voltage compliance must trip).
"""

from __future__ import annotations

import time

import pytest

from drivers.registry import SMU_DRIVER_CLASSES
from drivers.smu import Smu
from tests.drivers.conftest import device_addresses

DRIVERS = list(SMU_DRIVER_CLASSES)
#: Small enough for any DUT left connected by mistake, large enough to read on any range.
LEVEL_V, COMPLIANCE_I = 0.1, 10e-6
LEVEL_I, COMPLIANCE_V = 1e-6, 0.5


@pytest.fixture(params=DRIVERS)
def smu(request) -> Smu:
    """The connected instrument of ``--device-address DRIVER=...``, reset; made safe after."""
    address = device_addresses(request.config).get(request.param)
    if address is None:
        pytest.skip(f"no --device-address {request.param}=ADDRESS given")
    instrument = SMU_DRIVER_CLASSES[request.param](address, name=request.param, timeout=5.0)
    instrument.connect()
    instrument.reset()
    try:
        yield instrument
    finally:
        result = instrument.safe_state()
        instrument.close()
        assert result.confirmed, f"switch the outputs off by hand: {result.words()}"


def test_identify(smu: Smu) -> None:
    assert smu.model in type(smu).models
    assert smu.idn and smu.model in smu.idn.upper()
    assert smu.errors() == []  # the reset sequence is one the instrument accepts


def test_safe_set_and_measure_loop(smu: Smu) -> None:
    for name in smu.channels:
        channel = smu[name]
        channel.configure_source("voltage", COMPLIANCE_I)  # compliance read back
        assert smu.errors() == []
        channel.output_enabled = True
        assert channel.output_enabled is True
        for level in (0.0, LEVEL_V, 0.0):
            channel.voltage_setpoint = level
            assert channel.voltage_setpoint == pytest.approx(level, abs=1e-6)
            reading = channel.measure_current()
            assert abs(reading.value) <= COMPLIANCE_I * 1.01
        result = smu.safe_state()
        assert result.confirmed, result.words()
        assert channel.output_enabled is False
        assert smu.errors() == []


def test_compliance_trip(smu: Smu) -> None:
    name = smu.channels[0]
    channel = smu[name]
    channel.configure_source("current", COMPLIANCE_V)
    channel.output_enabled = True
    channel.current_setpoint = LEVEL_I  # into open terminals: limited at 0.5 V
    time.sleep(0.2)
    reading = channel.measure_voltage()
    assert reading.in_compliance, f"{name}: {reading} (are the terminals open?)"
    assert abs(reading.value) <= COMPLIANCE_V * 1.05
    assert channel.in_compliance()
    assert smu.safe_state().confirmed
