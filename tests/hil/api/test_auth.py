"""Every endpoint needs its scope: 401 without a valid token, 403 with too small a scope;
tokens are checked in constant time, loaded from the environment or a file, never shown."""

from __future__ import annotations

import logging

import pytest

from hil.api.auth import TokenTable
from hil.api.server import check_listen
from hil.api.settings import (
    ApiToken,
    Settings,
    is_loopback,
    load_tokens,
    token_from_env,
)
from hil.errors import ConfigError
from tests.hil.api.conftest import BENCH, TOKENS, auth, take_lease

# (method, path, scope); "any" = any valid token, None = no token
ROUTES = [
    ("GET", "/health", None),
    ("GET", "/benches", "read"),
    ("GET", "/benches/{bench_id}", "read"),
    ("POST", "/benches/{bench_id}/lease", "operate"),
    ("POST", "/benches/{bench_id}/lease/renew", "operate"),
    ("DELETE", "/benches/{bench_id}/lease", "operate"),
    ("POST", "/benches/{bench_id}/settle", "operate"),
    ("POST", "/benches/{bench_id}/pulses", "operate"),
    ("GET", "/benches/{bench_id}/conductances", "operate"),
    ("POST", "/benches/{bench_id}/safe-state", "any"),
    ("POST", "/runs", "operate"),
    ("GET", "/runs", "read"),
    ("GET", "/runs/{run_id}", "read"),
    ("GET", "/runs/{run_id}/metrics", "read"),
    ("GET", "/runs/{run_id}/config", "read"),
    ("GET", "/runs/{run_id}/conductances", "read"),
    ("GET", "/runs/{run_id}/pulse-counts", "read"),
    ("POST", "/runs/{run_id}/stop", "operate"),
    ("POST", "/runs/{run_id}/resume", "operate"),
    ("GET", "/runs/{run_id}/events", "read"),
    ("POST", "/sweeps", "operate"),
    ("GET", "/sweeps", "read"),
    ("GET", "/sweeps/{sweep_id}", "read"),
    ("POST", "/sweeps/{sweep_id}/stop", "operate"),
    ("GET", "/sweeps/{sweep_id}/events", "read"),
    ("GET", "/configs", "read"),
]
BELOW = {"read": "none", "operate": "read", "admin": "operate"}


def url(path: str) -> str:
    return path.format(bench_id=BENCH, run_id="no-such-run", sweep_id="no-such-sweep")


def test_the_table_covers_every_route(client):
    paths = client.app.openapi()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served == {(m, p) for m, p, _ in ROUTES}


@pytest.mark.parametrize("method, path, scope", [r for r in ROUTES if r[2] is not None])
def test_no_token_or_a_wrong_one_is_401(client, method, path, scope):
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token-of-this-server"},
        {"Authorization": "Basic abc"},
    ):
        answer = client.request(method, url(path), headers=headers, json={})
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path, scope", [r for r in ROUTES if r[2] in BELOW])
def test_too_small_a_scope_is_403(client, method, path, scope):
    answer = client.request(method, url(path), headers=auth(BELOW[scope]), json={})
    assert answer.status_code == 403, (method, path, answer.text)
    assert f"lacks the {scope!r} scope" in answer.json()["detail"]


@pytest.mark.parametrize("method, path, scope", [r for r in ROUTES if r[2] in BELOW])
def test_the_scope_itself_passes_authorisation(client, method, path, scope):
    answer = client.request(method, url(path), headers=auth(scope), json={})
    assert answer.status_code not in (401, 403), (method, path, answer.text)


def test_breaking_a_lease_is_for_admins(client):
    take_lease(client)
    answer = client.delete(f"/benches/{BENCH}/lease?force=true", headers=auth("operate"))
    assert answer.status_code == 403 and "'admin'" in answer.json()["detail"]
    answer = client.delete(f"/benches/{BENCH}/lease?force=true", headers=auth("admin"))
    assert answer.status_code == 200 and answer.json()["released"] == "alice"


def test_health_and_the_emergency_stop_ask_little(client):
    assert client.get("/health").json()["status"] == "ok"
    answer = client.post(f"/benches/{BENCH}/safe-state", headers=auth("none"))
    assert answer.status_code == 200 and answer.json()["confirmed"] is True


def test_tokens_never_reach_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    lease = take_lease(client)
    client.post(f"/benches/{BENCH}/safe-state", headers=auth("none"))
    client.get("/benches", headers={"Authorization": "Bearer wrong-token-0123456789"})
    text = caplog.text
    assert "panic-button" in text  # who pressed the stop is logged, by name
    assert lease not in text
    for token in TOKENS.values():
        assert token.secret not in text


def test_token_table_compares_every_token():
    table = TokenTable(tuple(TOKENS.values()))
    assert table.identify(TOKENS["read"].secret).scopes == frozenset({"read"})
    assert table.identify(TOKENS["admin"].secret).scopes == frozenset({"read", "operate", "admin"})
    assert table.identify(TOKENS["none"].secret).scopes == frozenset()
    assert table.identify(TOKENS["read"].secret[:-1]) is None
    assert table.identify("") is None and table.identify(None) is None
    assert table.identify("é" * 20) is None  # non-ASCII: refused, not an error
    assert TokenTable((), anonymous=True).identify(None).name == "anonymous"
    assert TokenTable(tuple(TOKENS.values()), anonymous=True).identify(None) is None


def test_token_from_env():
    assert token_from_env({}) == ()
    (token,) = token_from_env({"HIL_API_TOKEN": "x" * 16})
    assert token.granted == frozenset({"read", "operate", "admin"})
    with pytest.raises(ConfigError, match="at least 16") as error:
        token_from_env({"HIL_API_TOKEN": "short"})
    assert "short" not in str(error.value)
    assert "x" * 16 not in repr(token)


def test_token_file(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "dashboard: {token: aaaaaaaaaaaaaaaa, scopes: [read]}\n"
        "panic: {token: bbbbbbbbbbbbbbbb, scopes: []}\n"
    )
    dashboard, panic = load_tokens(path)
    assert (dashboard.name, dashboard.granted) == ("dashboard", frozenset({"read"}))
    assert panic.granted == frozenset()
    path.write_text("dashboard: {token: tooshort-secret, scopes: [read]}\n")
    with pytest.raises(ConfigError, match="dashboard") as error:
        load_tokens(path)
    assert "tooshort-secret" not in str(error.value)
    path.write_text("a: {token: cccccccccccccccc, scopes: [root]}\n")
    with pytest.raises(ConfigError, match="scopes"):
        load_tokens(path)
    path.write_text(
        "a: {token: cccccccccccccccc, scopes: []}\nb: {token: cccccccccccccccc, scopes: []}\n"
    )
    with pytest.raises(ConfigError, match="share one token"):
        load_tokens(path)


def test_no_token_means_loopback_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("lab-pc.example.org")
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0 without a token"):
        check_listen("0.0.0.0", Settings())
    assert check_listen("127.0.0.1", Settings()).anonymous is True
    with_token = Settings(tokens=(ApiToken("t", "y" * 16),))
    assert check_listen("0.0.0.0", with_token) is with_token
