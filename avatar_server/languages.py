"""Languages: their names, the few lines the avatar says about them, and a typed text's language by its script.

The server serves a set of languages (`Settings.languages`, ISO 639-1 codes); everything here is plain data
and pure functions, so the core and the persona prompt say the same thing.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence

# English names, and the Ukrainian adverb ("speak *Ukrainian*" = "розмовляти *українською*").
_NAMES: dict[str, tuple[str, str]] = {
    "en": ("English", "англійською"),
    "uk": ("Ukrainian", "українською"),
    "ru": ("Russian", "російською"),
    "de": ("German", "німецькою"),
    "fr": ("French", "французькою"),
    "es": ("Spanish", "іспанською"),
    "it": ("Italian", "італійською"),
    "pt": ("Portuguese", "португальською"),
    "pl": ("Polish", "польською"),
    "nl": ("Dutch", "нідерландською"),
    "cs": ("Czech", "чеською"),
    "sk": ("Slovak", "словацькою"),
    "be": ("Belarusian", "білоруською"),
    "bg": ("Bulgarian", "болгарською"),
    "ro": ("Romanian", "румунською"),
    "hu": ("Hungarian", "угорською"),
    "el": ("Greek", "грецькою"),
    "tr": ("Turkish", "турецькою"),
    "sv": ("Swedish", "шведською"),
    "da": ("Danish", "данською"),
    "no": ("Norwegian", "норвезькою"),
    "fi": ("Finnish", "фінською"),
    "ka": ("Georgian", "грузинською"),
    "hy": ("Armenian", "вірменською"),
    "he": ("Hebrew", "івритом"),
    "ar": ("Arabic", "арабською"),
    "fa": ("Persian", "перською"),
    "hi": ("Hindi", "гінді"),
    "th": ("Thai", "тайською"),
    "zh": ("Chinese", "китайською"),
    "ja": ("Japanese", "японською"),
    "ko": ("Korean", "корейською"),
}


def name(code: str) -> str:
    """The language's English name ("uk" → "Ukrainian"); the code itself when it is not listed."""
    return _NAMES.get(_base(code), (code, code))[0]


def describe(codes: Sequence[str]) -> str:
    """ "en (English), uk (Ukrainian)": for messages a person reads."""
    return ", ".join(f"{c} ({name(c)})" for c in codes)


def only_speaks(reply_language: str, served: Sequence[str]) -> str:
    """What the avatar says, in `reply_language`, when it was spoken to in a language it does not speak."""
    if _base(reply_language) == "uk":
        return f"Вибачте, я розмовляю лише {_join([_NAMES.get(c, (c, c))[1] for c in served], 'та')}."
    return f"Sorry, I only speak {_join([name(c) for c in served], 'and')}."


def answer_in(reply_language: str) -> str:
    """The persona prompt's instruction to answer in a language. In English only: Qwen2.5 0.5B said the
    same instruction in Ukrainian back as its reply ("Завжди відповідай українською мовою.")."""
    return f"Always answer in {name(reply_language)}."


def no_answer(reply_language: str) -> str:
    """Said when the model wrote nothing usable."""
    if _base(reply_language) == "uk":
        return "Вибачте, мені нема що на це відповісти."
    return "Sorry, I have no answer to that."


# Letters of a script → the language a typed text in it is taken to be. Latin says nothing (many languages
# share it): such a text is taken to be in the avatar's language.
_SCRIPTS = {
    "CYRILLIC": "uk",
    "GREEK": "el",
    "ARMENIAN": "hy",
    "GEORGIAN": "ka",
    "HEBREW": "he",
    "ARABIC": "ar",
    "DEVANAGARI": "hi",
    "THAI": "th",
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
}
_UKRAINIAN_ONLY = frozenset("іїєґІЇЄҐ")
_RUSSIAN_ONLY = frozenset("ыэъёЫЭЪЁ")


def text_language(text: str, served: Sequence[str], default: str) -> str:
    """A typed text's language by its letters: the script most of its letters are in, else `default`.

    Cyrillic is Ukrainian where it has Ukrainian letters (і, ї, є, ґ) or none of Russian's own (ы, э, ъ, ё),
    Russian where it has only those (unless Ukrainian is not served and Russian is); kana is Japanese, Han
    alone Chinese. The result may be a language not served: the caller decides what to do with it.
    """
    scripts: Counter[str] = Counter()
    letters = set()
    for ch in text[:4000]:
        if not ch.isalpha():
            continue
        letters.add(ch)
        script = unicodedata.name(ch, "").split(" ", 1)[0]
        scripts[script if script in _SCRIPTS else "OTHER"] += 1
    if not scripts:
        return default
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:  # Japanese writes kanji (Han) and kana together
        scripts["KATAKANA"] += scripts.pop("HIRAGANA", 0) + scripts.pop("CJK", 0)
    script, count = scripts.most_common(1)[0]
    if script == "OTHER" or count * 2 < sum(scripts.values()):
        return default
    language = _SCRIPTS[script]
    russian = letters & _RUSSIAN_ONLY or ("uk" not in served and "ru" in served)
    if language == "uk" and russian and not letters & _UKRAINIAN_ONLY:
        return "ru"
    return language


def _base(code: str) -> str:
    return code.lower().split("-")[0]


def _join(words: list[str], conjunction: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"
