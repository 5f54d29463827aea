"""LabBench on the emulated lab: configs, settles, pulses, reads, bench check, training.

The emulated lab's physics is a simulated bench with the same network and seed, so the lab
bench must measure what that bench computes (to the ADC's resolution) and train like it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from drivers.bench_check import check_bench
from drivers.lab_bench import LabBench
from hil.bench import PulseRequest, in_safe_hands
from hil.cli import main
from hil.composition import build_bench, build_check_bench, build_trainer
from hil.config import RunConfig, load_config
from hil.config.lab import ChannelRef, LabBenchConfig, expand_refs
from hil.data import Dataset, load_dataset
from hil.errors import ConfigError, SafetyError
from hil.network import Network
from tests.conftest import REPO
from tests.labs import (
    simulated_twin,
    small_lab,
    small_lab_bench_section,
    small_run_config,
    tsp_lab_bench_section,
)

EMULATED = REPO / "bench_configs" / "emulated-lab.yaml"
EXAMPLE = REPO / "bench_configs" / "lab-example.yaml"
LSB = 4.0 / (2**18 - 1)


@pytest.fixture
def lab() -> LabBench:
    bench = small_lab()
    yield bench
    bench.close()


def batch(net: Network, n: int = 4, seed: int = 0) -> np.ndarray:
    return net.encode_inputs(np.random.default_rng(seed).uniform(0, 1, (n, net.n_inputs)))


# --- configs -------------------------------------------------------------------------------
def test_channel_refs_expand_ranges():
    assert expand_refs(["xbar:3-5", "smu1:smua"]) == [
        ChannelRef("xbar", "3"),
        ChannelRef("xbar", "4"),
        ChannelRef("xbar", "5"),
        ChannelRef("smu1", "smua"),
    ]
    with pytest.raises(ValueError, match="FIRST <= LAST"):
        expand_refs(["xbar:5-3"])
    with pytest.raises(ValueError, match="is not INSTRUMENT:CHANNEL"):
        expand_refs(["xbar"])


def section_with(**wiring) -> dict:
    section = small_lab_bench_section()
    section["wiring"].update(wiring)
    return section


@pytest.mark.parametrize(
    "section, message",
    [
        (section_with(outputs=["smu9:smua"]), "wiring.outputs: smu9:smua names no instrument"),
        (section_with(hidden=["smu1:smua"]), "hidden must be on a board"),
        (section_with(outputs=["xbar:1"]), "outputs must be on a smu"),
        (section_with(bias=["xbar:11-16"]), "xbar:11 is already wired to wiring.inputs"),
        (section_with(hidden=["xbar:a"]), "board channel xbar:a must be a number"),
        (
            {**small_lab_bench_section(), "emulate": None},
            "instruments.xbar.address is required",
        ),
    ],
)
def test_wiring_mistakes_are_named_at_load(section, message):
    with pytest.raises(ValueError, match=message):
        LabBenchConfig.model_validate(section)


def test_counts_are_checked_against_the_network():
    config = small_run_config(bench=section_with(hidden=["xbar:0-7"]))
    with pytest.raises(ConfigError, match="wiring.hidden maps 8 channels but the network has 9"):
        build_bench(config)
    tiles = [{"board": "xbar", "row": 0, "col": 0}, {"board": "xbar", "row": 10, "col": 3}]
    config = small_run_config(bench=section_with(tiles=[*tiles, {"board": "xbar"}]))
    with pytest.raises(ConfigError, match="tile 1 .* overlaps tile 0 on board 'xbar'"):
        build_bench(config)


def test_bad_lab_config_file_names_the_field(tmp_path, capsys):
    raw = yaml.safe_load(EMULATED.read_text())
    raw["bench"]["averaging"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", "check", str(path)]) == 2
    assert "bench.averaging: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_example_configs_load():
    emulated = load_config(EMULATED)
    assert emulated.bench.kind == "lab" and emulated.bench.emulate is not None
    example = load_config(EXAMPLE)
    assert example.bench.kind == "lab" and example.bench.emulate is None
    example.bench.resolve(Network(example.network))  # its wiring fits its network


# --- settles -------------------------------------------------------------------------------
def test_settle_measures_what_the_simulated_twin_computes(lab):
    twin = simulated_twin(small_run_config())
    net = lab.network
    x = batch(net)
    nudges = net.pair_currents(np.random.default_rng(1).uniform(-2e-6, 2e-6, (4, 3)))
    for nudge in (None, nudges):
        got, want = lab.settle(x, nudge), twin.settle(x, nudge)
        np.testing.assert_allclose(got.node_voltages, want.node_voltages, atol=LSB, rtol=1e-5)
        np.testing.assert_allclose(got.drops, want.drops, atol=2 * LSB, rtol=1e-5)
        assert not got.flagged.any()


def emulator_snapshot(lab: LabBench) -> list:
    """What every emulated instrument is doing: SMU channel states, board mode and DACs."""
    emulator = lab.emulator
    smus = [
        emulator.smu_state(name, ch)
        for name, server in emulator.smus.items()
        for ch in server.model.channels
    ]
    boards = [
        (state.mode, state.dacs.tolist()) for state in map(emulator.board_state, emulator.boards)
    ]
    return [*smus, *boards]


@pytest.mark.parametrize("shape", [(1, 2, 12), (12,)], ids=["3-D", "1-D"])
def test_a_settle_of_the_wrong_shape_sends_nothing(lab, shape):
    x = np.zeros(shape)
    lab.settle(np.zeros((1, 12)))  # armed and live
    before, sent = emulator_snapshot(lab), lab.commands_sent
    with pytest.raises(SafetyError, match=r"inputs must have shape \(batch, 12\)"):
        lab.settle(x)
    assert lab.commands_sent == sent and emulator_snapshot(lab) == before
    assert lab.safe_state().confirmed and lab.emulator.is_safe()
    sent = lab.commands_sent
    with pytest.raises(SafetyError, match="nothing was applied"):
        lab.settle(x)  # from the safe state: the SMUs are not re-armed first
    assert lab.commands_sent == sent and lab.emulator.is_safe()


def test_commands_per_settle_do_not_depend_on_input_or_hidden_channels():
    counts = []
    for inputs, hidden in ((6, [5, 4]), (12, [9])):
        bench = small_lab(
            bench=tsp_lab_bench_section(3, inputs, hidden), inputs=inputs, hidden=hidden
        )
        try:
            x = batch(bench.network, 5)
            start = bench.commands_sent
            bench.settle(x)
            counts.append((bench.commands_sent - start) / 5)
        finally:
            bench.close()
    # per sample: DAC:SET + ADC:READ on the board, one set line and one read line per SMU
    assert counts == [2 + 2 * 3, 2 + 2 * 3]


def test_averaging_stays_inside_the_same_commands():
    section = tsp_lab_bench_section(3, 6, [5, 4])
    section["averaging"] = 4
    bench = small_lab(bench=section)
    try:
        start = bench.commands_sent
        bench.settle(batch(bench.network, 2))
        assert bench.commands_sent - start == 2 * (2 + 2 * 3)
    finally:
        bench.close()


# --- pulses and reads ------------------------------------------------------------------------
def test_pulses_go_through_programming_mode_and_are_counted(lab):
    twin = simulated_twin(small_run_config())
    net = lab.network
    lab.settle(batch(net, 1), net.pair_currents(np.full((1, 3), 1e-6)))  # SMUs now live
    ids = np.array([0, 40, 75, 133])
    counts = np.array([5, -3, 0, 2])
    report = lab.pulse(PulseRequest(ids, counts, 1.0, 1e-6))
    twin.pulse(PulseRequest(ids, counts, 1.0, 1e-6))
    assert report.total_pulses == 10
    np.testing.assert_array_equal(lab.pulse_counts[ids], [5, 3, 0, 2])
    np.testing.assert_allclose(lab.read_conductances(), twin.read_conductances(), rtol=1e-9)
    emulator = lab.emulator
    assert emulator.board_state("xbar").mode == "network"  # back after programming
    for smu, channel in (("smu1", "smua"), ("smu2", "1"), ("smu3", "1")):
        state = emulator.smu_state(smu, channel)
        assert state.output_on and state.current_level == 0.0  # quiesced before programming
    np.testing.assert_allclose(
        lab.settle(batch(net)).node_voltages, twin.settle(batch(net)).node_voltages, atol=LSB
    )


def test_an_empty_pulse_request_sends_nothing(lab):
    start = lab.commands_sent
    report = lab.pulse(PulseRequest(np.array([3]), np.array([0]), 1.0, 1e-6))
    assert report.total_pulses == 0 and lab.commands_sent == start


def test_read_conductances_by_id(lab):
    twin = simulated_twin(small_run_config())
    ids = np.array([133, 2, 70])
    np.testing.assert_allclose(lab.read_conductances(ids), twin.read_conductances(ids), rtol=1e-9)


# --- safe state ------------------------------------------------------------------------------
def test_normal_end_leaves_the_lab_safe_and_the_bench_rearms(lab):
    net = lab.network
    with in_safe_hands(lab):
        lab.settle(batch(net), net.pair_currents(np.full((4, 3), 1e-6)))
    assert lab.emulator.is_safe() and lab.safe_state().unconfirmed == ()
    lab.settle(batch(net))  # the next operation arms the SMUs again
    state = lab.emulator.smu_state("smu1", "smua")
    assert state.output_on and state.source_mode == "current"
    lab.close()
    assert lab.emulator.is_safe() and not lab.emulator.running


# --- hil bench check -------------------------------------------------------------------------
def test_check_bench_reads_every_tile_and_leaves_the_lab_safe():
    bench = build_check_bench(small_run_config())
    try:
        rows = check_bench(bench, reads_per_tile=3)
        assert all(row.ok for row in rows), [row for row in rows if not row.ok]
        identity = [row.instrument for row in rows if row.item == "identity"]
        assert identity == ["xbar", "smu1", "smu2", "smu3", "smu4"]
        reads = [row for row in rows if row.item.startswith("device ")]
        assert len(reads) == 3 * len(bench.network.tiles)
        assert rows[-1].item == "safe state" and rows[-1].found == "reached"
        assert bench.emulator.is_safe()
    finally:
        bench.close()


def test_bench_check_passes_on_the_emulated_lab(capsys):
    assert main(["bench", "check", str(EMULATED)]) == 0
    out = capsys.readouterr()
    assert "bench matches its config" in out.err
    lines = [line.strip() for line in out.out.splitlines()]  # a table may pad its rows
    assert lines[0].split() == ["instrument", "check", "expected", "found", "status"]
    assert all(line.endswith("ok") for line in lines[1:])
    assert any(line.startswith("smu10") and "identity" in line for line in lines)
    assert any("device 9639 (tile 1 r65 c19, lines 195,83)" in line for line in lines)


def test_bench_check_reports_each_mismatch_and_exits_1(tmp_path, capsys):
    raw = yaml.safe_load(EMULATED.read_text())
    board = raw["bench"]["emulate"]["boards"]["xbar"]
    board.update({"n_dac": 100, "adc_range": [-0.2, 0.2], "rows": 150})
    raw["bench"]["limits"]["max_input_voltage"] = 15.0
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", "check", str(path)]) == 1
    out = capsys.readouterr()
    mismatches = [line for line in out.out.splitlines() if line.rstrip().endswith("MISMATCH")]
    items = {" ".join(line.split()[1:3]) for line in mismatches}
    assert items == {"DAC channels", "DAC range", "ADC range", "crossbar lines"}
    assert "4 mismatch(es)" in out.err


def test_a_mismatch_stops_training_before_anything_is_applied(tmp_path, capsys):
    raw = yaml.safe_load(EMULATED.read_text())
    raw["bench"]["emulate"]["boards"]["xbar"]["n_dac"] = 100
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error: xbar during 'CAP?': DAC channels: the config needs >= 132" in err
    assert "the instrument has 100" in err


# --- training --------------------------------------------------------------------------------
@pytest.mark.slow
def test_short_training_follows_the_simulated_bench():
    """The digits network through drivers and emulators vs its physics alone, same seed."""
    config = load_config(EMULATED, epochs=1)
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"train_limit": 160, "test_limit": 100})}
    )
    data = load_dataset(config.data, config.training.seed)
    physics = config.bench.emulate.physics.model_copy(update={"limits": config.bench.limits})
    twin = build_bench(config.model_copy(update={"bench": physics}))
    lab = build_bench(config)
    try:
        lab_history = build_trainer(lab, config.training, data).fit()
        g_lab = lab.read_conductances()
    finally:
        lab.close()
    sim_history = build_trainer(twin, config.training, data).fit()
    g_sim = twin.read_conductances()
    # at most one of the 100 test samples and one of the 160 training samples apart
    test_gap = abs(lab_history[-1].test_accuracy - sim_history[-1].test_accuracy) * 100
    train_gap = abs(lab_history[-1].train_accuracy - sim_history[-1].train_accuracy) * 160
    assert round(test_gap) <= 1 and round(train_gap) <= 1
    moved = np.abs(g_sim - physics_start(config)) > 0
    # ADC quantisation flips a few stochastic roundings; the trajectories stay together
    assert np.mean(np.abs(g_lab - g_sim)[moved]) < 0.05 * np.mean(
        np.abs(g_sim - physics_start(config))[moved]
    )


def physics_start(config: RunConfig) -> np.ndarray:
    physics = config.bench.emulate.physics
    return build_bench(config.model_copy(update={"bench": physics})).read_conductances()


def test_hil_train_runs_on_a_lab_config(tmp_path, capsys):
    raw = yaml.safe_load(EMULATED.read_text())
    raw["network"]["hidden"] = [8]
    raw["bench"]["wiring"]["hidden"] = ["xbar:0-7"]
    raw["data"].update({"train_limit": 32, "test_limit": 20})
    raw["training"]["epochs"] = 1
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["pulses"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["bench"]["kind"] == "lab" and saved["bench"]["emulate"]["physics"]["n_states"]


def test_a_dataset_is_not_needed_to_train_on_a_small_lab():
    """The trainer sees only the Bench protocol: a tiny synthetic task on the small lab."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 6))
    y = (x[:, 0] > 0.5).astype(int) + (x[:, 1] > 0.5).astype(int)
    data = Dataset("synthetic", x[:16], y[:16], x[16:], y[16:])
    bench = small_lab()
    try:
        config = small_run_config().training.model_copy(update={"epochs": 1, "batch_size": 8})
        history = build_trainer(bench, config, data).fit()
        assert history[-1].pulses > 0 and bench.pulse_counts.sum() == history[-1].pulses
        assert bench.emulator.is_safe()
    finally:
        bench.close()


