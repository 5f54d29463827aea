"""The REST API under load: dashboards polling while a run trains, and the run unchanged.

First trains the run once without load, through the same code path as the server (a
``hil.run.Run`` with a run store, on the guard the API puts around its bench, on a fresh
bench). Then starts ``hil serve`` on the same config (loopback, a random port, a fresh data
folder), starts the same run with ``POST /runs``, and for ``--seconds`` keeps ``--clients``
clients polling ``GET /runs/{id}`` and ``GET /runs/{id}/metrics`` and one client following
``GET /runs/{id}/events`` (reconnecting with ``Last-Event-ID`` if the stream breaks). When
the run has ended the server is stopped with SIGTERM. Prints one JSON line last:
{"errors": ..., "p50_ms": ..., "p99_ms": ..., "metrics_identical": ..., ...}
(``metrics_identical``: every epoch's record equals the unloaded run's, wall-clock seconds
aside, and so does the final test accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hil.api.guard import guard
from hil.composition import build_bench
from hil.config import load_config
from hil.run import Run
from hil.store import RunStore

REPO = Path(__file__).resolve().parents[1]
#: Longest the loaded run may take after the load ended (s): the loops are bounded.
RUN_TIMEOUT_S = 1800
MAX_RECONNECTS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "sim-digits.yaml"))
    parser.add_argument("--epochs", type=int, help="override training.epochs (both runs)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
    parser.add_argument("--clients", type=int, default=32, help="clients polling the run")
    parser.add_argument(
        "--interval", type=float, default=0.05, help="pause between a client's polls (s)"
    )
    args = parser.parse_args()

    config = load_config(args.config, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        baseline, baseline_seconds = train_without_load(args.config, args.epochs, root / "baseline")
        loaded = train_under_load(args, root / "served")
    same_records = [strip(m) for m in loaded["metrics"]] == [strip(m) for m in baseline]
    same_accuracy = bool(
        baseline
        and loaded["metrics"]
        and loaded["metrics"][-1]["test_accuracy"] == baseline[-1]["test_accuracy"]
    )
    latencies = np.array(loaded["latencies"]) * 1000
    print(
        json.dumps(
            {
                "config": config.name,
                "epochs": config.training.epochs,
                "clients": args.clients,
                "load_seconds": args.seconds,
                "run_seconds": round(loaded["run_seconds"], 1),
                "baseline_seconds": round(baseline_seconds, 1),
                "run_outlasted_load": loaded["run_seconds"] >= args.seconds,
                "requests": int(latencies.size),
                "errors": loaded["errors"],
                "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
                "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
                "sse_events": loaded["sse_events"],
                "sse_reconnects": loaded["sse_reconnects"],
                "sse_ended": loaded["sse_ended"],
                "run_status": loaded["status"],
                "test_accuracy": loaded["metrics"][-1]["test_accuracy"]
                if loaded["metrics"]
                else None,
                "baseline_test_accuracy": baseline[-1]["test_accuracy"] if baseline else None,
                "metrics_identical": same_records and same_accuracy,
                "server_exit_status": loaded["exit_status"],
            }
        )
    )


def strip(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch's record without its wall-clock time (the only field load may change)."""
    return {k: v for k, v in record.items() if k != "seconds"}


