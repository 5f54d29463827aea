"""``/sweeps``: a sweep on a LocalCluster in a background thread of the server, its cells'
status in the sweep record, scopes, and bad grid values answered 422 naming the field."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.hil.api.conftest import auth, wait_for
from tests.hil.test_sweep import small_config

pytest.importorskip("distributed")


def body(**changes):
    request = {
        "config": "small.yaml",
        "grid": {"training.beta": [0.25, 0.5]},
        "seeds": [0, 1],
        "workers": 2,
    }
    return {**request, **changes}


def test_a_sweep_runs_in_the_background_and_records_every_cell(client: TestClient, tmp_path):
    small_config(tmp_path / "small.yaml")  # the server's config folder is tmp_path
    answer = client.post("/sweeps", headers=auth("operate"), json=body())
    assert answer.status_code == 202, answer.text
    sweep = answer.json()
    assert answer.headers["Location"] == f"/sweeps/{sweep['id']}"
    assert [(c["params"], c["seed"]) for c in sweep["cells"]] == [
        ({"training.beta": 0.25}, 0),
        ({"training.beta": 0.25}, 1),
        ({"training.beta": 0.5}, 0),
        ({"training.beta": 0.5}, 1),
    ]
    second = client.post("/sweeps", headers=auth("operate"), json=body())
    assert second.status_code == 409  # one sweep at a time (each starts a cluster)

    def ended() -> bool:
        now = client.get(f"/sweeps/{sweep['id']}", headers=auth("read")).json()
        return not now["active"] and now["status"] not in ("queued", "running")

    wait_for(ended, timeout=120, every=0.1)
    done = client.get(f"/sweeps/{sweep['id']}", headers=auth("read")).json()
    assert done["status"] == "finished", done
    assert done["counts"] == {"finished": 4}
    for cell in done["cells"]:
        assert cell["status"] == "finished" and 0 <= cell["test_accuracy"] <= 1
        run = client.get(f"/runs/{cell['run_id']}", headers=auth("read")).json()
        assert run["status"] == "finished" and run["epochs_done"] == 1
    listing = client.get("/sweeps", headers=auth("read")).json()
    assert [s["id"] for s in listing["sweeps"]] == [sweep["id"]]
    assert listing["sweeps"][0]["cells"] is None

    # its events: a `cell` as each ended (ids 1..4), then the sweep; resumable
    events = sse(client, f"/sweeps/{sweep['id']}/events")
    assert [e[:2] for e in events] == [
        ("1", "cell"),
        ("2", "cell"),
        ("3", "cell"),
        ("4", "cell"),
        (None, "sweep"),
    ]
    assert sorted(e[2]["cell"] for e in events[:4]) == [0, 1, 2, 3]
    assert events[-1][2]["status"] == "finished"
    later = sse(client, f"/sweeps/{sweep['id']}/events", {"Last-Event-ID": "3"})
    assert [e[:2] for e in later] == [("4", "cell"), (None, "sweep")]
    assert later[0][2] == events[3][2]


def sse(client: TestClient, path: str, headers: dict | None = None) -> list[tuple]:
    """(id, event, data) of every event of a finite stream."""
    answer = client.get(path, headers={**auth("read"), **(headers or {})})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/event-stream"
    )
    events = []
    for block in answer.text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            events.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


def test_bad_grid_values_scopes_and_unknown_sweeps(client: TestClient, tmp_path):
    small_config(tmp_path / "small.yaml")
    bad = client.post(
        "/sweeps", headers=auth("operate"), json=body(grid={"training.beta": [-1, 0.5]})
    )
    assert bad.status_code == 422
    assert "training.beta" in bad.json()["detail"]
    lab = client.post("/sweeps", headers=auth("operate"), json=body(config="emulated-lab"))
    assert lab.status_code == 422 and "simulated benches only" in lab.json()["detail"]
    outside = client.post("/sweeps", headers=auth("operate"), json=body(config="../x.yaml"))
    assert outside.status_code == 422
    assert client.post("/sweeps", headers=auth("read"), json=body()).status_code == 403
    assert client.get("/sweeps/nonesuch", headers=auth("read")).status_code == 404
    assert client.get("/sweeps", headers=auth("read")).json()["sweeps"] == []
