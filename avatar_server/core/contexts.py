"""Model contexts for live turns: one free context per turn, the session's own when it is free.

Each context is a separate llama.cpp context (its own KV cache and prompt cache) over the same mmapped
weights, with a worker of its own, so its lock is never contended. A session that gets its previous
context back finds its conversation already evaluated in that context's prompt cache.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from avatar_server.engines.llm.base import ChatModel

_REMEMBERED_SESSIONS = 1000


class LiveContexts:
    def __init__(self, models: Sequence[ChatModel]) -> None:
        self.models = tuple(models)
        self._free = set(range(len(self.models)))
        self._last: OrderedDict[str, int] = OrderedDict()  # session → the context its last turn used
        self._changed = asyncio.Condition()

    @staticmethod
    def worker(index: int) -> str:
        return f"llm-live-{index}"

    def last(self, session_id: str) -> int | None:
        """The context the session's last reply used (its conversation is in that one's prompt cache)."""
        return self._last.get(session_id)

    @asynccontextmanager
    async def take(self, session_id: str) -> AsyncIterator[int]:
        """Hold a context for one reply (wait for one to be free: the caller bounds the wait)."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._free))
            index = self._last.get(session_id, -1)
            if index not in self._free:
                owned = set(self._last.values())
                index = min(self._free, key=lambda k: (k in owned, k))  # prefer one no session calls its own
            self._free.remove(index)
            self._last[session_id] = index
            self._last.move_to_end(session_id)
            while len(self._last) > _REMEMBERED_SESSIONS:
                self._last.popitem(last=False)
        try:
            yield index
        finally:
            async with self._changed:
                self._free.add(index)
                self._changed.notify_all()
