"""Nothing lost on a lab bench: pulse counters and emulated devices survive a checkpoint, and
a batch of pulses cut short (a board fault, a timeout, Ctrl-C) is counted exactly.

The emulated lab's physics counts every pulse its devices receive, so ``pulse_counts`` of
the bench (what the board confirmed) must equal the physics' count after any fault.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from drivers.lab_bench import LabBench
from drivers.serial_board import PulseError
from hil.bench import PulseRequest
from hil.composition import build_bench
from hil.config import RunConfig, load_config
from hil.errors import ConfigError, EmergencyStop, InstrumentError
from hil.events import RunStarted, StepFinished
from hil.network import Network
from hil.run import Run
from hil.run_files import RunDirectory
from tests.conftest import REPO
from tests.labs import FAST, physical_lab, small_lab, small_lab_bench_section, small_run_config
from tests.processes import wait_until

#: Devices of the small network on every tile, with counts of both signs and a zero.
IDS = np.array([0, 40, 75, 133, 7, 90])
COUNTS = np.array([5, -3, 4, 2, 0, 6])


@pytest.fixture
def lab() -> Iterator[LabBench]:
    bench = small_lab()
    yield bench
    bench.close()


def physics_counts(bench: LabBench) -> np.ndarray:
    """Pulses the emulated devices received (queued ones applied by a safe state first)."""
    assert bench.safe_state().confirmed
    return bench.emulator.physics.pulse_counts


@contextmanager
def ctrl_c_when(event: threading.Event) -> Iterator[None]:
    """Inside the block, deliver SIGINT to the main thread once ``event`` is set: a blocking
    read there is interrupted as a user's Ctrl-C would interrupt it. A signal that comes
    after the block (a slow machine) is ignored instead of stopping the test session."""
    armed = threading.Event()
    armed.set()

    def handler(signum: int, frame: object) -> None:
        if armed.is_set():
            raise KeyboardInterrupt

    def deliver() -> None:
        if event.wait(5.0) and armed.is_set():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, handler)
    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    try:
        yield
    finally:
        armed.clear()
        event.set()  # let the thread end if the event never came
        thread.join()
        signal.signal(signal.SIGINT, previous)


# --- checkpoints -----------------------------------------------------------------------------
def test_state_round_trip_restores_counters_and_emulated_devices(lab):
    lab.settle(lab.network.encode_inputs(np.full((2, lab.network.n_inputs), 0.5)))
    lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    lab.pulse(PulseRequest(IDS[:2], np.array([2, 2]), 1.0, 1e-6))
    state = lab.state_dict()
    assert {"pulse_counts", "samples_settled", "emulator.conductances"} <= set(state)
    fresh = small_lab()
    try:
        assert not fresh.pulse_counts.any()
        assert not np.array_equal(fresh.read_conductances(), lab.read_conductances())
        fresh.load_state_dict(state)
        np.testing.assert_array_equal(fresh.pulse_counts, lab.pulse_counts)
        assert fresh.pulse_counts[IDS].tolist() == [7, 5, 4, 2, 0, 6]
        assert fresh.samples_settled == lab.samples_settled == 2
        np.testing.assert_array_equal(fresh.read_conductances(), lab.read_conductances())
        # both continue alike: the devices (and their random streams) are the same
        request = PulseRequest(IDS, -COUNTS, 1.0, 1e-6)
        lab.pulse(request)
        fresh.pulse(request)
        np.testing.assert_array_equal(fresh.read_conductances(), lab.read_conductances())
        x = lab.network.encode_inputs(np.full((1, lab.network.n_inputs), 0.3))
        np.testing.assert_array_equal(fresh.settle(x).node_voltages, lab.settle(x).node_voltages)
    finally:
        fresh.close()


def test_pulses_queued_in_the_emulator_are_in_its_state(lab):
    lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    board = lab.boards["xbar"]
    board.mode("programming")
    board.pulse_many([(0, 0, 1.0, 3)], 1e-6, "V/2")  # queued, not yet applied to the physics
    state = lab.state_dict()
    assert state["emulator.pulse_counts"][0] == 5 + 3


def test_a_state_for_another_network_is_refused_by_name(lab):
    state = lab.state_dict()
    state["pulse_counts"] = state["pulse_counts"][:100]
    before = lab.read_conductances()
    with pytest.raises(ConfigError, match="counts pulses for 100 devices but the network has 134"):
        lab.load_state_dict(state)
    with pytest.raises(ConfigError, match="lacks samples_settled: not a lab bench's state"):
        lab.load_state_dict({"pulse_counts": np.zeros(134, dtype=np.int64)})
    np.testing.assert_array_equal(lab.read_conductances(), before)  # nothing changed


def physical_bench() -> LabBench:
    """A lab bench without emulator (never connected: its state needs no instrument)."""
    section = small_lab_bench_section(emulate=None)
    section["instruments"]["xbar"]["address"] = "/dev/does-not-exist"
    for port, name in enumerate(("smu1", "smu2", "smu3", "smu4"), start=1):
        section["instruments"][name]["address"] = f"TCPIP::127.0.0.1::{port}::SOCKET"
    section["calibration"] = {"n_states": 1000}
    config = small_run_config(bench=section)
    return LabBench(Network(config.network), config.bench)


def test_a_physical_bench_saves_only_its_counters(lab):
    bench = physical_bench()
    bench.pulse_counts[IDS] = np.abs(COUNTS)
    state = bench.state_dict()
    assert set(state) == {"pulse_counts", "samples_settled"}
    again = physical_bench()
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.pulse_counts, bench.pulse_counts)
    with pytest.raises(
        ConfigError, match="holds no emulated devices .* this lab bench is emulated"
    ):
        lab.load_state_dict(state)
    with pytest.raises(ConfigError, match="holds emulated devices but this lab bench is not"):
        bench.load_state_dict(lab.state_dict())


def lab_run_config(epochs: int) -> RunConfig:
    """emulated-lab.yaml with 8 hidden nodes and a few samples: an epoch in about a second."""
    raw = yaml.safe_load((REPO / "bench_configs" / "emulated-lab.yaml").read_text())
    raw["network"]["hidden"] = [8]
    raw["bench"]["wiring"]["hidden"] = ["xbar:0-7"]
    raw["data"].update({"train_limit": 32, "test_limit": 20})
    raw["training"]["epochs"] = epochs
    return RunConfig.model_validate(raw)


def test_a_resumed_lab_run_continues_its_counters_and_devices(tmp_path: Path):
    straight = Run(lab_run_config(2), tmp_path / "straight").execute()
    Run(lab_run_config(1), tmp_path / "split").execute()
    resumed = Run(lab_run_config(2), tmp_path / "split", resume=True).execute()
    assert [m.as_dict() | {"seconds": 0} for m in resumed.history] == [
        m.as_dict() | {"seconds": 0} for m in straight.history
    ]
    with (
        np.load(tmp_path / "straight/checkpoint.npz") as a,
        np.load(tmp_path / "split/checkpoint.npz") as b,
    ):
        keys = sorted(k for k in a.files if k.startswith("bench."))
        assert keys == sorted(k for k in b.files if k.startswith("bench."))
        assert {"bench.pulse_counts", "bench.emulator.conductances"} <= set(keys)
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        # the counters went on from epoch 1's: every pulse of both epochs is in them
        assert b["bench.pulse_counts"].sum() == sum(m.pulses for m in straight.history) > 0
        np.testing.assert_array_equal(b["bench.pulse_counts"], b["bench.emulator.pulse_counts"])


# --- pulses cut short ------------------------------------------------------------------------
def test_a_pulse_batch_failing_part_way_counts_what_the_devices_got(lab):
    lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))  # some history first
    lab.emulator.boards["xbar"].fail_after(9)  # 5 to device 0, 3 to 40, then 1 of 4 to 75
    before = lab.pulse_counts.copy()
    with pytest.raises(PulseError) as info:
        lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    error = info.value
    assert isinstance(error, InstrumentError) and error.instrument == "xbar"
    assert error.command.startswith("PULSE:MANY ")
    assert error.reason == (
        "ERR 110 completed=2 partial=1 hardware fault: injected; 2 of 5 devices pulsed in full "
        "(+1 of 4 pulses to the next), 9 of 20 pulses delivered"
    )
    assert (lab.pulse_counts - before)[IDS].tolist() == [5, 3, 1, 0, 0, 0]
    np.testing.assert_array_equal(lab.pulse_counts, physics_counts(lab))
    lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))  # the fault is spent: all goes through
    np.testing.assert_array_equal(lab.pulse_counts, physics_counts(lab))


def two_board_section() -> dict:
    """The small lab with its last tile on a second board that carries only crossbar lines."""
    section = small_lab_bench_section()
    section["instruments"]["xbar2"] = {"driver": "serial_board", "timeout_s": FAST}
    section["wiring"]["tiles"] = [
        {"board": "xbar", "row": 0, "col": 0},
        {"board": "xbar", "row": 14, "col": 5},
        {"board": "xbar2", "row": 0, "col": 0},
    ]
    section["emulate"]["boards"]["xbar2"] = section["emulate"]["boards"]["xbar"]
    return section


def test_a_fault_on_the_second_board_keeps_the_first_boards_pulses():
    bench = small_lab(bench=two_board_section())
    try:
        boards, _, _ = bench.wiring.device_lines
        on_second = [d for d in range(bench.network.n_devices) if boards[d] == "xbar2"]
        ids = np.array([on_second[0], 0, on_second[1], 40, on_second[2], 75])
        counts = np.array([4, 5, -3, -3, 2, 4])
        bench.emulator.boards["xbar2"].fail_after(5)  # 4 to the first, 1 of 3 to the next
        with pytest.raises(
            PulseError,
            match=r"^xbar2 during .*; 1 of 3 devices pulsed in full \(\+1 of 3 pulses to the "
            r"next\), 5 of 9 pulses delivered$",
        ):
            bench.pulse(PulseRequest(ids, counts, 1.0, 1e-6))
        # the plan follows the request's order: xbar2 (its first device comes first) failed,
        # so xbar's pulses were never sent
        got = bench.pulse_counts[ids].tolist()
        assert got == [4, 0, 1, 0, 0, 0]
        np.testing.assert_array_equal(bench.pulse_counts, physics_counts(bench))
        bench.emulator.boards["xbar"].fail_after(7)  # xbar2 goes through, then xbar fails
        with pytest.raises(PulseError, match=r"^xbar during .*; 1 of 3 devices .* 7 of 12 pulses"):
            bench.pulse(PulseRequest(ids, counts, 1.0, 1e-6))
        assert (bench.pulse_counts[ids] - got).tolist() == [4, 5, 3, 2, 2, 0]
        np.testing.assert_array_equal(bench.pulse_counts, physics_counts(bench))
    finally:
        bench.close()


def test_an_old_firmware_error_leaves_the_batch_uncertain_and_says_so(lab, caplog):
    lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    before = lab.pulse_counts.copy()
    server = lab.emulator.boards["xbar"]
    mode_done = server.delay_next(0.1, "MODE")  # MODE PROGRAMMING: the pulse line is next

    def fail_the_pulse_line() -> None:  # a plain ERR 110: no completed= field
        if mode_done.wait(5.0):
            server.fail_next(110, "hardware fault: driver stage")

    watcher = threading.Thread(target=fail_the_pulse_line, daemon=True)
    watcher.start()
    with caplog.at_level(logging.WARNING, logger="drivers.lab_bench"):
        with pytest.raises(PulseError, match="5 device.* \\(20 pulses\\) uncertain") as info:
            lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    watcher.join()
    assert info.value.tally.uncertain == 5
    assert "xbar: 20 pulse(s) to 5 device(s) (ids 0, 40, 75, 133, 90) may or may not" in (
        caplog.text
    )
    np.testing.assert_array_equal(lab.pulse_counts, before)  # not counted ...
    np.testing.assert_array_equal(lab.pulse_counts, physics_counts(lab))  # ... nor applied


def test_ctrl_c_while_a_pulse_line_is_out_waits_for_its_count(lab):
    server = lab.emulator.boards["xbar"]
    # the board answers 0.4 s late; Ctrl-C comes while the bench waits for that reply
    with ctrl_c_when(server.delay_next(0.4, "PULSE:MANY")), pytest.raises(KeyboardInterrupt):
        lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    assert lab.pulse_counts[IDS].tolist() == [5, 3, 4, 2, 0, 6]
    np.testing.assert_array_equal(lab.pulse_counts, physics_counts(lab))
    # the same with a fault part-way: the drained reply's completed= is counted
    server.fail_after(6)
    with ctrl_c_when(server.delay_next(0.4, "PULSE:MANY")), pytest.raises(KeyboardInterrupt):
        lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    assert lab.pulse_counts[IDS].tolist() == [10, 4, 4, 2, 0, 6]
    np.testing.assert_array_equal(lab.pulse_counts, physics_counts(lab))


def test_ctrl_c_without_a_reply_warns_of_the_uncertain_pulses(lab, caplog):
    server = lab.emulator.boards["xbar"]
    late = server.delay_next(3 * FAST, "PULSE:MANY")  # later than the timeout
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="drivers.lab_bench"):
        with ctrl_c_when(late), pytest.raises(KeyboardInterrupt):
            lab.pulse(PulseRequest(IDS, COUNTS, 1.0, 1e-6))
    assert time.monotonic() - start < 2 * FAST  # waited for the reply at most the timeout
    assert "xbar: 20 pulse(s) to 5 device(s)" in caplog.text and "may or may not" in caplog.text
    assert not lab.pulse_counts.any()
    time.sleep(max(0.0, start + 3 * FAST + 0.2 - time.monotonic()))  # the late reply comes
    # ... and the next command discards it
    assert lab.safe_state().confirmed
    # the board did pulse them: this is what "uncertain" means
    assert physics_counts(lab)[IDS].tolist() == [5, 3, 4, 2, 0, 6]


# --- board protocol version 2 on the bench ---------------------------------------------------
def test_a_safe_state_from_another_thread_interrupts_a_long_batch_and_counts_it():
    section = small_lab_bench_section()
    section["instruments"]["xbar"]["timeout_s"] = 5.0  # the batch outlasts FAST
    bench = small_lab(bench=section)
    try:
        server = bench.emulator.boards["xbar"]
        server.pace_pulses(0.01)  # 30 devices x 5 pulses: a 1.5 s batch
        ids = np.arange(0, 120, 4)
        request = PulseRequest(ids, np.full(len(ids), 5), 1.0, 1e-6)
        errors: list[BaseException] = []

        def pulse() -> None:
            try:
                bench.pulse(request)
            except PulseError as exc:
                errors.append(exc)

        worker = threading.Thread(target=pulse)
        worker.start()
        time.sleep(0.3)
        start = time.monotonic()
        report = bench.safe_state()  # an emergency stop: does not wait for the batch
        assert time.monotonic() - start < 1.0 and report.confirmed
        worker.join(5.0)
        (error,) = errors
        assert "ERR 111 completed=" in error.reason and "aborted by ABORT" in error.reason
        assert 0 < bench.pulse_counts.sum() < 150
        np.testing.assert_array_equal(bench.pulse_counts, physics_counts(bench))
        assert bench.emulator.is_safe()
    finally:
        bench.close()


def test_the_pulse_allowance_reaches_the_board_driver_and_bad_ones_are_refused():
    raw = yaml.safe_load(yaml.safe_dump(lab_run_config(1).model_dump(mode="json")))
    raw["bench"]["instruments"]["xbar"]["pulse_allowance_s"] = 0.01
    bench = build_bench(RunConfig.model_validate(raw))
    try:
        assert bench.boards["xbar"].pulse_allowance == 0.01
    finally:
        bench.close()
    for bad in (-1e-6, float("nan"), 2.0):
        raw["bench"]["instruments"]["xbar"]["pulse_allowance_s"] = bad
        with pytest.raises(ValueError, match="pulse_allowance_s"):
            RunConfig.model_validate(raw)


def test_training_with_idle_gaps_never_trips_the_watchdog(tmp_path: Path):
    raw = yaml.safe_load(yaml.safe_dump(lab_run_config(1).model_dump(mode="json")))
    raw["bench"]["instruments"]["xbar"]["watchdog_s"] = 0.2
    config = RunConfig.model_validate(raw)
    bench = build_bench(config)
    slept = []

    def computing_elsewhere(event: object) -> None:  # e.g. an evaluation on the SMUs only
        if isinstance(event, StepFinished) and len(slept) < 2:
            slept.append(event)
            time.sleep(0.6)  # three watchdog timeouts without a board command

    try:
        result = Run(
            config, tmp_path / "run", bench=bench, listeners=[computing_elsewhere]
        ).execute()
        assert result.history and len(slept) == 2
        server = bench.emulator.boards["xbar"]
        assert server.watchdog_s == 0.2 and server.watchdog_trips == 0
        assert server.pings_received > 0
    finally:
        bench.close()
    assert server.watchdog_trips == 0


def test_bulk_reads_give_a_version_1_boards_conductances_in_few_commands():
    v1 = small_lab_bench_section()
    v1["emulate"]["boards"]["xbar"]["protocol"] = 1
    old, new = small_lab(bench=v1), small_lab()
    try:
        assert (old.boards["xbar"].protocol, new.boards["xbar"].protocol) == (1, 2)
        counts = []
        for lab in (old, new):
            lab.read_conductances(IDS[:1])  # modes settled
            sent = lab.commands_sent
            g = lab.read_conductances()
            counts.append(lab.commands_sent - sent)
            lab.g = g  # type: ignore[attr-defined]
        np.testing.assert_array_equal(new.g, old.g)  # type: ignore[attr-defined]
        n = old.network.n_devices
        assert counts[0] == n + 2  # MODE PROGRAMMING, one READ each, MODE NETWORK
        assert counts[1] <= 2 + len(old.network.tiles)  # one block a tile here
        ids = np.array([133, 0, 75, 0, 40])
        np.testing.assert_array_equal(new.read_conductances(ids), old.read_conductances(ids))
    finally:
        old.close()
        new.close()


def test_a_safe_state_from_another_thread_stops_a_settle_between_samples():
    """An emergency stop does not wait for a whole batch: the settle stops at its next
    sample, the safe state is reached, and the settle's caller gets EmergencyStop."""
    section = small_lab_bench_section(settle_delay_s=0.05)  # 100 samples: about 5 s
    bench = small_lab(bench=section)
    try:
        net = bench.network
        x = net.encode_inputs(np.full((100, net.n_inputs), 0.5))
        outcome: list[BaseException] = []

        def settle() -> None:
            try:
                bench.settle(x)
            except BaseException as exc:  # noqa: BLE001 - reported to the test below
                outcome.append(exc)

        worker = threading.Thread(target=settle)
        worker.start()
        wait_until(lambda: bench.samples_settled >= 3, what="the batch to be under way")
        report = bench.safe_state()
        worker.join(timeout=30)
        assert report.confirmed and bench.emulator.is_safe()
        assert len(outcome) == 1 and isinstance(outcome[0], EmergencyStop), outcome
        assert "stopped after" in str(outcome[0])
        assert bench.samples_settled < 100
        bench.settle(x[:2])  # the next operation re-arms: the stop does not stick
        assert bench.samples_settled >= 5
    finally:
        bench.close()


