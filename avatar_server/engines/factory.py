"""Builds engines from settings by name; each backend's heavy imports stay inside its module."""

from __future__ import annotations

from avatar_server import models
from avatar_server.engines.llm.base import ChatModel
from avatar_server.engines.stt.base import SpeechToText
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.settings import Settings


class EngineConfigError(RuntimeError):
    """A selected engine cannot be built (unknown name, missing library or model)."""


def build_stt(settings: Settings) -> SpeechToText:
    if settings.stt_engine == "faster-whisper":
        from avatar_server.engines.stt.faster_whisper import FasterWhisperSTT

        if settings.whisper_model == "base" and settings.whisper_device == "cpu":
            path = str(models.whisper_base(settings.models_dir))
        else:
            folder = settings.models_dir / f"whisper-{settings.whisper_model}"
            if not (folder / "model.bin").is_file():
                raise EngineConfigError(
                    f"Whisper model {settings.whisper_model!r} is not in {folder} (no model hub is reached "
                    "at run time: put a CTranslate2 conversion there)"
                )
            path = str(folder)
        return FasterWhisperSTT(
            path,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.threads,
            beam_size=settings.whisper_beam_size,
            model_label=f"whisper-{settings.whisper_model}",
            encoder_window_seconds=settings.whisper_encoder_window_seconds,
        )
    raise EngineConfigError(f"unknown STT engine {settings.stt_engine!r} (known: faster-whisper)")


def build_llm(settings: Settings) -> ChatModel:
    if settings.llm_engine == "llama-cpp":
        from avatar_server.engines.llm.llama_cpp import LlamaCppChat

        path = settings.llm_model_path or models.smollm2()
        if not path.is_file():
            raise EngineConfigError(f"LLM model file {path} does not exist")
        return LlamaCppChat(path, context_tokens=settings.llm_context_tokens, threads=settings.threads)
    raise EngineConfigError(f"unknown LLM engine {settings.llm_engine!r} (known: llama-cpp)")


def build_tts(name: str) -> TextToSpeech:
    if name == "piper":
        from avatar_server.engines.tts.piper import PiperTTS

        return PiperTTS(models.piper_joe())
    if name == "espeak":
        from avatar_server.engines.tts.espeak import EspeakTTS

        return EspeakTTS()
    raise EngineConfigError(f"unknown TTS engine {name!r} (known: piper, espeak)")
