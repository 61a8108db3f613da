"""faster-whisper (CTranslate2 Whisper): the embedded CPU engine and the CUDA backend alike."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from avatar_server.engines.stt.base import SttCapabilities, choose_language
from avatar_server.values import Transcript

_SPEECH_PAD = 300  # ms of audio kept either side of the speech Silero VAD hears


class FasterWhisperSTT:
    """Whisper through faster-whisper. `model` is a folder or a size name the library knows."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        model_label: str | None = None,
        encoder_window_seconds: float = 6.0,
        languages: tuple[str, ...] = (),
        min_language_probability: float = 0.0,
    ) -> None:
        """`languages`: the ones speech is heard as (empty: any Whisper knows); a detection whose best of them
        is less probable than `min_language_probability` takes the caller's fallback."""
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self._model = WhisperModel(
            model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=True
        )
        self._beam_size = beam_size
        self._window = self._model.feature_extractor.n_samples  # 30 s at 16 kHz
        self._min_window_frames = int(encoder_window_seconds * 100)  # 100 mel frames per second
        self._lock = threading.Lock()  # one decode at a time: the cores are the limit anyway
        unknown = [lang for lang in languages if lang not in _LANGUAGE_CODES]
        if unknown:
            raise ValueError(f"Whisper knows no language {', '.join(unknown)} (AVATAR_LANGUAGES)")
        self._languages = languages
        self._min_probability = min_language_probability
        self.capabilities = SttCapabilities(
            streaming=False,
            sample_rate=16000,
            languages=languages or tuple(sorted(_LANGUAGE_CODES)),
            model=model_label or str(model),
        )

    def transcribe(
        self, samples: npt.NDArray[np.float32], *, language: str | None, fallback: str | None = None
    ) -> Transcript:
        with self._lock:
            if len(samples) <= self._window:
                return self._transcribe_window(samples, language, fallback)
            return self._transcribe_long(samples, language, fallback)

    def _speech(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """The audio from the first to the last speech that Silero VAD hears (padded), None if it hears none.

        Whisper writes words into silence and noise ("1.5kg", "diw, tiw, tiw"), the more so over a short
        window: audio without speech is never decoded, and leading/trailing silence is not encoded.
        """
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        spans = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500, speech_pad_ms=_SPEECH_PAD))
        if not spans:
            return None
        return samples[spans[0]["start"] : spans[-1]["end"]]

    def _transcribe_window(
        self, samples: npt.NDArray[np.float32], language: str | None, fallback: str | None
    ) -> Transcript:
        """Up to 30 s, encoded ONCE for both language detection and decoding, over a short window.

        faster-whisper's transcribe() runs the encoder twice when it must also detect the language, and
        always over a 30 s window. CTranslate2's encoder also takes shorter windows (like whisper.cpp's
        audio_ctx): over 6 s Whisper base takes 0.28-0.35 s per short clip on 2 cores, 1.4-1.5 s over 30 s
        (bench/bench_engines.py), with the same transcripts on our clips but one word. A decode that looks
        degenerate (a repetition loop, far too many tokens for the audio) is decoded again without repeats,
        then over the full window.
        """
        import math

        from faster_whisper.audio import pad_or_trim

        model = self._model
        speech = self._speech(samples)
        if speech is None:
            return Transcript(text="", language=language or fallback or "", language_probability=0.0)
        samples = speech
        features = model.feature_extractor(samples)
        n = features.shape[-1]
        full = model.feature_extractor.nb_max_frames
        frames = min(full, max(self._min_window_frames, math.ceil((n + 100) / 100) * 100))
        encoder_output = model.encode(pad_or_trim(features[:, :frames], frames))
        language, probability = self._language(encoder_output, language, fallback)
        seconds = len(samples) / 16000
        text, tokens = self._generate(encoder_output, language, seconds)
        if frames < full and _degenerate(text, tokens, seconds):
            # Short clips over a short window sometimes loop ("Front Front Front ..."): decoding the same
            # encoder output again without repeats costs a few ms; the full window is the last resort.
            text, tokens = self._generate(encoder_output, language, seconds, no_repeat_ngram_size=2)
            if _degenerate(text, tokens, seconds):
                encoder_output = model.encode(pad_or_trim(features[:, :full], full))
                text, tokens = self._generate(encoder_output, language, seconds)
        return Transcript(text=text, language=language, language_probability=probability)

    def _language(self, encoder_output: object, language: str | None, fallback: str | None) -> tuple[str, float]:
        """The asked language, else the most probable served one Whisper hears (`fallback` when unsure)."""
        if language:
            return language, 1.0
        # Every language's probability ("<|en|>" tokens), not only the best: the best may not be served.
        detected = self._model.model.detect_language(encoder_output)[0]
        return choose_language(
            ((str(token)[2:-2], p) for token, p in detected),
            self._languages,
            min_probability=self._min_probability,
            fallback=fallback,
        )

    def _generate(self, encoder_output: object, language: str, seconds: float, **options: int) -> tuple[str, int]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.model.generate(
            encoder_output,
            [prompt],
            beam_size=self._beam_size,
            max_length=min(model.max_length, 16 + int(16 * seconds)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            **options,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = str(tokenizer.decode(tokens)).strip()
        avg_logprob = result.scores[0] / max(1, len(tokens) + 1)
        # Whisper's own silence rule: likely no speech and an unsure decode means nothing was said.
        if (result.no_speech_prob > 0.6 and avg_logprob < -1.0) or not any(c.isalnum() for c in text):
            text = ""  # punctuation alone ("...") is what Whisper writes for silence
        return text, len(tokens)

    def _transcribe_long(
        self, samples: npt.NDArray[np.float32], language: str | None, fallback: str | None
    ) -> Transcript:
        """Over 30 s: the language from the first 30 s (one more encoder pass), then faster-whisper's own loop."""
        from faster_whisper.audio import pad_or_trim

        model = self._model
        probability = 1.0
        if not language:
            features = model.feature_extractor(samples[: self._window])
            encoder_output = model.encode(pad_or_trim(features, model.feature_extractor.nb_max_frames))
            language, probability = self._language(encoder_output, None, fallback)
        segments, _ = model.transcribe(
            samples,
            language=language or None,
            beam_size=self._beam_size,
            # One fixed temperature: the fallback ladder made short clips take 11-17 s instead of 1.7 s.
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        text = " ".join(seg.text.strip() for seg in segments).strip()
        return Transcript(text=text, language=language, language_probability=probability)


def _degenerate(text: str, tokens: int, seconds: float) -> bool:
    """A decode stuck in a loop repeats the same few words, or has far more tokens than the audio can hold."""
    words = text.lower().split()
    looping = len(words) >= 6 and len(set(words)) / len(words) < 0.4
    return looping or tokens > 12 * seconds + 12
