"""llama.cpp (llama-cpp-python) on a local GGUF model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
            n_threads_batch=threads,  # the prompt too: two stall as writing does when anything else computes
            n_batch=256,
            seed=1234,
            verbose=False,
        )
        self._seed = seed
        self._lock = threading.Lock()  # a llama context serves one request at a time
        self.threads = _Threads(threads)
        self._llm._ctx.set_n_threads(self.threads.now, self.threads.now)
        self.capabilities = LlmCapabilities(streaming=True, model=model_path.name, context_tokens=context_tokens)
        self._prefix_format = _prefix_formatter(self._llm)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's own tokenizer (tens of microseconds for a sentence)."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prefix_tokens(self, messages: list[ChatMessage]) -> list[int] | None:
        """The tokens that every later prompt continuing `messages` starts with: the messages in the model's
        chat template, without the assistant's cue. None where the template is not the model's own."""
        if self._prefix_format is None:
            return None
        prompt = self._prefix_format(messages=[{"role": m.role, "content": m.content} for m in messages]).prompt
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def warm(self, messages: list[ChatMessage], *, max_tokens: int = 64) -> int:
        """Evaluate (at most `max_tokens` more of) the prompt prefix `messages` make, so that the next request
        that starts with them finds it in the prompt cache (llama.cpp reuses the longest common prefix of the
        last prompt). Returns the tokens of it still to evaluate: call again while it is not 0."""
        tokens = self.prefix_tokens(messages)
        if not tokens:
            return 0
        with self._lock:
            llm = self._llm
            cached = 0
            for a, b in zip(llm.eval_tokens, tokens, strict=False):
                if a != b:
                    break
                cached += 1
            if cached >= len(tokens):
                return 0
            end = min(len(tokens), cached + max_tokens)
            # generate() evaluates what the cache lacks of its prompt (as a request would), then offers the
            # first token, which is not taken: the prefix stays the context's last prompt.
            steps = llm.generate(tokens[:end], temp=0.0, reset=True)
            try:
                next(steps)
            finally:
                steps.close()
            return len(tokens) - end

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
                tokens = 0
                t0 = time.perf_counter()
                for chunk in chunks:
                    delta = chunk["choices"][0]["delta"].get("content")  # type: ignore[index,union-attr]
                    if not delta:
                        continue  # the opening chunk (the role) and the closing one: no step of their own
                    tokens += 1
                    if tokens > 1:  # a token step (the first token's time is the prompt's)
                        n = self.threads.step(time.perf_counter() - t0)
                        self._llm._ctx.set_n_threads(n, n)
                    yield str(delta)
                    t0 = time.perf_counter()  # the caller's time between tokens is not the step's
            finally:
                chunks.close()  # type: ignore[union-attr]


def _prefix_formatter(llm: Any) -> Any:
    """The model's own chat template (llama-cpp-python formats requests with it) without the assistant's cue."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if llm.chat_handler is not None or llm.chat_format != "chat_template.default" or not template:
        return None

    def text(token: int) -> str:
        return "" if token == -1 else llm.detokenize([token], special=True).decode("utf-8", "replace")

    return Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()), add_generation_prompt=False
    )


class _Threads:
    """How many threads llama.cpp computes with, adapted to the machine: all of `most` while the cores are
    free, one while something else computes. On free cores more threads bring the first words sooner; with
    a core taken, each step waits for its slowest thread and more threads are slower than one
    (bench/bench_first_words.py, bench/README.md). A token step much slower than the fastest seen with all
    threads means a core is taken; the next `_BACK_OFF` steps then use one thread, and the next step tries
    all again."""

    _SLOW = 1.8  # a step this many times the fastest seen with all threads: contention
    _BACK_OFF = 48  # steps on one thread before trying all again

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.now = self.most
        self._fastest = float("inf")
        self._single_left = 0

    def step(self, seconds: float) -> int:
        """Record a token step's time at `now` threads; the threads for the next step."""
        if seconds < 0.002:  # no computation in it (text held back, then released): says nothing
            return self.now
        if self.now == self.most and self.most > 1:
            if seconds > self._SLOW * self._fastest:
                self.now, self._single_left = 1, self._BACK_OFF
            self._fastest = min(self._fastest, seconds)
        elif self._single_left > 0:
            self._single_left -= 1
            if self._single_left == 0:
                self.now = self.most
        return self.now
