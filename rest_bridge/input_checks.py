"""Cheap checks on the names and tags a client sends, shared by the REST form and the WebSocket config.

The server checks them too; the bridge refuses the plainly wrong ones before they cost a gRPC call.
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 128
MAX_LANGUAGE_CHARS = 35
# A BCP 47-like tag (en, uk, pt-BR, zh-Hant-TW); the server decides whether it knows the language.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


class InputError(ValueError):
    """A field a client sent is unusable; the message says which and why, in plain words."""


def check_unicode(field: str, value: str) -> str:
    """Refuse a string protobuf cannot encode (a lone surrogate such as JSON's "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{field} is not valid Unicode text.") from None
    return value


def check_id(field: str, value: str) -> str:
    """A session id, avatar id or voice name: at most 128 characters of valid Unicode."""
    if len(value) > MAX_ID_CHARS:
        raise InputError(f"{field} is longer than {MAX_ID_CHARS} characters.")
    return check_unicode(field, value)


def check_language(value: str) -> str:
    """Empty (detect) or a language tag such as en or pt-BR, at most 35 characters."""
    if not value:
        return value
    if len(value) > MAX_LANGUAGE_CHARS or not _LANGUAGE_TAG.fullmatch(value):
        raise InputError("language must be a language tag such as en, uk or pt-BR (at most 35 characters).")
    return value
