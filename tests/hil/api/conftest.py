"""Fixtures of the API tests: a small, fast bench config, tokens of every scope, an app in
a TestClient, a real uvicorn server, and benches with extra behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from hil.api import Settings, create_app
from hil.api.pool import BenchSlot
from hil.api.settings import ApiToken
from hil.composition import build_bench
from hil.config import RunConfig
from tests.conftest import REPO

DEFAULT = REPO / "bench_configs" / "sim-digits.yaml"
BENCH = "sim-digits"

TOKENS = {
    "admin": ApiToken("lab-admin", "admin-token-0123456789", frozenset({"admin"})),
    "operate": ApiToken("operator", "operate-token-0123456789", frozenset({"operate"})),
    "read": ApiToken("dashboard", "read-token-0123456789", frozenset({"read"})),
    "none": ApiToken("panic-button", "estop-token-0123456789", frozenset()),
}


def auth(scope: str = "admin", lease: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {TOKENS[scope].secret}"}
    if lease is not None:
        headers["X-Lease-Token"] = lease
    return headers


def write_config(path: Path, name: str = BENCH, epochs: int = 2, **training) -> Path:
    """sim-digits on 200 training and 100 test samples: an epoch takes a fraction of a s."""
    config = yaml.safe_load(DEFAULT.read_text())
    config["name"] = name
    config["data"].update(train_limit=200, test_limit=100)
    config["training"].update(epochs=epochs, **training)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def bench_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "bench.yaml")


def make_settings(tmp_path: Path, configs: tuple[Path, ...], **changes) -> Settings:
    return Settings(
        benches=configs,
        data_dir=tmp_path / "data",
        tokens=tuple(TOKENS.values()),
        config_root=tmp_path,
        **changes,
    )


@pytest.fixture
def settings(tmp_path: Path, bench_config: Path) -> Settings:
    return make_settings(tmp_path, (bench_config,))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def slot_of(client: TestClient, bench: str = BENCH) -> BenchSlot:
    return client.app.state.services.pool.get(bench)  # type: ignore[attr-defined]


def take_lease(client: TestClient, bench: str = BENCH, holder: str = "alice") -> str:
    answer = client.post(f"/benches/{bench}/lease", headers=auth(), json={"holder": holder})
    assert answer.status_code == 201, answer.text
    return answer.json()["lease_token"]


def bench_state(client: TestClient, bench: str = BENCH) -> dict[str, np.ndarray]:
    """Everything the bench's future depends on (conductances, counters, random streams)."""
    return slot_of(client, bench).guard.state_dict()  # type: ignore[attr-defined]


def assert_same_state(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


def wait_for_end(client: TestClient, run_id: str, timeout: float = 60.0) -> dict:
    def ended() -> bool:
        run = client.get(f"/runs/{run_id}", headers=auth()).json()
        return run["status"] not in ("queued", "running") and not run["active"]

    wait_for(ended, timeout, 0.05)
    return client.get(f"/runs/{run_id}", headers=auth()).json()


class SlowBench:
    """A simulated bench whose settles take ``delay`` seconds: a busy bench (a slow
    instrument) that must not delay the emergency stop. ``settling`` is set while one runs."""

    def __init__(self, bench, delay: float) -> None:
        self._bench = bench
        self.delay = delay
        self.settling = threading.Event()
        self.network, self.limits, self.calibration = bench.network, bench.limits, bench.calibration
        self.safe_states: list[float] = []

    def settle(self, inputs, nudges=None):
        self.settling.set()
        try:
            time.sleep(self.delay)
            return self._bench.settle(inputs, nudges)
        finally:
            self.settling.clear()

    def pulse(self, request):
        return self._bench.pulse(request)

    def read_conductances(self, device_ids=None):
        return self._bench.read_conductances(device_ids)

    def safe_state(self):
        self.safe_states.append(time.monotonic())
        return self._bench.safe_state()

    def close(self):
        self._bench.close()

    def state_dict(self):
        return self._bench.state_dict()

    def load_state_dict(self, state):
        self._bench.load_state_dict(state)

    @property
    def restores_devices(self):
        return self._bench.restores_devices

    @property
    def pulse_counts(self):
        return self._bench.pulse_counts


def slow_factory(delay: float, made: list[SlowBench]):
    def factory(config: RunConfig) -> SlowBench:
        bench = SlowBench(build_bench(config), delay)
        made.append(bench)
        return bench

    return factory
