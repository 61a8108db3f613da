"""Coqui XTTS v2 (coqui-tts) on CUDA: streaming inference, a speaker reference per voice (voice cloning).

XTTS gives no phoneme timings, so its speech is lip-synced by the audio-driven animation path. It has
no Ukrainian: turns in languages it lacks go to the configured fallback voice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import Speech

LANGUAGES = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "ja", "hu", "ko", "hi",
)  # fmt: skip
MODEL_FILES = ("config.json", "model.pth", "vocab.json")
SAMPLE_RATE = 24000


class XttsModel(Protocol):
    def get_conditioning_latents(self, audio_path: list[str]) -> tuple[Any, Any]: ...

    def inference_stream(
        self, text: str, language: str, gpt_cond_latent: Any, speaker_embedding: Any
    ) -> Iterable[Any]: ...


def check_model_dir(model_dir: Path) -> None:
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"XTTS v2 model files missing in {model_dir}: {', '.join(missing)}")


def load_xtts(model_dir: Path, device: str) -> XttsModel:  # pragma: no cover - needs coqui-tts and a GPU
    """The real loader: coqui-tts' Xtts from a local checkpoint folder."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("XTTS is set to run on CUDA but no GPU is visible")
    config = XttsConfig()
    config.load_json(str(model_dir / "config.json"))
    model = Xtts.init_from_config(config)
    model.load_checkpoint(config, checkpoint_dir=str(model_dir), use_deepspeed=False)
    model.to(device)
    model.eval()
    return model  # type: ignore[no-any-return]


def _to_numpy(chunk: Any) -> npt.NDArray[np.float32]:
    if hasattr(chunk, "detach"):
        chunk = chunk.detach().cpu().numpy()
    return np.asarray(chunk, dtype=np.float32).reshape(-1)


class XttsTTS:
    name = "xtts"

    def __init__(
        self,
        model_dir: Path,
        *,
        speakers: dict[str, Path],
        device: str = "cuda",
        loader: Callable[[Path, str], XttsModel] = load_xtts,
    ) -> None:
        check_model_dir(model_dir)
        if not speakers:
            raise ValueError("XTTS needs at least one speaker reference wav (AVATAR_XTTS_SPEAKER_WAV)")
        for name, wav in speakers.items():
            if not wav.is_file():
                raise FileNotFoundError(f"XTTS speaker reference for {name!r} not found: {wav}")
        self._model = loader(model_dir, device)
        self._speakers = speakers
        self._latents: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self.capabilities = TtsCapabilities(
            phoneme_timings=False,
            voices=tuple(VoiceSpec(id=f"xtts:{name}", languages=LANGUAGES) for name in speakers),
        )

    def _conditioning(self, speaker: str) -> tuple[Any, Any]:
        if speaker not in self._latents:  # computed once per reference voice
            self._latents[speaker] = self._model.get_conditioning_latents(audio_path=[str(self._speakers[speaker])])
        return self._latents[speaker]

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        speaker = voice.removeprefix("xtts:") or next(iter(self._speakers))
        if speaker not in self._speakers:
            raise ValueError(f"no XTTS speaker {speaker!r}")
        lang = language.lower()
        lang = "zh-cn" if lang.startswith("zh") else lang.split("-")[0]
        if lang not in LANGUAGES:
            raise ValueError(f"XTTS v2 does not speak {language!r}")
        with self._lock:
            latent, embedding = self._conditioning(speaker)
            chunks = [_to_numpy(c) for c in self._model.inference_stream(text, lang, latent, embedding)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return Speech(samples=np.clip(samples, -1, 1).astype(np.float32), sample_rate=SAMPLE_RATE, phonemes=None)
