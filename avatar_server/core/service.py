"""The core a transport calls: validates, admits, runs turns (Interact collects one; Converse streams many)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import numpy as np

from avatar_server.animation.portrait import FaceAssets, face_assets
from avatar_server.core import validation
from avatar_server.core.admission import Admission
from avatar_server.core.contexts import LiveContexts
from avatar_server.core.engines import Engines
from avatar_server.core.events import AnimationFramesEvent, AudioChunkEvent, Event, VideoSegmentEvent
from avatar_server.core.playback import PlaybackGuard
from avatar_server.core.turn import TurnRunner
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.core.voices import find_voice, home_language, pick_voice
from avatar_server.core.workers import Workers
from avatar_server.engines.llm.reply import build_messages
from avatar_server.errors import AvatarError, ErrorCode, InvalidInput
from avatar_server.media.audio import decode_audio, encode_wav
from avatar_server.memory import open_memory
from avatar_server.observability.metrics import Metrics
from avatar_server.personas import Avatar
from avatar_server.settings import Settings
from avatar_server.values import Exchange, MediaFile, Track, TurnRequest, TurnResult

log = logging.getLogger(__name__)


class AvatarCore:
    """Owns the engines' workers, conversation memory and admission control of one server."""

    def __init__(
        self, settings: Settings, engines: Engines, avatars: dict[str, Avatar], metrics: Metrics | None = None
    ) -> None:
        if settings.default_avatar not in avatars:
            raise ValueError(f"default avatar {settings.default_avatar!r} is not among {sorted(avatars)}")
        default_voice = avatars[settings.default_avatar].voice
        mute = [lang for lang in settings.languages if find_voice(engines, default_voice, lang) is None]
        if mute:
            raise ValueError(f"no voice speaks {', '.join(mute)} (AVATAR_LANGUAGES); GetCapabilities lists the voices")
        self.settings = settings
        self.engines = engines
        self.avatars = avatars
        # Counted by the transport as turns end; sessions, queues and busy time read from the core when scraped.
        self.metrics = metrics or Metrics()
        # In this process, or Redis (AVATAR_MEMORY_URL, checked now: unreachable ends the start-up).
        self.memory = open_memory(settings, on_error=self.metrics.memory_errors.inc)
        self.workers = Workers(
            compute_slots=settings.compute_slots,
            extra=tuple(LiveContexts.worker(k) for k in range(len(engines.live_llms))),
        )
        self.playback = PlaybackGuard()  # live replies that must not run dry
        self.admission = Admission(
            max_running=settings.max_running_turns,
            max_waiting=settings.max_waiting_turns,
            max_sessions=settings.max_live_sessions,
        )
        self.runner = TurnRunner(settings, engines, self.workers, self.memory, self.playback)
        self.metrics.watch(self.admission, self.workers.all)

    def warm_up(self) -> None:
        """One small run of every engine (blocking), so the first person's turn does not pay for lazy init."""
        e = self.engines
        avatar = self.avatars[self.settings.default_avatar]
        home = home_language(avatar.language, self.settings.languages)
        engine, voice = pick_voice(e, avatar.voice, home)
        speech = engine.synthesize("Hello, I am ready.", voice=voice, language=home)
        e.stt.transcribe(
            decode_audio(encode_wav(speech.samples, speech.sample_rate), "audio/wav", max_seconds=10),
            language=None,
            fallback=home,
        )
        # The persona prompt is evaluated now and stays in llama.cpp's prefix cache: the first turn
        # starts generating in about 0.1 s instead of 1 s.
        # A long prompt first: the model's buffers (KV cache, logits) fill pages in as they are first written,
        # so a server would otherwise grow for minutes as conversations lengthen; now that is paid here.
        system = avatar.system_prompt(home)
        long_history = [Exchange("Tell me about your work.", " ".join(["I wrote compilers for the Navy."] * 40))] * 2
        for llm in (e.llm, *e.live_llms):
            prompts = [build_messages(system, long_history, "Hi")] if llm.capabilities.local else []
            for messages in (*prompts, build_messages(system, [], "Hi")):
                for _ in llm.stream(messages, max_tokens=2, temperature=0.0):
                    pass
        e.animator.video(avatar.id, speech, e.animator.track(speech, "warm-up"))
        if e.turn_model is not None:
            e.turn_model.complete(np.zeros(16000, np.float32))

    def shutdown(self) -> None:
        self.workers.shutdown()
        self.memory.close()

    # -- validation -------------------------------------------------------------------------------

    def avatar(self, avatar_id: str) -> Avatar:
        return validation.avatar(self.avatars, avatar_id, self.settings.default_avatar)

    async def face(self, avatar_id: str) -> tuple[Avatar, FaceAssets]:
        """An avatar's portrait and face model, for clients that draw the face themselves."""
        validation.name(avatar_id, "avatar_id")
        avatar = self.avatars.get(avatar_id or self.settings.default_avatar)
        if avatar is None:
            known = ", ".join(sorted(self.avatars))
            raise AvatarError(f"No avatar {validation.echo(avatar_id)}; known avatars: {known}.", ErrorCode.NOT_FOUND)
        p = avatar.portrait
        return avatar, await asyncio.to_thread(face_assets, p.path, p.landmarks)

    def check_common(self, *, language: str, session_id: str, voice: str) -> None:
        validation.common(
            language=language,
            session_id=session_id,
            voice=voice,
            tts_engines=self.engines.tts,
            served=self.settings.languages,
        )

    def plan(self, req: TurnRequest) -> tuple[TurnPlan, Turn]:
        """A validated Interact turn, before any work."""
        if (req.text is None) == (req.audio is None):
            raise InvalidInput("Send either audio or text (exactly one of them).")
        turn = Turn(uuid.uuid4().hex)
        if req.text is not None:
            turn.user_text = validation.text(req.text, self.settings)
        if req.audio is not None:
            validation.audio_bytes(len(req.audio.data), self.settings)
            validation.name(req.audio.mime_type, "The audio's mime_type")
            turn.audio = req.audio
        self.check_common(language=req.language, session_id=req.session_id, voice=req.voice)
        plan = TurnPlan(
            avatar=self.avatar(req.avatar_id),
            session_id=req.session_id or uuid.uuid4().hex,
            language=req.language,
            voice=req.voice,
            outputs=req.outputs,
            live=False,
        )
        return plan, turn

    # -- Interact ---------------------------------------------------------------------------------

    async def interact(self, req: TurnRequest, *, time_remaining: float | None = None) -> TurnResult:
        """One whole turn: validated, admitted (or refused at once), run, collected."""
        plan, turn = self.plan(req)
        events: list[Event] = []
        async with self.admission.turn(time_remaining=time_remaining):
            await self.runner.run(plan, turn, events.append)
        return _collect(plan, turn, events)


def _collect(plan: TurnPlan, turn: Turn, events: list[Event]) -> TurnResult:
    """Interact's answer from the turn's events: one wav, one track, one mp4."""
    audio = video = None
    chunks = [e for e in events if isinstance(e, AudioChunkEvent)]
    if chunks:
        pcm = b"".join(c.pcm for c in chunks)
        rate = chunks[0].sample_rate
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        audio = MediaFile(encode_wav(samples, rate), "audio/wav", len(samples) / rate)
    frames = [e.track for e in events if isinstance(e, AnimationFramesEvent)]
    track = Track(frames[0].fps, np.concatenate([t.weights for t in frames]), frames[0].names) if frames else None
    segments = [e for e in events if isinstance(e, VideoSegmentEvent)]
    if segments:  # one piece, one segment: the whole reply
        video = MediaFile(segments[0].mp4, "video/mp4", segments[0].duration)
    return TurnResult(
        session_id=plan.session_id,
        turn_id=turn.id,
        transcription=turn.user_text,
        reply_text=" ".join(turn.spoken),
        language=turn.language,
        audio=audio,
        video=video,
        track=track,
        timings=turn.timings,
    )
