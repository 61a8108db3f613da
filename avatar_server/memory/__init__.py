"""Short-lived conversation memory per session: bounded in turns and tokens, expiring when idle.

Two stores with the same behaviour (base.py trims both): `ConversationMemory` in this process (the
default; also bounded in sessions, least recently used first) and `RedisMemory` (AVATAR_MEMORY_URL), shared
by replicas and surviving restarts. A session's history is trimmed in blocks, so the LLM's prompt cache
stays warm between trims; `add` says when it trimmed, so the caller can warm the cache for the next turn
while this one is spoken. Idle sessions expire `ttl_seconds` after their last exchange was added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from avatar_server.memory.base import Memory, MemoryUnavailable
from avatar_server.memory.local import ConversationMemory
from avatar_server.settings import Settings

__all__ = ["ConversationMemory", "Memory", "MemoryUnavailable", "open_memory"]

log = logging.getLogger(__name__)


def open_memory(settings: Settings, *, on_error: Callable[[], None] | None = None) -> Memory:
    """The store the settings ask for. Redis is checked now: unreachable → MemoryUnavailable.

    `on_error` is called once for every Redis call that failed at run time (a metric counts them)."""
    url = settings.memory_url.get_secret_value()
    if not url:
        return ConversationMemory(
            max_turns=settings.memory_turns,
            ttl_seconds=settings.memory_ttl_seconds,
            max_sessions=settings.memory_max_sessions,
            max_tokens=settings.memory_max_tokens,
        )
    from avatar_server.memory.redis_store import RedisMemory, redact

    memory = RedisMemory(
        url,
        max_turns=settings.memory_turns,
        ttl_seconds=settings.memory_ttl_seconds,
        max_tokens=settings.memory_max_tokens,
        timeout=settings.memory_timeout_seconds,
        on_error=on_error,
    )
    memory.check()
    log.info("conversation memory in Redis at %s", redact(url))
    return memory
