"""Manual operations: settle, pulse, read conductances. A request outside the bench's limits
answers 422 naming the field and the limit, a busy bench 409, and neither changes the bench
by a single bit; malformed input never causes a 5xx."""

from __future__ import annotations

import numpy as np
import pytest

from tests.hil.api.conftest import (
    BENCH,
    assert_same_state,
    auth,
    bench_state,
    slot_of,
    take_lease,
)

FREE = [[1.0] * 64 + [-1.0] * 64]


def test_settle_measures_with_the_status_of_every_reading(client):
    lease = take_lease(client)
    answer = client.post(
        f"/benches/{BENCH}/settle",
        headers=auth(lease=lease),
        json={"inputs": FREE * 2, "nudges": [[1e-6] * 20, [0.0] * 20]},
    )
    assert answer.status_code == 200, answer.text
    m = answer.json()
    network = slot_of(client).guard.network
    assert np.shape(m["node_voltages"]) == (2, network.n_nodes)
    assert np.shape(m["drops"]) == (2, network.n_devices)
    assert np.shape(m["outputs"]) == (2, 10)
    assert m["compliance"] == [[], []] and m["flagged"] == [False, False]
    assert len(m["overflow"]) == 2
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["status"] == "armed"


def test_pulses_and_conductances(client):
    lease = take_lease(client)
    before = client.get(f"/benches/{BENCH}/conductances", headers=auth(lease=lease)).json()
    assert before["source"] == "bench"
    assert [(t["rows"], t["cols"]) for t in before["tiles"]] == [(130, 64), (66, 20)]
    answer = client.post(
        f"/benches/{BENCH}/pulses",
        headers=auth(lease=lease),
        json={"device_ids": [0, 1], "counts": [3, -2], "amplitude_v": 1.0, "width_s": 1e-6},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "device_ids": [0, 1],
        "applied": [3, -2],
        "refused": [0, 0],
        "notes": [],
        "total_pulses": 5,
    }
    after = client.get(f"/benches/{BENCH}/conductances", headers=auth(lease=lease)).json()
    g0, g1 = before["tiles"][0]["conductances"][0], after["tiles"][0]["conductances"][0]
    assert g1[0] > g0[0] and g1[1] < g0[1]
    pulses = client.get(f"/benches/{BENCH}", headers=auth("read")).json()["pulses"]
    assert pulses["total"] == 5 and pulses["devices_pulsed"] == 2 and pulses["per_tile"] == [5, 0]


# (endpoint, body, field, words the message must hold)
REFUSED = [
    ("settle", {"inputs": [[13.0] * 128]}, "inputs", "exceeds the limit of 12 V"),
    ("settle", {"inputs": [[0.0] * 127]}, "inputs", "shape (batch, 128)"),
    ("settle", {"inputs": FREE, "nudges": [[2e-3] * 20]}, "nudges", "limit of 0.001 A"),
    ("settle", {"inputs": FREE, "nudges": [[0.0] * 20] * 2}, "nudges", "shape (1, 20)"),
    ("settle", {"inputs": FREE * 33}, "inputs", "max_settle_batch of 32"),
    (
        "pulses",
        {"device_ids": [0], "counts": [1], "amplitude_v": 5.0, "width_s": 1e-6},
        "amplitude_v",
        "outside [0.1, 3] V",
    ),
    (
        "pulses",
        {"device_ids": [0], "counts": [1], "amplitude_v": 1.0, "width_s": 1.0},
        "width_s",
        "outside [1e-08, 0.001] s",
    ),
    (
        "pulses",
        {"device_ids": [0], "counts": [1001], "amplitude_v": 1.0, "width_s": 1e-6},
        "counts",
        "max_pulses_per_request (1000)",
    ),
    (
        "pulses",
        {"device_ids": [0, 1], "counts": [1], "amplitude_v": 1.0, "width_s": 1e-6},
        "counts",
        "equal length",
    ),
    (
        "pulses",
        {"device_ids": [3, 3], "counts": [1, 1], "amplitude_v": 1.0, "width_s": 1e-6},
        "device_ids",
        "must not repeat",
    ),
    (
        "pulses",
        {"device_ids": [9640], "counts": [1], "amplitude_v": 1.0, "width_s": 1e-6},
        "device_ids",
        "[0, 9640)",
    ),
]


