"""Every rule about what a turn or a session may ask for, in one place, with the message a person reads."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence

from avatar_server import languages
from avatar_server.errors import InvalidInput, TooLarge
from avatar_server.personas import Avatar
from avatar_server.settings import Settings

# A BCP-47-ish tag: a 2-3 letter language, then subtags ("en", "uk-UA", "zh-Hant-TW"); at most 35 characters.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
MAX_LANGUAGE_CHARS = 35
_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_NAME_CHARS = 128  # avatar ids, voices, mime types
ECHO_CHARS = 40  # of a name a client sent, at most this much is said back


def echo(value: str) -> str:
    """A client's value as a message may quote it: printable, at most ECHO_CHARS characters."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in value[:ECHO_CHARS])
    return repr(shown + ("…" if len(value) > ECHO_CHARS else ""))


def name(value: str, what: str) -> None:
    """An id or name a client sends (avatar id, voice): at most MAX_NAME_CHARS printable characters."""
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInput(f"{what} is {len(value)} characters long; the limit is {MAX_NAME_CHARS}.")
    if not value.isprintable():
        raise InvalidInput(f"{what} holds control characters.")


def language(value: str, served: Sequence[str]) -> None:
    """Empty (detect), or a tag of one of the served languages."""
    if not value:
        return
    if len(value) > MAX_LANGUAGE_CHARS:
        raise InvalidInput(
            f"The language tag is {len(value)} characters long; a tag such as 'en' or 'uk-UA' has at most "
            f"{MAX_LANGUAGE_CHARS}. Served languages: {languages.describe(served)}."
        )
    if not _LANGUAGE_TAG.fullmatch(value):
        raise InvalidInput(
            f"{echo(value)} is not a language code such as 'en' or 'uk'; "
            f"served languages: {languages.describe(served)}."
        )
    if value.lower().split("-")[0] not in served:
        raise InvalidInput(
            f"The language {echo(value)} is not served here; served languages: {languages.describe(served)} "
            "(or leave it empty to detect)."
        )


def session_id(value: str) -> None:
    if value and not _SESSION_ID.fullmatch(value):
        raise InvalidInput("session_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'.")


def avatar(avatars: dict[str, Avatar], avatar_id: str, default: str) -> Avatar:
    name(avatar_id, "avatar_id")
    found = avatars.get(avatar_id or default)
    if found is None:
        raise InvalidInput(f"Unknown avatar {echo(avatar_id)}; known avatars: {', '.join(sorted(avatars))}.")
    return found


def common(*, language: str, session_id: str, voice: str, tts_engines: Collection[str], served: Sequence[str]) -> None:
    """What Interact requests and Converse configs share: language tag (one of the served languages),
    session id, voice. Checked before any engine runs."""
    _language(language, served)
    _session_id(session_id)
    name(voice, "voice")
    if voice and voice.split(":", 1)[0] not in tts_engines:
        raise InvalidInput(f"Unknown voice {echo(voice)}; GetCapabilities lists the voices.")


_language = language
_session_id = session_id


def text(value: str, settings: Settings) -> str:
    """A typed turn's text, cleaned (see `clean_text`) and stripped; refused when nothing is left or over the cap."""
    cleaned = clean_text(value).strip()
    if not cleaned:
        raise InvalidInput("The text is empty (after removing control and invisible characters).")
    if len(cleaned) > settings.max_text_chars:
        raise TooLarge(f"The text has {len(cleaned)} characters; the limit is {settings.max_text_chars}.")
    return cleaned


# Kept of the control characters: tab and newline. Line and paragraph separators become newlines.
_KEEP = frozenset("\t\n")
_NEWLINES = {"\r": "\n", "\u2028": "\n", "\u2029": "\n"}
# Control (Cc), format (Cf: zero-width space/joiners, word joiner, BOM, bidi marks, soft hyphen) and lone
# surrogates (Cs: a JSON string may carry one; it cannot be encoded as UTF-8).
_DROPPED = frozenset({"Cc", "Cf", "Cs"})


def clean_text(value: str) -> str:
    """NFC-normalised, without control, format (zero-width) and surrogate code points."""
    value = "".join(_NEWLINES.get(ch, ch) for ch in value) if any(ch in value for ch in _NEWLINES) else value
    kept = "".join(ch for ch in value if ch in _KEEP or unicodedata.category(ch) not in _DROPPED)
    return unicodedata.normalize("NFC", kept)


def audio_bytes(size: int, settings: Settings) -> None:
    if size > settings.max_audio_bytes:
        raise TooLarge(f"The audio is {size / 1e6:.1f} MB; the limit is {settings.max_audio_bytes / 1e6:.1f} MB.")


def text_language(value: str, served: Sequence[str], default: str) -> str:
    """A typed turn's language when none is given, by its letters (Cyrillic: Ukrainian, unless Russian's own
    letters say otherwise; CJK, Arabic, ...); Latin letters say nothing: `default`. May be one not served."""
    return languages.text_language(value, served, default)
