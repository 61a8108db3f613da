"""Session ids the server issues: `<16 random bytes, base64url>.<HMAC tag>`, bound to the caller.

Conversation memory is keyed by session id, so an id must not be guessable nor usable by another caller:
the tag is HMAC-SHA256(secret, random part + caller id), truncated. A client-given id is honoured only when
its tag checks out for the same caller; any other id (unknown, forged, another caller's) starts a fresh
session with a newly issued id, so nobody reads or poisons someone else's memory, and no error is raised.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

_TAG_BYTES = 12  # 96 bits of tag: beyond guessing


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first `authorization: Bearer <token>` entry; None when there is none (or it is empty)."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None  # the first entry decides
    return None


def caller_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """Who calls: the first 16 hex digits of the SHA-256 of the bearer token ("" without one)."""
    token = bearer_token(metadata)
    return "" if token is None else hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SessionIds:
    """Issues and checks session ids under one server secret."""

    def __init__(self, secret: str | bytes = b"") -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._key = key or secrets.token_bytes(32)  # unset: per process

    def _tag(self, random_part: str, caller: str) -> str:
        mac = hmac.new(self._key, f"{random_part}\n{caller}".encode(), hashlib.sha256).digest()
        return _b64(mac[:_TAG_BYTES])

    def issue(self, caller: str) -> str:
        random_part = _b64(secrets.token_bytes(16))
        return f"{random_part}.{self._tag(random_part, caller)}"

    def valid(self, session_id: str, caller: str) -> bool:
        random_part, dot, tag = session_id.partition(".")
        if not dot or not random_part or not tag:
            return False
        return hmac.compare_digest(tag, self._tag(random_part, caller))

    def resolve(self, session_id: str, caller: str) -> str:
        """The id to use: the client's when this server issued it to this caller, else a new one."""
        return session_id if session_id and self.valid(session_id, caller) else self.issue(caller)
