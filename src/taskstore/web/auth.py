"""Bearer tokens with roles, and who may call what.

Roles are ordered: ``read`` sees everything; ``worker`` also enqueues and works tasks (claim, report, done,
fail, unclaim); ``admin`` also cancels, retries and pauses. A token is written ``ROLE:SECRET`` (``--token
worker:s3cret``, or comma-separated in ``TASKSTORE_API_TOKENS``); a bare ``SECRET`` is an admin token.

With no token configured the server trusts its callers, so it answers only loopback clients: ``taskstore
serve`` refuses another ``--host``, and a request from another address (an app mounted behind a proxy on a
public port) is refused with 401. Secrets are compared in constant time against every configured token, and
never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from ..errors import ConfigError

TOKENS_ENV = "TASKSTORE_API_TOKENS"
# The dashboard keeps the logged-in token here; the API accepts it for reads (see ``WebState.authenticate``).
TOKEN_COOKIE = "taskstore_token"


class Role(IntEnum):
    READ = 1
    WORKER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


_ROLES = {role.label: role for role in Role}


@dataclass(frozen=True)
class Token:
    role: Role
    secret: str

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return f"Token(role={self.role.label}, secret=<{len(self.secret)} chars>)"

    @classmethod
    def parse(cls, text: str) -> Token:
        role, sep, secret = text.partition(":")
        if sep and role in _ROLES:
            chosen = _ROLES[role]
        else:
            chosen, secret = Role.ADMIN, text
        if len(secret) < 8 or secret.strip() != secret or any(c.isspace() for c in secret):
            raise ConfigError("an API token must be at least 8 characters with no spaces (ROLE:SECRET or SECRET)")
        return cls(chosen, secret)


def parse_tokens(values: Iterable[str | Token]) -> tuple[Token, ...]:
    tokens = tuple(v if isinstance(v, Token) else Token.parse(v) for v in values)
    if len({t.secret for t in tokens}) < len(tokens):
        raise ConfigError("the same API token secret is given twice")
    return tokens


def tokens_from_env() -> tuple[Token, ...]:
    raw = os.environ.get(TOKENS_ENV, "")
    return parse_tokens(part.strip() for part in raw.split(",") if part.strip())


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in ("localhost", "testclient"):  # Starlette's TestClient reports "testclient"
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_is_loopback(origin: str | None) -> bool:
    """No ``Origin`` header (not a browser, or a same-origin read), or one whose host is a loopback address."""
    if origin is None:
        return True
    try:
        host = urlsplit(origin.strip()).hostname if "://" in origin else None
    except ValueError:  # "http://[::1" and the like
        return False
    # "testclient" is the TestClient's peer name, never a page's host: is_loopback accepts it only as a peer.
    return is_loopback(host) if host not in (None, "testclient") else False


class Authenticator:
    """Decides the role of a request from its ``Authorization`` header and its peer address."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tuple(tokens)

    @property
    def open(self) -> bool:
        """No token configured: loopback callers are admins, everyone else is refused."""
        return not self.tokens

    def role_of(self, authorization: str | None, peer: str | None) -> Role | None:
        """The caller's role, or None when the request is not authenticated."""
        if self.open:
            return Role.ADMIN if is_loopback(peer) else None
        if authorization is None:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return None
        return self.role_of_secret(given.strip())

    def role_of_secret(self, given: str) -> Role | None:
        found: Role | None = None
        given_bytes = given.encode("utf-8", "surrogateescape")
        for token in self.tokens:  # every token is compared: the time taken says nothing about which matched
            if hmac.compare_digest(token.secret.encode(), given_bytes):
                found = token.role
        return found