def train_without_load(
    config_ref: str, epochs: int | None, data: Path
) -> tuple[list[dict[str, Any]], float]:
    """The run as the server trains it (Run + store + the API's guard, on a fresh bench):
    its metrics records and its training time (s)."""
    config = load_config(config_ref, epochs=epochs)
    bench = build_bench(config)
    try:
        with RunStore.open(data) as store:
            run = Run(config, store=store, run_id="baseline", bench=guard(bench, config.name))
            seconds = run.execute().seconds
            return store.metrics("baseline"), seconds
    finally:
        bench.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_under_load(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Serve the config, start the run, poll it with many clients, follow its events."""
    token = secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HIL_API_TOKEN": token}
    command = [sys.executable, "-m", "hil.cli", "serve", args.config, "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--data-dir", str(data)], env=env, stderr=subprocess.PIPE, text=True
    )
    headers = {"Authorization": f"Bearer {token}"}
    try:
        wait_until_up(url, server)
        name = load_config(args.config).name
        body: dict[str, Any] = {"bench": name, "config": name}
        if args.epochs is not None:
            body["epochs"] = args.epochs
        run = httpx.post(f"{url}/runs", headers=headers, json=body, timeout=30)
        run.raise_for_status()
        run_id = run.json()["id"]
        started = time.monotonic()
        deadline = started + args.seconds
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        pollers = [
            threading.Thread(
                target=poll,
                args=(url, headers, run_id, deadline, args.interval, latencies, errors, lock),
            )
            for _ in range(args.clients)
        ]
        sse: dict[str, Any] = {}
        follower = threading.Thread(target=follow, args=(url, headers, run_id, sse))
        for thread in [*pollers, follower]:
            thread.start()
        for thread in pollers:
            thread.join()
        record = wait_for_end(url, headers, run_id)
        run_seconds = (record.get("ended_at") or time.time()) - (record.get("started_at") or 0)
        follower.join(60)
        metrics = httpx.get(f"{url}/runs/{run_id}/metrics", headers=headers, timeout=30).json()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    return {
        "latencies": latencies,
        "errors": errors[0],
        "run_seconds": run_seconds,
        "status": record.get("status"),
        "metrics": metrics,
        "sse_events": sse.get("events", 0),
        "sse_reconnects": sse.get("reconnects", 0),
        "sse_ended": sse.get("ended", False),
        "exit_status": server.returncode,
    }


def wait_until_up(url: str, server: subprocess.Popen[str]) -> None:
    for _ in range(600):  # up to 60 s
        if server.poll() is not None:
            raise SystemExit(f"hil serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("hil serve did not come up in 60 s")


def poll(
    url: str,
    headers: dict[str, str],
    run_id: str,
    deadline: float,
    interval: float,
    latencies: list[float],
    errors: list[int],
    lock: threading.Lock,
) -> None:
    """One dashboard: the run's status and metrics, again and again until the deadline."""
    mine: list[float] = []
    failed = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while time.monotonic() < deadline:
            for path in (f"/runs/{run_id}", f"/runs/{run_id}/metrics"):
                start = time.perf_counter()
                try:
                    ok = http.get(path).status_code == 200
                except httpx.HTTPError:
                    ok = False
                mine.append(time.perf_counter() - start)
                failed += not ok
            time.sleep(interval)
    with lock:
        latencies.extend(mine)
        errors[0] += failed


def follow(url: str, headers: dict[str, str], run_id: str, out: dict[str, Any]) -> None:
    """Follow the run's events to the end, resuming with Last-Event-ID after a break."""
    last, events, reconnects, ended = 0, 0, 0, False
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(30, read=60)) as http:
        while not ended and reconnects <= MAX_RECONNECTS:
            try:
                with http.stream(
                    "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": str(last)}
                ) as stream:
                    for line in stream.iter_lines():
                        if line.startswith("id: "):
                            number = int(line[4:])
                            if number <= last:
                                raise AssertionError(f"event id {number} after {last}")
                            last, events = number, events + 1
                        elif line == "event: ended":
                            ended = True
                if not ended:
                    reconnects += 1
            except httpx.HTTPError:
                reconnects += 1
                time.sleep(0.5)
    out.update(events=events, reconnects=reconnects, ended=ended)


def wait_for_end(url: str, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        record = httpx.get(f"{url}/runs/{run_id}", headers=headers, timeout=30).json()
        if record["status"] not in ("queued", "running") and not record["active"]:
            return dict(record)
        time.sleep(0.5)
    raise SystemExit(f"run {run_id} did not end in {RUN_TIMEOUT_S} s")


if __name__ == "__main__":
    main()
