"""The SQLite run store: schema and migrations, records, orphans, and `hil runs`."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import yaml

from hil.cli import main
from hil.errors import ConfigError, InUseError
from hil.events import EpochMetrics
from hil.store import DATABASE, SCHEMA_VERSION, RunStore
from tests.hil.test_run import quick_config


def metrics(epoch: int, acc: float) -> EpochMetrics:
    return EpochMetrics(epoch, 0.1, acc, 0.2, acc, 10, 0, 1.0, 0.5)


def test_schema_is_versioned_and_migrated_once(tmp_path):
    with RunStore.open(tmp_path) as store:
        store.create_run("a", {"name": "a", "training": {}}, bench_kind="simulated", seed=0)
    db = sqlite3.connect(tmp_path / DATABASE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with RunStore.open(tmp_path) as store:  # a second open keeps the data
        assert store.get_run("a").status == "queued"


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    RunStore.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / DATABASE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer than this hil-eqprop"):
        RunStore.open(tmp_path)


def test_records_metrics_events_counts_and_listing(tmp_path):
    with RunStore.open(tmp_path) as store:
        for name in ("a", "b"):
            store.create_run(name, {"name": name}, bench_kind="simulated", seed=0)
        with pytest.raises(ConfigError, match="exists already"):
            store.create_run("a", {"name": "a"}, bench_kind="simulated", seed=0)
        store.set_status("a", "running")
        store.add_epoch("a", metrics(1, 0.5))
        store.add_epoch("a", metrics(2, 0.7))
        store.set_pulse_counts("a", np.array([3, 0, 7]))
        first = store.add_event("a", "step", {"step": 1})
        second = store.add_event("a", "epoch", {"epoch": 1})
        assert second > first
        assert [e["data"] for e in store.events("a", after=first)] == [{"epoch": 1}]
        assert [m["test_accuracy"] for m in store.metrics("a")] == [0.5, 0.7]
        assert store.get_run("a").epochs_done == 2
        np.testing.assert_array_equal(store.pulse_counts("a"), [3, 0, 7])
        assert [r.id for r in store.list_runs("running")] == ["a"]
        assert store.count_runs() == 2 and store.count_runs("queued") == 1
        with pytest.raises(ConfigError, match="no run 'zz'"):
            store.get_run("zz")


def test_a_running_run_whose_process_died_becomes_interrupted(tmp_path):
    with RunStore.open(tmp_path) as store:
        store.create_run("alive", {"name": "x"}, bench_kind="simulated", seed=0)
        store.create_run("dead", {"name": "x"}, bench_kind="simulated", seed=0)
        store.set_status("alive", "running")
        store.set_status("dead", "running")
        with store.run_lock("alive"):
            with pytest.raises(InUseError, match="run alive is in use by PID"):
                store.run_lock("alive").acquire()
            assert store.mark_orphans() == ["dead"]
        assert store.get_run("alive").status == "running"
        assert store.get_run("dead").status == "interrupted"


def test_hil_runs_list_show_and_export(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(quick_config(epochs=2).model_dump(mode="json")))
    data = tmp_path / "data"
    assert main(["train", str(config), "--data-dir", str(data), "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.splitlines()[-1])["run_id"]
    assert main(["runs", "list", "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "finished" in listing and "2/2" in listing
    assert main(["runs", "show", run_id, "--data-dir", str(data)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "finished" and len(shown["metrics"]) == 2
    assert shown["pulses"] > 0 and shown["checkpoints"][0]["epoch"] == 2
    out = tmp_path / "export"
    assert main(["runs", "export", str(data / run_id), "--to", str(out)]) == 0
    csv_lines = (out / f"{run_id}-metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("epoch,")
    assert (out / f"{run_id}-curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["runs", "show", "nope", "--data-dir", str(data)]) == 2
