"""The prompt's token budget: counting prompt text with the model's tokenizer, fitting a prompt into its context.

The conversation memory keeps the history within its own token budget (trimmed in blocks, so the model's
prompt cache stays warm); `fit_to_context` is the last guard for a turn whose prompt would still overflow
the context (a long question, a long persona): it drops the oldest exchanges in the same blocks, then
shortens the question, so the model never receives a prompt it cannot hold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from avatar_server.engines.llm.base import ChatModel
from avatar_server.errors import TooLarge
from avatar_server.settings import Settings
from avatar_server.values import ChatMessage, Exchange

# The chat template's tokens around one message ("<|im_start|>user\n" ... "<|im_end|>\n" is 5 in ChatML).
PER_MESSAGE = 8
# Left free in the context beyond the reply's tokens (the assistant's cue, a token or two of rounding).
_MARGIN = 16
_ELLIPSIS = " … "


class TokenCounter:
    """Tokens of prompt text: the model's own tokenizer where it has one (`count_tokens`), else an estimate
    (`estimate_tokens`: above the real count for English, Cyrillic and emoji with common tokenizers).
    Counts are kept by text, so a turn counts only its new text: the persona and the history are known."""

    def __init__(self, model: object, *, cache_size: int = 4096) -> None:
        tokenize: Callable[[str], int] | None = getattr(model, "count_tokens", None)
        self.exact = tokenize is not None
        self._tokenize = tokenize or estimate_tokens
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._size = cache_size

    def __call__(self, text: str) -> int:
        n = self._cache.get(text)
        if n is None:
            n = self._tokenize(text)
            self._cache[text] = n
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return n

    def message(self, message: ChatMessage) -> int:
        return self(message.content) + PER_MESSAGE

    def messages(self, messages: list[ChatMessage]) -> int:
        return sum(self.message(m) for m in messages)

    def exchange(self, exchange: Exchange) -> int:
        return self(exchange.user) + self(exchange.assistant) + 2 * PER_MESSAGE


def estimate_tokens(text: str) -> int:
    """Tokens of `text` for a model whose tokenizer is not at hand, on the safe side: ASCII text a third of
    its bytes (about a token per 4 characters in English), other characters one token per code point at
    least and one per two UTF-8 bytes (an emoji can take 2-4 byte-level tokens)."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    other = "".join(ch for ch in text if ch >= "\x80")
    other_bytes = len(other.encode("utf-8", "surrogatepass"))
    return ascii_chars // 3 + max(len(other), (other_bytes + 1) // 2) + 1


def fit_prompt(
    messages: list[ChatMessage], count: TokenCounter, llm: ChatModel, settings: Settings
) -> list[ChatMessage]:
    """`fit_to_context` with the model's context (a model that does not state one: `llm_context_tokens`) and
    the settings' reply and question budgets. TooLarge when even the persona and a shortened question
    cannot fit: no request the model would refuse is ever sent."""
    context = llm.capabilities.context_tokens or settings.llm_context_tokens
    reply = settings.llm_max_tokens
    fitted = fit_to_context(
        messages,
        count=count,
        context_tokens=context,
        reply_tokens=reply,
        question_tokens=settings.llm_question_max_tokens,
    )
    if count.messages(fitted) > context - reply - _MARGIN or not fitted[-1].content.strip():
        raise TooLarge("This question does not fit the language model's context even shortened; ask a shorter one.")
    return fitted


def fit_to_context(
    messages: list[ChatMessage],
    *,
    count: TokenCounter,
    context_tokens: int,
    reply_tokens: int,
    question_tokens: int = 0,
) -> list[ChatMessage]:
    """`messages` (system, user/assistant pairs, the question) within `context_tokens` less the reply's:
    unchanged when they fit (the common case: one lookup per message and one count of the question),
    else without the oldest exchanges, half of them at a time, and if need be with the question shortened
    in its middle (its beginning and its end are kept). A question over `question_tokens` (when set) is
    shortened so first: a 2,000-character paste would otherwise cost seconds of prompt evaluation on a CPU."""
    if question_tokens and count(messages[-1].content) > question_tokens:
        last = messages[-1]
        messages = [*messages[:-1], ChatMessage(last.role, _shorten(last.content, question_tokens, count))]
    budget = context_tokens - reply_tokens - _MARGIN
    total = count.messages(messages)
    if total <= budget:
        return messages
    system, history, question = messages[:1], messages[1:-1], messages[-1]
    while history and total > budget:
        drop = 2 * ((len(history) // 2 + 1) // 2)  # the oldest half of the exchanges, at least one
        total -= count.messages(history[:drop])
        history = history[drop:]
    if total > budget:
        room = max(1, budget - count.messages(system) - PER_MESSAGE)
        question = ChatMessage(question.role, _shorten(question.content, room, count))
    return [*system, *history, question]


def _shorten(text: str, tokens: int, count: TokenCounter) -> str:
    """`text` within `tokens`: its beginning and its end, an ellipsis between."""
    keep = len(text)
    while keep > 0:
        keep = min(keep - 1, int(keep * tokens / max(1, count(_cut(text, keep))) * 0.95))
        short = _cut(text, keep)
        if count(short) <= tokens:
            return short
    return ""


def _cut(text: str, keep: int) -> str:
    if keep >= len(text):
        return text
    head = (keep + 1) // 2
    return text[:head].rstrip() + _ELLIPSIS + text[len(text) - (keep - head) :].lstrip()
