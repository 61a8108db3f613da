"""Letters → IPA-like symbols, for voices that time characters rather than phonemes (ElevenLabs)."""

from __future__ import annotations

from avatar_server.values import PhonemeTiming

_LATIN = {
    "a": "a", "e": "e", "i": "i", "o": "o", "u": "u", "y": "j", "b": "b", "c": "k", "d": "d", "f": "f", "g": "ɡ",
    "h": "h", "j": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "p": "p", "q": "k", "r": "ɹ", "s": "s", "t": "t",
    "v": "v", "w": "w", "x": "ks", "z": "z",
}  # fmt: skip
_CYRILLIC = {
    "а": "a", "е": "e", "и": "ɪ", "і": "i", "о": "o", "у": "u", "ю": "u", "я": "a", "є": "e", "ї": "i", "ы": "ɨ",
    "э": "e", "ё": "o", "б": "b", "в": "ʋ", "г": "ɦ", "ґ": "ɡ", "д": "d", "ж": "ʒ", "з": "z", "й": "j", "к": "k",
    "л": "l", "м": "m", "н": "n", "п": "p", "р": "r", "с": "s", "т": "t", "ф": "f", "х": "x", "ц": "ts", "ч": "tʃ",
    "ш": "ʃ", "щ": "ʃ",
}  # fmt: skip


def character_timings(chars: list[str], starts: list[float], ends: list[float]) -> list[PhonemeTiming]:
    """Per-character times → phoneme-like timings (digraphs like "th", "sh", "ch" become one sound)."""
    out: list[PhonemeTiming] = []
    k = 0
    while k < len(chars):
        c = chars[k].lower()
        pair = c + (chars[k + 1].lower() if k + 1 < len(chars) else "")
        if pair in ("th", "sh", "ch", "ph"):
            ipa = {"th": "θ", "sh": "ʃ", "ch": "tʃ", "ph": "f"}[pair]
            out.append(PhonemeTiming(ipa, starts[k], ends[k + 1]))
            k += 2
            continue
        ipa = _LATIN.get(c) or _CYRILLIC.get(c, "")
        if ipa and ends[k] > starts[k]:
            out.append(PhonemeTiming(ipa, starts[k], ends[k]))
        k += 1
    return out
