"""`hil train`: bad configs stop before anything runs; good ones train, checkpoint, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.cli import main
from tests.conftest import REPO

DEFAULT = REPO / "bench_configs" / "sim-digits.yaml"


def write_config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load(DEFAULT.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"network__g_min": -1e-7}, "network.g_min: Input should be greater than 0"),
        ({"network__g_min": 2e-5}, "g_min (2e-05 S) must be below g_max"),
        ({"data__dataset": "cifar"}, "data.dataset: Input should be 'digits' or 'idx'"),
        (
            {"data__dataset": "idx", "data__path": "/nonexistent/mnist"},
            "data.path: IDX folder /nonexistent/mnist does not exist",
        ),
        ({"network__inputs": 100}, "network.inputs is 100 but the digits data has 64 features"),
        ({"network__outputs": 5}, "network.outputs is 5 but the digits data has 10 classes"),
        ({"training__batch_size": 0}, "training.batch_size: Input should be greater than 0"),
        ({"training__variant": "sideways"}, "training.variant"),
        ({"bench__engine": "magic"}, "bench.engine"),
        ({"network__diode__model": "zener"}, "network.diode.model"),
    ],
)
def test_bad_config_stops_before_running(tmp_path, capsys, changes, expected):
    out = tmp_path / "run"
    code = main(["train", str(write_config(tmp_path, **changes)), "--out", str(out), "--quiet"])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_missing_config_file(capsys):
    assert main(["train", "nowhere.yaml"]) == 2
    assert "config file nowhere.yaml does not exist" in capsys.readouterr().err


def test_short_run_learns_checkpoints_and_resumes(tmp_path, capsys):
    config = write_config(tmp_path, data__train_limit=400, training__epochs=2)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", str(config), "--out", str(straight), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["test_accuracy"] >= 0.8
    for name in ("metrics.json", "metrics.csv", "curves.png", "checkpoint.npz", "config.yaml"):
        assert (straight / name).is_file()
    assert (straight / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A run stopped after epoch 1 and resumed ends exactly where the straight run did.
    assert main(["train", str(config), "--out", str(split), "--epochs", "1", "--quiet"]) == 0
    assert main(["train", str(config), "--resume", str(split), "--json", "--quiet"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["test_accuracy"] == summary["test_accuracy"]
    with np.load(straight / "checkpoint.npz") as a, np.load(split / "checkpoint.npz") as b:
        np.testing.assert_array_equal(a["bench.conductances"], b["bench.conductances"])
        np.testing.assert_array_equal(a["bench.pulse_counts"], b["bench.pulse_counts"])


@pytest.mark.slow
def test_default_config_reaches_95_percent(tmp_path):
    """The README's main job, through the installed `hil` command."""
    hil = Path(sys.executable).parent / "hil"
    result = subprocess.run(
        [str(hil), "train", str(DEFAULT), "--json", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 10
    assert summary["test_accuracy"] >= 0.95, summary
