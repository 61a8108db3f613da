"""Long computations step aside for live work: a hook per worker thread, called at natural points.

A video of a whole reply or a long synthesis holds the cores for seconds. Engines call `yield_cores()`
between frames or sentences; on a worker thread running a batch job it gives the cores to waiting live
work and returns when the job may go on. Elsewhere (tests, warm-up, a plain call) it does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


def yield_cores() -> None:
    """Let waiting live work have the cores now, if this thread's job is one that should."""
    hook: Callable[[], None] | None = getattr(_local, "hook", None)
    if hook is not None:
        hook()


@contextmanager
def yielding(hook: Callable[[], None]) -> Iterator[None]:
    """Run the body with `hook` as this thread's `yield_cores()`."""
    _local.hook = hook
    try:
        yield
    finally:
        _local.hook = None