def test_bench_check_reports_unreachable_instruments(tmp_path, capsys):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["bench"]["instruments"]["xbar"]["address"] = "/dev/does-not-exist"
    smus = [inst for name, inst in raw["bench"]["instruments"].items() if name != "xbar"]
    for port, inst in enumerate(smus, start=1):
        # nothing listens: refused (one address each: a bench locks every address it uses)
        inst["address"] = f"TCPIP::127.0.0.1::{port}::SOCKET"
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", "check", str(path)]) == 1
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    identity = [line for line in lines if " identity " in line]
    assert len(identity) == 11 and all(line.endswith("MISMATCH") for line in identity)
    assert any("cannot open '/dev/does-not-exist'" in line for line in identity)
    assert any("device reads" in line and line.endswith("skipped") for line in lines)


def test_two_instruments_on_one_address_are_refused_at_config_time():
    section = small_lab_bench_section(emulate=None, calibration={"n_states": 1000})
    section["instruments"]["xbar"]["address"] = "/dev/ttyUSB0"
    for name in ("smu1", "smu2", "smu3", "smu4"):
        section["instruments"][name]["address"] = "TCPIP::10.0.0.5::5025::SOCKET"
    with pytest.raises(ValueError, match="smu2.address .* is already the address of .*smu1"):
        small_run_config(bench=section)
