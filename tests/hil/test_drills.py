"""Drills with real processes: SIGKILL, SIGTERM, two processes on one run, a full disk.

Each drill runs `hil train` as a subprocess, does to it what a lab's day does (a killed
job, a scheduler's SIGTERM, a colleague starting the same run, a disk filling up) and checks
that nothing is lost or mixed up: the run resumes from its last checkpoint to the same
result, a bench is left safe, a second process is refused without touching anything.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import numpy as np
import yaml

from hil.store import RunStore
from tests.conftest import REPO
from tests.processes import HIL, wait_until

DEFAULT = REPO / "bench_configs" / "sim-digits.yaml"


def write_config(tmp_path: Path, epochs: int, train_limit: int = 300, **training) -> Path:
    raw = yaml.safe_load(DEFAULT.read_text())
    raw["data"].update(train_limit=train_limit, test_limit=100)
    raw["training"].update(epochs=epochs, **training)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def hil(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HIL, *args], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )


def start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [HIL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def checkpoints(data: Path, run_id: str) -> list[dict]:
    with RunStore.open(data) as store:
        return store.checkpoints(run_id) if store.find_run(run_id) else []


def summary(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sigkill_mid_run_then_resume_ends_where_a_straight_run_does(tmp_path):
    config = write_config(tmp_path, epochs=4, checkpoint_every=5)
    straight = summary(hil("train", str(config), "--out", str(tmp_path / "a" / "run"), "--json"))

    data = tmp_path / "b"
    job = start("train", str(config), "--out", str(data / "run"), "--quiet")
    wait_until(lambda: len(checkpoints(data, "run")) >= 3, what="three checkpoints")
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)

    listed = hil("runs", "list", "--data-dir", str(data))
    assert listed.returncode == 0 and "interrupted" in listed.stdout, listed.stdout
    resumed = summary(hil("train", "--resume", str(data / "run"), "--json", "--quiet"))
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["pulses"] == straight["pulses"]
    with (
        np.load(tmp_path / "a" / "run" / "checkpoint.npz") as a,
        np.load(data / "run" / "checkpoint.npz") as b,
    ):
        np.testing.assert_array_equal(a["bench.conductances"], b["bench.conductances"])
        np.testing.assert_array_equal(a["bench.pulse_counts"], b["bench.pulse_counts"])


def test_sigterm_and_sighup_stop_like_ctrl_c_and_the_hint_resumes(tmp_path):
    config = write_config(tmp_path, epochs=50)
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        out = tmp_path / signum.name / "run"
        job = start("train", str(config), "--out", str(out), "--quiet")
        wait_until(lambda out=out: (out / "checkpoint.npz").is_file(), what="a checkpoint")
        job.send_signal(signum)
        _, err = job.communicate(timeout=60)
        assert job.returncode == status, err
        assert f"interrupted by {signum.name}: bench left in its safe state" in err
        with RunStore.open(out.parent) as store:
            assert store.get_run("run").status == "interrupted"
        hint = err.split("continue with `")[1].split("`")[0]
        assert hint == f"hil train --resume {out}"
    done = summary(hil(*hint.split()[1:], "--epochs", "2", "--json", "--quiet"))
    assert done["epochs"] == 2 and done["status"] == "finished"


def test_a_second_process_on_a_running_run_is_refused_and_the_first_finishes(tmp_path):
    config = write_config(tmp_path, epochs=3)
    out = tmp_path / "data" / "run"
    first = start("train", str(config), "--out", str(out), "--json", "--quiet")
    with_store = tmp_path / "data"
    wait_until(
        lambda: (
            (with_store / "hil.sqlite3").is_file()
            and RunStore.open(with_store).find_run("run") is not None
        ),
        what="the first run's record",
    )
    for args in (["train", str(config), "--out", str(out)], ["train", "--resume", str(out)]):
        second = hil(*args, "--quiet")
        assert second.returncode == 1, second.stderr
        assert f"run run is in use by PID {first.pid}" in second.stderr
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads(stdout.splitlines()[-1])["epochs"] == 3
    # once the first is done, starting the same run again is refused: runs are never mixed
    again = hil("train", str(config), "--out", str(out), "--quiet")
    assert again.returncode == 2 and "exists already" in again.stderr


def test_resume_refuses_a_changed_config_and_accepts_more_epochs(tmp_path):
    config = write_config(tmp_path, epochs=1)
    out = tmp_path / "data" / "run"
    summary(hil("train", str(config), "--out", str(out), "--json", "--quiet"))
    refused = hil("train", str(config), "--resume", str(out), "--seed", "1")
    assert refused.returncode == 2
    assert "training.seed: stored 0, given 1" in refused.stderr
    other = write_config(tmp_path, epochs=1, learning_rate=0.5)  # the config says 0.008
    refused = hil("train", str(other), "--resume", str(out))
    assert "training.learning_rate: stored 0.008, given 0.5" in refused.stderr
    extended = summary(hil("train", "--resume", str(out), "--epochs", "2", "--json", "--quiet"))
    assert extended["epochs"] == 2


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_never_makes_an_intact_checkpoint_unresumable(tmp_path):
    config = write_config(tmp_path, epochs=2)
    straight = summary(hil("train", str(config), "--out", str(tmp_path / "a" / "run"), "--json"))

    out = tmp_path / "b" / "run"
    summary(hil("train", str(config), "--out", str(out), "--epochs", "1", "--json", "--quiet"))
    before = (out / "checkpoint.npz").read_bytes()
    size = len(before)
    full = hil(
        "train",
        "--resume",
        str(out),
        "--epochs",
        "2",
        "--quiet",
        preexec_fn=_limit_file_size(size - 1000),  # the next checkpoint cannot be written
    )
    assert full.returncode == 1, full.stderr
    error = [line for line in full.stderr.splitlines() if line.startswith("error")]
    assert len(error) == 1 and "File too large" in error[0] and str(out) in error[0]
    assert "Traceback" not in full.stderr
    assert (out / "checkpoint.npz").read_bytes() == before  # intact
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp
    resumed = summary(hil("train", "--resume", str(out), "--epochs", "2", "--json", "--quiet"))
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["pulses"] == straight["pulses"]