# --- a physical bench across a resume --------------------------------------------------------
def test_a_resumed_physical_run_counts_the_pulses_after_its_checkpoint(tmp_path: Path):
    """A physical crossbar keeps the pulses of the steps after the last checkpoint: the
    resumed run re-reads the devices and counts on from where the interrupted one ended."""
    path, lab = physical_lab(tmp_path, epochs=2, batch_size=4, checkpoint_every=3)
    config, run_dir = load_config(path), tmp_path / "run"

    def ctrl_c_at_step_5(event: object) -> None:
        if isinstance(event, StepFinished) and event.step == 5:
            raise KeyboardInterrupt

    resumed_estimate: list[np.ndarray] = []

    def keep_estimate(event: object) -> None:
        if isinstance(event, RunStarted):
            assert resumed._trainer is not None
            resumed_estimate.append(resumed._trainer.programmer.estimate().copy())

    try:
        with pytest.raises(KeyboardInterrupt):
            Run(config, run_dir, listeners=[ctrl_c_at_step_5]).execute()
        truth = lab.physics.pulse_counts.copy()  # what the devices received
        g_now = lab.physics.read_conductances()
        checkpoint = RunDirectory(run_dir).read_checkpoint()
        assert checkpoint["bench.pulse_counts"].sum() < truth.sum()  # steps 4 and 5 pulsed
        at_exit = RunDirectory(run_dir).read_bench_at_exit()
        assert at_exit is not None
        np.testing.assert_array_equal(at_exit["pulse_counts"], truth)

        resumed = Run(config, run_dir, resume=True, listeners=[keep_estimate])
        result = resumed.execute()
        assert result.status == "finished" and len(result.history) == 2
        # the estimate is the devices as step 5 left them, not as the checkpoint had them
        stale = checkpoint["programmer.g_estimate"]
        assert np.abs(stale - g_now).max() > 1e-3 * g_now.max()
        np.testing.assert_allclose(resumed_estimate[0], g_now, rtol=1e-3)
        # every pulse the devices received is counted, the ones after the checkpoint too
        final = RunDirectory(run_dir).read_checkpoint()["bench.pulse_counts"]
        np.testing.assert_array_equal(final, lab.physics.pulse_counts)
    finally:
        lab.stop()


