"""A reply must not open as an earlier one did, nor as the question: a small model copies what it sees.

In a long typed conversation, Qwen2.5 0.5B answered "As a rear admiral, I was not afraid of failing." and
then question after question in the same mould ("As a rear admiral, I was not afraid of COBOL."); in
Ukrainian it often says the question back ("Де ти захистила докторську." to "Де ти захистила докторську?").
The turn holds back a reply's first words until they show how it opens. One that opens as a reply in the
history does is asked again without the history (the question alone, in the persona); one that opens as
the question does is asked again told not to repeat it. Once.
"""

from __future__ import annotations

import re

from avatar_server.values import ChatMessage

WORDS = 4  # the opening: this many words
_WORD = re.compile(r"[\w'’-]+")


def opening(text: str) -> tuple[str, ...] | None:
    words = _WORD.findall(text.lower())
    return tuple(words[:WORDS]) if len(words) >= WORDS else None


HISTORY = "history"  # the reply opens as an earlier reply did
QUESTION = "question"  # the reply opens as the question does


class OpeningCheck:
    """Feed a reply's text deltas; they come back once its opening is known to repeat nothing."""

    def __init__(self, messages: list[ChatMessage]) -> None:
        self._openings = {o: HISTORY for m in messages if m.role == "assistant" and (o := opening(m.content))}
        if messages and messages[-1].role == "user" and (asked := opening(messages[-1].content)):
            self._openings[asked] = QUESTION
        self._held = ""
        self.decided = not self._openings

    def feed(self, delta: str) -> tuple[str, str]:
        """(text to pass on now, what the reply's opening repeats: HISTORY, QUESTION or "")."""
        if self.decided:
            return delta, ""
        self._held += delta
        words = _WORD.findall(self._held.lower())
        last_done = not _WORD.fullmatch(self._held[-1:] or " ")  # the last word may still be growing
        if len(words) < WORDS or (len(words) == WORDS and not last_done):
            return "", ""
        self.decided = True
        repeats = self._openings.get(tuple(words[:WORDS]), "")
        if repeats:
            return "", repeats
        held, self._held = self._held, ""
        return held, ""

    def flush(self) -> str:
        """What is still held when the reply ends (a reply shorter than an opening)."""
        self.decided = True
        held, self._held = self._held, ""
        return held


def without_history(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The system prompt and the question alone."""
    system = [m for m in messages[:1] if m.role == "system"]
    return [*system, messages[-1]]


# Said after a question the model repeated, in the reply's language (English otherwise). It goes after the
# question, so the prompt's cached beginning (the persona and the history) still holds.
_NUDGE = {
    "en": "(Answer in your own words; do not say the question back.)",
    "uk": "(Answer in Ukrainian, in your own words; do not say the question back.)",
}


def asked_again(messages: list[ChatMessage], repeats: str, language: str = "en") -> list[ChatMessage]:
    """The request for a reply that repeated something: without the history, or told not to say the
    question back."""
    if repeats == HISTORY:
        return without_history(messages)
    nudge = _NUDGE.get(language.lower().split("-")[0], _NUDGE["en"])
    return [*messages[:-1], ChatMessage(messages[-1].role, f"{messages[-1].content}\n{nudge}")]
