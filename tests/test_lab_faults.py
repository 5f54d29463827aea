"""Instrument faults mid-run, injected through the emulators.

Each fault (a timeout, a lost connection, an error reply or queued error, a compliance trip,
an ADC overflow) must stop the run at the next safe point with an InstrumentError naming the
instrument, the command and the reason, and leave the lab in its safe state: every SMU output
off at 0 V, every board idle with its DACs at 0 V. An instrument that cannot be reached is
reported in ``unconfirmed_safe`` instead of being silently assumed safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import yaml

from drivers.lab_bench import LabBench
from hil.cli import main
from hil.config import build_bench
from hil.data import Dataset
from hil.errors import InstrumentError
from hil.trainer import Trainer
from simulators.instruments import EmulatedLab
from tests.conftest import REPO
from tests.labs import FAST, small_lab, small_lab_bench_section, small_run_config

Fault = Callable[[EmulatedLab], None]


def synthetic_task() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 6))
    y = (x[:, 0] > 0.5).astype(int) + (x[:, 1] > 0.5).astype(int)
    return Dataset("synthetic", x[:16], y[:16], x[16:], y[16:])


def train_until_fault(bench: LabBench, fault: Fault, after_step: int = 1) -> InstrumentError:
    """Train on the small lab, inject ``fault`` after a step; return the error it raised."""
    lab: EmulatedLab = bench.emulator

    def inject(event: dict) -> None:
        if event["type"] == "step" and event["step"] == after_step:
            fault(lab)

    config = small_run_config().training.model_copy(update={"epochs": 1, "batch_size": 4})
    trainer = Trainer(bench, config, synthetic_task(), listeners=[inject])
    with pytest.raises(InstrumentError) as info:
        trainer.fit()
    return info.value


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
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_stops_the_run_in_the_safe_state(name):
    fault, instrument, command, reason = FAULTS[name]
    bench = small_lab()
    try:
        error = train_until_fault(bench, fault)
        lab = bench.emulator
        assert error.instrument == instrument
        assert command in error.command
        assert re.search(reason, error.reason), error.reason
        assert str(error).startswith(f"{instrument} during {error.command!r}: ")
        assert bench.unconfirmed_safe == ()
        assert lab.is_safe(), "every SMU off at 0 V, the board idle with its DACs at 0 V"
    finally:
        bench.close()


def test_a_silent_smu_times_out_and_is_reported_unconfirmed():
    bench = small_lab()
    try:
        error = train_until_fault(bench, lambda lab: lab.smus["smu1"].stop_answering())
        lab = bench.emulator
        assert error.instrument == "smu1" and error.command.startswith("smua.source.leveli")
        assert error.reason == f"no reply within {FAST:g} s (timeout)"
        assert bench.unconfirmed_safe == ("smu1",)  # it never confirmed its outputs off
        assert smus_are_off(lab, but="smu1") and board_is_safe(lab)
    finally:
        bench.emulator.smus["smu1"].stop_answering(False)
        bench.close()


def test_a_silent_board_times_out_and_the_smus_are_made_safe():
    bench = small_lab()
    try:
        error = train_until_fault(bench, lambda lab: lab.boards["xbar"].go_silent())
        assert error.instrument == "xbar" and error.command.startswith("DAC:SET")
        assert error.reason == f"no reply within {FAST:g} s"
        assert bench.unconfirmed_safe == ("xbar",)
        assert smus_are_off(bench.emulator)
    finally:
        bench.emulator.boards["xbar"].go_silent(False)
        bench.close()


def test_an_unplugged_board_stops_the_run_and_the_smus_are_made_safe():
    bench = small_lab()
    try:
        error = train_until_fault(bench, lambda lab: lab.boards["xbar"].disconnect())
        assert error.instrument == "xbar"
        assert "DAC:SET" in error.command
        assert "no reply" in error.reason or "port" in error.reason
        assert bench.unconfirmed_safe == ("xbar",)
        assert smus_are_off(bench.emulator)
    finally:
        bench.close()


def test_adc_overflow_is_a_fault_not_a_clipped_reading():
    section = small_lab_bench_section()
    # covers the diode clamps [-0.3, 0.5] V (so the bench connects) but not the soft
    # Shockley clamp, which lets hidden nodes past them
    section["emulate"]["boards"]["xbar"]["adc_range"] = [-0.35, 0.55]
    bench = small_lab(bench=section)
    try:
        net = bench.network
        x = net.encode_inputs(np.random.default_rng(0).uniform(0, 1, (16, net.n_inputs)))
        with pytest.raises(InstrumentError, match=r"ADC overflow on channel\(s\) \[") as info:
            bench.settle(x)
        assert info.value.instrument == "xbar" and info.value.command.startswith("ADC:READ")
        bench.safe_state()
        assert bench.emulator.is_safe()
    finally:
        bench.close()


def test_an_unreachable_instrument_at_start_is_an_instrument_error():
    section = small_lab_bench_section(emulate=None)
    section["instruments"]["xbar"]["address"] = "/dev/does-not-exist"
    for name in ("smu1", "smu2", "smu3", "smu4"):
        section["instruments"][name]["address"] = "TCPIP::127.0.0.1::1::SOCKET"
    section["calibration"] = {"n_states": 1000}
    config = small_run_config(bench=section)
    with pytest.raises(InstrumentError, match="xbar during 'open': cannot open"):
        build_bench(config)


# --- through `hil train` -------------------------------------------------------------------
def lab_config_file(tmp_path) -> str:
    """emulated-lab.yaml with 8 hidden nodes and a few samples: quick to set up."""
    raw = yaml.safe_load((REPO / "bench_configs" / "emulated-lab.yaml").read_text())
    raw["network"]["hidden"] = [8]
    raw["bench"]["wiring"]["hidden"] = ["xbar:0-7"]
    for inst in raw["bench"]["instruments"].values():
        inst["timeout_s"] = FAST
    raw["data"].update({"train_limit": 48, "test_limit": 16})
    raw["training"]["epochs"] = 1
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def inject(monkeypatch):
    """Run `hil train` with a listener that calls ``action(bench)`` after step 1."""
    import hil.config
    import hil.progress

    benches: list[LabBench] = []
    original = hil.config.build_bench

    def build(config):
        bench = original(config)  # builds the emulated physics first, through here too
        if isinstance(bench, LabBench):
            benches.append(bench)
        return bench

    def arm(action: Callable[[LabBench], None]) -> list[LabBench]:
        def progress(epochs: int) -> Callable[[dict], None]:
            def listener(event: dict) -> None:
                if event["type"] == "step" and event["step"] == 1:
                    action(benches[-1])

            return listener

        monkeypatch.setattr(hil.config, "build_bench", build)
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
