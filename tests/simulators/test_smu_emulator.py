"""The SMU drivers over real loopback TCP (pyvisa-py) against the SMU emulator."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading

import pytest

from drivers import ErrorEntry, Keithley2400, Keithley2600, KeysightB2900, Reading, Smu
from hil.errors import InstrumentError
from simulators.instruments.smu_backends import ResistorBackend, SmuBackend
from simulators.instruments.smu_server import SmuServer
from tests.conftest import REPO

MODELS = {
    "2400": (Keithley2400, "1"),
    "2636B": (Keithley2600, "smub"),
    "B2902A": (KeysightB2900, "2"),
}
TIMEOUT = 0.3  # s, short so that fault tests stay fast


@pytest.fixture(params=list(MODELS))
def bench(request) -> tuple[SmuServer, Smu, str]:
    """A running emulator (1 kohm loads) and a connected driver, closed cleanly after."""
    driver, channel = MODELS[request.param]
    with SmuServer(request.param, ResistorBackend(1e3)) as server:
        smu = driver(server.address, name="smu1", timeout=TIMEOUT).connect()
        yield server, smu, channel
        smu.close()


def test_server_picks_a_free_port_and_stops_without_leftover_threads() -> None:
    before = threading.active_count()
    with SmuServer("2400") as server:
        assert server.port > 0
        assert server.address == f"TCPIP::127.0.0.1::{server.port}::SOCKET"
        smu = Keithley2400(server.address, name="smu1", timeout=TIMEOUT).connect()
        assert threading.active_count() > before
    # stopped with the client still connected: every thread was joined
    assert threading.active_count() == before
    with pytest.raises(InstrumentError):
        smu.errors()
    smu.close()


def test_a_script_that_leaves_the_emulator_running_can_exit() -> None:
    # A connected client keeps its handler thread reading; were it not a daemon thread,
    # the interpreter would wait for it forever at exit.
    script = textwrap.dedent(
        """
        import socket
        from simulators.instruments.smu_server import SmuServer
        server = SmuServer("2400").start()
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"*IDN?\\n")
        print(client.makefile().readline().strip())
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "MODEL 2400" in done.stdout


def test_voltage_source_measures_current_through_the_resistor(bench) -> None:
    server, smu, name = bench
    channel = smu[name]
    channel.source_voltage(0.5, compliance_current=1e-2)
    channel.output_enabled = True
    assert channel.measure_current() == Reading(pytest.approx(5e-4), "A", False)
    assert channel.measure_voltage() == Reading(pytest.approx(0.5), "V", False)
    state = server.state(name)
    assert (state.source_mode, state.voltage_level, state.current_limit) == ("voltage", 0.5, 1e-2)


def test_compliance_is_flagged_and_the_reading_clipped(bench) -> None:
    _, smu, name = bench
    channel = smu[name]
    channel.source_voltage(2.0, compliance_current=1e-4)  # 2 mA wanted, 0.1 mA allowed
    channel.output_enabled = True
    assert channel.measure_current() == Reading(pytest.approx(1e-4), "A", True)
    assert channel.measure_voltage().value == pytest.approx(0.1)


def test_current_source_with_voltage_compliance(bench) -> None:
    _, smu, name = bench
    channel = smu[name]
    channel.source_current(1e-4, compliance_voltage=10.0)
    channel.output_enabled = True
    assert channel.measure_voltage() == Reading(pytest.approx(0.1), "V", False)
    channel.source_current(1e-2, compliance_voltage=1.0)  # 10 V wanted, 1 V allowed
    assert channel.measure_voltage() == Reading(pytest.approx(1.0), "V", True)
    assert channel.source_mode == "current"


def test_forced_compliance(bench) -> None:
    server, smu, name = bench
    channel = smu[name]
    channel.source_voltage(0.1, compliance_current=1e-2)
    channel.output_enabled = True
    server.force_compliance(name)
    assert channel.measure_current() == Reading(pytest.approx(1e-2), "A", True)
    server.force_compliance(name, False)
    assert channel.measure_current().in_compliance is False


def test_bad_command_fills_the_error_queue_and_errors_reports_it(bench) -> None:
    server, smu, _ = bench
    smu.write("NOT:A:COMMAND 1")
    entries = smu.errors()
    assert len(entries) == 1 and entries[0].code in (-113, -285)
    assert smu.errors() == []
    server.push_error(-350, "Queue overflow")
    assert smu.errors() == [ErrorEntry(-350, "Queue overflow")]


def test_instrument_side_range_check(bench) -> None:
    server, smu, name = bench
    command = type(smu[name]).voltage_setpoint.set_command.format(ch=name, value="1e6")
    smu.write(command)  # bypassing the driver's validator: the instrument refuses too
    assert [entry.code for entry in smu.errors()] == [-222]
    assert server.state(name).voltage_level == 0.0


