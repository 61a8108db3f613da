"""A reply must not open as an earlier one did: a small model copies its own pattern from the history.

In a 20-turn typed conversation, Qwen2.5 0.5B answered "As a rear admiral, I was not afraid of failing."
and then seven questions running in the same mould ("As a rear admiral, I was not afraid of COBOL.").
The turn holds back a reply's first words until they show how it opens; one that opens as a reply in the
history does is asked again without the history (the question alone, in the persona), once.
"""

from __future__ import annotations

import re

from avatar_server.values import ChatMessage

WORDS = 4  # the opening: this many words
_WORD = re.compile(r"[\w'’-]+")


def opening(text: str) -> tuple[str, ...] | None:
    words = _WORD.findall(text.lower())
    return tuple(words[:WORDS]) if len(words) >= WORDS else None


class OpeningCheck:
    """Feed a reply's text deltas; they come back once its opening is known not to repeat an earlier one."""

    def __init__(self, messages: list[ChatMessage]) -> None:
        self._openings = {o for m in messages if m.role == "assistant" and (o := opening(m.content))}
        self._held = ""
        self.decided = not self._openings

    def feed(self, delta: str) -> tuple[str, bool]:
        """(text to pass on now, whether the reply opens as an earlier one did)."""
        if self.decided:
            return delta, False
        self._held += delta
        words = _WORD.findall(self._held.lower())
        last_done = not _WORD.fullmatch(self._held[-1:] or " ")  # the last word may still be growing
        if len(words) < WORDS or (len(words) == WORDS and not last_done):
            return "", False
        self.decided = True
        if tuple(words[:WORDS]) in self._openings:
            return "", True
        held, self._held = self._held, ""
        return held, False

    def flush(self) -> str:
        """What is still held when the reply ends (a reply shorter than an opening)."""
        self.decided = True
        held, self._held = self._held, ""
        return held


def without_history(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The system prompt and the question alone."""
    system = [m for m in messages[:1] if m.role == "system"]
    return [*system, messages[-1]]
