"""SMU safety on the emulated instruments: arming order, safe state, replies bound to queries.

Every SMU model the emulator speaks for, over real loopback TCP (pyvisa-py), with the faults
that matter on a real bench injected by the emulator:

- an instrument that refuses the compliance asked for (keeping its previous, larger one):
  arming stops with every output off, the output never having gone on;
- a channel that dies in the middle of ``safe_state()``: every other channel still goes
  safe, and the dead one is reported;
- a reply that comes one command late: it is discarded, never taken as the answer to the
  next query (a compliance query answered by a stale voltage), and the link resynchronised.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from drivers import Keithley2400, Keithley2600, KeysightB2900, Smu
from drivers.keithley2450 import Keithley2450
from drivers.lab_bench import LabBench
from drivers.lab_ports import SmuPort
from hil.bench import SafetyLimits
from hil.composition import build_lab_bench
from hil.errors import InstrumentError, SafetyError
from hil.network import Network
from simulators.instruments.smu_backends import ResistorBackend
from simulators.instruments.smu_server import SmuServer
from tests.labs import FAST, small_lab, small_lab_bench_section, small_run_config

MODELS: dict[str, type[Smu]] = {
    "2400": Keithley2400,
    "2450": Keithley2450,
    "2636B": Keithley2600,
    "B2902A": KeysightB2900,
}
TWO_CHANNELS = ["2636B", "B2902A"]
LIMITS = SafetyLimits(compliance_current=1e-3, compliance_voltage=5.0)


@pytest.fixture(params=list(MODELS))
def bench(request) -> tuple[SmuServer, Smu]:
    """A running emulator (1 kohm loads) and a connected driver."""
    with SmuServer(request.param, ResistorBackend(1e3)) as server:
        smu = MODELS[request.param](server.address, name="smu1", timeout=FAST).connect()
        yield server, smu
        smu.close()


def port_of(smu: Smu) -> SmuPort:
    """The bench's port on every channel: the first sources a voltage, the others a current."""
    first, *rest = smu.channels
    return SmuPort("smu1", smu, [(first, 0)], [(ch, k) for k, ch in enumerate(rest)])


# --- arming ---------------------------------------------------------------------------------
def test_arming_turns_the_outputs_on_last_with_the_compliance_in_force(bench) -> None:
    server, smu = bench
    port_of(smu).arm(LIMITS)
    first, *rest = smu.channels
    state = server.state(first)
    assert state.output_on and state.source_mode == "voltage"
    assert (state.voltage_level, state.current_limit) == (0.0, 1e-3)
    for ch in rest:
        state = server.state(ch)
        assert state.output_on and state.source_mode == "current"
        assert (state.current_level, state.voltage_limit) == (0.0, 5.0)
    log = list(server.log)
    reset = log.index(type(smu).reset_commands[0])
    outputs_on, limits_read = [], []
    for ch in smu.channels:
        channel = smu[ch]
        quantities = type(channel)
        on = quantities.output_enabled.set_command.format(ch=channel.command_id, value="ON")
        outputs_on.append(log.index(on))
        for name in ("current_limit", "voltage_limit"):
            get = getattr(quantities, name).get_command.format(ch=channel.command_id)
            limits_read += [i for i, m in enumerate(log) if m == get]
    # reset first, every compliance read back, then (and only then) the outputs on
    assert reset < min(limits_read) and max(limits_read) < min(outputs_on)


def test_a_refused_compliance_stops_the_arming_with_every_output_off(bench, caplog) -> None:
    """The instrument keeps its previous limit (the model's reset default, or the 1 A a
    previous user left): the read-back shows it, and no output ever goes on."""
    server, smu = bench
    server.refuse_compliance()
    with pytest.raises(InstrumentError) as info:
        port_of(smu).arm(LIMITS)
    error = info.value
    assert error.instrument == "smu1"
    assert "current_limit = 0.001 A (model range [" in error.reason
    assert "was not applied: the instrument reports" in error.reason
    assert error.reason.endswith("the output stays off")
    for ch in smu.channels:
        assert server.switched_on(ch) == 0, f"channel {ch}'s output went on"
        assert not server.state(ch).output_on
    server.refuse_compliance(False)
    port_of(smu).arm(LIMITS)  # the same port arms once the instrument takes the values
    assert all(server.state(ch).output_on for ch in smu.channels)


