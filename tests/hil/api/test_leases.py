"""Leases: one holder at a time, bounded time to live, renew, release, admin break, expiry
(the bench made safe), a run's lease; reads are never blocked by a lease."""

from __future__ import annotations

import pytest

from hil.api.leases import LeaseKeeper
from hil.errors import InUseError
from tests.hil.api.conftest import BENCH, auth, slot_of, take_lease, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_holder_at_a_time_until_it_expires():
    clock = Clock()
    keeper = LeaseKeeper("b", clock)
    lease = keeper.acquire("alice", 10)
    with pytest.raises(InUseError, match="leased by 'alice' for another 10 s"):
        keeper.acquire("bob", 10)
    assert keeper.check(lease.token) == lease
    with pytest.raises(InUseError, match="alice"):
        keeper.check("guess")
    clock.now += 5
    keeper.renew(lease.token, 10)
    clock.now += 9
    assert keeper.current() is not None and keeper.expire() is None
    clock.now += 2
    assert keeper.current() is None
    assert keeper.expire().holder == "alice" and keeper.expire() is None
    with pytest.raises(InUseError, match="not leased to you"):
        keeper.check(lease.token)
    assert keeper.acquire("bob", 10).holder == "bob"


def test_release_break_and_a_runs_lease():
    keeper = LeaseKeeper("b", Clock())
    lease = keeper.acquire("alice", 10)
    with pytest.raises(InUseError):
        keeper.release("not-hers")
    assert keeper.release(lease.token) == lease and keeper.release(lease.token) is None
    lease = keeper.acquire("alice", 10)
    run = keeper.acquire_for_run("r1", lease.token)  # her lease passes to her run
    assert run.run_id == "r1" and run.expires_at is None
    with pytest.raises(InUseError, match="training run r1"):
        keeper.check(run.token)  # a run's lease is not for manual operations
    with pytest.raises(InUseError, match="training run r1"):
        keeper.break_()
    assert keeper.revoke() is None and keeper.current() == run
    keeper.release_run("r2")
    assert keeper.current() == run
    keeper.release_run("r1")
    assert keeper.current() is None
    keeper.acquire("bob", 10)
    with pytest.raises(InUseError, match="bob"):
        keeper.acquire_for_run("r3")


def test_a_lease_over_the_api(client):
    lease = take_lease(client)
    info = client.get(f"/benches/{BENCH}", headers=auth("read")).json()["lease"]
    assert info["holder"] == "alice" and info["run"] is None and 0 < info["expires_in_s"] <= 300
    answer = client.post(f"/benches/{BENCH}/lease", headers=auth(), json={"holder": "bob"})
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith(f"bench {BENCH} is leased by 'alice'")
    renewed = client.post(
        f"/benches/{BENCH}/lease/renew", headers=auth(lease=lease), json={"ttl_s": 30}
    )
    assert renewed.status_code == 200 and renewed.json()["ttl_s"] == 30
    assert client.post(f"/benches/{BENCH}/lease/renew", headers=auth()).status_code == 409
    too_long = client.post(
        f"/benches/{BENCH}/lease/renew", headers=auth(lease=lease), json={"ttl_s": 7200}
    )
    assert too_long.status_code == 422 and too_long.json()["field"] == "ttl_s"
    assert "3600" in too_long.json()["detail"]
    assert client.delete(f"/benches/{BENCH}/lease", headers=auth()).status_code == 409
    released = client.delete(f"/benches/{BENCH}/lease", headers=auth(lease=lease))
    assert released.json() == {"bench": BENCH, "released": "alice", "confirmed": True}
    again = client.delete(f"/benches/{BENCH}/lease", headers=auth(lease=lease))
    assert again.status_code == 200 and again.json()["released"] is None  # idempotent


def test_bounds_of_a_lease_request(client):
    for body in (
        {"holder": ""},
        {"holder": "a\nb"},
        {"holder": "x" * 65},
        {"holder": "a", "ttl_s": 0},
        {"holder": "a", "ttl_s": -1},
        {"holder": "a", "extra": 1},
        {},
    ):
        answer = client.post(f"/benches/{BENCH}/lease", headers=auth(), json=body)
        assert answer.status_code == 422, body
    assert (
        client.post("/benches/nope/lease", headers=auth(), json={"holder": "a"}).status_code == 404
    )


def test_reads_are_never_blocked_by_a_lease(client):
    take_lease(client)
    assert client.get("/benches", headers=auth("read")).status_code == 200
    assert client.get(f"/benches/{BENCH}", headers=auth("read")).status_code == 200
    assert client.get("/runs", headers=auth("read")).status_code == 200


def test_operations_need_the_callers_lease(client):
    body = {"inputs": [[0.0] * 128]}
    answer = client.post(f"/benches/{BENCH}/settle", headers=auth(), json=body)
    assert answer.status_code == 409 and "not leased to you" in answer.json()["detail"]
    take_lease(client, holder="alice")
    answer = client.post(f"/benches/{BENCH}/settle", headers=auth(lease="stolen"), json=body)
    assert answer.status_code == 409 and "'alice'" in answer.json()["detail"]
    answer = client.get(f"/benches/{BENCH}/conductances", headers=auth())
    assert answer.status_code == 409 and "'alice'" in answer.json()["detail"]


def test_an_expired_lease_leaves_the_bench_safe(client):
    lease = client.post(
        f"/benches/{BENCH}/lease", headers=auth(), json={"holder": "alice", "ttl_s": 0.3}
    ).json()["lease_token"]
    settled = client.post(
        f"/benches/{BENCH}/settle", headers=auth(lease=lease), json={"inputs": [[1.0] * 128]}
    )
    assert settled.status_code == 200
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["status"] == "armed"
    # the reaper looks every second: the bench goes back to its safe state by itself
    wait_for(lambda: client.get(f"/benches/{BENCH}", headers=auth()).json()["status"] == "safe", 5)
    assert client.get(f"/benches/{BENCH}", headers=auth()).json()["lease"] is None
    assert slot_of(client).bench.applied_inputs.max() == 0.0
    answer = client.post(
        f"/benches/{BENCH}/settle", headers=auth(lease=lease), json={"inputs": [[1.0] * 128]}
    )
    assert answer.status_code == 409
