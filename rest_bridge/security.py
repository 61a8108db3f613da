"""Who may use the bridge: API keys, one-use WebSocket tickets, the Origin allowlist, the startup exposure check.

The pieces here are plain logic (no ASGI); rest_bridge.guard wires them into requests.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rest_bridge.settings import BridgeSettings

_SHA256_PREFIX = "sha256:"
TICKET_SECONDS = 30.0
_MAX_TICKETS = 10_000  # outstanding (unredeemed, unexpired) tickets; beyond it the oldest are dropped
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class SecurityConfigError(ValueError):
    """A security setting is wrong or missing; the message names the setting, never a secret's value."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class KeySet:
    """Accepted API keys, kept only as SHA-256 digests; compared in constant time."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def parse(cls, raw: str, setting: str = "AVATAR_API_KEYS") -> KeySet:
        """Comma-separated plain keys or `sha256:<64 hex digits>` hashes of keys."""
        digests: list[bytes] = []
        for n, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
            if not entry:
                continue
            if entry.lower().startswith(_SHA256_PREFIX):
                hexdigest = entry[len(_SHA256_PREFIX) :]
                try:
                    digest = bytes.fromhex(hexdigest)
                except ValueError:
                    digest = b""
                if len(digest) != 32:
                    raise SecurityConfigError(f"{setting}: entry {n} starts with sha256: but is not 64 hex digits")
                digests.append(digest)
            else:
                digests.append(_digest(entry))
        return cls(tuple(digests))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = _digest(presented)
        ok = False
        for accepted in self.digests:  # every entry is compared, so the time does not say which one matched
            ok |= hmac.compare_digest(digest, accepted)
        return ok


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass
class TicketBook:
    """Short-lived, single-use WebSocket tickets: random 256-bit tokens held in this process's memory.

    A browser cannot set headers on a WebSocket upgrade, so it first asks for a ticket with its key
    (POST /api/v1/avatar/converse/ticket) and opens the socket with `?ticket=...`.
    """

    ttl: float = TICKET_SECONDS
    clock: Callable[[], float] = time.monotonic
    _expiry: dict[str, float] = field(default_factory=dict)

    def issue(self) -> str:
        now = self.clock()
        for ticket in [t for t, exp in self._expiry.items() if exp <= now]:
            del self._expiry[ticket]
        while len(self._expiry) >= _MAX_TICKETS:  # dicts keep insertion order: the oldest goes first
            del self._expiry[next(iter(self._expiry))]
        ticket = secrets.token_urlsafe(32)
        self._expiry[ticket] = now + self.ttl
        return ticket

    def redeem(self, ticket: str | None) -> bool:
        """True once for a ticket this book issued less than `ttl` seconds ago; it is spent either way."""
        if not ticket:
            return False
        expiry = self._expiry.pop(ticket, None)
        return expiry is not None and self.clock() < expiry


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` lowercased, the scheme's default port dropped; None when it is not such an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def _strip_default_port(host: str) -> str:
    host = host.strip().lower()
    for port in (":80", ":443"):
        if host.endswith(port):
            return host.removesuffix(port)
    return host


@dataclass(frozen=True)
class OriginPolicy:
    """The bridge's own origin (always) and the origins listed in AVATAR_ALLOWED_ORIGINS."""

    allowed: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> OriginPolicy:
        origins: list[str] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            if entry == "*":
                raise SecurityConfigError(
                    "AVATAR_ALLOWED_ORIGINS: '*' would let any web page drive the avatar; list the origins"
                )
            origin = normalize_origin(entry)
            if origin is None:
                raise SecurityConfigError(
                    f"AVATAR_ALLOWED_ORIGINS: {entry[:80]!r} is not an origin like https://app.example.org"
                )
            origins.append(origin)
        return cls(tuple(dict.fromkeys(origins)))

    def allows(self, origin: str, host: str | None) -> bool:
        """Whether a request carrying this Origin header, sent to this Host, may be served.

        Same-origin is judged by host and port against the Host header, not by scheme: behind a TLS proxy the
        bridge itself sees plain http while the page's origin is https.
        """
        normalized = normalize_origin(origin)
        if normalized is None:
            return False  # "null" (sandboxed frames, file:) and anything malformed
        if normalized in self.allowed:
            return True
        if not host:
            return False
        own = normalized.split("://", 1)[1]
        return own == _strip_default_port(host)


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    """The bridge's access rules, built once from its settings."""

    keys: KeySet
    origins: OriginPolicy
    tickets: TicketBook

    @classmethod
    def from_settings(cls, settings: BridgeSettings) -> Security:
        return cls(
            keys=KeySet.parse(settings.api_keys.get_secret_value()),
            origins=OriginPolicy.parse(settings.allowed_origins),
            tickets=TicketBook(ttl=settings.ws_ticket_seconds),
        )


def check_exposure(settings: BridgeSettings, host: str, keys: KeySet) -> None:
    """Refuse to serve a non-loopback address without keys, unless the operator said so explicitly."""
    if keys.enabled or settings.allow_insecure or is_loopback(host):
        return
    raise SecurityConfigError(
        f"refusing to listen on {host} without authentication: set AVATAR_API_KEYS "
        "(or AVATAR_ALLOW_INSECURE=true to serve anyone who can reach the port)"
    )


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One header's value from ASGI headers (latin-1, as HTTP defines them)."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
