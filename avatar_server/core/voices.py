"""Which engine and voice speak a reply in a language."""

from __future__ import annotations

from avatar_server.core.engines import Engines
from avatar_server.engines.tts.base import TextToSpeech, language_matches
from avatar_server.errors import InvalidInput


def pick_voice(engines: Engines, wanted: str, language: str) -> tuple[TextToSpeech, str]:
    engine = engines.tts.get(wanted.split(":", 1)[0])
    if engine is not None:
        candidates = [v for v in engine.capabilities.voices if v.id == wanted]
    else:  # the avatar's voice is of an engine not loaded here (a GPU deployment): the primary engine speaks
        engine = engines.tts[engines.primary_tts or next(iter(engines.tts))]
        candidates = list(engine.capabilities.voices)
    for voice in candidates:
        if any(language_matches(language, lang) for lang in voice.languages):
            return engine, voice.id
    # The selected voice lacks this language: speak it with the fallback engine's voice for it.
    fallback = engines.tts[engines.fallback_tts]
    for voice in fallback.capabilities.voices:
        if any(lang.lower() == language.lower() for lang in voice.languages):
            return fallback, voice.id
    for voice in fallback.capabilities.voices:
        if any(language_matches(language, lang) for lang in voice.languages):
            return fallback, voice.id
    raise InvalidInput(f"No voice speaks the language {language!r}.")
