"""Sweeps on a real Dask LocalCluster (two worker processes on loopback, one per module):
the grid, the one-writer store, identical results to direct runs, resume, a killed
worker, bad grid values, `hil sweep show`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.cli import main
from hil.config.run import RunConfig
from hil.errors import ConfigError
from hil.run import Run
from hil.store import _MIGRATIONS, DATABASE, SCHEMA_VERSION, RunStore
from hil.sweep import (
    Axis,
    SweepRunner,
    SweepSpec,
    create_sweep,
    parse_grid,
    parse_seeds,
    run_cell,
)
from tests.conftest import REPO

distributed = pytest.importorskip("distributed")

#: Where `kill_once` leaves its marker: set before the cluster starts, so the workers see it.
MARKERS_ENV = "HIL_TEST_SWEEP_MARKERS"
GRID = ["--grid", "training.beta=0.25,0.5", "--grid", "training.learning_rate=0.004,0.008"]


def small_config(path: Path) -> Path:
    """sim-digits on 150 training and 60 test samples, one epoch: a cell takes ~0.1 s."""
    config = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())
    config["data"].update(train_limit=150, test_limit=60)
    config["training"]["epochs"] = 1
    path.write_text(yaml.safe_dump(config))
    return path


def kill_once(config: dict[str, Any]) -> dict[str, Any]:
    """A cell function that kills its own worker process the first time it sees seed 1."""
    marker = Path(os.environ[MARKERS_ENV]) / "killed"
    if config["training"]["seed"] == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(config)


def fail_seed_1(config: dict[str, Any]) -> dict[str, Any]:
    if config["training"]["seed"] == 1:
        raise RuntimeError("no luck with seed 1")
    return run_cell(config)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def cluster(folder: Path) -> Iterator[Any]:
    os.environ[MARKERS_ENV] = str(folder)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster
    finally:
        cluster.close()
        os.environ.pop(MARKERS_ENV, None)


@pytest.fixture(scope="module")
def client(cluster) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def config_file(folder: Path) -> Path:
    return small_config(folder / "small.yaml")


def hil(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def swept(cluster, config_file: Path, folder: Path) -> dict[str, Any]:
    """The 2 x 2 x 2-seed sweep, once, through `hil sweep` on the module's cluster."""
    data = folder / "data"
    code, out, err = hil(
        "sweep", str(config_file), *GRID, "--seeds", "0-1",
        "--scheduler", cluster.scheduler_address, "--data-dir", str(data), "--json",
    )  # fmt: skip
    assert code == 0, err
    return {"data": data, "summary": json.loads(out.strip().splitlines()[-1])}


# --- the grid ------------------------------------------------------------------------------
def test_grid_values_are_yaml_scalars_and_seeds_ranges():
    assert parse_grid("training.beta=0.25,0.5,1") == Axis("training.beta", (0.25, 0.5, 1))
    assert parse_grid("bench.device.preset=ideal, reram").values == ("ideal", "reram")
    assert parse_grid("a.b=true,null").values == (True, None)
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    assert parse_seeds([3, 5]) == (3, 5)
    for bad in ("training.beta", "=1,2", "training.beta="):
        with pytest.raises(ConfigError, match="FIELD=VALUE1"):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="not a scalar"):
        parse_grid("training.beta=[1]")
    for bad in ("4-0", "a", "1-"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)


def test_cells_are_every_combination_seeds_innermost_each_validated(config_file):
    raw = yaml.safe_load(config_file.read_text())
    spec = SweepSpec(raw, (Axis("training.beta", (0.25, 0.5)),), (3, 4))
    cells = spec.cells()
    assert [(c.params["training.beta"], c.seed) for c in cells] == [
        (0.25, 3), (0.25, 4), (0.5, 3), (0.5, 4),
    ]  # fmt: skip
    assert [c.config.training.beta for c in cells] == [0.25, 0.25, 0.5, 0.5]
    assert [c.config.training.seed for c in cells] == [3, 4, 3, 4]
    assert SweepSpec.from_dict(spec.as_dict()) == spec
    with pytest.raises(ConfigError, match="training.seed"):
        SweepSpec(raw, (Axis("training.seed", (1, 2)),), (0,)).cells()
    with pytest.raises(ConfigError, match="bench.kind is a value"):
        SweepSpec(raw, (Axis("bench.kind.x", (1,)),), (0,)).cells()


