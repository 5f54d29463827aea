"""The emergency stop: any token, no lease, idempotent; it reaches the safe state while a
run trains (the run ends ``stopped``, its checkpoint kept) and waits for nothing else the
server does: not a bench busy in a training thread, not a full worker pool."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from hil.api import create_app
from hil.api.guard import guard
from hil.api.server import background_server
from hil.bench import PulseRequest
from hil.composition import build_bench
from hil.config import load_config
from hil.errors import EmergencyStop
from tests.hil.api.conftest import (
    BENCH,
    auth,
    make_settings,
    slot_of,
    slow_factory,
    take_lease,
    wait_for,
    wait_for_end,
)


def test_the_guard_refuses_everything_but_the_safe_state(bench_config):
    bench = build_bench(load_config(bench_config))
    guarded = guard(bench, "b")
    x = np.zeros((1, 128))
    guarded.settle(x)
    state = guarded.state_dict()
    guarded.trip("tester")
    assert guarded.tripped and guarded.stopped_by == "tester"
    with pytest.raises(EmergencyStop, match="emergency-stopped by tester: settle refused"):
        guarded.settle(x)
    with pytest.raises(EmergencyStop):
        guarded.pulse(PulseRequest(np.array([0]), np.array([1]), 1.0, 1e-6))
    with pytest.raises(EmergencyStop):
        guarded.read_conductances()
    with pytest.raises(EmergencyStop):
        guarded.load_state_dict(state)
    assert guarded.safe_state().confirmed and not guarded.armed
    assert guarded.state_dict().keys() == state.keys()  # checkpoints still read the state
    guarded.clear()
    guarded.settle(x)


def test_estop_stops_a_training_run_keeping_its_checkpoint(client, tmp_path):
    run = client.post(
        "/runs", headers=auth(), json={"bench": BENCH, "config": BENCH, "epochs": 200}
    ).json()
    wait_for(lambda: client.get(f"/runs/{run['id']}/metrics", headers=auth()).json(), 30)
    answer = client.post(f"/benches/{BENCH}/safe-state", headers=auth("none"))
    assert answer.status_code == 200
    stop = answer.json()
    assert stop["confirmed"] is True and stop["run_stopped"] == run["id"]
    assert stop["message"] == "bench left in its safe state"
    done = wait_for_end(client, run["id"], 30)
    assert done["status"] == "stopped" and 1 <= done["epochs_done"] < 200
    slot = slot_of(client)
    assert slot.bench.applied_inputs.max() == 0.0 and slot.bench.applied_nudges.max() == 0.0
    info = client.get(f"/benches/{BENCH}", headers=auth()).json()
    assert info["status"] == "safe" and info["estop"] is True and info["estop_by"] == "panic-button"
    assert info["run"] is None and info["lease"] is None
    assert (tmp_path / "data" / run["id"] / "checkpoint.npz").is_file()
    ended = client.get(f"/runs/{run['id']}/events?after=0", headers=auth()).text
    assert '"emergency_stop_by":"panic-button"' in ended
    # resumable from that checkpoint; the new run clears the stop
    resumed = client.post(f"/runs/{run['id']}/resume", headers=auth(), json={})
    assert resumed.status_code == 202
    client.post(f"/runs/{run['id']}/stop", headers=auth())
    assert wait_for_end(client, run["id"])["status"] == "stopped"


def test_estop_revokes_the_lease_and_holds_until_a_new_one(client):
    lease = take_lease(client)
    for _ in range(2):  # idempotent
        answer = client.post(f"/benches/{BENCH}/safe-state", headers=auth("read"))
        assert answer.status_code == 200 and answer.json()["confirmed"] is True
    body = {"inputs": [[0.0] * 128]}
    assert (
        client.post(f"/benches/{BENCH}/settle", headers=auth(lease=lease), json=body).status_code
        == 409
    )
    slot = slot_of(client)
    with pytest.raises(EmergencyStop):
        slot.guard.settle(np.zeros((1, 128)))
    lease = take_lease(client, holder="bob")
    assert (
        client.post(f"/benches/{BENCH}/settle", headers=auth(lease=lease), json=body).status_code
        == 200
    )
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["estop"] is False


def test_estop_does_not_wait_for_a_busy_bench(tmp_path, bench_config):
    made = []
    settings = make_settings(tmp_path, (bench_config,))
    app = create_app(settings, bench_factory=slow_factory(1.0, made))
    with TestClient(app) as client:
        (slow,) = made
        run = client.post(
            "/runs", headers=auth(), json={"bench": BENCH, "config": BENCH, "epochs": 1}
        ).json()
        assert slow.settling.wait(30)  # the training thread is inside a 1 s settle
        start = time.monotonic()
        answer = client.post(f"/benches/{BENCH}/safe-state", headers=auth("none"))
        took = time.monotonic() - start
        assert answer.status_code == 200 and answer.json()["run_stopped"] == run["id"]
        assert took < 0.5 and slow.settling.is_set()  # answered while the settle still runs
        assert slow.safe_states and slow.safe_states[0] >= start
        done = wait_for_end(client, run["id"], 30)
        assert done["status"] == "stopped" and done["epochs_done"] == 0
        # the settle that straddled the stop was followed by another safe state
        assert len(slow.safe_states) >= 2 and slow.safe_states[-1] > start + 0.5


def test_estop_does_not_wait_for_a_full_worker_pool(tmp_path, bench_config):
    made = []
    settings = make_settings(tmp_path, (bench_config,), threadpool_workers=1)
    app = create_app(settings, bench_factory=slow_factory(1.5, made))
    with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        (slow,) = made
        lease = http.post(
            f"/benches/{BENCH}/lease", headers=auth(), json={"holder": "alice"}
        ).json()["lease_token"]
        outcome = {}

        def slow_settle() -> None:  # holds the only worker for 1.5 s
            with httpx.Client(base_url=url, timeout=30) as other:
                outcome["settle"] = other.post(
                    f"/benches/{BENCH}/settle",
                    headers=auth(lease=lease),
                    json={"inputs": [[0.0] * 128]},
                )

        worker = threading.Thread(target=slow_settle)
        worker.start()
        assert slow.settling.wait(10)
        start = time.monotonic()
        answer = http.post(f"/benches/{BENCH}/safe-state", headers=auth("none"))
        took = time.monotonic() - start
        assert answer.status_code == 200 and answer.json()["lease_revoked"] == "alice"
        assert took < 0.5 and slow.settling.is_set()
        start = time.monotonic()  # a plain route waits for the worker: the pool was full
        assert http.get("/runs", headers=auth()).status_code == 200
        assert time.monotonic() - start > 0.5
        worker.join(10)
        settled = outcome["settle"]  # the settle that straddled the stop is discarded
        assert settled.status_code == 409 and settled.json()["error"] == "EmergencyStop"
