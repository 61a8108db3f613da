"""A stage of a turn: a blocking engine call on its engine's worker, bounded in time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from avatar_server.core.workers import Priority, Workers
from avatar_server.errors import AvatarError, EngineFailure, StageTimeout
from avatar_server.observability import tracing

log = logging.getLogger("avatar_server.turn")
T = TypeVar("T")


class Stages:
    """`await stages(name, worker, limit, priority, compute, fn, *args)`: engine crashes become EngineFailure,
    a stage over `limit` seconds StageTimeout naming it."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    async def __call__(
        self,
        stage: str,
        worker: str,
        limit: float | None,
        priority: Priority,
        compute: bool,
        fn: Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """A blocking engine call on its engine's worker, bounded in time; engine crashes become EngineFailure."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that lands as the job ends.
        try:
            with tracing.stage_span(worker):  # (a no-op unless tracing is on)
                async with asyncio.timeout(limit):
                    return await self.workers[worker].run(fn, *args, priority=priority, compute=compute, **kwargs)
        except TimeoutError:
            raise StageTimeout(f"The {stage} stage took longer than {limit:g} s.") from None
        except AvatarError:
            raise
        except Exception as exc:
            log.exception("%s failed", stage)
            raise EngineFailure(f"The {stage} engine failed: {exc}") from exc