def test_a_lab_bench_is_refused(tmp_path):
    code, _, err = hil(
        "sweep", str(REPO / "bench_configs" / "emulated-lab.yaml"), "--grid",
        "training.beta=0.5,1", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "simulated benches only" in err


@pytest.mark.parametrize(
    ("grid", "field"),
    [
        ("training.beta=-1,0.5", "training.beta"),
        ("training.betta=1", "training.betta"),
        ("bench.device.preset=ideal,nonesuch", "bench.device.preset"),
    ],
)
def test_a_bad_grid_value_exits_2_naming_the_field(tmp_path, config_file, grid, field):
    code, _, err = hil("sweep", str(config_file), "--grid", grid, "--data-dir", str(tmp_path))
    assert code == 2
    assert field in err, err
    with RunStore.open(tmp_path) as store:  # validated before anything was recorded
        assert store.list_sweeps() == [] and store.count_runs() == 0


# --- running -------------------------------------------------------------------------------
def test_every_cell_is_recorded_and_equals_its_direct_run(swept):
    summary = swept["summary"]
    cells = summary["cells"]
    assert summary["status"] == "finished"
    assert len(cells) == 8 and {c["status"] for c in cells} == {"finished"}
    assert [c["run_id"] for c in cells] == [f"{summary['sweep_id']}-c{i:03d}" for i in range(8)]
    assert {c["seed"] for c in cells} == {0, 1}
    with RunStore.open(swept["data"]) as store:
        assert store.count_runs() == 8
        for cell in cells:
            record = store.get_run(cell["run_id"])
            assert record.status == "finished" and record.epochs_done == 1
            config = RunConfig.model_validate(record.config)
            assert config.training.beta == cell["params"]["training.beta"]
            assert config.training.learning_rate == cell["params"]["training.learning_rate"]
            assert config.training.seed == cell["seed"]
            (metrics,) = store.metrics(cell["run_id"])
            assert int(store.pulse_counts(cell["run_id"]).sum()) == metrics["pulses"]
            direct = Run(config).execute()  # the same cell, run here without Dask
            assert direct.history[-1].test_accuracy == cell["test_accuracy"]
            assert direct.history[-1].as_dict() | {"seconds": 0} == metrics | {"seconds": 0}


def test_a_rerun_of_the_same_sweep_runs_nothing_new(swept, cluster):
    sweep_id = swept["summary"]["sweep_id"]
    code, out, _ = hil(
        "sweep", "--resume", sweep_id, "--scheduler", cluster.scheduler_address,
        "--data-dir", str(swept["data"]), "--json",
    )  # fmt: skip
    assert code == 0
    again = json.loads(out.strip().splitlines()[-1])
    assert [c["test_accuracy"] for c in again["cells"]] == [
        c["test_accuracy"] for c in swept["summary"]["cells"]
    ]
    with RunStore.open(swept["data"]) as store:
        assert store.count_runs() == 8
        runner = SweepRunner(store, sweep_id, scheduler="tcp://127.0.0.1:1")  # never reached
        runner.execute()
        assert runner.submitted == 0


def test_an_interrupted_sweep_resumes_only_its_missing_cells(tmp_path, client, config_file):
    raw = yaml.safe_load(config_file.read_text())
    spec = SweepSpec(raw, (Axis("training.beta", (0.25, 0.5)),), (0, 1))
    with RunStore.open(tmp_path) as store:
        sweep_id = create_sweep(store, spec)
        first = SweepRunner(store, sweep_id, client=client, cell_function=fail_seed_1, retries=0)
        cells = first.execute()
        assert [c.status for c in cells] == ["finished", "failed"] * 2
        assert "no luck with seed 1" in (cells[1].error or "")
        assert store.get_sweep(sweep_id).status == "failed"
        done = {c.run_id: store.metrics(c.run_id) for c in cells if c.status == "finished"}
        again = SweepRunner(store, sweep_id, client=client)
        cells = again.execute()
        assert again.submitted == 2
        assert [c.status for c in cells] == ["finished"] * 4
        assert store.get_sweep(sweep_id).status == "finished"
        assert store.count_runs() == 4
        for run_id, metrics in done.items():  # the cells done before were not run again
            assert store.metrics(run_id) == metrics
        for cell in cells:
            assert store.get_run(cell.run_id).status == "finished"
            assert len(store.metrics(cell.run_id)) == 1


def test_a_killed_workers_cell_is_retried_and_recorded_once(tmp_path, folder, client, config_file):
    raw = yaml.safe_load(config_file.read_text())
    spec = SweepSpec(raw, (Axis("training.beta", (0.5,)),), (0, 1))
    with RunStore.open(tmp_path) as store:
        sweep_id = create_sweep(store, spec)
        cells = SweepRunner(store, sweep_id, client=client, cell_function=kill_once).execute()
        assert (folder / "killed").exists()  # a worker did die mid-cell
        assert [c.status for c in cells] == ["finished", "finished"]
        assert store.count_runs() == 2
        killed = cells[1]
        ended = [e for e in store.events(killed.run_id) if e["kind"] == "ended"]
        assert len(ended) == 1 and len(store.metrics(killed.run_id)) == 1
        direct = Run(RunConfig.model_validate(store.get_run(killed.run_id).config)).execute()
        assert direct.history[-1].test_accuracy == killed.test_accuracy
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it: leave the cluster whole


def test_a_sweep_file_and_the_default_local_cluster(tmp_path, config_file):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {"config": str(config_file), "grid": {"training.beta": [0.5, 1]}, "seeds": "3"}
        )
    )
    code, out, err = hil(
        "sweep", str(sweep_file), "--workers", "2", "--data-dir", str(tmp_path / "d"), "--json"
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert [(c["params"], c["seed"], c["status"]) for c in summary["cells"]] == [
        ({"training.beta": 0.5}, 3, "finished"),
        ({"training.beta": 1}, 3, "finished"),
    ]


def test_show_prints_a_table_and_writes_a_plot_per_field(swept, tmp_path):
    sweep_id = swept["summary"]["sweep_id"]
    data = str(swept["data"])
    code, out, _ = hil("sweep", "show", sweep_id, "--to", str(tmp_path), "--data-dir", data)
    assert code == 0
    assert "training.beta" in out and "training.learning_rate" in out and "±" in out
    for field in ("training.beta", "training.learning_rate"):
        png = tmp_path / f"{sweep_id}-{field}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = hil(
        "sweep", "show", sweep_id, "--to", str(tmp_path), "--data-dir", data, "--json"
    )
    shown = json.loads(out.strip().splitlines()[-1])
    assert len(shown["settings"]) == 4
    for setting in shown["settings"]:
        accs = [
            c["test_accuracy"]
            for c in swept["summary"]["cells"]
            if c["params"] == setting["params"]
        ]
        assert setting["finished"] == 2
        assert setting["mean_test_accuracy"] == pytest.approx(sum(accs) / 2)
        assert setting["std_test_accuracy"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)


# --- the store -----------------------------------------------------------------------------
def test_a_version_1_store_gains_the_sweep_tables(tmp_path):
    db = sqlite3.connect(tmp_path / DATABASE)
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (id, name, config, bench_kind, status, seed, created_at) "
        "VALUES ('old', 'old', '{}', 'simulated', 'finished', 0, 0)"
    )
    db.commit()
    db.close()
    with RunStore.open(tmp_path) as store:
        assert store.get_run("old").status == "finished"
        assert store.list_sweeps() == []
    db = sqlite3.connect(tmp_path / DATABASE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


def test_a_running_sweep_whose_client_died_is_interrupted(tmp_path):
    with RunStore.open(tmp_path) as store:
        store.create_sweep(
            "s", "s", {"config": {}, "grid": [], "seeds": [0]}, [(0, {}, 0, "s-c000")]
        )
        store.set_sweep_status("s", "running")
        store.set_cells_status("s", [0], "running")
        with store.sweep_lock("s"):  # its client is alive: left alone
            assert store.mark_orphan_sweeps() == []
        assert store.mark_orphan_sweeps() == ["s"]
        assert store.get_sweep("s").status == "interrupted"
        assert store.sweep_cells("s")[0].status == "pending"