def test_a_fresh_run_in_the_folder_forgets_an_earlier_runs_counters(tmp_path: Path):
    path, lab = physical_lab(tmp_path, epochs=1)
    run_dir = tmp_path / "run"
    try:
        RunDirectory(run_dir).create().write_bench_at_exit(
            {"pulse_counts": np.full(lab.physics.network.n_devices, 10**6)}
        )
        Run(load_config(path), run_dir).execute()
        assert RunDirectory(run_dir).read_bench_at_exit() is None
    finally:
        lab.stop()


def test_damaged_counters_at_exit_are_refused_by_name(tmp_path: Path):
    folder = RunDirectory(tmp_path).create()
    folder.write_bench_at_exit({"pulse_counts": np.arange(5)})
    (tmp_path / "bench_at_exit.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ConfigError, match="bench_at_exit.npz is not readable .*delete it"):
        folder.read_bench_at_exit()
    folder.write_bench_at_exit({"pulse_counts": np.arange(3)})  # kept all the same
    saved = folder.read_bench_at_exit()
    assert saved is not None and saved["pulse_counts"].tolist() == [0, 1, 2]
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ConfigError, match="checkpoint.npz is not a readable checkpoint"):
        folder.read_checkpoint()


def test_counters_at_exit_only_grow(tmp_path: Path):
    folder = RunDirectory(tmp_path).create()
    folder.write_bench_at_exit(
        {"pulse_counts": np.array([5, 0, 7]), "samples_settled": np.array(9)}
    )
    folder.write_bench_at_exit(
        {"pulse_counts": np.array([1, 4, 7]), "samples_settled": np.array(3)}
    )
    saved = folder.read_bench_at_exit()
    assert saved is not None
    assert saved["pulse_counts"].tolist() == [5, 4, 7] and int(saved["samples_settled"]) == 9
