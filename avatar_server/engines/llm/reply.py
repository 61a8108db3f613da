"""Prompt building and reply shaping around any ChatModel."""

from __future__ import annotations

import re
from collections.abc import Iterator

from avatar_server.engines.llm.sentences import boundaries, ends_sentence, split_sentences
from avatar_server.values import ChatMessage, Exchange

__all__ = [
    "SentenceSplitter",
    "build_messages",
    "collect_reply",
    "ends_sentence",
    "shape_reply",
]

_ROLE_LEAK = re.compile(r"^\s*(assistant|user|system)\s*:\s*", re.IGNORECASE)
# A small model sometimes runs sentences together ("I did not find a moth.As a rear admiral"): a sentence end
# after a lowercase word, right before a capitalized word, gets its space ("U.S.Navy", "e.g.The" do not match).
_MISSING_SPACE = re.compile(r"(?<=[a-zа-яіїєґ]{2})([.!?])(?=[A-ZА-ЯІЇЄҐ][a-zа-яіїєґ])")


def _spaced(text: str) -> str:
    return _MISSING_SPACE.sub(r"\1 ", text)


def build_messages(system_prompt: str, history: list[Exchange], user_text: str) -> list[ChatMessage]:
    messages = [ChatMessage("system", system_prompt)]
    for ex in history:
        messages += [ChatMessage("user", ex.user), ChatMessage("assistant", ex.assistant)]
    messages.append(ChatMessage("user", user_text))
    return messages


def shape_reply(text: str, *, max_sentences: int, max_chars: int) -> str:
    """At most `max_sentences` whole sentences and `max_chars` characters, ending at a sentence end: an
    unfinished sentence after a finished one is dropped. Text with no finished sentence that fits is cut
    at a word boundary (never right after "Mr." or an initial) and ends with a full stop."""
    text = _ROLE_LEAK.sub("", " ".join(_spaced(text).split()))
    sentences = split_sentences(text)
    if sentences and not ends_sentence(sentences[-1]):
        sentences.pop()  # the sentence the limits (or the token budget) cut off
    out = ""
    for s in sentences[:max_sentences]:
        candidate = f"{out} {s}".strip()
        if len(candidate) > max_chars:
            break
        out = candidate
    if not out and text:
        out = _clip(text, max_chars)
    return out.strip()


def _clip(text: str, max_chars: int) -> str:
    """The words of `text` that fit `max_chars`, ended as a sentence."""
    words = text[: max_chars + 1].split(" ")
    if len(text) > max_chars and len(words) > 1:
        words.pop()  # the word the limit cut through
    while len(words) > 1 and (_binds_next(words[-1]) or _bare(words[-1]) in _LINK_WORDS | _ARTICLES):
        words.pop()  # not "... born in", "... the", "... Mr."
    out = " ".join(words).rstrip(" ,;:—–-")
    if out and not ends_sentence(out):
        out = out.rstrip(".") + "."
    return out


def collect_reply(deltas: Iterator[str], *, max_sentences: int, max_chars: int) -> str:
    """Consume text deltas only until the reply has `max_sentences` sentences or `max_chars`
    characters, then stop the generator: tokens nobody will hear are never computed."""
    text = ""
    try:
        for delta in deltas:
            text += delta
            # A delta ending a sentence closes it: the next word need not be computed to know (unless it
            # may continue a number, "3." → "3.14").
            complete = len(boundaries(text)) + ends_sentence(text, more_may_follow=True)
            if complete >= max_sentences or len(text) > max_chars + 40:
                break
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
    return shape_reply(text, max_sentences=max_sentences, max_chars=max_chars)


# Words a spoken clause may begin with: a long opening without punctuation is cut before one of them.
_LINK_WORDS = frozenset(
    {
        *("and", "but", "or", "so", "because", "which", "who", "whom", "whose", "that", "when", "where", "while"),
        *("if", "as", "than", "after", "before", "since", "until", "in", "on", "at", "with", "for", "from"),
        *("to", "of", "about", "into", "by"),
    }
)
_ARTICLES = frozenset(["a", "an", "the", "my", "our", "your", "his", "her", "its", "their", "this", "these", "those"])


def _bare(word: str) -> str:
    return word.lower().strip("\"'“”‘’()")


def _binds_next(word: str) -> bool:
    """A word a short piece must not end with: a full stop that did not end the sentence belongs to what
    follows ("Mr. Smith", "J. Watson", "the U.S. Navy"); the piece would read as a whole sentence."""
    return word.rstrip("\"'”’»)").endswith((".", "!", "?", "…"))


class SentenceSplitter:
    """Feed text deltas; get back each sentence as soon as it is complete (for sentence-level TTS).

    While `hurry` is set (nothing is playing yet, or the audio in hand runs short) pieces are cut shorter,
    so that the next audio waits for a few words, not for a whole sentence: at the first comma,
    semicolon or colon after at least `min_words` words, else, once more than `max_words` words have come
    without one, before the last linking word ("and", "which", "in", ...) past `min_words`, or after
    `max_words` words. Synthesis time grows with the text (Piper: 0.09 s for 3 words, 0.22 s for 9).
    """

    _CLAUSE = re.compile(r"(?<=[,;:])\s+")
    _WORD = re.compile(r"\S+")

    def __init__(self, *, min_words: int = 3, max_words: int = 5, hurry: bool = False) -> None:
        self._buffer = ""
        self._min = min_words
        self._max = max(max_words, min_words)
        self.hurry = hurry

    def feed(self, delta: str) -> list[str]:
        self._buffer = _spaced(self._buffer + delta)
        cuts = boundaries(self._buffer)
        if not cuts:
            return self._short_piece() if self.hurry else []
        pieces, start = [], 0
        for cut in cuts:
            pieces.append(" ".join(self._buffer[start:cut].split()))
            start = cut
        self._buffer = self._buffer[start:].lstrip()
        return [p for p in pieces if p]

    def _short_piece(self) -> list[str]:
        cut = None
        for mark in self._CLAUSE.finditer(self._buffer):
            if len(self._buffer[: mark.start()].split()) >= self._min:
                cut = mark.start()
                break
        if cut is None:
            words = list(self._WORD.finditer(self._buffer))
            if not self._buffer[-1:].isspace():
                words = words[:-1]  # the last word may still be growing
            if len(words) <= self._max:
                return []
            k = next(
                (k for k in range(self._max, self._min - 1, -1) if _bare(words[k].group()) in _LINK_WORDS),
                self._max,
            )
            while k > self._min and (_bare(words[k - 1].group()) in _ARTICLES or _binds_next(words[k - 1].group())):
                k -= 1  # "... was | the A-0 System", not "... was the | A-0 System"; nor "... Mr. | Smith"
            while _binds_next(words[k - 1].group()):  # never "ім. | Т. Г. Шевченка": after the name
                k += 1
                if k == len(words):
                    return []
            cut = words[k].start()
        head, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip()
        return [" ".join(head.split())]

    def flush(self) -> str:
        rest, self._buffer = " ".join(self._buffer.split()), ""
        return _ROLE_LEAK.sub("", rest)
