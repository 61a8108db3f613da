"""llama.cpp (llama-cpp-python) on a local GGUF model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from avatar_server.engines.llm.base import LlmCapabilities
from avatar_server.values import ChatMessage


class LlamaCppChat:
    """A GGUF chat model run by llama.cpp on the CPU, using the chat template stored in the model."""

    name = "llama-cpp"

    def __init__(
        self, model_path: Path, *, context_tokens: int = 2048, threads: int = 2, seed: int | None = None
    ) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_batch=256,
            seed=1234,
            verbose=False,
        )
        self._seed = seed
        self._lock = threading.Lock()  # a llama context serves one request at a time
        self.capabilities = LlmCapabilities(streaming=True, model=model_path.name)

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        with self._lock:  # held until the caller closes the iterator: one generation at a time
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=0.9,
                repeat_penalty=1.15,
                seed=self._seed,  # None: the context's generator goes on, so replies vary
                stream=True,
            )
            try:
                for chunk in chunks:
                    delta = chunk["choices"][0]["delta"].get("content")  # type: ignore[index,union-attr]
                    if delta:
                        yield str(delta)
            finally:
                chunks.close()  # type: ignore[union-attr]
