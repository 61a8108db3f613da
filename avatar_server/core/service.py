"""The one transport-agnostic core: STT -> LLM (persona, memory) -> TTS -> animation."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass

from avatar_server.animation.animator import Animator
from avatar_server.conversation.playback import PlaybackGuard
from avatar_server.domain import MediaFile, Timings, TurnRequest, TurnResult
from avatar_server.engines.llm.base import ChatMessage, ChatModel
from avatar_server.engines.llm.reply import build_messages, collect_reply
from avatar_server.engines.stt.base import SpeechToText
from avatar_server.engines.tts.base import Speech, TextToSpeech, language_matches
from avatar_server.engines.vad import SileroModel
from avatar_server.errors import AvatarError, EngineFailure, InvalidInput, TooLarge
from avatar_server.media.audio import decode_audio, encode_wav
from avatar_server.memory import ConversationMemory, Exchange
from avatar_server.personas import Avatar
from avatar_server.settings import Settings

log = logging.getLogger("avatar_server.turn")

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_NO_ANSWER = "Sorry, I have no answer to that."


@dataclass(frozen=True)
class Engines:
    stt: SpeechToText
    llm: ChatModel
    tts: dict[str, TextToSpeech]  # by engine name; voice ids are "<engine>:<voice>"
    fallback_tts: str
    animator: Animator
    vad: SileroModel | None = None  # for Converse's endpointing
    primary_tts: str = ""  # speaks when the avatar's own voice is of an engine not loaded


class Pipeline:
    """Runs turns. Blocking engine calls go to worker threads; engines serialize themselves."""

    def __init__(self, settings: Settings, engines: Engines, avatars: dict[str, Avatar]) -> None:
        self.settings = settings
        self.engines = engines
        self.avatars = avatars
        self.memory = ConversationMemory(
            max_turns=settings.memory_turns,
            ttl_seconds=settings.memory_ttl_seconds,
            max_sessions=settings.memory_max_sessions,
        )
        self.active_turns = 0  # live turns generating right now, across sessions
        self.playback = PlaybackGuard()  # live replies that must not run dry
        if settings.default_avatar not in avatars:
            raise ValueError(f"default avatar {settings.default_avatar!r} is not among {sorted(avatars)}")

    def warm_up(self) -> None:
        """One small run of every engine, so the first person's turn does not pay for lazy init."""
        e = self.engines
        avatar = self.avatars[self.settings.default_avatar]
        engine, voice = self.pick_voice(avatar.voice, avatar.language)
        speech = engine.synthesize("Hello, I am ready.", voice=voice, language=avatar.language)
        e.stt.transcribe(
            decode_audio(encode_wav(speech.samples, speech.sample_rate), "audio/wav", max_seconds=10), language=None
        )
        # The persona prompt is evaluated now and stays in llama.cpp's prefix cache: the first turn
        # starts generating in about 0.1 s instead of 1 s.
        messages = build_messages(avatar.system_prompt(avatar.language), [], "Hi")
        for _ in e.llm.stream(messages, max_tokens=2, temperature=0.0):
            pass
        e.animator.animate(avatar.id, speech, "warm-up", want_video=True)

    # -- validation -------------------------------------------------------------------------------

    def avatar(self, avatar_id: str) -> Avatar:
        avatar = self.avatars.get(avatar_id or self.settings.default_avatar)
        if avatar is None:
            known = ", ".join(sorted(self.avatars))
            raise InvalidInput(f"Unknown avatar {avatar_id!r}; known avatars: {known}.")
        return avatar

    def check_common(self, *, language: str, session_id: str, voice: str) -> None:
        if language and not _LANGUAGE_TAG.match(language):
            raise InvalidInput(f"{language!r} is not a language code such as 'en' or 'uk'.")
        if session_id and not _SESSION_ID.match(session_id):
            raise InvalidInput("session_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'.")
        if voice and voice.split(":", 1)[0] not in self.engines.tts:
            raise InvalidInput(f"Unknown voice {voice!r}; GetCapabilities lists the voices.")

    def text_language(self, text: str, avatar: Avatar) -> str:
        """A typed turn's language when none is given: Cyrillic is taken as Ukrainian (the seed's users)."""
        return "uk" if _CYRILLIC.search(text) else avatar.language

    def _validate(self, req: TurnRequest) -> Avatar:
        s = self.settings
        if (req.text is None) == (req.audio is None):
            raise InvalidInput("Send either audio or text (exactly one of them).")
        if req.text is not None:
            if not req.text.strip():
                raise InvalidInput("The text is empty.")
            if len(req.text) > s.max_text_chars:
                raise TooLarge(f"The text has {len(req.text)} characters; the limit is {s.max_text_chars}.")
        if req.audio is not None and len(req.audio.data) > s.max_audio_bytes:
            raise TooLarge(
                f"The audio is {len(req.audio.data) / 1e6:.1f} MB; the limit is {s.max_audio_bytes / 1e6:.1f} MB."
            )
        self.check_common(language=req.language, session_id=req.session_id, voice=req.voice)
        return self.avatar(req.avatar_id)

    # -- voices -----------------------------------------------------------------------------------

    def pick_voice(self, wanted: str, language: str) -> tuple[TextToSpeech, str]:
        engine = self.engines.tts.get(wanted.split(":", 1)[0])
        if engine is not None:
            candidates = [v for v in engine.capabilities.voices if v.id == wanted]
        else:  # the avatar's voice is of an engine not loaded here (a GPU deployment): the primary engine speaks
            engine = self.engines.tts[self.engines.primary_tts or next(iter(self.engines.tts))]
            candidates = list(engine.capabilities.voices)
        for voice in candidates:
            if any(language_matches(language, lang) for lang in voice.languages):
                return engine, voice.id
        # The selected voice lacks this language: speak it with the fallback engine's voice for it.
        fallback = self.engines.tts[self.engines.fallback_tts]
        for voice in fallback.capabilities.voices:
            if any(lang.lower() == language.lower() for lang in voice.languages):
                return fallback, voice.id
        for voice in fallback.capabilities.voices:
            if any(language_matches(language, lang) for lang in voice.languages):
                return fallback, voice.id
        raise InvalidInput(f"No voice speaks the language {language!r}.")

    # -- the turn ---------------------------------------------------------------------------------

    async def interact(self, req: TurnRequest) -> TurnResult:
        started = time.perf_counter()
        avatar = self._validate(req)
        session_id = req.session_id or uuid.uuid4().hex
        turn_id = uuid.uuid4().hex
        timings = Timings()

        language = req.language.lower()
        if req.audio is not None:
            t0 = time.perf_counter()
            audio = req.audio
            samples = await asyncio.to_thread(
                decode_audio, audio.data, audio.mime_type, max_seconds=self.settings.max_audio_seconds
            )
            transcript = await self._run(
                "speech-to-text", self.engines.stt.transcribe, samples, language=language.split("-")[0] or None
            )
            timings.stt = time.perf_counter() - t0
            user_text = transcript.text
            if not user_text:
                raise InvalidInput("No speech was recognized in the audio.")
            language = language or transcript.language
        else:
            assert req.text is not None
            user_text = req.text.strip()
            language = language or self.text_language(user_text, avatar)

        t0 = time.perf_counter()
        history = self.memory.history(session_id)
        messages = build_messages(avatar.system_prompt(language), history, user_text)
        reply = await self._run("language model", self._generate_reply, messages)
        timings.llm = time.perf_counter() - t0

        outputs = req.outputs
        audio_out = video_out = track = None
        if outputs.audio or outputs.video or outputs.animation:
            t0 = time.perf_counter()
            engine, voice = self.pick_voice(req.voice or avatar.voice, language)
            speech: Speech = await self._run("text-to-speech", engine.synthesize, reply, voice=voice, language=language)
            if outputs.audio:
                audio_out = MediaFile(encode_wav(speech.samples, speech.sample_rate), "audio/wav", speech.duration)
            timings.tts = time.perf_counter() - t0

            if outputs.video or outputs.animation:
                t0 = time.perf_counter()
                animation = await self._run(
                    "animation", self.engines.animator.animate, avatar.id, speech, reply, want_video=outputs.video
                )
                track = animation.track if outputs.animation else None
                if animation.video_mp4 is not None:
                    video_out = MediaFile(animation.video_mp4, "video/mp4", animation.video_seconds)
                timings.animation = time.perf_counter() - t0

        self.memory.add(session_id, Exchange(user=user_text, assistant=reply))
        timings.total = time.perf_counter() - started
        log.info(
            "turn %s session=%s avatar=%s lang=%s input=%s stt=%.3fs llm=%.3fs tts=%.3fs animation=%.3fs total=%.3fs",
            turn_id,
            session_id,
            avatar.id,
            language,
            "audio" if req.audio else "text",
            timings.stt,
            timings.llm,
            timings.tts,
            timings.animation,
            timings.total,
        )
        return TurnResult(
            session_id=session_id,
            turn_id=turn_id,
            transcription=user_text,
            reply_text=reply,
            language=language,
            audio=audio_out,
            video=video_out,
            track=track,
            timings=timings,
        )

    def _generate_reply(self, messages: list[ChatMessage]) -> str:
        s = self.settings
        deltas = self.engines.llm.stream(messages, max_tokens=s.llm_max_tokens, temperature=s.llm_temperature)
        return collect_reply(deltas, max_sentences=s.reply_max_sentences, max_chars=s.reply_max_chars) or _NO_ANSWER

    async def _run(self, stage: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Run a blocking engine call off the event loop; engine crashes become EngineFailure."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except AvatarError:
            raise
        except Exception as exc:
            log.exception("%s failed", stage)
            raise EngineFailure(f"The {stage} engine failed: {exc}") from exc
