"""Fakes for unit tests of the logic around engines (never used as a default engine)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from avatar_server.engines.llm.base import LlmCapabilities
from avatar_server.engines.stt.base import SttCapabilities
from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import ChatMessage, PhonemeTiming, Speech, Transcript


class FakeSTT:
    name = "fake-stt"
    capabilities = SttCapabilities(streaming=False, sample_rate=16000, languages=("en", "uk"), model="fake")

    def __init__(self, text: str = "hello there", language: str = "") -> None:
        self.text = text
        self.language = language  # what detection hears ("": the fallback)

    def transcribe(
        self, samples: npt.NDArray[np.float32], *, language: str | None, fallback: str | None = None
    ) -> Transcript:
        return Transcript(self.text, language or self.language or fallback or "en")


class FakeLLM:
    name = "fake-llm"
    capabilities = LlmCapabilities(streaming=True, model="fake")

    def __init__(self, reply: str = "Hello. I am a fake. This third sentence is cut.") -> None:
        self.reply = reply
        self.fail_next = False
        self.seen: list[list[ChatMessage]] = []
        self.closed = 0

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.seen.append(messages)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("model crashed")
        try:
            for word in self.reply.split(" "):
                yield word + " "
        finally:
            self.closed += 1


class FakeTTS:
    def __init__(self, name: str, languages: tuple[str, ...], seconds: float = 1.0) -> None:
        self.name = name
        self.seconds = seconds  # audio per call
        self.capabilities = TtsCapabilities(
            phoneme_timings=True, voices=tuple(VoiceSpec(f"{name}:{lang}", (lang,)) for lang in languages)
        )
        self.calls: list[tuple[str, str, str]] = []

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        self.calls.append((text, voice, language))
        rate = 16000
        samples = (0.1 * np.sin(np.arange(int(rate * self.seconds)) / 5.0)).astype(np.float32)
        return Speech(samples, rate, [PhonemeTiming("a", 0.1, 0.5), PhonemeTiming("m", 0.5, 0.7)])


def fake_core(llm: object, settings: object = None, **engines: object) -> tuple[object, dict[str, object]]:
    """A core with the real avatars and animator around `llm`, a fake STT and fake voices (Grace's engine
    and espeak-ng's English and Ukrainian), and any other `engines` given (`stt`, `vad`, `turn_model`); and
    the avatars."""
    from avatar_server.core.engines import Engines
    from avatar_server.core.service import AvatarCore
    from avatar_server.engines.animator.portrait import PortraitAnimator
    from avatar_server.personas import load_avatars
    from avatar_server.settings import Settings

    s = settings if isinstance(settings, Settings) else Settings()
    avatars = load_avatars(s.avatars_dir)
    parts: dict[str, object] = {
        "stt": FakeSTT(),
        "llm": llm,
        "tts": {"festival": FakeTTS("festival", ("en",)), "espeak": FakeTTS("espeak", ("en-us", "uk"))},
        "fallback_tts": "espeak",
        "animator": PortraitAnimator(avatars, video_fps=25, video_size=128),
    }
    engines = Engines(**{**parts, **engines})  # type: ignore[arg-type]
    return AvatarCore(s, engines, avatars), avatars  # type: ignore[return-value]
