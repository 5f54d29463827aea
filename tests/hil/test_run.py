"""The run object: one experiment end to end, its files, resume, and every way out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hil.config import RunConfig, load_config
from hil.errors import ConfigError
from hil.events import EpochFinished, PulseNotes, RunEnded, RunStarted, StepFinished
from hil.run import Run
from hil.run_files import RunDirectory, atomic_write_text
from tests.conftest import REPO

DEFAULT = REPO / "bench_configs" / "sim-digits.yaml"


def quick_config(epochs: int = 2, **training) -> RunConfig:
    config = load_config(DEFAULT, epochs=epochs, **training)
    data = config.data.model_copy(update={"train_limit": 200, "test_limit": 100})
    return config.model_copy(update={"data": data})


def test_a_run_writes_every_file_and_emits_typed_events(tmp_path):
    events = []
    result = Run(quick_config(), tmp_path / "run", listeners=[events.append]).execute()
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"config.yaml", "metrics.json", "metrics.csv", "checkpoint.npz", "curves.png"}
    assert RunConfig.model_validate(yaml.safe_load((tmp_path / "run/config.yaml").read_text()))
    records = json.loads((tmp_path / "run/metrics.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["test_accuracy"] == result.history[-1].test_accuracy
    csv_lines = (tmp_path / "run/metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 3

    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunEnded and events[-1].status == "finished"
    assert kinds.count(EpochFinished) == 2
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert steps[-1].step == steps[-1].steps and 0 <= steps[-1].accuracy <= 1
    assert all(
        isinstance(e, StepFinished | EpochFinished | RunStarted | RunEnded | PulseNotes)
        for e in events
    )
    assert result.summary()["epochs"] == 2


def test_a_run_without_a_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = Run(quick_config(epochs=1)).execute()
    assert result.run_dir is None and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rms_steps", [1, 20])  # 20: the running RMS is checkpointed too
def test_resume_continues_exactly_even_when_the_metrics_file_is_cut(tmp_path, rms_steps):
    straight = Run(quick_config(rms_steps=rms_steps), tmp_path / "straight").execute()
    Run(quick_config(epochs=1, rms_steps=rms_steps), tmp_path / "split").execute()
    # a crash while rewriting metrics.json must not make the intact checkpoint unresumable
    (tmp_path / "split/metrics.json").write_text('[{"epoch": 1, "train_lo')
    resumed = Run(quick_config(rms_steps=rms_steps), tmp_path / "split", resume=True).execute()
    assert [m.test_accuracy for m in resumed.history] == [m.test_accuracy for m in straight.history]
    with (
        np.load(tmp_path / "straight/checkpoint.npz") as a,
        np.load(tmp_path / "split/checkpoint.npz") as b,
    ):
        np.testing.assert_array_equal(a["bench.conductances"], b["bench.conductances"])
        np.testing.assert_array_equal(a["bench.pulse_counts"], b["bench.pulse_counts"])
    assert len(json.loads((tmp_path / "split/metrics.json").read_text())) == 2


def test_resume_without_a_checkpoint_is_a_config_error_before_any_bench(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint.npz in"):
        Run(quick_config(), tmp_path / "empty", resume=True).execute()


def test_ctrl_c_leaves_the_safe_state_and_the_last_checkpoint(tmp_path):
    def interrupt(event):
        if isinstance(event, StepFinished) and event.epoch == 2 and event.step == 3:
            raise KeyboardInterrupt

    ended = []
    run = Run(quick_config(), tmp_path / "run", listeners=[interrupt, ended.append])
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert run.status == "interrupted" and run.safe_state is not None
    assert run.safe_state.confirmed
    assert [e.status for e in ended if isinstance(e, RunEnded)] == ["interrupted"]
    checkpoint = RunDirectory(tmp_path / "run").read_checkpoint()
    assert int(checkpoint["epoch"]) == 1


def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    class Full(Exception):
        pass

    def fail(_):
        raise Full

    from hil.run_files import atomic_write

    with pytest.raises(Full):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
