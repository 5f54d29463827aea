"""`hil serve` as a process: SIGINT, SIGTERM and SIGHUP take Ctrl-C's path (runs stopped
with their checkpoint, every bench safe, exit 128 + signal); a bad start says why."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hil.store import RunStore
from tests.hil.api.conftest import BENCH, TOKENS, auth, write_config
from tests.hil.api.servers import ServeProcess, free_port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_the_runs_and_leaves_every_bench_safe(tmp_path, signum):
    config = write_config(tmp_path / "bench.yaml")
    with (
        ServeProcess(config, tmp_path / "data") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        run = http.post(
            "/runs", headers=auth(), json={"bench": BENCH, "config": BENCH, "epochs": 500}
        ).json()
        with http.stream("GET", f"/runs/{run['id']}/events", headers=auth()) as events:
            for line in events.iter_lines():  # an event stream is open during the shutdown
                if line == "event: epoch":
                    break
            assert server.stop(signum) == 128 + signum
    name = signal.Signals(signum).name
    assert f"{name}: stopping the runs" in server.stderr
    assert f"bench {BENCH}: bench left in its safe state" in server.stderr
    assert "Traceback" not in server.stderr
    with RunStore.open(tmp_path / "data") as store:
        record = store.get_run(run["id"])
        assert record.status == "stopped" and 1 <= record.epochs_done < 500
        assert store.checkpoints(run["id"])
        assert (store.run_dir(run["id"]) / "checkpoint.npz").is_file()
        assert store.events(run["id"], limit=100_000)[-1]["kind"] == "ended"


def test_a_token_file(tmp_path):
    config = write_config(tmp_path / "bench.yaml")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"dashboard: {{token: {TOKENS['read'].secret}, scopes: [read]}}\n"
        f"panic: {{token: {TOKENS['none'].secret}, scopes: []}}\n"
    )
    with ServeProcess(config, tmp_path / "data", "--tokens", str(tokens), token=None) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/benches", headers=auth("read")).status_code == 200
            lease = http.post(f"/benches/{BENCH}/lease", headers=auth("read"), json={"holder": "a"})
            assert lease.status_code == 403
            assert http.get("/benches", headers=auth("admin")).status_code == 401
            assert (
                http.post(f"/benches/{BENCH}/safe-state", headers=auth("none")).status_code == 200
            )
        assert server.stop(signal.SIGTERM) == 143
    for token in TOKENS.values():
        assert token.secret not in server.stderr


def test_a_bad_start_says_why(tmp_path):
    config = write_config(tmp_path / "bench.yaml")
    base = [sys.executable, "-m", "hil.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*base, str(config), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    done = subprocess.run(
        [*base, str(config), str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "bench ids must differ" in done.stderr
    done = subprocess.run([*base, "nowhere.yaml"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "does not exist" in done.stderr


@pytest.mark.skipif(Path("/dev/ttyUSB0").exists(), reason="a board may be plugged in here")
def test_a_bench_that_cannot_be_built_stops_the_start_in_one_line(tmp_path):
    command = [sys.executable, "-m", "hil.cli", "serve", "lab-example", "--port", str(free_port())]
    command += ["--data-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "error: xbar during 'open': cannot open '/dev/ttyUSB0'" in done.stderr
    assert "Traceback" not in done.stderr
