"""Keeping llama.cpp's prompt cache warm for a session's next turn.

llama.cpp reuses the longest common prefix of a context's last prompt. When the memory drops a session's
oldest exchanges, or a reply was asked again without the history, the next prompt begins differently
from what the cache holds; evaluating that beginning while this reply is spoken means the next turn finds
it in the cache of the model context it will get (the session's own), instead of evaluating the whole
history first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from avatar_server.core.contexts import LiveContexts
from avatar_server.core.turn_state import TurnPlan
from avatar_server.core.workers import Priority, Workers
from avatar_server.engines.llm.base import ChatModel
from avatar_server.values import ChatMessage

log = logging.getLogger("avatar_server.turn")


class PromptWarmer:
    def __init__(self, llm: ChatModel, workers: Workers, live_contexts: LiveContexts) -> None:
        self._llm = llm
        self._workers = workers
        self._live_contexts = live_contexts
        self.warming: set[asyncio.Task[None]] = set()

    def warm_later(self, plan: TurnPlan, prefix: list[ChatMessage]) -> None:
        """Evaluate `prefix` (the next prompt's beginning) on the session's model context, in the background."""
        llm, worker = self._llm, "llm"
        if plan.live and self._live_contexts.models:
            index = self._live_contexts.last(plan.session_id)
            if index is None:
                return
            llm, worker = self._live_contexts.models[index], LiveContexts.worker(index)
        warm = getattr(llm, "warm", None)
        if warm is None or not llm.capabilities.local:
            return
        task = asyncio.get_running_loop().create_task(self._warm(warm, worker, prefix))
        self.warming.add(task)
        task.add_done_callback(self.warming.discard)

    async def _warm(self, warm: Callable[[list[ChatMessage]], int], worker: str, prefix: list[ChatMessage]) -> None:
        try:
            await self._workers[worker].run(self._job, warm, worker, prefix, priority=Priority.BATCH)
        except Exception:  # a cold cache costs only time
            log.warning("warming the prompt cache failed", exc_info=True)

    def _job(self, warm: Callable[[list[ChatMessage]], int], worker_name: str, prefix: list[ChatMessage]) -> None:
        """On the model context's worker: a chunk of the prompt at a time, each holding a compute slot like a
        token does; it stops as soon as a reply waits for this context (that reply evaluates the rest)."""
        worker = self._workers[worker_name]
        while True:
            with self._workers.budget.hold(Priority.BATCH):
                left = warm(prefix)
            worker.beat()
            if not left or worker.waiting:
                return