def test_an_output_is_never_switched_on_by_the_driver_without_a_compliance(bench) -> None:
    server, smu = bench
    sent = len(server.log)
    for ch in smu.channels:
        with pytest.raises(SafetyError, match="refused"):
            smu[ch].output_enabled = True
    assert len(server.log) == sent  # refused before anything was sent


def test_the_lab_bench_never_switches_on_an_smu_that_refuses_its_compliance() -> None:
    config = small_run_config()
    bench = build_lab_bench(Network(config.network), config.bench, config.training.seed)
    try:
        lab = bench.emulator
        lab.smus["smu2"].refuse_compliance()  # the B2902A
        with pytest.raises(InstrumentError, match=r"smu2 during ':SENS1:VOLT:PROT\?'"):
            bench.connect()
        assert lab.smus["smu2"].switched_on("1") == lab.smus["smu2"].switched_on("2") == 0
        assert lab.is_safe()  # and the rest of the lab went back to safe on the way out
    finally:
        bench.close()


# --- safe state -------------------------------------------------------------------------------
@pytest.mark.parametrize("model", TWO_CHANNELS)
@pytest.mark.parametrize(
    "dies, after",
    [(0, 0), (1, 1)],
    ids=["first channel, before the safe state", "second channel, one message into it"],
)
def test_a_channel_dying_mid_safe_state_leaves_the_others_safe(model, dies, after, caplog):
    """The safe state switches every output off first: the second channel dying after the
    first's output-off leaves the first to finish; the first dying at once leaves the second
    to go safe. The dead one is reported, its output still on, never assumed safe."""
    with SmuServer(model, ResistorBackend(1e3)) as server:
        smu = MODELS[model](server.address, name="smu1", timeout=FAST).connect()
        dead = smu.channels[dies]
        alive = smu.channels[1 - dies]
        try:
            port_of(smu).arm(LIMITS)
            server.kill_channel(dead, after=after)
            with caplog.at_level(logging.ERROR):
                result = smu.safe_state()
            assert list(result.unconfirmed) == [dead]
            assert "its output is still on" in result.unconfirmed[dead]
            # a query's reply comes after the server has handled every write before it (the
            # last, the voltage function, may still be in flight when safe_state returns)
            assert smu.channel(alive).output_enabled is False
            state = server.state(alive)
            assert not state.output_on and state.source_mode == "voltage"
            assert state.voltage_level == state.current_level == 0.0
            assert server.state(dead).output_on
            assert f"channel {dead}: " in caplog.text and "check by hand" in caplog.text
        finally:
            server.kill_channel(dead, False)
            smu.close()


def test_a_channel_killed_mid_safe_state_of_the_lab_is_reported_and_the_rest_go_safe() -> None:
    bench = small_lab()
    try:
        lab = bench.emulator
        net = bench.network
        bench.settle(net.encode_inputs(np.full((1, net.n_inputs), 0.5)))  # armed, outputs on
        lab.smus["smu1"].kill_channel("smua", after=0)  # the 2636B's first channel
        report = bench.safe_state()
        assert report.unconfirmed == ("smu1",)
        for name, server in lab.smus.items():
            for ch in server.model.channels:
                if (name, ch) == ("smu1", "smua"):
                    assert lab.smu_state(name, ch).output_on  # stuck on, and said so
                    continue
                state = lab.smu_state(name, ch)
                assert not state.output_on and state.voltage_level == 0.0, (name, ch)
        state = lab.board_state("xbar")
        assert state.mode == "idle" and not state.dacs.any()
    finally:
        bench.emulator.smus["smu1"].kill_channel("smua", False)
        bench.close()


