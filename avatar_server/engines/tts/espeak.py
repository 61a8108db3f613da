"""espeak-ng through libespeak-ng (ctypes), with per-phoneme audio positions for lip-sync.

The library and its data come from the `espeakng-loader` wheel, so nothing is downloaded.
libespeak-ng keeps global state, so one process holds one instance and calls are serialized.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import PhonemeTiming, Speech

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
# Where a bare language has several espeak voices, the one most users expect.
_PREFERRED = {"en": "en-us", "pt": "pt-br", "zh": "cmn"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Capture:
    chunks: list[npt.NDArray[np.int16]]
    events: list[tuple[str, int]]  # (ipa, sample position)


class EspeakTTS:
    """espeak-ng voices for every language it has (100+, Ukrainian included)."""

    name = "espeak"

    def __init__(self, rate_wpm: int = 175) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, espeakng_loader.get_data_path().encode(), options)
        if rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialize")
        self.sample_rate = int(rate)
        self._lock = threading.Lock()
        self._capture: _Capture | None = None
        self._callback = _Callback(self._on_synth)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        self._languages = self._list_languages()
        # Variant voices: a female English voice ("+f3") for avatars that need one.
        variants = [("en-us", "f3")] if "en-us" in self._languages else []
        self.capabilities = TtsCapabilities(
            phoneme_timings=True,
            voices=(
                *(VoiceSpec(id=f"espeak:{lang}", languages=(lang,)) for lang in self._languages),
                *(VoiceSpec(id=f"espeak:{lang}+{v}", languages=(lang,)) for lang, v in variants),
            ),
        )

    def _list_languages(self) -> list[str]:
        voices = self._lib.espeak_ListVoices(None)
        languages: list[str] = []
        i = 0
        while voices[i]:
            raw = voices[i].contents.languages or b""
            # A list of (priority byte, NUL-terminated name), ended by an empty name.
            pos = 0
            while pos < len(raw) and raw[pos] != 0:
                start = pos + 1
                end = raw.find(b"\0", start) if b"\0" in raw[start:] else len(raw)
                languages.append(raw[start:end].decode("ascii", "replace"))
                pos = end + 1
                break  # the first language is the voice's own
            i += 1
        return sorted(set(languages))

    def _on_synth(self, wav: ctypes.Array[ctypes.c_short], n: int, events: ctypes.Array[_Event]) -> int:
        capture = self._capture
        if capture is None:
            return 0
        if n > 0 and wav:
            capture.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                ipa = event.id.string.decode("utf-8", "replace")
                capture.events.append((ipa, int(event.sample)))
            i += 1
        return 0

    def voice_for(self, language: str) -> str | None:
        """The espeak voice id for a language ("uk" -> "espeak:uk"), or None."""
        lang = language.lower()
        for candidate in (lang, _PREFERRED.get(lang, ""), lang.split("-")[0]):
            if candidate in self._languages:
                return f"espeak:{candidate}"
        prefix = lang.split("-")[0]
        for known in self._languages:
            if known.split("-")[0] == prefix:
                return f"espeak:{known}"
        return None

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        name = voice.removeprefix("espeak:") if voice.startswith("espeak:") else None
        if name is None:
            resolved = self.voice_for(language)
            if resolved is None:
                raise ValueError(f"espeak-ng has no voice for language {language!r}")
            name = resolved.removeprefix("espeak:")
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {name!r}")
            self._capture = _Capture(chunks=[], events=[])
            try:
                err = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                capture = self._capture
            finally:
                self._capture = None
        if err != 0:
            raise RuntimeError(f"espeak-ng synthesis failed (error {err})")
        pcm = np.concatenate(capture.chunks) if capture.chunks else np.zeros(0, dtype=np.int16)
        samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        return Speech(
            samples=samples, sample_rate=self.sample_rate, phonemes=_timings(capture.events, len(pcm), self.sample_rate)
        )


def _timings(events: list[tuple[str, int]], total: int, rate: int) -> list[PhonemeTiming]:
    """Phoneme events mark starts; each phoneme lasts until the next one starts."""
    out: list[PhonemeTiming] = []
    for k, (ipa, start) in enumerate(events):
        end = events[k + 1][1] if k + 1 < len(events) else total
        if end > start and ipa.strip():
            out.append(PhonemeTiming(phoneme=ipa, start=start / rate, end=end / rate))
    return out
