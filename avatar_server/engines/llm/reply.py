"""Prompt building and reply shaping around any ChatModel."""

from __future__ import annotations

import re
from collections.abc import Iterator

from avatar_server.engines.llm.base import ChatMessage
from avatar_server.memory import Exchange

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”»)]*\s+")
_ROLE_LEAK = re.compile(r"^\s*(assistant|user|system)\s*:\s*", re.IGNORECASE)


def build_messages(system_prompt: str, history: list[Exchange], user_text: str) -> list[ChatMessage]:
    messages = [ChatMessage("system", system_prompt)]
    for ex in history:
        messages += [ChatMessage("user", ex.user), ChatMessage("assistant", ex.assistant)]
    messages.append(ChatMessage("user", user_text))
    return messages


def shape_reply(text: str, *, max_sentences: int, max_chars: int) -> str:
    """At most `max_sentences` whole sentences and `max_chars` characters, cut at a sentence end
    where one exists, else at a word boundary."""
    text = _ROLE_LEAK.sub("", " ".join(text.split()))
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    out = ""
    for s in sentences[:max_sentences]:
        candidate = f"{out} {s}".strip()
        if len(candidate) > max_chars:
            break
        out = candidate
    if not out and text:
        cut = text[:max_chars]
        out = cut.rsplit(" ", 1)[0] if len(text) > max_chars and " " in cut else cut
    return out.strip()


def collect_reply(deltas: Iterator[str], *, max_sentences: int, max_chars: int) -> str:
    """Consume text deltas only until the reply has `max_sentences` sentences or `max_chars`
    characters, then stop the generator: tokens nobody will hear are never computed."""
    text = ""
    try:
        for delta in deltas:
            text += delta
            # A delta ending in "." closes a sentence: the space the next token would bring is implied.
            complete = len(_SENTENCE_END.findall(text + " "))
            if complete >= max_sentences or len(text) > max_chars + 40:
                break
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
    return shape_reply(text, max_sentences=max_sentences, max_chars=max_chars)


class SentenceSplitter:
    """Feed text deltas; get back each sentence as soon as it is complete (for sentence-level TTS).

    With `first_clause_words`, the reply's first piece may end at a comma once it has that many words:
    the first audio then waits for a clause, not for a long sentence.
    """

    _CLAUSE = re.compile(r"(?<=[,;:])\s+")

    def __init__(self, first_clause_words: int = 0) -> None:
        self._buffer = ""
        self._first_clause_words = first_clause_words
        self._emitted = False

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        parts = _SENTENCE_END.split(self._buffer)
        if len(parts) == 1:
            return self._first_clause()
        self._buffer = parts[-1]
        out = [" ".join(p.split()) for p in parts[:-1] if p.strip()]
        self._emitted = self._emitted or bool(out)
        return out

    def _first_clause(self) -> list[str]:
        if self._emitted or not self._first_clause_words:
            return []
        pieces = self._CLAUSE.split(self._buffer, maxsplit=1)
        if len(pieces) == 2 and len(pieces[0].split()) >= self._first_clause_words:
            self._emitted = True
            self._buffer = pieces[1]
            return [" ".join(pieces[0].split())]
        return []

    def flush(self) -> str:
        rest, self._buffer = " ".join(self._buffer.split()), ""
        return _ROLE_LEAK.sub("", rest)


def ends_sentence(text: str) -> bool:
    return text.rstrip().rstrip("\"'”»)").endswith((".", "!", "?", "…", "。", "！", "？"))
