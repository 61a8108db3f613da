"""The in-process store (the default): bounded in turns, tokens and sessions, expiring when idle."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from avatar_server.memory.base import Turns, trim
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
        self._sessions: OrderedDict[str, tuple[float, Turns]] = OrderedDict()
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
            trimmed = trim(turns, max_turns=self._max_turns, max_tokens=self._max_tokens)
            if turns:
                self._sessions[session_id] = (self._clock(), turns)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
            return trimmed

    def close(self) -> None:
        """Nothing to release: the history goes with the process."""

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
