"""Chat-model interface."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from avatar_server.values import ChatMessage


@dataclass(frozen=True)
class LlmCapabilities:
    streaming: bool
    model: str
    local: bool = True  # computes on this machine's cores (False: waits on a remote service)
    context_tokens: int | None = None  # the prompt and the reply must fit in this many tokens (None: unknown)


class ChatModel(Protocol):
    """Answers a conversation. Synchronous; the pipeline runs it off the event loop."""

    name: str
    capabilities: LlmCapabilities

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """The assistant's next message as text deltas. Closing the iterator stops generation."""
        ...
