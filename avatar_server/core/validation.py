"""Every rule about what a turn or a session may ask for, in one place, with the message a person reads."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from avatar_server import languages
from avatar_server.errors import InvalidInput, TooLarge
from avatar_server.personas import Avatar
from avatar_server.settings import Settings

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def avatar(avatars: dict[str, Avatar], avatar_id: str, default: str) -> Avatar:
    found = avatars.get(avatar_id or default)
    if found is None:
        raise InvalidInput(f"Unknown avatar {avatar_id!r}; known avatars: {', '.join(sorted(avatars))}.")
    return found


def common(*, language: str, session_id: str, voice: str, tts_engines: Collection[str], served: Sequence[str]) -> None:
    """What Interact requests and Converse configs share: language tag (one of the served languages),
    session id, voice. Checked before any engine runs."""
    if language and not _LANGUAGE_TAG.match(language):
        raise InvalidInput(
            f"{language!r} is not a language code such as 'en' or 'uk'; served languages: {languages.describe(served)}."
        )
    if language and language.lower().split("-")[0] not in served:
        raise InvalidInput(
            f"The language {language!r} is not served here; served languages: {languages.describe(served)} "
            "(or leave it empty to detect)."
        )
    if session_id and not _SESSION_ID.match(session_id):
        raise InvalidInput("session_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'.")
    if voice and voice.split(":", 1)[0] not in tts_engines:
        raise InvalidInput(f"Unknown voice {voice!r}; GetCapabilities lists the voices.")


def text(value: str, settings: Settings) -> str:
    """A typed turn's text, stripped; refused when empty or over the cap."""
    if not value.strip():
        raise InvalidInput("The text is empty.")
    if len(value) > settings.max_text_chars:
        raise TooLarge(f"The text has {len(value)} characters; the limit is {settings.max_text_chars}.")
    return value.strip()


def audio_bytes(size: int, settings: Settings) -> None:
    if size > settings.max_audio_bytes:
        raise TooLarge(f"The audio is {size / 1e6:.1f} MB; the limit is {settings.max_audio_bytes / 1e6:.1f} MB.")


def text_language(value: str, served: Sequence[str], default: str) -> str:
    """A typed turn's language when none is given, by its letters (Cyrillic: Ukrainian, unless Russian's own
    letters say otherwise; CJK, Arabic, ...); Latin letters say nothing: `default`. May be one not served."""
    return languages.text_language(value, served, default)
