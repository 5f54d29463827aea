"""Runs through the API: start (validated like the CLI, checked against the bench), list,
metrics, conductances, pulse counters, stop, resume, events (resumable), orphans."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from hil.api import create_app
from hil.composition import build_bench
from hil.config import load_config
from hil.run import Run
from hil.store import RunStore
from tests.hil.api.conftest import (
    BENCH,
    assert_same_state,
    auth,
    bench_state,
    make_settings,
    take_lease,
    wait_for,
    wait_for_end,
    write_config,
)


def start(client, **body):
    answer = client.post("/runs", headers=auth(), json={"bench": BENCH, "config": BENCH, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def read_events(client, run_id, last_event_id=None):
    headers = auth("read")
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events, current = [], {}
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(": ")
                current[key] = value
    return [(int(e["id"]), e["event"], json.loads(e["data"])) for e in events]


def test_a_run_trains_in_the_background_and_keeps_its_record(client, tmp_path, bench_config):
    run = start(client)
    assert run["status"] == "queued" and run["bench"] == BENCH and run["active"] is True
    assert run["epochs"] == 2
    done = wait_for_end(client, run["id"])
    assert done["status"] == "finished" and done["epochs_done"] == 2
    metrics = client.get(f"/runs/{run['id']}/metrics", headers=auth("read")).json()
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        assert isinstance(metrics[-1][key], float)
    # the same numbers as the same run through hil.run.Run on a fresh bench
    config = load_config(bench_config)
    alone = Run(config, bench=build_bench(config)).execute()
    assert [m["test_accuracy"] for m in metrics] == [m.test_accuracy for m in alone.history]

    counts = client.get(f"/runs/{run['id']}/pulse-counts", headers=auth("read")).json()
    assert counts["n_devices"] == 9640 and counts["total"] == sum(m["pulses"] for m in metrics)
    g = client.get(f"/runs/{run['id']}/conductances", headers=auth("read")).json()
    assert g["source"] == "checkpoint" and (g["epoch"], g["step"]) == (2, 0)
    with np.load(tmp_path / "data" / run["id"] / "checkpoint.npz") as checkpoint:
        flat = np.concatenate([np.ravel(t["conductances"]) for t in g["tiles"]])
        np.testing.assert_array_equal(flat, checkpoint["bench.conductances"])


def test_listing_runs(client):
    first = start(client)
    wait_for_end(client, first["id"])
    second = start(client, epochs=1)
    wait_for_end(client, second["id"])
    page = client.get("/runs", headers=auth("read")).json()
    assert page["total"] == 2 and [r["id"] for r in page["runs"]] == [second["id"], first["id"]]
    page = client.get("/runs?limit=1&offset=1", headers=auth("read")).json()
    assert [r["id"] for r in page["runs"]] == [first["id"]] and page["total"] == 2
    assert client.get("/runs?status=failed", headers=auth("read")).json()["total"] == 0
    assert client.get("/runs?status=finished", headers=auth("read")).json()["total"] == 2
    for query in ("status=done", "limit=0", "limit=501", "offset=-1"):
        assert client.get(f"/runs?{query}", headers=auth("read")).status_code == 422
    assert client.get("/runs/nope", headers=auth("read")).status_code == 404
    for tail in ("metrics", "conductances", "pulse-counts", "events"):
        assert client.get(f"/runs/nope/{tail}", headers=auth("read")).status_code == 404
    assert client.post("/runs/nope/stop", headers=auth()).status_code == 404
    assert client.post("/runs/nope/resume", headers=auth()).status_code == 404


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"config": {"training": {"batch_size": 0}}}, 422, "training.batch_size: Input should be"),
        ({"config": {"data": {"dataset": "cifar"}}}, 422, "data.dataset"),
        ({"config": BENCH, "epochs": 0}, 422, "epochs"),
        ({"config": "no-such-config"}, 422, "no shipped config has that name"),
        ({"config": "/etc/passwd"}, 422, "outside this server's config folder"),
        ({"config": "../../etc/hosts"}, 422, "outside this server's config folder"),
        ({"config": "sim-digits-reram"}, 422, "bench.device.preset: bench has 'ideal'"),
        (
            {"config": {"network": {"inputs": 64, "hidden": [32], "outputs": 10}}},
            422,
            "network.hidden: bench has [64], config has [32]",
        ),
        (
            {"config": {"network": {"inputs": 16, "hidden": [64], "outputs": 10}}},
            422,
            "network.inputs",
        ),
        ({"bench": "nope", "config": BENCH}, 404, "no bench 'nope'"),
        ({"config": ["a"]}, 422, "config"),
        ({"config": {"name": "../../escape"}}, 422, "name: String should match pattern"),
    ],
)
def test_a_bad_run_request_is_refused_before_anything_runs(client, body, status, words):
    before = bench_state(client)
    answer = client.post("/runs", headers=auth(), json={"bench": BENCH, **body})
    assert answer.status_code == status, answer.text
    assert words in json.dumps(answer.json())
    assert client.get("/runs", headers=auth()).json()["total"] == 0
    assert_same_state(before, bench_state(client))


def test_a_config_file_under_the_config_root(client, tmp_path):
    write_config(tmp_path / "mine.yaml", epochs=1)
    answer = client.post("/runs", headers=auth(), json={"bench": BENCH, "config": "mine.yaml"})
    assert answer.status_code == 201, answer.text
    assert wait_for_end(client, answer.json()["id"])["status"] == "finished"


def test_a_run_holds_the_bench(client):
    lease = take_lease(client, holder="alice")
    answer = client.post("/runs", headers=auth(), json={"bench": BENCH, "config": BENCH})
    assert answer.status_code == 409 and "'alice'" in answer.json()["detail"]
    run = client.post(
        "/runs", headers=auth(lease=lease), json={"bench": BENCH, "config": BENCH, "epochs": 50}
    ).json()  # alice passes her lease to her run
    info = client.get(f"/benches/{BENCH}", headers=auth("read")).json()
    assert info["run"] == run["id"] and info["lease"]["run"] == run["id"]
    settle = client.post(
        f"/benches/{BENCH}/settle", headers=auth(lease=lease), json={"inputs": [[0.0] * 128]}
    )
    assert settle.status_code == 409 and f"training run {run['id']}" in settle.json()["detail"]
    assert (
        client.post("/runs", headers=auth(), json={"bench": BENCH, "config": BENCH}).status_code
        == 409
    )
    breaking = client.delete(f"/benches/{BENCH}/lease?force=true", headers=auth("admin"))
    assert breaking.status_code == 409
    client.post(f"/runs/{run['id']}/stop", headers=auth())
    assert wait_for_end(client, run["id"])["status"] == "stopped"
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["lease"] is None


def test_stop_keeps_the_checkpoint_and_resume_finishes_exactly(client, bench_config):
    run = start(client, epochs=3)
    wait_for(lambda: client.get(f"/runs/{run['id']}/metrics", headers=auth()).json(), 30)
    stopped = client.post(f"/runs/{run['id']}/stop", headers=auth())
    assert stopped.status_code == 202
    assert wait_for_end(client, run["id"])["status"] == "stopped"
    done = len(client.get(f"/runs/{run['id']}/metrics", headers=auth()).json())
    assert 1 <= done < 3
    assert client.post(f"/runs/{run['id']}/stop", headers=auth()).status_code == 202  # no-op
    resumed = client.post(f"/runs/{run['id']}/resume", headers=auth(), json={})
    assert resumed.status_code == 202, resumed.text
    assert wait_for_end(client, run["id"])["status"] == "finished"
    metrics = client.get(f"/runs/{run['id']}/metrics", headers=auth()).json()
    config = load_config(bench_config, epochs=3)
    straight = Run(config, bench=build_bench(config)).execute()
    assert [m["test_accuracy"] for m in metrics] == [m.test_accuracy for m in straight.history]
    extended = client.post(f"/runs/{run['id']}/resume", headers=auth(), json={"epochs": 4})
    assert extended.status_code == 202 and extended.json()["epochs"] == 4
    assert wait_for_end(client, run["id"])["epochs_done"] == 4
    assert (
        client.post(f"/runs/{run['id']}/resume", headers=auth(), json={"bench": "nope"}).status_code
        == 404
    )


def test_events_are_resumable_with_last_event_id(client):
    run = start(client)
    events = read_events(client, run["id"])  # follows until the run has ended
    ids = [e[0] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [e[1] for e in events]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "ended"
    assert kinds.count("epoch") == 2 and "step" in kinds
    assert events[-1][2]["status"] == "finished" and events[1][2]["status"] == "running"
    step = next(e for e in events if e[1] == "step")[2]
    assert {"epoch", "step", "steps", "loss", "accuracy"} <= step.keys()
    middle = ids[len(ids) // 2]
    assert read_events(client, run["id"], last_event_id=middle) == [
        e for e in events if e[0] > middle
    ]
    assert read_events(client, run["id"], last_event_id=ids[-1]) == []
    answer = client.get(f"/runs/{run['id']}/events?after={middle}", headers=auth("read"))
    assert answer.text.count("event: ") == len([i for i in ids if i > middle])
    bad = client.get(f"/runs/{run['id']}/events", headers={**auth(), "Last-Event-ID": "x"})
    assert bad.status_code == 422


def test_a_run_of_a_dead_server_shows_interrupted(tmp_path, bench_config):
    data = tmp_path / "data"
    with RunStore.open(data) as store:
        config = yaml.safe_load(bench_config.read_text())
        store.create_run("orphan", config, bench_kind="simulated", seed=0)
        store.set_status("orphan", "running")  # its process was SIGKILLed: no lock held
    with TestClient(create_app(make_settings(tmp_path, (bench_config,)))) as client:
        run = client.get("/runs/orphan", headers=auth("read")).json()
        assert run["status"] == "interrupted" and run["bench"] is None
        answer = client.post("/runs/orphan/resume", headers=auth(), json={})
        assert answer.status_code == 422 and "name the bench" in answer.json()["detail"]
        answer = client.post("/runs/orphan/resume", headers=auth(), json={"bench": BENCH})
        assert answer.status_code == 422 and "no checkpoint" in answer.json()["detail"]
        assert read_events(client, "orphan") == []  # ended: the stream ends at once
