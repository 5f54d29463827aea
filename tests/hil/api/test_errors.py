"""The one mapping from errors to status codes, and what a fault of a bench answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hil.api import create_app
from hil.api.errors import STATUS, FieldError, UnknownResource, status_of
from hil.composition import build_bench
from hil.errors import (
    ConfigError,
    ConvergenceError,
    EmergencyStop,
    EngineUnavailable,
    HilError,
    InstrumentError,
    InUseError,
    SafetyError,
    SimulationError,
)
from tests.hil.api.conftest import BENCH, auth, make_settings, take_lease


@pytest.mark.parametrize(
    "error, status",
    [
        (UnknownResource("x"), 404),
        (ConfigError("x"), 422),
        (SafetyError("x"), 422),
        (FieldError("inputs", "x"), 422),
        (ConvergenceError("x"), 422),
        (SimulationError("x"), 422),
        (InUseError("x"), 409),
        (EmergencyStop("x"), 409),
        (InstrumentError("smu1", "SOUR:VOLT 1", "timeout"), 502),
        (EngineUnavailable("x"), 503),
        (HilError("x"), 500),
    ],
)
def test_status_of_every_error(error, status):
    assert status_of(error) == status
    assert type(error) in STATUS or isinstance(error, FieldError)


class FaultyBench:
    """A simulated bench whose settles fail the way the parametrised error says."""

    def __init__(self, bench, error: BaseException) -> None:
        self._bench, self.error = bench, error
        self.network, self.limits, self.calibration = bench.network, bench.limits, bench.calibration

    def settle(self, inputs, nudges=None):
        raise self.error

    def __getattr__(self, name):
        return getattr(self._bench, name)


@pytest.mark.parametrize(
    "error, status, words",
    [
        (InstrumentError("smu1", "MEAS?", "timed out after 2 s"), 502, "smu1 during 'MEAS?'"),
        (ConvergenceError("sample 0 did not settle"), 422, "sample 0 did not settle"),
        (RuntimeError("a bug with a secret path /home/x"), 500, "internal error"),
    ],
)
def test_a_fault_of_the_bench_answers_json_not_a_traceback(
    tmp_path, bench_config, error, status, words
):
    app = create_app(
        make_settings(tmp_path, (bench_config,)),
        bench_factory=lambda config: FaultyBench(build_bench(config), error),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        lease = take_lease(client)
        answer = client.post(
            f"/benches/{BENCH}/settle", headers=auth(lease=lease), json={"inputs": [[0.0] * 128]}
        )
        assert answer.status_code == status and words in answer.json()["detail"]
        assert "Traceback" not in answer.text and "/home/x" not in answer.text
        # the bench is usable afterwards: the lease and the operation lock were given back
        assert client.get(f"/benches/{BENCH}", headers=auth()).status_code == 200
        again = client.post(
            f"/benches/{BENCH}/settle", headers=auth(lease=lease), json={"inputs": [[0.0] * 128]}
        )
        assert again.status_code == status
