"""OpenAI's audio transcription API (POST /v1/audio/transcriptions), or any server that speaks it."""

from __future__ import annotations

from dataclasses import replace

import httpx
import numpy as np
import numpy.typing as npt

from avatar_server.engines.http import CloudError, check_status, with_retries
from avatar_server.engines.stt.base import SttCapabilities
from avatar_server.languages import text_language
from avatar_server.media.audio import encode_wav
from avatar_server.values import Transcript

# ISO-639-1 codes of the languages Whisper (and OpenAI's transcription models) know, the ones we map.
_NAMES = {
    "english": "en",
    "ukrainian": "uk",
    "russian": "ru",
    "german": "de",
    "french": "fr",
    "spanish": "es",
    "polish": "pl",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "japanese": "ja",
    "chinese": "zh",
}


class OpenAITranscriptionSTT:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str = "whisper-1",
        timeout: float = 30.0,
        retries: int = 3,
        languages: tuple[str, ...] = (),
    ) -> None:
        """`languages`: the ones the deployment serves (empty: any). The API cannot be told to choose among
        several: with one served, it is asked for that one; with several, a transcript in another language
        (named by the answer, or by its letters where the answer names none) is asked for again in the
        caller's fallback (or the first served language)."""
        if not api_key:
            raise ValueError("the OpenAI STT backend needs an API key (AVATAR_OPENAI_API_KEY)")
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )
        self._model = model
        self._retries = retries
        self._languages = languages
        self.capabilities = SttCapabilities(
            streaming=False,
            sample_rate=16000,
            languages=languages or tuple(sorted(_NAMES.values())),
            model=model,
            local=False,
        )

    def transcribe(
        self, samples: npt.NDArray[np.float32], *, language: str | None, fallback: str | None = None
    ) -> Transcript:
        wav = encode_wav(samples, 16000)
        if not language and len(self._languages) == 1:
            language = self._languages[0]
        transcript = self._request(wav, language)
        if language:
            return transcript
        home = fallback or (self._languages[0] if self._languages else "en")
        # The json answer (gpt-4o models) names no language: then the transcript's letters tell.
        heard = transcript.language or text_language(transcript.text, self._languages, home)
        if self._languages and heard not in self._languages:
            # Heard as a language not served: asked again in the one to use.
            return self._request(wav, home)
        return replace(transcript, language=heard)

    def _request(self, wav: bytes, language: str | None) -> Transcript:
        # verbose_json reports the detected language; the gpt-4o transcribe models only answer json.
        fmt = "verbose_json" if self._model.startswith("whisper") else "json"
        data = {"model": self._model, "response_format": fmt, "temperature": "0"}
        if language:
            data["language"] = language

        def call() -> httpx.Response:
            files = {"file": ("speech.wav", wav, "audio/wav")}
            return check_status(self._client.post("/audio/transcriptions", data=data, files=files))

        response = with_retries("OpenAI transcription", self._retries, call)
        try:
            body = response.json()
            text = str(body["text"]).strip()
        except (ValueError, KeyError, TypeError):
            raise CloudError(f"OpenAI transcription sent a malformed answer: {response.text[:200]!r}") from None
        # The json answer (gpt-4o models) names no language: "" when none was asked for.
        detected = str(body.get("language") or language or "").lower()
        return Transcript(text=text, language=_NAMES.get(detected, detected))
