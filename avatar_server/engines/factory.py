"""Builds engines from settings by name; each backend's heavy imports stay inside its module."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable

from avatar_server import models
from avatar_server.engines.animator.base import Animator
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.engines.llm.base import ChatModel
from avatar_server.engines.stt.base import SpeechToText
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.engines.turn_model import SmartTurnModel
from avatar_server.personas import Avatar
from avatar_server.settings import Settings


class EngineConfigError(RuntimeError):
    """A selected engine cannot be built (unknown name, missing library or model)."""


log = logging.getLogger(__name__)


def build_stt(settings: Settings) -> SpeechToText:
    if settings.stt_engine == "faster-whisper":
        from avatar_server.engines.stt.faster_whisper import FasterWhisperSTT

        device = settings.whisper_device
        if device.startswith("cuda"):
            import ctranslate2

            if ctranslate2.get_cuda_device_count() == 0:
                raise EngineConfigError("AVATAR_WHISPER_DEVICE is cuda but CTranslate2 sees no CUDA GPU")
        if settings.whisper_model == "base" and device == "cpu":
            path = str(models.whisper_base(settings.models_dir))
        else:
            folder = settings.models_dir / f"whisper-{settings.whisper_model}"
            if not (folder / "model.bin").is_file():
                raise EngineConfigError(
                    f"Whisper model {settings.whisper_model!r} is not in {folder} (no model hub is reached "
                    "at run time: put a CTranslate2 conversion there)"
                )
            path = str(folder)
        compute = settings.whisper_compute_type or ("float16" if device.startswith("cuda") else "int8")
        return FasterWhisperSTT(
            path,
            device=device,
            compute_type=compute,
            cpu_threads=settings.threads,
            beam_size=settings.whisper_beam_size,
            model_label=f"whisper-{settings.whisper_model}",
            encoder_window_seconds=settings.whisper_encoder_window_seconds,
            languages=settings.languages,
            min_language_probability=settings.language_min_probability,
        )
    if settings.stt_engine == "openai":
        from avatar_server.engines.stt.openai import OpenAITranscriptionSTT

        _require(settings.openai_api_key.get_secret_value(), "AVATAR_OPENAI_API_KEY", "the openai STT engine")
        return OpenAITranscriptionSTT(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_stt_model,
            timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
            languages=settings.languages,
        )
    raise EngineConfigError(f"unknown STT engine {settings.stt_engine!r} (known: faster-whisper, openai)")


def build_llm(settings: Settings) -> ChatModel:
    if settings.llm_engine == "llama-cpp":
        from avatar_server.engines.llm.llama_cpp import LlamaCppChat

        path = settings.llm_model_path or models.bundled_llm(settings.llm_bundled, settings.models_dir)
        if not path.is_file():
            raise EngineConfigError(f"LLM model file {path} does not exist")
        return LlamaCppChat(
            path,
            context_tokens=settings.llm_context_tokens,
            threads=settings.llm_threads or settings.threads,
            seed=settings.llm_seed,
        )
    if settings.llm_engine == "openai-compatible":
        from avatar_server.engines.llm.openai_compatible import OpenAICompatibleChat

        _require(settings.llm_model, "AVATAR_LLM_MODEL", "the openai-compatible LLM engine")
        return OpenAICompatibleChat(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
            seed=settings.llm_seed,
        )
    raise EngineConfigError(f"unknown LLM engine {settings.llm_engine!r} (known: llama-cpp, openai-compatible)")


def build_live_llms(settings: Settings) -> tuple[ChatModel, ...]:
    """llama.cpp contexts for live turns (the weights are mmapped once: each costs its KV cache); HTTP
    backends serve concurrent requests themselves and need none."""
    if settings.llm_engine == "llama-cpp":
        return tuple(build_llm(settings) for _ in range(settings.llm_live_contexts))
    return ()


# Engines that run on this machine's CPU from files installed with the project: nothing to configure.
EMBEDDED_TTS = ("piper", "espeak", "festival")


def build_tts_engines(settings: Settings, avatar_voices: Iterable[str]) -> dict[str, TextToSpeech]:
    """The primary and fallback engines, and, when the primary is embedded, the embedded engines that
    the avatars' own voices name (so each avatar speaks with its voice). With a GPU or cloud primary,
    that engine speaks for every avatar."""
    engines = {
        name: build_tts(name, settings) for name in dict.fromkeys([settings.tts_engine, settings.fallback_tts_engine])
    }
    if settings.tts_engine not in EMBEDDED_TTS:
        return engines
    for name in dict.fromkeys(v.split(":", 1)[0] for v in avatar_voices):
        if name in EMBEDDED_TTS and name not in engines:
            try:
                engines[name] = build_tts(name, settings)
            except EngineConfigError as exc:  # the server stays up: the primary engine speaks instead
                log.warning(
                    "an avatar's voice engine %r is not available (%s); %r speaks instead",
                    name,
                    exc,
                    settings.tts_engine,
                )
    return engines


def build_tts(name: str, settings: Settings | None = None) -> TextToSpeech:
    settings = settings or Settings()
    if name == "piper":
        from avatar_server.engines.tts.piper import PiperTTS

        return PiperTTS(models.piper_joe(settings.models_dir))
    if name == "espeak":
        from avatar_server.engines.tts.espeak import EspeakTTS

        return EspeakTTS()
    if name == "festival":
        from avatar_server.engines.tts.festival import FestivalError, FestivalTTS

        try:
            return FestivalTTS(timeout=settings.tts_timeout_seconds)
        except FestivalError as exc:
            raise EngineConfigError(str(exc)) from exc
    if name == "elevenlabs":
        from avatar_server.engines.tts.elevenlabs import ElevenLabsTTS

        _require(
            settings.elevenlabs_api_key.get_secret_value(), "AVATAR_ELEVENLABS_API_KEY", "the elevenlabs TTS engine"
        )
        _require(settings.elevenlabs_voice_id, "AVATAR_ELEVENLABS_VOICE_ID", "the elevenlabs TTS engine")
        return ElevenLabsTTS(
            api_key=settings.elevenlabs_api_key.get_secret_value(),
            voice_id=settings.elevenlabs_voice_id,
            model_id=settings.elevenlabs_model_id,
            base_url=settings.elevenlabs_base_url,
            timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
        )
    if name == "xtts":
        if importlib.util.find_spec("TTS") is None:
            raise EngineConfigError("the xtts engine needs coqui-tts: pip install '.[gpu]'")
        from avatar_server.engines.tts.xtts import XttsTTS

        _require(str(settings.xtts_speaker_wav or ""), "AVATAR_XTTS_SPEAKER_WAV", "the xtts TTS engine")
        assert settings.xtts_speaker_wav is not None
        try:
            return XttsTTS(
                settings.xtts_model_dir or settings.models_dir / "xtts_v2",
                speakers={"default": settings.xtts_speaker_wav},
                device=settings.xtts_device,
            )
        except (FileNotFoundError, RuntimeError) as exc:
            raise EngineConfigError(str(exc)) from exc
    raise EngineConfigError(f"unknown TTS engine {name!r} (known: piper, espeak, festival, elevenlabs, xtts)")


def build_turn_model(settings: Settings) -> SmartTurnModel | None:
    """The end-of-turn model for live conversation, or None when `turn_model` is off."""
    if not settings.turn_model:
        return None
    try:
        return SmartTurnModel(models.smart_turn(settings.models_dir))
    except models.ModelError as exc:
        raise EngineConfigError(
            f"the end-of-turn model is missing ({exc}): run `make setup`, or `pip install --no-deps "
            "pipecat-ai==1.14.0`, or set AVATAR_TURN_MODEL=false for a fixed end-of-turn silence"
        ) from exc


def build_animator(settings: Settings, avatars: dict[str, Avatar]) -> Animator:
    portrait = PortraitAnimator(avatars, video_fps=settings.video_fps, video_size=settings.video_size)
    if settings.animator == "portrait":
        return portrait
    if settings.animator == "sadtalker":
        from avatar_server.engines.animator.sadtalker import SadTalkerAnimator, SadTalkerOptions, SadTalkerRunner

        options = SadTalkerOptions(
            repo_dir=settings.sadtalker_dir,
            checkpoint_dir=settings.sadtalker_checkpoint_dir or settings.models_dir / "sadtalker",
            python=settings.sadtalker_python,
            size=settings.sadtalker_size,
            preprocess=settings.sadtalker_preprocess,
            still=settings.sadtalker_still,
            enhancer=settings.sadtalker_enhancer,
            timeout_seconds=settings.sadtalker_timeout_seconds,
        )
        try:
            return SadTalkerAnimator(portrait, SadTalkerRunner(options), avatars)
        except (FileNotFoundError, ValueError) as exc:
            raise EngineConfigError(str(exc)) from exc
    raise EngineConfigError(f"unknown animator {settings.animator!r} (known: portrait, sadtalker)")


def _require(value: str, variable: str, what: str) -> None:
    if not value:
        raise EngineConfigError(f"{what} needs {variable}")
