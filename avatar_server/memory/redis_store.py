"""Conversation memory in Redis (AVATAR_MEMORY_URL): shared by replicas, kept across restarts.

One key per session, `avatar:mem:<session id>`, holding JSON `{"turns": [[user, assistant, tokens], ...]}`
and expiring `ttl_seconds` after the last exchange was added (PX, set with the value), as the in-process
store expires an idle session. Idle sessions go by their TTL only: `memory_max_sessions` bounds the
in-process store, Redis' own `maxmemory` policy bounds this one. An add is a WATCH/MULTI transaction that
reads, appends, trims (the same block trimming) and writes, retried when another replica changed the key in
between, so two replicas adding to one session at once both keep their exchange.

Failures at run time never fail a turn: a Redis call that fails or takes longer than `timeout` leaves that
turn without memory (history empty, the exchange not kept), logs a warning (at most one per `warn_every`
seconds, with the count since the last one), calls `on_error`, and skips Redis for `retry_after` seconds,
so a stalled Redis costs one timeout, not one per call; the first call after that tries again, so memory
comes back on its own with Redis. The client is redis-py's (sync, thread-safe, a connection pool).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import RedisError
from redis.retry import Retry

from avatar_server.memory.base import MemoryUnavailable, Turns, trim
from avatar_server.values import Exchange

log = logging.getLogger(__name__)

KEY_PREFIX = "avatar:mem:"


def redact(url: str) -> str:
    """The URL without its password (`redis://user:***@host:port/db`), for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:  # unparsable: say nothing of it
        return "<unparsable URL>"


def _decode(raw: bytes | str | None, key: str) -> Turns:
    """The stored history; a value this store did not write is dropped (logged), not a Redis failure."""
    if raw is None:
        return deque()
    try:
        return deque((Exchange(str(u), str(a)), int(n)) for u, a, n in json.loads(raw)["turns"])
    except (ValueError, KeyError, TypeError):
        log.warning("conversation memory: %s does not hold a history: it starts again", key)
        return deque()


def _encode(turns: Turns) -> str:
    return json.dumps({"turns": [[e.user, e.assistant, n] for e, n in turns]}, ensure_ascii=False)


class RedisMemory:
    """Thread-safe, sync; never raises for Redis' failures (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_turns: int,
        ttl_seconds: float,
        max_tokens: int | None = None,
        timeout: float = 0.5,
        on_error: Callable[[], None] | None = None,
        retry_after: float = 2.0,
        warn_every: float = 30.0,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.where = redact(url)
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a failed call is not repeated: the turn goes on without memory
                health_check_interval=30,
            )
        except ValueError as exc:  # not a redis://, rediss:// or unix:// URL, a bad port or db
            raise MemoryUnavailable(f"AVATAR_MEMORY_URL {self.where} is not a Redis URL: {exc}") from None
        self._max_turns = max_turns
        self._max_tokens = max_tokens
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._prefix = prefix
        self._on_error = on_error
        self._retry_after = retry_after
        self._warn_every = warn_every
        self._lock = threading.Lock()  # guards the failure state below, never held during a Redis call
        self._down_until = 0.0
        self._down = False
        self._failures = 0  # since the last warning
        self._last_warning = -float("inf")

    def check(self) -> None:
        """At startup: Redis answers PING, else MemoryUnavailable naming the setting (password hidden)."""
        try:
            self._client.ping()
        except RedisError as exc:
            raise MemoryUnavailable(
                f"conversation memory: cannot reach Redis at {self.where} (AVATAR_MEMORY_URL): {exc}"
            ) from None

    def history(self, session_id: str) -> list[Exchange]:
        if not self._usable():
            return []
        try:
            raw = self._client.get(self._prefix + session_id)
        except RedisError as exc:
            self._failed("read", exc)
            return []
        turns = _decode(raw, self._prefix + session_id)
        self._succeeded()
        return [exchange for exchange, _ in turns]

    def add(self, session_id: str, exchange: Exchange, *, tokens: int = 0) -> bool:
        """Remember an exchange (`tokens`: its size in the prompt). True when older ones were dropped."""
        if not self._usable():
            return False
        key = self._prefix + session_id
        trimmed = [False]

        def update(pipe: Pipeline) -> None:  # run again when the key changed before EXEC
            turns = _decode(pipe.get(key), key)  # WATCHed: an EXEC after another replica's write is retried
            turns.append((exchange, tokens))
            trimmed[0] = trim(turns, max_turns=self._max_turns, max_tokens=self._max_tokens)
            pipe.multi()
            if turns:
                pipe.set(key, _encode(turns), px=self._ttl_ms)
            else:
                pipe.delete(key)

        try:
            self._client.transaction(update, key)
        except RedisError as exc:
            self._failed("write", exc)
            return False
        self._succeeded()
        return trimmed[0]

    def close(self) -> None:
        self._client.close()

    # -- failures -----------------------------------------------------------------------------------

    def _usable(self) -> bool:
        with self._lock:
            return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._down = True
            self._down_until = now + self._retry_after
            self._failures += 1
            warn = now - self._last_warning >= self._warn_every
            if warn:
                self._last_warning, count, self._failures = now, self._failures, 0
        if warn:
            log.warning(
                "conversation memory: Redis at %s failed (%s: %s; %d failed call(s) since the last warning): "
                "turns go on without memory, retrying in %.0fs",
                self.where,
                what,
                exc,
                count,
                self._retry_after,
            )
        if self._on_error is not None:
            self._on_error()

    def _succeeded(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            log.info("conversation memory: Redis at %s answers again", self.where)
