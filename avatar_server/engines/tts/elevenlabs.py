"""ElevenLabs text-to-speech, streamed with character timestamps (POST /v1/text-to-speech/{voice}/stream/
with-timestamps): raw PCM comes back in base64 chunks with the time of every character, which drives lip-sync."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np

from avatar_server.engines.http import CloudError, check_status, with_retries
from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.engines.tts.graphemes import character_timings
from avatar_server.values import Speech

# eleven_multilingual_v2 / eleven_turbo_v2_5 languages (ISO 639-1), Ukrainian included.
MULTILINGUAL = (
    "en", "uk", "ru", "pl", "de", "fr", "es", "it", "pt", "nl", "sv", "cs", "sk", "ro", "bg", "hr", "el", "fi",
    "da", "hu", "no", "tr", "ar", "hi", "ja", "ko", "zh", "id", "ms", "ta", "fil", "vi",
)  # fmt: skip
_RATE = 22050


class ElevenLabsTTS:
    name = "elevenlabs"

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str,
        model_id: str = "eleven_multilingual_v2",
        base_url: str = "https://api.elevenlabs.io",
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        if not api_key:
            raise ValueError("the ElevenLabs backend needs an API key (AVATAR_ELEVENLABS_API_KEY)")
        if not voice_id:
            raise ValueError("the ElevenLabs backend needs a voice id (AVATAR_ELEVENLABS_VOICE_ID)")
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers={"xi-api-key": api_key}, timeout=timeout)
        self._voice = voice_id
        self._model = model_id
        self._retries = retries
        self.capabilities = TtsCapabilities(
            phoneme_timings=True, voices=(VoiceSpec(id=f"elevenlabs:{voice_id}", languages=MULTILINGUAL),), local=False
        )

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        voice_id = voice.removeprefix("elevenlabs:") or self._voice
        body = {"text": text, "model_id": self._model, "language_code": language.split("-")[0]}
        path = f"/v1/text-to-speech/{voice_id}/stream/with-timestamps"

        def call() -> httpx.Response:
            return check_status(self._client.post(path, params={"output_format": f"pcm_{_RATE}"}, json=body))

        response = with_retries("ElevenLabs", self._retries, call)
        pcm = bytearray()
        chars: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        for line in response.text.splitlines():
            if not line.strip():
                continue
            try:
                chunk = json.loads(line)
                if chunk.get("audio_base64"):
                    pcm += base64.b64decode(chunk["audio_base64"])
                align = chunk.get("alignment")
                if align:
                    chars += list(align["characters"])
                    starts += [float(x) for x in align["character_start_times_seconds"]]
                    ends += [float(x) for x in align["character_end_times_seconds"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise CloudError(f"ElevenLabs sent a malformed chunk ({exc}): {line[:120]!r}") from None
        if len(pcm) % 2 or not pcm:
            raise CloudError("ElevenLabs sent no usable audio")
        samples = (np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)
        phonemes = character_timings(chars, starts, ends) if len(chars) == len(starts) == len(ends) else None
        return Speech(samples=samples, sample_rate=_RATE, phonemes=phonemes or None)
