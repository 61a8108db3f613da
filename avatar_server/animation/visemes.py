"""Phonemes (IPA) -> Oculus visemes -> ARKit blendshapes.

The 15 Oculus visemes are the common lip-sync vocabulary (Ready Player Me / TalkingHead avatars carry them
as morph targets); ARKit blendshapes drive any face rigged for Apple's 52 shapes.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from avatar_server.values import ARKIT_NAMES, VISEMES

SIL = VISEMES.index("sil")

_CONSONANTS: dict[str, str] = {}
for _chars, _viseme in (
    ("pbmɱ", "PP"),
    ("fvβʋɸ", "FF"),
    ("θð", "TH"),
    ("tdɾʈɖ", "DD"),
    ("kgɡŋxɣqɢχhɦʔc", "kk"),
    ("ʃʒɕʑçʝ", "CH"),
    ("szʂʐ", "SS"),
    ("nlɲɫɭʎɳ", "nn"),
    ("rɹɻʁʀɽ", "RR"),
    ("j", "I"),
    ("wɥ", "U"),
):
    for _c in _chars:
        _CONSONANTS[_c] = _viseme
_VOWELS: dict[str, str] = {}
for _chars, _viseme in (
    ("aɑæɐʌäɶ", "aa"),
    ("eɛəɜɚɝɘɞ", "E"),
    ("iɪyʏɨ", "I"),
    ("oɔɒøœɵ", "O"),
    ("uʊɯɤʉ", "U"),
):
    for _c in _chars:
        _VOWELS[_c] = _viseme
_AFFRICATES = {"tʃ": "CH", "dʒ": "CH", "ts": "SS", "dz": "SS", "tɕ": "CH", "dʑ": "CH"}
_IGNORED = set("ˈˌːˑ̪̩̯̃ʰʲ.‿|-_ ")


def _clean(ipa: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", ipa) if c not in _IGNORED and not unicodedata.combining(c))


def phoneme_visemes(ipa: str) -> list[str]:
    """The viseme(s) of one IPA phoneme; a diphthong gives two (its start and its glide)."""
    p = _clean(ipa)
    if not p:
        return []
    if p[:2] in _AFFRICATES:
        return [_AFFRICATES[p[:2]]]
    out: list[str] = []
    for c in p:
        v = _VOWELS.get(c) or _CONSONANTS.get(c)
        if v and (not out or out[-1] != v):
            out.append(v)
    return out[:2] or ["sil"]


# How much each viseme drives each ARKit shape (rows: visemes, columns: ARKIT_NAMES). The jaw is nearly closed
# for the stops (the tongue must reach the palate: t, d, k, g open it less than the close vowels i, u) and
# about as open for u as for i.
_ARKIT_FROM_VISEME = {
    "sil": {},
    "PP": {"mouthClose": 0.6, "mouthPressLeft": 0.5, "mouthPressRight": 0.5, "mouthRollLower": 0.2},
    "FF": {"mouthRollLower": 0.6, "mouthUpperUpLeft": 0.3, "mouthUpperUpRight": 0.3, "jawOpen": 0.08},
    "TH": {"tongueOut": 0.4, "jawOpen": 0.15},
    "DD": {"jawOpen": 0.1, "mouthStretchLeft": 0.1, "mouthStretchRight": 0.1},
    "kk": {"jawOpen": 0.12, "mouthStretchLeft": 0.15, "mouthStretchRight": 0.15},
    "CH": {"mouthFunnel": 0.5, "jawOpen": 0.15, "mouthPucker": 0.2},
    "SS": {
        "mouthStretchLeft": 0.35,
        "mouthStretchRight": 0.35,
        "jawOpen": 0.08,
        "mouthSmileLeft": 0.15,
        "mouthSmileRight": 0.15,
    },
    "nn": {"jawOpen": 0.15, "mouthStretchLeft": 0.1, "mouthStretchRight": 0.1},
    "RR": {"mouthFunnel": 0.3, "mouthPucker": 0.25, "jawOpen": 0.15},
    "aa": {"jawOpen": 0.7, "mouthLowerDownLeft": 0.4, "mouthLowerDownRight": 0.4},
    "E": {
        "jawOpen": 0.4,
        "mouthStretchLeft": 0.35,
        "mouthStretchRight": 0.35,
        "mouthSmileLeft": 0.2,
        "mouthSmileRight": 0.2,
    },
    "I": {
        "jawOpen": 0.2,
        "mouthSmileLeft": 0.45,
        "mouthSmileRight": 0.45,
        "mouthStretchLeft": 0.3,
        "mouthStretchRight": 0.3,
    },
    "O": {"jawOpen": 0.45, "mouthFunnel": 0.6, "mouthPucker": 0.3},
    "U": {"jawOpen": 0.2, "mouthPucker": 0.8, "mouthFunnel": 0.4},
}
VISEME_TO_ARKIT = np.zeros((len(VISEMES), len(ARKIT_NAMES)), dtype=np.float32)
for _v, _shapes in _ARKIT_FROM_VISEME.items():
    for _name, _w in _shapes.items():
        VISEME_TO_ARKIT[VISEMES.index(_v), ARKIT_NAMES.index(_name)] = _w