@pytest.mark.parametrize("endpoint, body, field, words", REFUSED)
def test_a_request_outside_the_limits_is_422_and_changes_nothing(
    client, endpoint, body, field, words
):
    lease = take_lease(client)
    before = bench_state(client)
    answer = client.post(f"/benches/{BENCH}/{endpoint}", headers=auth(lease=lease), json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["field"] == field and error["error"] == "SafetyError"
    assert words in error["detail"] and "nothing was applied" in error["detail"]
    assert_same_state(before, bench_state(client))
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["status"] == "safe"


@pytest.mark.parametrize(
    "endpoint, body",
    [
        ("settle", {"inputs": FREE}),
        ("pulses", {"device_ids": [0], "counts": [5], "amplitude_v": 1.0, "width_s": 1e-6}),
    ],
)
def test_a_busy_bench_is_409_and_changes_nothing(client, endpoint, body):
    take_lease(client, holder="alice")
    before = bench_state(client)
    answer = client.post(f"/benches/{BENCH}/{endpoint}", headers=auth(lease="bobs"), json=body)
    assert answer.status_code == 409 and "'alice'" in answer.json()["detail"]
    assert_same_state(before, bench_state(client))


RAW = [
    b'{"inputs": [[NaN' + b", 0.0" * 127 + b"]]}",
    b'{"inputs": [[Infinity' + b", 0.0" * 127 + b"]]}",
    b'{"inputs": [[-Infinity' + b", 0.0" * 127 + b"]]}",
    b'{"inputs": [[1e999' + b", 0.0" * 127 + b"]]}",
    b'{"inputs": [[0.0, ',
    b"not json",
    b'{"inputs": "many"}',
    b'{"inputs": [[true]]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"inputs": [[0.0]], "unknown": 1}',
    b'{"inputs": [' + b"[0.0]," * 300 + b"[0.0]]}",
    b'{"inputs": [[' + b"0.0," * 9000 + b"0.0]]}",
]


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_malformed_settles_are_4xx_and_change_nothing(client, raw):
    lease = take_lease(client)
    before = bench_state(client)
    answer = client.post(
        f"/benches/{BENCH}/settle",
        headers={**auth(lease=lease), "Content-Type": "application/json"},
        content=raw,
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    assert_same_state(before, bench_state(client))


@pytest.mark.parametrize(
    "body",
    [
        {"device_ids": [2**40], "counts": [1], "amplitude_v": 1.0, "width_s": 1e-6},
        {"device_ids": [0], "counts": [10**30], "amplitude_v": 1.0, "width_s": 1e-6},
        {"device_ids": [-1], "counts": [1], "amplitude_v": 1.0, "width_s": 1e-6},
        {"device_ids": [0], "counts": [1], "amplitude_v": "1V", "width_s": 1e-6},
        {"device_ids": [0], "counts": [1.5], "amplitude_v": 1.0, "width_s": 1e-6},
        {
            "device_ids": list(range(100_001)),
            "counts": [1] * 100_001,
            "amplitude_v": 1.0,
            "width_s": 1e-6,
        },
    ],
)
def test_pulse_arguments_are_bounded(client, body):
    lease = take_lease(client)
    before = bench_state(client)
    answer = client.post(f"/benches/{BENCH}/pulses", headers=auth(lease=lease), json=body)
    assert answer.status_code in (413, 422), answer.text
    assert_same_state(before, bench_state(client))


def test_validation_errors_name_the_field_without_echoing_the_input(client):
    lease = take_lease(client)
    answer = client.post(
        f"/benches/{BENCH}/pulses",
        headers=auth(lease=lease),
        json={"device_ids": [0], "counts": [1], "amplitude_v": 1.0, "width_s": "secret-looking"},
    )
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "width_s"] and "secret-looking" not in answer.text


def test_a_body_over_the_limit_is_413(client):
    lease = take_lease(client)
    big = b'{"inputs": [[' + b"0.0," * 300_000 + b"0.0]]}"
    answer = client.post(
        f"/benches/{BENCH}/settle",
        headers={**auth(lease=lease), "Content-Type": "application/json"},
        content=big,
    )
    assert answer.status_code == 413 and "limit of 1048576 bytes" in answer.json()["detail"]

    def chunks():  # no Content-Length: the limit holds on what is streamed too
        yield b'{"inputs": [['
        for _ in range(300):
            yield b"0.0," * 1000
        yield b"0.0]]}"

    answer = client.post(
        f"/benches/{BENCH}/settle",
        headers={**auth(lease=lease), "Content-Type": "application/json"},
        content=chunks(),
    )
    assert answer.status_code == 413


def test_unknown_benches_are_404(client):
    for method, path in [
        ("GET", "/benches/nope"),
        ("POST", "/benches/nope/safe-state"),
        ("GET", "/benches/nope/conductances"),
    ]:
        answer = client.request(method, path, headers=auth())
        assert answer.status_code == 404 and "no bench 'nope'" in answer.json()["detail"]
