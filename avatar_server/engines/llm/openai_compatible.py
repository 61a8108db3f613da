"""Streaming chat completions from any OpenAI-compatible endpoint (the "SuperIntelligenceService",
vLLM, Ollama, OpenAI): POST {base_url}/chat/completions with stream=true, read server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from avatar_server.engines.http import CloudError, check_status, with_retries
from avatar_server.engines.llm.base import LlmCapabilities
from avatar_server.values import ChatMessage


class OpenAICompatibleChat:
    name = "openai-compatible"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        seed: int | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._model = model
        self._retries = retries
        self._seed = seed
        self.capabilities = LlmCapabilities(streaming=True, model=model, local=False)

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        body = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if self._seed is not None:
            body["seed"] = self._seed  # best-effort determinism, as the API documents it

        def open_stream() -> httpx.Response:
            request = self._client.build_request("POST", "/chat/completions", json=body)
            response = self._client.send(request, stream=True)
            try:
                return check_status(response)
            except httpx.HTTPError:
                response.close()
                raise

        # Retries cover opening the stream; once tokens flow, a broken stream is an error, not a retry
        # (the listener has already heard the start of the reply).
        response = with_retries("The LLM service", self._retries, open_stream)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                try:
                    chunk = json.loads(payload)
                    choices = chunk.get("choices") or []
                    delta = choices[0].get("delta", {}).get("content") if choices else None
                except (ValueError, AttributeError, IndexError, TypeError):
                    raise CloudError(f"The LLM service sent a malformed event: {payload[:200]!r}") from None
                if delta:
                    yield str(delta)
        except httpx.TransportError as exc:
            raise CloudError(f"The LLM service broke off the reply: {exc}") from None
        finally:
            response.close()
