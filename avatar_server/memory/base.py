"""What both stores share: the interface a turn uses, the startup error, and the block trimming.

Block trimming: once a history has more than `max_turns` exchanges or `max_tokens` tokens, its oldest
exchanges go until at most half of each is left. Between trims every prompt starts with the previous
prompt (the persona, then the same exchanges), so the model's prompt cache still holds all of it and a
turn evaluates only its new text; dropping one exchange a turn would change the prompt's beginning every
turn, and the whole history would be evaluated again each time.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from avatar_server.values import Exchange

Turns = deque[tuple[Exchange, int]]  # exchanges with their size in the prompt, oldest first


class MemoryUnavailable(RuntimeError):
    """The configured store cannot be used (at startup): the message names the setting, never a password."""


class Memory(Protocol):
    """What a turn needs of a store; sync and thread-safe. Never raises for the store's own failures."""

    def history(self, session_id: str) -> list[Exchange]: ...

    def add(self, session_id: str, exchange: Exchange, *, tokens: int = 0) -> bool:
        """Remember an exchange (`tokens`: its size in the prompt). True when older ones were dropped."""
        ...

    def close(self) -> None: ...


def trim(turns: Turns, *, max_turns: int, max_tokens: int | None) -> bool:
    """Trim `turns` in place after an exchange was appended; True when older ones were dropped."""
    trimmed = False
    total = sum(n for _, n in turns)
    if len(turns) > max_turns or (max_tokens is not None and total > max_tokens):
        # The oldest go at once, until half of each limit is left: the next turns append to an
        # unchanged prefix, so the prompt cache holds it.
        keep_turns = max(1, max_turns // 2)
        keep_tokens = max_tokens // 2 if max_tokens is not None else total
        while len(turns) > 1 and (len(turns) > keep_turns or total > keep_tokens):
            total -= turns.popleft()[1]
            trimmed = True
        if max_tokens is not None and total > max_tokens:  # one exchange larger than the whole budget
            turns.clear()
            trimmed = True
    return trimmed
