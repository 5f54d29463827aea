"""Who is calling: bearer tokens checked in constant time, and the scopes they grant."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from hil.api.settings import SCOPES, ApiToken, Scope


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    Attributes
    ----------
    name : str
        The token's name (``HIL_API_TOKEN``, a name of the token file, or ``anonymous``).
    scopes : frozenset of Scope
        Every scope granted, included ones too.
    """

    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        """True when the caller holds ``scope``."""
        return scope in self.scopes


class TokenTable:
    """The tokens a server accepts.

    Parameters
    ----------
    tokens : sequence of ApiToken
    anonymous : bool
        With no tokens, every caller gets every scope (a loopback-only server).
    """

    def __init__(self, tokens: tuple[ApiToken, ...], anonymous: bool = False) -> None:
        self._tokens = tokens
        self._anonymous = anonymous and not tokens

    def identify(self, secret: str | None) -> Caller | None:
        """The caller a bearer secret belongs to, or None for no or a wrong secret.

        Every token is compared, with :func:`hmac.compare_digest`, whatever matched before:
        the time taken says nothing about which token, or how much of one, was right.
        """
        if self._anonymous:
            return Caller("anonymous", frozenset(SCOPES))
        if not secret:
            return None
        given = secret.encode("utf-8", "surrogateescape")
        found: ApiToken | None = None
        for token in self._tokens:
            if hmac.compare_digest(token.secret.encode("utf-8"), given):
                found = token
        return None if found is None else Caller(found.name, found.granted)
