"""Which language a reply is in, and which engine and voice speak it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from avatar_server.core.engines import Engines
from avatar_server.engines.tts.base import TextToSpeech, language_matches
from avatar_server.errors import InvalidInput


def find_voice(engines: Engines, wanted: str, language: str) -> tuple[TextToSpeech, str] | None:
    """The wanted voice if it speaks `language`, else the fallback engine's voice for it; None if none does."""
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
    fallback = engines.tts.get(engines.fallback_tts)
    if fallback is None:
        return None
    for voice in fallback.capabilities.voices:
        if any(lang.lower() == language.lower() for lang in voice.languages):
            return fallback, voice.id
    for voice in fallback.capabilities.voices:
        if any(language_matches(language, lang) for lang in voice.languages):
            return fallback, voice.id
    return None


def pick_voice(engines: Engines, wanted: str, language: str) -> tuple[TextToSpeech, str]:
    found = find_voice(engines, wanted, language)
    if found is None:
        raise InvalidInput(f"No voice speaks the language {language!r}.")
    return found


def home_language(avatar_language: str, served: Sequence[str]) -> str:
    """The language an avatar answers in when it cannot answer in the person's: its own, if served."""
    if not served or avatar_language.lower().split("-")[0] in served:
        return avatar_language
    return served[0]


@dataclass(frozen=True)
class ReplyLanguage:
    """The language a reply is in and the voice that speaks it (None: nothing is spoken)."""

    language: str
    voice: tuple[TextToSpeech, str] | None
    # The person's language when the avatar cannot answer in it (not served, or no voice speaks it): the
    # avatar then answers in its own language and says which ones it speaks. "" when it answers in theirs.
    unserved: str = ""


def reply_language(
    engines: Engines, served: Sequence[str], *, wanted_voice: str, home: str, language: str, speaking: bool
) -> ReplyLanguage:
    """The person's language when it is served and (if the reply is spoken) a voice speaks it; else `home`.
    Decided before the LLM runs, and never a reason to fail a turn: `home` always has a voice (warm-up and
    the avatar files make sure of that; if not, that is the error)."""
    if not served or language.lower().split("-")[0] in served:
        voice = find_voice(engines, wanted_voice, language) if speaking else None
        if voice is not None or not speaking:
            return ReplyLanguage(language, voice)
    voice = pick_voice(engines, wanted_voice, home) if speaking else None
    return ReplyLanguage(home, voice, unserved=language)
