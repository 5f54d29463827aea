"""The SMU drivers against stateful pyvisa-sim instruments (ResourceManager('file.yaml@sim')).

pyvisa-sim stores what is set and answers canned readings; it computes no physics (that is
the emulator's job, see tests/simulators/test_smu_emulator.py).
"""

from __future__ import annotations

import pytest
import pyvisa

from drivers import ErrorEntry, Keithley2400, Keithley2600, KeysightB2900, Reading, Smu
from drivers.keithley2450 import Keithley2450
from hil.errors import SafetyError

SIMS = {
    "2400": (Keithley2400, "keithley2400.yaml", "GPIB::24::INSTR", "1"),
    "2450": (Keithley2450, "keithley2450.yaml", "USB0::0x05E6::0x2450::1::INSTR", "1"),
    "2600": (Keithley2600, "keithley2600.yaml", "GPIB::26::INSTR", "smub"),
    "B2900": (KeysightB2900, "keysight_b2900.yaml", "GPIB::23::INSTR", "2"),
}


@pytest.fixture(params=list(SIMS))
def sim(request, sim_yaml) -> tuple[Smu, str]:
    driver, yaml_name, address, channel = SIMS[request.param]
    manager = pyvisa.ResourceManager(sim_yaml(yaml_name))
    smu = driver(address, name="smu-sim", resource_manager=manager).connect()
    yield smu, channel
    smu.close()
    manager.close()


def test_settings_are_stored_per_channel(sim) -> None:
    smu, name = sim
    channel = smu[name]
    channel.source_voltage(1.25, compliance_current=1e-3)
    assert (channel.voltage_setpoint, channel.current_limit) == (1.25, 1e-3)
    channel.source_current(-2e-6, compliance_voltage=3.0)
    assert (channel.current_setpoint, channel.voltage_limit) == (-2e-6, 3.0)
    other = smu[smu.channels[0]]
    if other.name != name:  # the other channel kept its defaults
        assert other.voltage_setpoint == 0.0


def test_readings_carry_compliance(sim) -> None:
    smu, name = sim
    smu[name].source_voltage(0.5, compliance_current=1e-3)  # the 2450 reads its function
    reading = smu[name].measure_current()
    assert isinstance(reading, Reading) and reading.unit == "A"
    assert isinstance(reading.in_compliance, bool)


def test_output_on_needs_a_confirmed_compliance_and_locks_the_function(sim) -> None:
    smu, name = sim
    channel = smu[name]
    with pytest.raises(SafetyError, match="output_enabled = True refused"):
        channel.output_enabled = True
    channel.configure_source("current", 2.0)  # function, levels 0, compliance read back
    channel.output_enabled = True
    assert channel.output_enabled is True
    with pytest.raises(SafetyError, match="the output is on"):
        channel.source_mode = "voltage"
    if isinstance(smu, Keithley2600):
        pytest.skip("pyvisa-sim cannot print TSP enums back as numbers")
    assert channel.source_mode == "current"


def test_unknown_command_lands_in_the_error_queue(sim) -> None:
    smu, _ = sim
    if isinstance(smu, Keithley2600):
        assert smu.errors() == []  # the TSP queue is a canned 'count = 0' here
        return
    smu.write(":BOGUS:COMMAND 1")
    assert smu.errors() == [ErrorEntry(-113, "Undefined header")]
    assert smu.errors() == []


def test_reset_and_safe_state_run_against_the_sim(sim) -> None:
    smu, name = sim
    smu[name].source_voltage(2.0, compliance_current=1e-3)
    smu[name].output_enabled = True
    assert smu.safe_state().confirmed
    assert smu[name].voltage_setpoint == 0.0 and smu[name].output_enabled is False
    smu.reset()
    assert smu.errors() == []  # every reset command is one the instrument knows
