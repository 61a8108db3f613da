"""Short-lived conversation memory per session: bounded in turns and sessions, expiring when idle."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_turns = max_turns
        self._ttl = ttl_seconds
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[float, deque[Exchange]]] = OrderedDict()
        self._lock = threading.Lock()

    def history(self, session_id: str) -> list[Exchange]:
        with self._lock:
            self._expire()
            entry = self._sessions.get(session_id)
            return list(entry[1]) if entry else []

    def add(self, session_id: str, exchange: Exchange) -> None:
        with self._lock:
            self._expire()
            _, turns = self._sessions.pop(session_id, (0.0, deque()))
            turns.append(exchange)
            if len(turns) > self._max_turns:
                # The oldest half goes at once, not one exchange a turn: the history the model sees then
                # starts the same way for several turns, so its prompt cache still holds it (dropping one
                # exchange a turn changes the prompt's beginning every turn: all of it is evaluated again).
                while len(turns) > max(1, self._max_turns // 2) + 1:
                    turns.popleft()
            self._sessions[session_id] = (self._clock(), turns)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)

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
