"""The emulated lab: drivers against emulators that share one simulated crossbar.

What the drivers set is what the circuit sees, what they read is what it settles to; pulses
and reads land on the device at the board lines the wiring gives; what the simulated circuit
cannot represent is refused, as a board or SMU error, not silently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from drivers import Keithley2400, Keithley2600, KeysightB2900
from drivers.serial_board import SerialBoard
from hil.config import RunConfig
from hil.errors import ConfigError, InstrumentError
from hil.network import Network
from simulators.bench import SimulatedBench
from simulators.instruments import EmulatedLab, ResistorBackend, SmuServer
from tests.labs import FAST, small_lab_bench_section, small_run_config

LSB = 4.0 / (2**18 - 1)  # the small lab's ADC: 18 bits over [-2, 2] V


def physics_for(config: RunConfig) -> SimulatedBench:
    return SimulatedBench(Network(config.network), seed=config.training.seed)


@pytest.fixture
def config() -> RunConfig:
    return small_run_config()


@pytest.fixture
def lab(config: RunConfig) -> Iterator[EmulatedLab]:
    with EmulatedLab(physics_for(config), config.bench) as emulated:
        yield emulated


@pytest.fixture
def board(lab: EmulatedLab) -> Iterator[SerialBoard]:
    with SerialBoard(lab.addresses["xbar"], name="xbar", timeout=FAST, models=("XBAR-8x8",)) as b:
        yield b


@pytest.fixture
def smu1(lab: EmulatedLab) -> Iterator[Keithley2600]:
    smu = Keithley2600(lab.addresses["smu1"], name="smu1", timeout=FAST).connect()
    yield smu
    smu.close()


def sources_of(net: Network, inputs: np.ndarray) -> np.ndarray:
    """All source voltages (inputs then bias) for one sample, shape (n_sources,)."""
    sources = net.source_voltages_template.copy()
    sources[: net.n_input_sources] = inputs
    return sources


def test_what_the_drivers_set_is_what_the_circuit_sees(config, lab, board, smu1):
    net = Network(config.network)
    twin = physics_for(config)
    inputs = net.encode_inputs(np.random.default_rng(3).uniform(0, 1, (1, net.n_inputs)))[0]
    nudges = np.zeros(net.n_output_nodes)
    nudges[:2] = [2e-6, -2e-6]  # on smu1 smua/smub; the other SMUs stay off (0 A)
    board.mode("network")
    board.set_dacs(sources_of(net, inputs))  # DACs 0-11 inputs, 12-17 bias
    for channel, current in zip(("smua", "smub"), nudges[:2], strict=True):
        smu1[channel].source_current(current, compliance_voltage=5.0)
        smu1[channel].output_enabled = True
    assert smu1.errors() == []  # a query: the writes before it have been applied
    hidden = board.read_adcs(list(range(9))).values
    outputs = [smu1[ch].measure_voltage() for ch in ("smua", "smub")]

    expected = twin.settle(inputs[None], nudges[None]).node_voltages[0]
    np.testing.assert_allclose(hidden, expected[net.hidden_nodes], atol=LSB)
    np.testing.assert_allclose(
        [r.value for r in outputs], expected[net.output_nodes[:2]], rtol=1e-5, atol=1e-9
    )
    assert not any(r.in_compliance for r in outputs)


def test_an_smu_sourcing_an_input_measures_the_current_the_network_draws():
    section = small_lab_bench_section()
    section["instruments"]["smu0"] = {"driver": "keithley2600", "timeout_s": FAST}
    section["wiring"]["inputs"] = ["smu0:smua", "smu0:smub"]  # one feature: +x and -x
    config = small_run_config(bench=section, inputs=1)
    net = Network(config.network)
    twin = physics_for(config)
    with EmulatedLab(physics_for(config), config.bench) as lab:
        with (
            SerialBoard(lab.addresses["xbar"], name="xbar", timeout=FAST) as board,
            Keithley2600(lab.addresses["smu0"], name="smu0", timeout=FAST) as smu0,
        ):
            board.mode("network")
            board.set_dacs({12 + k: v for k, v in enumerate(net.source_voltages_template[2:])})
            smu0["smua"].source_voltage(1.5, compliance_current=1e-3)
            smu0["smub"].source_voltage(-1.5, compliance_current=1e-3)
            for ch in ("smua", "smub"):
                smu0[ch].output_enabled = True
            current = smu0["smua"].measure_current()
            hidden = board.read_adcs(list(range(9))).values
    measured = twin.settle(np.array([[1.5, -1.5]]))
    g = twin.read_conductances()
    on_row = np.asarray(net.device_rows) == 0
    drawn = float(np.sum(g[on_row] * measured.drops[0, on_row]))
    assert current.value == pytest.approx(drawn, rel=1e-5)
    np.testing.assert_allclose(hidden, measured.node_voltages[0, net.hidden_nodes], atol=LSB)


def test_pulses_and_reads_land_on_the_device_at_those_lines(config, lab, board):
    net = Network(config.network)
    physics = lab.physics
    tile = net.tiles[1]  # placed after tile 0: rows from 14, columns from 5
    device = net.device_id(1, 2, 2)
    row, col = 14 + 2, 5 + 2
    before = physics.read_conductances()
    board.mode("programming")
    assert board.read_device(row, col, 0.2) == pytest.approx(before[device] * 0.2, rel=1e-9)
    board.pulse(row, col, 1.0, 1e-6, count=7, scheme="V/2")
    board.pulse(row, col + 1, -1.0, 1e-6, count=4, scheme="V/2")
    assert board.read_device(row, col, 0.2) / 0.2 == pytest.approx(
        before[device] + 7 * physics.calibration.step_up, rel=1e-9
    )
    after = physics.read_conductances()
    changed = np.flatnonzero(after != before)
    np.testing.assert_array_equal(changed, [device, device + 1])
    assert tile.first_device <= device < tile.first_device + tile.size
    # (0, 10) is no crosspoint of any tile: nothing there to read or move
    assert board.read_device(0, 10, 0.2) == 0.0
    board.pulse(0, 10, 1.0, 1e-6, count=5, scheme="V/2")
    np.testing.assert_array_equal(physics.read_conductances(), after)


def test_queued_pulses_reach_the_physics_as_one_request(config):
    section = small_lab_bench_section()
    section["emulate"]["boards"]["xbar"]["max_line"] = 80  # PULSE:MANY split over many lines
    config = small_run_config(bench=section)
    physics = physics_for(config)
    requests = []
    original = physics.pulse

    def spy(request):
        requests.append(request)
        return original(request)

    physics.pulse = spy  # type: ignore[method-assign]
    net = Network(config.network)
    ids = np.arange(0, net.n_devices, 3)
    rows, cols = config.bench.resolve(net).device_lines[1:]
    with EmulatedLab(physics, config.bench) as lab:
        with SerialBoard(lab.addresses["xbar"], name="xbar", timeout=FAST) as board:
            board.mode("programming")
            commands = board.commands_sent
            board.pulse_many([(rows[d], cols[d], 1.0, 2) for d in ids], 1e-6, "V/2")
            assert board.commands_sent - commands > 5  # many lines ...
            board.mode("network")
    assert len(requests) == 1  # ... one request, in the board's order
    np.testing.assert_array_equal(requests[0].device_ids, ids)
    np.testing.assert_array_equal(requests[0].counts, np.full(len(ids), 2))


def test_a_bias_dac_away_from_the_network_bias_is_refused(lab, board):
    board.mode("network")
    board.set_dacs(np.full(12, 0.5))  # inputs only: the bias DACs 12-17 still at 0 V
    with pytest.raises(
        InstrumentError, match=r"ERR 110 .*bias source node 12 \(xbar:12\) is at 0 V"
    ):
        board.read_adcs([0])


def test_a_nudge_into_an_isolated_node_hits_compliance(lab, board, smu1):
    board.mode("idle")  # devices isolated: the output node is an open circuit
    smu1["smua"].source_current(1e-6, compliance_voltage=5.0)
    smu1["smua"].output_enabled = True
    reading = smu1["smua"].measure_voltage()
    assert reading.in_compliance and reading.value == pytest.approx(5.0)
    smu1["smua"].source_current(0.0, compliance_voltage=5.0)
    assert not smu1["smua"].measure_voltage().in_compliance


def test_scpi_smus_reach_the_circuit_too(config, lab, board):
    net = Network(config.network)
    twin = physics_for(config)
    inputs = net.encode_inputs(np.full((1, net.n_inputs), 0.5))[0]
    board.mode("network")
    board.set_dacs(sources_of(net, inputs))
    with (
        KeysightB2900(lab.addresses["smu2"], name="smu2", timeout=FAST) as smu2,
        Keithley2400(lab.addresses["smu3"], name="smu3", timeout=FAST) as smu3,
    ):
        for smu, ch in ((smu2, "1"), (smu3, "1")):
            smu[ch].source_current(0.0, compliance_voltage=5.0)
            smu[ch].output_enabled = True
        got = [smu2["1"].measure_voltage().value, smu3["1"].measure_voltage().value]
    expected = twin.settle(inputs[None]).node_voltages[0]
    np.testing.assert_allclose(got, expected[net.output_nodes[[2, 4]]], rtol=1e-5, atol=1e-9)


def test_board_spec_is_derived_from_the_wiring(config, lab):
    spec = lab.board_spec("xbar", config.bench.resolve(Network(config.network)))
    assert (spec.n_dac, spec.n_adc) == (18, 9)
    assert (spec.rows, spec.cols) == (14 + 7 + 6, 5 + 4 + 6)
    assert spec.dac_range == (-10.0, 10.0)  # limits.max_input_voltage
    assert spec.adc_range == (-2.0, 2.0) and spec.adc_bits == 18  # from emulate.boards


def test_an_smu_model_the_emulator_lacks_is_a_config_error(config):
    section = small_lab_bench_section()
    section["instruments"]["smu1"]["model"] = "2611B"
    config = small_run_config(bench=section)
    with pytest.raises(ConfigError, match="'2611B' cannot be emulated; .* as a 2636B"):
        EmulatedLab(physics_for(config), config.bench).start()


def test_stop_joins_every_thread_and_keeps_the_last_state(config):
    before = threading.active_count()
    lab = EmulatedLab(physics_for(config), config.bench).start()
    with SerialBoard(lab.addresses["xbar"], name="xbar", timeout=FAST) as board:
        board.mode("network")
    lab.stop()
    assert threading.active_count() == before
    assert not lab.running and lab.board_state("xbar").mode == "idle"  # the driver's exit
    lab.stop()  # twice is fine


# --- the TSP dialect: chunks and multi-argument prints, as a 2600B runs them -------------
@pytest.fixture
def tsp() -> Iterator[tuple[SmuServer, Keithley2600]]:
    with SmuServer("2636B", ResistorBackend(1e3)) as server:
        smu = Keithley2600(server.address, name="smu", timeout=FAST).connect()
        yield server, smu
        smu.close()


def test_a_chunk_sets_both_channels_and_prints_tab_separated(tsp):
    server, smu = tsp
    reply = smu.ask(
        "smua.source.levelv = 0.5; smub.source.levelv = -0.25; "
        "print(smua.source.levelv, smub.source.levelv, errorqueue.count)"
    )
    assert reply.split("\t") == ["5.00000e-01", "-2.50000e-01", "0.00000e+00"]


def test_a_syntax_error_runs_nothing_of_the_chunk(tsp):
    server, smu = tsp
    smu.write("smua.source.levelv = 0.5; smua.source.levelv == 1; print(1)")
    assert [e.code for e in smu.errors()] == [-285]
    assert server.state("smua").voltage_level == 0.0


def test_a_runtime_error_stops_the_chunk_after_what_ran(tsp):
    server, smu = tsp
    reply = smu.ask("smua.source.levelv = 0.5; print(smua.source.levelv); smuc.source.levelv = 1")
    assert reply == "5.00000e-01"
    assert [e.code for e in smu.errors()] == [-286]
    assert server.state("smua").voltage_level == 0.5
