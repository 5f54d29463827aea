"""What a server is started with: its benches, its data folder, its tokens and its limits.

Tokens come from ``$HIL_API_TOKEN`` (every scope) or a YAML file of named tokens::

    # tokens.yaml: NAME: {token: SECRET, scopes: [...]}; the name shows in logs, the secret never
    dashboard:
      token: 2f6c0b1e9d7a4c3b8e5f1a2d4c6b8e0f
      scopes: [read]
    operator:
      token: 9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d
      scopes: [operate]
    panic-button:           # no scope: the emergency stop only
      token: 0f1e2d3c4b5a69788796a5b4c3d2e1f0
      scopes: []

Scopes are ordered: ``admin`` includes ``operate``, which includes ``read``; any valid token,
whatever its scopes, may press the emergency stop.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hil.config import RunConfig, format_validation_error
from hil.errors import ConfigError

Scope = Literal["read", "operate", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
#: The scopes each scope includes.
IMPLIED: dict[Scope, frozenset[Scope]] = {
    "read": frozenset({"read"}),
    "operate": frozenset({"read", "operate"}),
    "admin": frozenset({"read", "operate", "admin"}),
}
TOKEN_ENV = "HIL_API_TOKEN"
#: Shorter secrets are refused: a token is the only thing between a network and a bench.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ApiToken:
    """One bearer token the server accepts.

    Attributes
    ----------
    name : str
        Shown in logs and lease records instead of the secret.
    secret : str
        The token itself (never printed: excluded from ``repr``).
    scopes : frozenset of Scope
        As given; :attr:`granted` adds the scopes they include.
    """

    name: str
    secret: str = field(repr=False)
    scopes: frozenset[Scope] = frozenset(SCOPES)

    @property
    def granted(self) -> frozenset[Scope]:
        """The given scopes and every scope they include."""
        return frozenset().union(*(IMPLIED[s] for s in self.scopes))


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=MIN_TOKEN_LENGTH, max_length=512, pattern=r"^[\x21-\x7e]+$")
    scopes: list[Scope]


def token_from_env(environ: Mapping[str, str] | None = None) -> tuple[ApiToken, ...]:
    """The token of ``$HIL_API_TOKEN`` with every scope (none when it is unset or empty).

    Raises
    ------
    ConfigError
        The token is shorter than :data:`MIN_TOKEN_LENGTH` or holds spaces or control
        characters (the message never shows it).
    """
    secret = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
    if not secret:
        return ()
    try:
        _TokenEntry(token=secret, scopes=list(SCOPES))
    except ValidationError:
        raise ConfigError(
            f"${TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} printable characters without "
            "spaces (e.g. python -c 'import secrets; print(secrets.token_hex(16))')"
        ) from None
    return (ApiToken(TOKEN_ENV, secret),)


def load_tokens(path: Path) -> tuple[ApiToken, ...]:
    """The named tokens of a YAML file (module docstring); errors never show a secret.

    Raises
    ------
    ConfigError
        The file cannot be read, is not such a mapping, or two names share a secret.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"token file {path} cannot be read: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"token file {path} must map names to {{token, scopes}}")
    tokens = []
    for name, entry in raw.items():
        try:
            parsed = _TokenEntry.model_validate(entry)
        except ValidationError as exc:  # its messages name fields, never the input value
            raise ConfigError(format_validation_error(exc, f"{path}, token {name!r}")) from None
        tokens.append(ApiToken(str(name), parsed.token, frozenset(parsed.scopes)))
    if len({t.secret for t in tokens}) != len(tokens):
        raise ConfigError(f"token file {path}: two names share one token")
    return tuple(tokens)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so it is not loopback
        return False


@dataclass(frozen=True)
class Settings:
    """Everything :func:`hil.api.create_app` needs; resources are built from it at startup.

    Attributes
    ----------
    benches : tuple of (str, Path or RunConfig)
        Bench configs (file paths, shipped names or validated configs); each becomes a bench
        whose id is the config's ``name``.
    data_dir : Path or None
        The run store's folder (default ``$HIL_DATA_DIR`` or ``./runs``).
    tokens : tuple of ApiToken
        The accepted bearer tokens.
    anonymous : bool
        With no tokens, treat every request as holding every scope. ``hil serve`` sets it
        only on a loopback address; otherwise a server without tokens answers 401 to all.
    config_root : Path
        ``POST /runs`` may name config files under this folder (and shipped configs).
    max_body_bytes : int
        Larger request bodies answer 413.
    lease_ttl_s, lease_ttl_max_s : float
        Default and largest time to live of a lease (s).
    max_settle_batch : int
        Most samples one ``POST /benches/{id}/settle`` may settle.
    max_pulse_devices : int
        Most devices one ``POST /benches/{id}/pulses`` may name.
    sse_poll_s : float
        How often an event stream looks for new events (s).
    sse_keepalive_s : float
        An idle event stream sends a comment this often (s), so proxies keep it open.
    shutdown_grace_s : float
        At shutdown, how long runs get to stop at a step boundary before their benches are
        emergency-stopped (s).
    threadpool_workers : int or None
        Size of the worker pool of blocking routes (None: AnyIO's default, 40).
    """

    benches: tuple[str | Path | RunConfig, ...] = ()
    data_dir: Path | None = None
    tokens: tuple[ApiToken, ...] = ()
    anonymous: bool = False
    config_root: Path = Path(".")
    max_body_bytes: int = 1 << 20
    lease_ttl_s: float = 300.0
    lease_ttl_max_s: float = 3600.0
    max_settle_batch: int = 32
    max_pulse_devices: int = 100_000
    sse_poll_s: float = 0.2
    sse_keepalive_s: float = 15.0
    shutdown_grace_s: float = 10.0
    threadpool_workers: int | None = None
