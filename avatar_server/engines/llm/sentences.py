"""Where a sentence ends: the one rule behind reply shaping, the streaming piece splitter and the reply limits.

A sentence ends at `.`, `!`, `?` or `…` (closing quotes and brackets stay with it) followed by a space and a
word that does not begin in lower case, or at `。！？`. A full stop does not end a sentence after

- a title or a word that always takes something after it: "Mr. Smith", "Dr.", "St.", "Prof.", "e.g.",
  "i.e.", "вул. Хрещатик", "ім. Т. Г. Шевченка", "див.", "напр.", "с. Моринці", "т. д." ("т." part);
- an initial: "J. R. R. Tolkien", "Grace M. Hopper", "Т. Г. Шевченко" (a lone capital letter, not "I");
- "U.S." and the like before a capitalised word ("the U.S. Navy"); at the end of the text it ends one;
- "No.", "p.", "Fig.", "с.", "стор." before a number; a list's number ("1. Open it.");
- "р.", "ст.", "рр." unless a number comes before them ("1906 р. Вона…" ends one; "р. Дніпро" does not).

"etc.", "a.m.", "Jr.", "т. д.", "т. п.", "грн." and the like end a sentence before a capitalised word and not
before a lower-case one, as every word does; decimals ("3.14") have no space after the point. The rule
needs the next word's first letter: a streaming caller holds "...neighbor, Mr." until it sees " Smith".

Why not a library: pysbd (the usual rule-based splitter) has no Ukrainian (its Russian rules split after
"ім.", "вул.", "див.", "напр."), is a whole-text segmenter that cannot tell whether a trailing "Mr." ends the
text, has had no release since 2021 and costs ~0.5 ms a call; this is one regex pass over a sentence.
"""

from __future__ import annotations

import re

_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«(["
# A run of terminators with its closers, then a space and the next visible character; or a CJK terminator.
_CANDIDATE = re.compile(
    r"(?P<mark>[.!?…]+)[" + re.escape(_CLOSERS) + r"]*(?=\s+(?P<next>\S))|[。！？]+[" + re.escape(_CLOSERS) + r"]*"
)

# Words after which a full stop never ends a sentence: something always follows them.
_PREFIXES = frozenset(
    {
        # English titles and Latin abbreviations
        *("mr", "mrs", "ms", "mx", "messrs", "dr", "prof", "st", "mt", "capt", "cpt", "gen", "col", "lt", "sgt"),
        *("cmdr", "adm", "rev", "fr", "hon", "gov", "sen", "rep", "pres", "supt", "mme", "mlle", "vs", "v"),
        *("e.g", "i.e", "cf", "viz", "approx", "incl", "esp", "ca"),
        # Ukrainian: "ім. Шевченка", "вул.", "просп.", "пл.", "м. Київ", "с. Моринці", "смт", "о. Хортиця",
        # "див.", "напр.", "акад.", "проф.", "доц.", "св.", "ген.", "п. Іваненко", "т. д." / "т. п." / "т. зв.",
        # "гр.", "оз.", "пор." (порівняйте), "англ.", "укр."
        *("ім", "вул", "просп", "пров", "пл", "бульв", "м", "с", "смт", "о", "оз", "див", "напр", "акад", "проф"),
        *("доц", "св", "ген", "п", "т", "т.зв", "гр", "пор", "англ", "укр", "тов", "пан", "пані"),
    }
)
# Before a capitalised word these do not end a sentence ("the U.S. Navy"); at the end of the text they do.
_ATTACHED = frozenset({"u.s", "u.k", "u.n", "u.s.n", "d.c"})
# Before a number: "No. 5", "p. 12", "Fig. 3", "с. 5", "стор. 12", "рис. 2".
_BEFORE_NUMBER = frozenset({"no", "nos", "vol", "fig", "p", "pp", "ch", "art", "sec", "стор", "рис", "табл", "ст"})
# After a number these are words ("1906 р.", "XX ст.", "1941–1945 рр."); otherwise prefixes ("р. Дніпро").
_AFTER_NUMBER = frozenset({"р", "рр", "ст"})
_NUMBER = re.compile(r"^(\d[\d\s–-]*|[IVXLCDM]+)$")


def _word_before(text: str, end: int) -> tuple[str, int]:
    """The word that ends at `end` (opening quotes and brackets stripped) and where it starts."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:end]
    stripped = word.lstrip(_OPENERS)
    return stripped, start + len(word) - len(stripped)


def _is_initial(word: str) -> bool:
    return len(word) == 1 and word.isupper() and word != "I"


def _full_stop_ends(text: str, dot: int, next_char: str | None, sentence_start: int) -> bool:
    """Whether the full stop at `dot` (a lone ".") ends a sentence, given the next visible character
    (None: the end of the text) and where the current sentence began."""
    word, start = _word_before(text, dot)
    lower = word.lower()
    if lower in _PREFIXES and not (lower in ("д", "п") and _word_before(text, start - 1)[0].lower() == "т."):
        return False  # (but "т. д." and "т. п." end like words)
    if _is_initial(word):
        return False
    if lower in _ATTACHED:
        return next_char is None or not next_char.isupper()
    if lower in _BEFORE_NUMBER and next_char is not None and next_char.isdigit():
        return False
    if lower in _AFTER_NUMBER:
        previous, _ = _word_before(text, start - 1) if start > 0 and text[start - 1].isspace() else ("", 0)
        if not _NUMBER.match(previous.rstrip(",")):
            return False
    if word.isdigit():
        before = text[sentence_start:start].rstrip()
        if not before or before.endswith(":"):
            return False  # a list's number: "1. Open the file.", "Two steps: 1. Open it."
    return True


def boundaries(text: str) -> list[int]:
    """Where each complete sentence in `text` ends (the index after its terminator and closers), judged
    only where the next word is visible: the end of the text is never among them (see `ends_sentence`)."""
    cuts: list[int] = []
    start = 0
    for m in _CANDIDATE.finditer(text):
        mark, next_char = m.group("mark"), m.group("next")
        if mark is not None:  # Western terminators: decided by the next word
            first = next_char if next_char not in _OPENERS else text[m.end("next") : m.end("next") + 1] or next_char
            if first.islower():
                continue
            if mark == "." and not _full_stop_ends(text, m.start("mark"), first, start):
                continue
        cuts.append(m.end())
        start = m.end()
    return cuts


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, whitespace-normalised; the last one may be unfinished (`ends_sentence`)."""
    out, start = [], 0
    for cut in [*boundaries(text), len(text)]:
        piece = " ".join(text[start:cut].split())
        if piece:
            out.append(piece)
        start = cut
    return out


def ends_sentence(text: str, *, more_may_follow: bool = False) -> bool:
    """Whether `text` ends with a finished sentence ("...neighbor, Mr." does not). With `more_may_follow`
    (a stream that may go on) a number's full stop is not trusted: "3." may become "3.14"."""
    body = text.rstrip().rstrip(_CLOSERS)
    if not body:
        return False
    if body.endswith(("!", "?", "…", "。", "！", "？")):
        return True
    if not body.endswith("."):
        return False
    if body.endswith(".."):
        return True
    cuts = boundaries(body)
    start = cuts[-1] if cuts else 0
    while start < len(body) and body[start].isspace():
        start += 1
    dot = len(body) - 1
    if more_may_follow and body[dot - 1 : dot].isdigit():
        return False
    return _full_stop_ends(body, dot, None, start)
