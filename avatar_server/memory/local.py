"""Short-lived conversation memory per session: bounded in turns, tokens and sessions, expiring when idle.

A session's history is trimmed in blocks: once it has more than `max_turns` exchanges or `max_tokens`
tokens, its oldest exchanges go until at most half of each is left. Between trims every prompt starts with
the previous prompt (the persona, then the same exchanges), so the model's prompt cache still holds all of
it and a turn evaluates only its new text; dropping one exchange a turn would change the prompt's
beginning every turn, and the whole history would be evaluated again each time (0.05 s → 0.6 s to the
first token). `add` says when it trimmed, so the caller can warm the cache for the next turn while this
one is spoken.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from avatar_server.values import Exchange


class ConversationMemory:
    """Thread-safe; least recently used sessions are dropped first when there are too many."""

    def __init__(
        self,
        *,
        max_turns: int,
        ttl_seconds: float,
        max_sessions: int,
        max_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_turns = max_turns
        self._max_tokens = max_tokens
        self._ttl = ttl_seconds
        self._max_sessions = max_sessions
        self._clock = clock
        # session → (last used, its exchanges with their token counts)
        self._sessions: OrderedDict[str, tuple[float, deque[tuple[Exchange, int]]]] = OrderedDict()
        self._lock = threading.Lock()

    def history(self, session_id: str) -> list[Exchange]:
        with self._lock:
            self._expire()
            entry = self._sessions.get(session_id)
            return [exchange for exchange, _ in entry[1]] if entry else []

    def add(self, session_id: str, exchange: Exchange, *, tokens: int = 0) -> bool:
        """Remember an exchange (`tokens`: its size in the prompt). True when older ones were dropped."""
        with self._lock:
            self._expire()
            _, turns = self._sessions.pop(session_id, (0.0, deque()))
            turns.append((exchange, tokens))
            trimmed = False
            total = sum(n for _, n in turns)
            limit = self._max_tokens
            if len(turns) > self._max_turns or (limit is not None and total > limit):
                # The oldest go at once, until half of each limit is left: the next turns append to an
                # unchanged prefix, so the prompt cache holds it.
                keep_turns = max(1, self._max_turns // 2)
                keep_tokens = limit // 2 if limit is not None else total
                while len(turns) > 1 and (len(turns) > keep_turns or total > keep_tokens):
                    total -= turns.popleft()[1]
                    trimmed = True
                if limit is not None and total > limit:  # one exchange larger than the whole budget
                    turns.clear()
                    trimmed = True
            if turns:
                self._sessions[session_id] = (self._clock(), turns)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
            return trimmed

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl
        while self._sessions:
            key, (last, _) = next(iter(self._sessions.items()))
            if last >= deadline:
                break
            del self._sessions[key]
