"""Property-based requests from the app's own OpenAPI schema (schemathesis, positive and
negative cases): whatever a client sends, the server never answers 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from hil.api import Settings, create_app
from hil.errors import InUseError
from tests.hil.api.conftest import BENCH, auth, make_settings, slot_of, write_config

#: Examples per operation: about ten seconds for all of them.
EXAMPLES = 25

# The schema needs no running server: create_app builds nothing until its lifespan starts.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(folder, (write_config(folder / "bench.yaml"),)))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_input_causes_a_server_error(case, client):
    # Reach the bench's checks: a real bench id and a valid token and lease (most of the
    # time; the generated headers are kept otherwise, so 401 and 409 paths are fuzzed too)
    if "bench_id" in (case.path_parameters or {}):
        case.path_parameters["bench_id"] = BENCH
    slot = slot_of(client)
    lease = slot.leases.current()
    if lease is None:
        try:
            lease = slot.take_lease("fuzzer", 60)
        except InUseError:  # a fuzzed run holds the bench: its operations answer 409
            lease = None
    headers = auth()
    if lease is not None and lease.run_id is None:
        headers["X-Lease-Token"] = lease.token
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    request = {k: kwargs[k] for k in ("method", "url", "headers", "params", "json") if k in kwargs}
    if kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    response = client.request(**request)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.headers.get("content-type", "").startswith("application/json"):
        response.json()
