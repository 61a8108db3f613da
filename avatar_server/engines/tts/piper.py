"""Piper neural voices (piper-tts, ONNX) with phoneme/audio alignments for lip-sync."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from avatar_server.cooperation import yield_cores
from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import PhonemeTiming, Speech

if TYPE_CHECKING:
    from piper.voice import AudioChunk

# Piper's phoneme ids include markers. Sentence start/end, punctuation and word boundaries are (nearly)
# silent in its audio: pauses. A stress mark stands before the stressed vowel, and the model spends on it
# samples that are that vowel's loudest: they belong to the next sound. Other modifier letters (length ː,
# palatalized ʲ, ...) lengthen or colour the sound before them.
_PAUSES = {"^", "$", "_", " ", ",", ".", "!", "?", ";", ":", "—", "…"}
_STRESS = {"ˈ", "ˌ"}


def _modifies_previous(phoneme: str) -> bool:
    return bool(phoneme) and all(unicodedata.category(c) in ("Lm", "Mn", "Sk") for c in phoneme)


def phoneme_timings(alignments: Iterable[tuple[str, int, int]], offset: int, rate: int) -> list[PhonemeTiming]:
    """Sounds on the audio clock from Piper's alignments: (phoneme, its own samples, the pad's after it).

    Piper counts the pad id that follows every phoneme as part of that phoneme; a pad is the transition
    between its neighbours, so half of it goes to each (else every sound starts and ends half a pad late).
    """
    out: list[PhonemeTiming] = []
    pos, prev_pad = offset, 0
    stressed_from: float | None = None
    last_is_sound = False
    for phoneme, own, pad in alignments:
        start, end = pos - prev_pad / 2, pos + own + pad / 2
        pos, prev_pad = pos + own + pad, pad
        if phoneme in _STRESS:
            stressed_from = start if stressed_from is None else stressed_from
            continue
        if _modifies_previous(phoneme):
            if last_is_sound:
                out[-1] = PhonemeTiming(out[-1].phoneme, out[-1].start, end / rate)
            continue
        if phoneme in _PAUSES or own + pad <= 0:
            stressed_from, last_is_sound = None, False
            continue
        if stressed_from is not None:
            start, stressed_from = stressed_from, None
        out.append(PhonemeTiming(phoneme, max(0, start) / rate, end / rate))
        last_is_sound = True
    return out


class PiperTTS:
    """One Piper voice model. Voice id: "piper:<model stem>"."""

    name = "piper"

    def __init__(self, model_path: Path) -> None:
        from piper import PiperVoice

        self._voice = PiperVoice.load(model_path, include_alignments=True)
        self.sample_rate = int(self._voice.config.sample_rate)
        language = str(self._voice.config.espeak_voice or "en-us")
        self.voice_id = f"piper:{model_path.stem}"
        self._lock = threading.Lock()
        self.capabilities = TtsCapabilities(
            phoneme_timings=True, voices=(VoiceSpec(id=self.voice_id, languages=(language,)),)
        )

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        if voice and voice != self.voice_id:
            raise ValueError(f"Piper voice {voice!r} is not loaded (have {self.voice_id})")
        pieces: list[npt.NDArray[np.int16]] = []
        phonemes: list[PhonemeTiming] | None = []
        offset = 0
        with self._lock:
            for chunk in self._voice.synthesize(text, include_alignments=True):  # a sentence at a time
                yield_cores()
                pcm = chunk.audio_int16_array
                if chunk.phoneme_alignments is None:
                    phonemes = None
                elif phonemes is not None:
                    phonemes.extend(phoneme_timings(self._split_pads(chunk), offset, self.sample_rate))
                pieces.append(pcm)
                offset += len(pcm)
        pcm_all = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        samples = (pcm_all.astype(np.float32) / 32768.0).astype(np.float32)
        return Speech(samples=samples, sample_rate=self.sample_rate, phonemes=phonemes)

    def _split_pads(self, chunk: AudioChunk) -> list[tuple[str, int, int]]:
        """Per alignment: the phoneme, the samples of its own ids and those of the pad id(s) after it."""
        assert chunk.phoneme_alignments is not None
        per_id = chunk.phoneme_id_samples
        n_pad = len(self._voice.config.phoneme_id_map.get("_", []))
        out: list[tuple[str, int, int]] = []
        i = 0
        for align in chunk.phoneme_alignments:
            n_ids, total = len(align.phoneme_ids), int(align.num_samples)
            n_own = n_ids - n_pad if align.phoneme != "$" else n_ids  # the end marker has no pad after it
            if per_id is None or n_own < 0 or i + n_ids > len(per_id):
                out.append((align.phoneme, total, 0))
            else:
                own = int(np.sum(per_id[i : i + n_own]))
                out.append((align.phoneme, own, total - own))
            i += n_ids
        return out
