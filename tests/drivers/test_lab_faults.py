"""Instrument faults mid-run, injected through the emulators.

Each fault (a timeout, a lost connection, an error reply or queued error, a compliance trip,
an ADC overflow) must stop the run at the next safe point with an InstrumentError naming the
instrument, the command and the reason, and leave the lab in its safe state: every SMU output
off at 0 V, every board idle with its DACs at 0 V. An instrument that cannot be reached is
named in the safe state's report instead of being silently assumed safe. Under
``flagged_samples: record`` a compliance trip or an ADC overflow is data instead: the settle
returns it in the Measurement's ``compliance`` and ``overflow`` arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import yaml

from drivers.lab_bench import LabBench
from hil.bench import SafeStateReport
from hil.cli import main
from hil.composition import build_bench, build_trainer
from hil.data import Dataset
from hil.errors import InstrumentError
from hil.events import Event, StepFinished
from simulators.instruments import EmulatedLab
from tests.labs import (
    FAST,
    quick_emulated_lab,
    small_lab,
    small_lab_bench_section,
    small_run_config,
)

Fault = Callable[[EmulatedLab], None]


def synthetic_task() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 6))
    y = (x[:, 0] > 0.5).astype(int) + (x[:, 1] > 0.5).astype(int)
    return Dataset("synthetic", x[:16], y[:16], x[16:], y[16:])


def train_until_fault(
    bench: LabBench, fault: Fault, after_step: int = 1
) -> tuple[InstrumentError, SafeStateReport]:
    """Train on the small lab, inject ``fault`` after a step; return the error it raised
    and the report of the safe state the trainer then went to."""
    lab: EmulatedLab = bench.emulator
    reports: list[SafeStateReport] = []
    safe_state = bench.safe_state

    def recorded_safe_state() -> SafeStateReport:
        reports.append(safe_state())
        return reports[-1]

    def inject(event: Event) -> None:
        if isinstance(event, StepFinished) and event.step == after_step:
            fault(lab)

    config = small_run_config().training.model_copy(update={"epochs": 1, "batch_size": 4})
    trainer = build_trainer(bench, config, synthetic_task(), listeners=[inject])
    bench.safe_state = recorded_safe_state  # type: ignore[method-assign]
    try:
        with pytest.raises(InstrumentError) as info:
            trainer.fit()
    finally:
        del bench.safe_state  # the class's method again
    assert len(reports) == 1, "the trainer goes to the safe state once, on its way out"
    return info.value, reports[0]


def smus_are_off(lab: EmulatedLab, *, but: str = "") -> bool:
    return all(
        not lab.smu_state(name, ch).output_on and lab.smu_state(name, ch).voltage_level == 0.0
        for name, server in lab.smus.items()
        if name != but
        for ch in server.model.channels
    )


def board_is_safe(lab: EmulatedLab) -> bool:
    state = lab.board_state("xbar")
    return state.mode == "idle" and not state.dacs.any()


# fault, instrument, what the command contains, reason pattern
FAULTS = {
    "smu compliance": (
        lambda lab: lab.smus["smu1"].force_compliance("smua"),
        "smu1",
        "smua.source.compliance",
        r"compliance: channel smua \(output node 0 \(class 0 \+\)\) reached its limit",
    ),
    "smu compliance (SCPI)": (
        lambda lab: lab.smus["smu3"].force_compliance("1"),
        "smu3",
        ":READ?",
        r"compliance: channel 1 \(output node 4 \(class 2 \+\)\) reached its limit",
    ),
    "smu error queue (TSP)": (
        lambda lab: lab.smus["smu1"].push_error(-300, "Device-specific error: overheated"),
        "smu1",
        "print(errorqueue.count)",
        r"reported error\(s\): -300 Device-specific error: overheated",
    ),
    "smu error queue (SCPI)": (
        lambda lab: lab.smus["smu2"].push_error(-350, "Queue overflow"),
        "smu2",
        ":SYST:ERR?",
        r"reported error\(s\): -350 Queue overflow",
    ),
    "smu disconnect": (
        lambda lab: lab.smus["smu1"].drop_connections(),
        "smu1",
        "smua",
        # pyvisa-py reads a closed socket as silence: the first sign may be a timeout
        r"connection lost|I/O error|no reply within",
    ),
    "board error reply": (
        lambda lab: lab.boards["xbar"].fail_next(110, "hardware fault: DAC rail down"),
        "xbar",
        "DAC:SET 0:",
        r"ERR 110 hardware fault: DAC rail down",
    ),
    "board pulse fault part-way": (
        lambda lab: lab.boards["xbar"].fail_after(10),
        "xbar",
        "PULSE:MANY ",
        r"ERR 110 completed=\d+ partial=\d+ hardware fault: injected; \d+ of \d+ devices pulsed "
        r"in full.*, 10 of \d+ pulses delivered$",
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_stops_the_run_in_the_safe_state(name):
    fault, instrument, command, reason = FAULTS[name]
    bench = small_lab()
    try:
        error, report = train_until_fault(bench, fault)
        lab = bench.emulator
        assert error.instrument == instrument
        assert command in error.command
        assert re.search(reason, error.reason), error.reason
        assert str(error).startswith(f"{instrument} during {error.command!r}: ")
        assert report.confirmed and report.unconfirmed == ()
        assert lab.is_safe(), "every SMU off at 0 V, the board idle with its DACs at 0 V"
    finally:
        bench.close()


def test_a_pulse_fault_mid_training_leaves_exact_counts():
    """The drill that lost 2,856 of 244,749 pulses: every pulse the devices got is counted."""
    bench = small_lab()
    try:
        error, report = train_until_fault(bench, lambda lab: lab.boards["xbar"].fail_after(10))
        assert error.command.startswith("PULSE:MANY") and report.confirmed
        physics = bench.emulator.physics  # the safe state applied every queued pulse
        assert bench.pulse_counts.sum() > 10
        np.testing.assert_array_equal(bench.pulse_counts, physics.pulse_counts)
    finally:
        bench.close()


def test_a_silent_smu_times_out_and_is_reported_unconfirmed():
    bench = small_lab()
    try:
        error, report = train_until_fault(bench, lambda lab: lab.smus["smu1"].stop_answering())
        lab = bench.emulator
        assert error.instrument == "smu1" and error.command.startswith("smua.source.leveli")
        assert error.reason == f"no reply within {FAST:g} s (timeout)"
        assert report.unconfirmed == ("smu1",)  # it never confirmed its outputs off
        assert "could NOT confirm the safe state of smu1" in report.words()
        assert smus_are_off(lab, but="smu1") and board_is_safe(lab)
    finally:
        bench.emulator.smus["smu1"].stop_answering(False)
        bench.close()


def test_a_silent_board_times_out_and_the_smus_are_made_safe():
    bench = small_lab()
    try:
        error, report = train_until_fault(bench, lambda lab: lab.boards["xbar"].go_silent())
        assert error.instrument == "xbar" and error.command.startswith("DAC:SET")
        assert error.reason == f"no reply within {FAST:g} s"
        assert report.unconfirmed == ("xbar",)
        assert smus_are_off(bench.emulator)
    finally:
        bench.emulator.boards["xbar"].go_silent(False)
        bench.close()


def test_an_unplugged_board_stops_the_run_and_the_smus_are_made_safe():
    bench = small_lab()
    try:
        error, report = train_until_fault(bench, lambda lab: lab.boards["xbar"].disconnect())
        assert error.instrument == "xbar"
        assert "DAC:SET" in error.command
        assert "no reply" in error.reason or "port" in error.reason
        assert report.unconfirmed == ("xbar",)
        assert smus_are_off(bench.emulator)
    finally:
        bench.close()


def overflowing_section(**changes: object) -> dict:
    """The small lab with an ADC range that the hidden nodes overshoot: it covers the diode
    clamps [-0.3, 0.5] V (so the bench connects) but not the soft Shockley clamp, which lets
    hidden nodes past them."""
    section = small_lab_bench_section(**changes)
    section["emulate"]["boards"]["xbar"]["adc_range"] = [-0.35, 0.55]
    return section


def some_inputs(bench: LabBench, n: int = 16) -> np.ndarray:
    net = bench.network
    return net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (n, net.n_inputs)))


def test_adc_overflow_is_a_fault_not_a_clipped_reading():
    bench = small_lab(bench=overflowing_section())
    try:
        with pytest.raises(InstrumentError, match=r"ADC overflow on channel\(s\) \[") as info:
            bench.settle(some_inputs(bench))
        assert info.value.instrument == "xbar" and info.value.command.startswith("ADC:READ")
        assert bench.safe_state().confirmed
        assert bench.emulator.is_safe()
    finally:
        bench.close()


# --- flagged_samples: record ---------------------------------------------------------------
def test_recorded_adc_overflow_flags_the_hidden_nodes_and_carries_on():
    bench = small_lab(bench=overflowing_section(flagged_samples="record"))
    try:
        net = bench.network
        x = some_inputs(bench)
        m = bench.settle(x)
        assert bench.samples_settled == len(x)
        assert m.overflow.any() and m.flagged.any() and not m.compliance.any()
        hidden = np.zeros(net.n_nodes, dtype=bool)
        hidden[net.hidden_nodes] = True
        assert not m.overflow[:, ~hidden].any()  # only measured hidden nodes overflow
        # an overflowed reading is the ADC range end, every other is within it
        lo, hi = -0.35, 0.55
        v = m.node_voltages[:, hidden]
        at_end = np.isclose(v, lo, atol=1e-5) | np.isclose(v, hi, atol=1e-5)
        assert np.all(at_end[m.overflow[:, hidden]])
        assert np.all((v > lo) & (v < hi) | m.overflow[:, hidden])
        np.testing.assert_array_equal(m.flagged, m.overflow.any(axis=1))
        assert bench.settle(x[:1]).node_voltages.shape == (1, net.n_nodes)  # still usable
    finally:
        bench.close()


@pytest.mark.parametrize(
    "smu, channel, output",
    [("smu1", "smua", 0), ("smu3", "1", 4)],
    ids=["TSP", "SCPI"],
)
def test_recorded_compliance_flags_the_output_node_and_carries_on(smu, channel, output):
    bench = small_lab(bench=small_lab_bench_section(flagged_samples="record"))
    try:
        net = bench.network
        bench.emulator.smus[smu].force_compliance(channel)
        sent = bench.commands_sent
        m = bench.settle(some_inputs(bench, 3))
        node = net.output_nodes[output]
        assert m.compliance[:, node].all() and m.flagged.all()
        others = np.ones(net.n_nodes, dtype=bool)
        others[node] = False
        assert not m.compliance[:, others].any() and not m.overflow.any()
        # the forced channel reads its compliance voltage (a 0 A nudge: clipped at +limit)
        np.testing.assert_allclose(m.node_voltages[:, node], bench.limits.compliance_voltage)
        assert bench.commands_sent > sent and bench.samples_settled == 3
        bench.emulator.smus[smu].force_compliance(channel, False)
        assert not bench.settle(some_inputs(bench, 1)).flagged.any()
    finally:
        bench.close()


def test_recorded_compliance_of_an_input_source_flags_its_source_node():
    section = small_lab_bench_section(flagged_samples="record")
    section["instruments"]["smu0"] = {"driver": "keithley2600", "timeout_s": FAST}
    section["wiring"]["inputs"] = ["smu0:smua", "smu0:smub"]  # one feature: +x and -x
    bench = small_lab(bench=section, inputs=1)
    try:
        net = bench.network
        bench.emulator.smus["smu0"].force_compliance("smub")
        m = bench.settle(net.encode_inputs(np.array([[0.5], [1.0]])))
        flagged = np.zeros(net.n_nodes, dtype=bool)
        flagged[1] = True  # source node 1: the -x source of the one feature, on smub
        np.testing.assert_array_equal(m.compliance, np.tile(flagged, (2, 1)))
    finally:
        bench.close()


def test_the_default_raises_on_the_same_compliance():
    bench = small_lab(bench=small_lab_bench_section(flagged_samples="raise"))
    try:
        bench.emulator.smus["smu3"].force_compliance("1")
        with pytest.raises(InstrumentError, match=r"compliance: channel 1 \(output node 4"):
            bench.settle(some_inputs(bench, 3))
        assert bench.samples_settled == 0  # the first sample raised
    finally:
        bench.close()


def test_an_unreachable_instrument_at_start_is_an_instrument_error():
    section = small_lab_bench_section(emulate=None)
    section["instruments"]["xbar"]["address"] = "/dev/does-not-exist"
    for port, name in enumerate(("smu1", "smu2", "smu3", "smu4"), start=1):
        # nothing listens on these ports: refused (one address each: a bench locks them)
        section["instruments"][name]["address"] = f"TCPIP::127.0.0.1::{port}::SOCKET"
    section["calibration"] = {"n_states": 1000}
    config = small_run_config(bench=section)
    with pytest.raises(InstrumentError, match="xbar during 'open': cannot open"):
        build_bench(config)


# --- through `hil train` -------------------------------------------------------------------
def lab_config_file(tmp_path) -> str:
    """emulated-lab.yaml with 8 hidden nodes and a few samples: quick to set up."""
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(quick_emulated_lab(epochs=1)))
    return str(path)


@pytest.fixture
def inject(monkeypatch):
    """Run `hil train` with a listener that calls ``action(bench)`` after step 1."""
    import hil.progress
    import hil.run

    benches: list[LabBench] = []
    original = hil.run.build_bench

    def build(config):
        bench = original(config)
        if isinstance(bench, LabBench):
            benches.append(bench)
        return bench

    def arm(action: Callable[[LabBench], None]) -> list[LabBench]:
        def progress() -> Callable[[Event], None]:
            def listener(event: Event) -> None:
                if isinstance(event, StepFinished) and event.step == 1:
                    action(benches[-1])

            return listener

        monkeypatch.setattr(hil.run, "build_bench", build)
        monkeypatch.setattr(hil.progress, "ProgressBar", progress)
        return benches

    return arm


def test_hil_train_exits_1_naming_instrument_command_and_reason(tmp_path, capsys, inject):
    benches = inject(lambda bench: bench.emulator.smus["smu3"].force_compliance("smub"))
    assert main(["train", lab_config_file(tmp_path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert (
        "error: smu3 during 'print(smua.measure.v(), smub.measure.v(), smua.source.compliance,"
        " smub.source.compliance)': compliance: channel smub (output node 5 (class 2 -)) "
        "reached its limit; bench left in its safe state" in err
    )
    assert benches[0].emulator.is_safe() and not benches[0].emulator.running


def test_hil_train_says_which_instrument_it_could_not_make_safe(tmp_path, capsys, inject):
    benches = inject(lambda bench: bench.emulator.smus["smu2"].stop_answering())
    assert main(["train", lab_config_file(tmp_path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "error: smu2 during 'smua.source.leveli = 0; smub.source.leveli = 0; print(" in err
    assert f"no reply within {FAST:g} s (timeout); could NOT confirm the safe state of smu2" in err
    assert smus_are_off(benches[0].emulator, but="smu2") and board_is_safe(benches[0].emulator)


def test_ctrl_c_leaves_the_lab_safe(tmp_path, capsys, inject):
    def interrupt(bench: LabBench) -> None:
        raise KeyboardInterrupt

    benches = inject(interrupt)
    assert main(["train", lab_config_file(tmp_path), "--out", str(tmp_path / "run")]) == 130
    assert "interrupted: bench left in its safe state" in capsys.readouterr().err
    assert benches[0].emulator.is_safe() and not benches[0].emulator.running