def test_stopped_answering_is_a_timeout_naming_instrument_and_command(bench) -> None:
    server, smu, name = bench
    server.stop_answering()
    with pytest.raises(InstrumentError, match="timeout") as info:
        smu[name].measure_current()
    assert info.value.instrument == "smu1"
    assert info.value.command in server.log
    server.stop_answering(False)


def test_dropped_connection_is_an_instrument_error_and_safe_state_logs(bench, caplog) -> None:
    server, smu, name = bench
    server.drop_connections()
    with pytest.raises(InstrumentError) as info:
        smu[name].measure_current()
    assert info.value.instrument == "smu1" and info.value.command
    with caplog.at_level(logging.ERROR):
        result = smu.safe_state()  # never raises once the instrument is gone
    assert not result.confirmed and set(result.unconfirmed) == set(smu.channels)
    assert "safe_state could not confirm every output off" in caplog.text


def test_safe_state_zeroes_and_turns_every_output_off(bench) -> None:
    server, smu, _ = bench
    for name in smu.channels:
        smu[name].source_current(1e-3, compliance_voltage=5.0)
        smu[name].output_enabled = True
    smu.safe_state()
    assert smu.errors() == []  # a query: the safe-state writes before it have been executed
    for name in smu.channels:
        state = server.state(name)
        assert (state.output_on, state.source_mode, state.voltage_level) == (False, "voltage", 0)


def test_2400_read_with_output_off_queues_803_and_times_out() -> None:
    with SmuServer("2400") as server:
        smu = Keithley2400(server.address, name="smu1", timeout=TIMEOUT).connect()
        with pytest.raises(InstrumentError, match="':READ\\?'.*timeout"):
            smu["1"].measure_current()
        assert smu.errors() == [ErrorEntry(803, "Output disabled")]
        smu.close()


def test_channels_are_independent_with_per_channel_loads() -> None:
    backend = ResistorBackend({"smua": 1e3, "smub": 1e4})
    with SmuServer("2636B", backend) as server:
        smu = Keithley2600(server.address, name="smu2", timeout=TIMEOUT).connect()
        for name in ("smua", "smub"):
            smu[name].source_voltage(1.0, compliance_current=1e-2)
            smu[name].output_enabled = True
        assert smu["smua"].measure_current().value == pytest.approx(1e-3)
        assert smu["smub"].measure_current().value == pytest.approx(1e-4)
        smu.close()


def test_tsp_errors_for_unknown_channel_and_syntax() -> None:
    with SmuServer("2636B") as server:
        assert server.execute("smuc.source.levelv = 1") is None
        assert server.execute("print(1 +)") is None
        codes = [server.execute("print(errorqueue.next())").split("\t")[0] for _ in range(3)]
        assert codes == ["-2.86000e+02", "-2.85000e+02", "0.00000e+00"]


def test_resistor_backend_is_a_backend() -> None:
    backend: SmuBackend = ResistorBackend(100.0)
    assert backend.measure("1", "voltage", 1.0, 1.0, True) == pytest.approx((1.0, 1e-2))
    assert backend.measure("1", "voltage", -1.0, 1e-3, True) == pytest.approx((-0.1, -1e-3))
    assert backend.measure("1", "current", 1.0, 2.0, True) == pytest.approx((2.0, 2e-2))
    assert backend.measure("1", "voltage", 1.0, 1.0, False) == (0.0, 0.0)


class _BrokenBackend:
    def measure(self, *args: object) -> tuple[float, float]:
        raise RuntimeError("solver diverged")


def test_backend_failure_is_a_device_error_not_a_dead_server() -> None:
    server = SmuServer("B2902A", _BrokenBackend())  # execute() works without sockets
    assert server.execute(":MEAS:CURR? (@1)") is None
    assert server.execute(":SYST:ERR?") == '-300,"Device-specific error: solver diverged"'
    with pytest.raises(ValueError, match="model must be one of"):
        SmuServer("9999")


def test_b2900_trip_query_takes_no_channel_list() -> None:
    """The documented form is :SENSn:CURR:PROT:TRIP? (channel in the header); a channel list
    there is refused, as a parameter the query does not take."""
    server = SmuServer("B2902A")
    assert server.execute(":SENS2:CURR:PROT:TRIP?") == "0"
    assert server.execute(":SENS2:CURR:PROT:TRIP? (@2)") is None
    assert server.execute(":SYST:ERR?") == '-108,"Parameter not allowed"'
    assert server.execute(":MEAS:VOLT? (@2)") == "+0.000000E+00"  # measure queries take one


def test_late_answers_come_with_the_next_message() -> None:
    server = SmuServer("2450")
    server.answer_late()
    assert server.respond("*IDN?") == []
    assert server.respond(":OUTP?") == [server.model.idn, "0"]
    assert server.respond(":OUTP?") == ["0"]