# --- replies bound to their query -------------------------------------------------------------
def test_a_late_reply_is_never_taken_as_the_answer_to_the_next_query(bench, caplog) -> None:
    """The voltage query's reply comes one message late; the compliance query that follows
    must get the compliance, not the stale voltage."""
    server, smu = bench
    channel = smu[smu.channels[0]]
    channel.source_voltage(0.25, compliance_current=2e-3)
    server.answer_late()
    with pytest.raises(InstrumentError, match="timeout"):
        _ = channel.voltage_setpoint  # answered late: its reply comes with the next message
    with caplog.at_level(logging.WARNING):
        assert channel.current_limit == pytest.approx(2e-3)  # not 0.25
        assert channel.voltage_setpoint == pytest.approx(0.25)
    assert smu.resyncs == 1
    assert "discarded 1 stale reply" in caplog.text and "2.5" in caplog.text


def test_a_late_reply_does_not_fool_the_safe_state_read_back(bench) -> None:
    """After a timed-out query whose late reply says 'off' (0), the safe state's read-back
    still reads each channel's own output state."""
    server, smu = bench
    port_of(smu).arm(LIMITS)
    server.kill_channel(smu.channels[0])  # stuck on: the read-back must say so
    server.answer_late()
    with pytest.raises(InstrumentError, match="timeout"):
        _ = smu[smu.channels[-1]].current_setpoint  # 0: looks like 'off'
    result = smu.safe_state()
    assert list(result.unconfirmed) == [smu.channels[0]]
    server.kill_channel(smu.channels[0], False)


def test_unsolicited_input_is_discarded_before_the_next_query(bench, caplog) -> None:
    server, smu = bench
    channel = smu[smu.channels[0]]
    channel.source_voltage(0.5, compliance_current=1e-3)
    server.send_unsolicited("+9.990000E+00")
    with caplog.at_level(logging.WARNING):
        assert channel.current_limit == pytest.approx(1e-3)
    assert "unexpected input '+9.990000E+00'" in caplog.text


def test_a_2636b_with_prompts_on_is_armed_and_read_correctly(caplog) -> None:
    with SmuServer("2636B", ResistorBackend(1e3)) as server:
        server.prompts(True)  # every message answered by TSP>: the driver's reset turns it off
        smu = Keithley2600(server.address, name="smu1", timeout=FAST).connect()
        try:
            with caplog.at_level(logging.WARNING):
                port_of(smu).arm(LIMITS)
                smu["smua"].voltage_setpoint = 0.5
                assert smu["smua"].measure_current().value == pytest.approx(5e-4)
            assert not server.smu.prompts
            assert "TSP>" in caplog.text  # the prompts seen before were dropped, and logged
        finally:
            smu.close()


# --- the 2450 in the emulated lab -------------------------------------------------------------
def test_an_emulated_lab_with_a_2450_settles_like_the_others() -> None:
    section = small_lab_bench_section()
    section["instruments"]["smu4"] = {"driver": "keithley2450", "timeout_s": FAST}
    bench = small_lab(bench=section)
    try:
        assert isinstance(bench, LabBench) and isinstance(bench.smus["smu4"], Keithley2450)
        assert bench.emulator.smu_model("smu4") == "2450"
        net = bench.network
        x = net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (3, net.n_inputs)))
        reference = small_lab()
        try:
            np.testing.assert_allclose(
                bench.settle(x).node_voltages, reference.settle(x).node_voltages, atol=1e-4
            )
        finally:
            reference.close()
        assert bench.emulator.smu_state("smu4", "1").output_on
        assert bench.safe_state().confirmed and bench.emulator.is_safe()
    finally:
        bench.close()
