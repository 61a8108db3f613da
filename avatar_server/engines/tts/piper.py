"""Piper neural voices (piper-tts, ONNX) with phoneme/audio alignments for lip-sync."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_server.cooperation import yield_cores
from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import PhonemeTiming, Speech

# Piper alignments carry markers that are not sounds: sentence start/end, padding, stress.
_SILENT = {"^", "$", "_", " ", "ˈ", "ˌ", "ː", ",", ".", "!", "?", ";", ":", "—", "…"}


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
                    pos = offset
                    for align in chunk.phoneme_alignments:
                        n = int(align.num_samples)
                        if align.phoneme not in _SILENT and n > 0:
                            phonemes.append(
                                PhonemeTiming(align.phoneme, pos / self.sample_rate, (pos + n) / self.sample_rate)
                            )
                        pos += n
                pieces.append(pcm)
                offset += len(pcm)
        pcm_all = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        samples = (pcm_all.astype(np.float32) / 32768.0).astype(np.float32)
        return Speech(samples=samples, sample_rate=self.sample_rate, phonemes=phonemes)
