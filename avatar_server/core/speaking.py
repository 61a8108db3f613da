"""Speaking a reply: pieces → speech → animation frames, then the audio they belong to; video segments
rendered beside the audio path, never in front of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from avatar_server.core.engines import Engines
from avatar_server.core.events import AnimationFramesEvent, AudioChunkEvent, Event, VideoSegmentEvent
from avatar_server.core.playback import Playback, PlaybackGuard
from avatar_server.core.stages import Stages
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.core.workers import Priority
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.media.audio import to_pcm16
from avatar_server.settings import Settings
from avatar_server.values import Speech, Track


class Speaker:
    def __init__(self, settings: Settings, engines: Engines, stages: Stages, playback: PlaybackGuard) -> None:
        self.settings = settings
        self.engines = engines
        self._stage = stages
        self.playback = playback

    async def speak(
        self,
        plan: TurnPlan,
        turn: Turn,
        pieces: asyncio.Queue[str | None],
        voice: tuple[TextToSpeech, str],
        emit: Callable[[Event], None],
    ) -> None:
        """Pieces → speech → animation frames, then the audio they belong to; video segments beside them."""
        s = self.settings
        outputs = plan.outputs
        timings = turn.timings
        engine, voice_id = voice
        priority = Priority.LIVE if plan.live else Priority.BATCH
        animator = self.engines.animator
        segments: asyncio.Queue[tuple[Speech, Track, float] | None] = asyncio.Queue()
        clock = 0.0
        playback: Playback | None = None
        async with asyncio.TaskGroup() as group:
            if outputs.video:  # video renders beside the audio path, never in front of it
                group.create_task(self._render_segments(turn, plan, segments, emit))
            try:
                while (piece := await pieces.get()) is not None:
                    t0 = time.perf_counter()
                    speech = await self._stage(
                        "text-to-speech",
                        "tts",
                        s.tts_timeout_seconds,
                        priority,
                        engine.capabilities.local,
                        engine.synthesize,
                        piece,
                        voice=voice_id,
                        language=turn.language,
                    )
                    timings.tts += time.perf_counter() - t0
                    turn.llm_go.set()
                    if not timings.tts_first_byte:
                        timings.tts_first_byte = time.perf_counter() - t0
                    if outputs.animation or outputs.video:
                        t0 = time.perf_counter()
                        track = await self._stage(
                            "animation",
                            "animation",
                            s.animation_timeout_seconds,
                            priority,
                            False,
                            animator.track,
                            speech,
                            piece,
                        )
                        timings.animation += time.perf_counter() - t0
                        if outputs.animation:  # the frames go out no later than the audio they belong to
                            emit(AnimationFramesEvent(turn.id, track, clock))
                        if outputs.video:
                            segments.put_nowait((speech, track, clock))
                    if outputs.audio:
                        emit(AudioChunkEvent(turn.id, to_pcm16(speech.samples), speech.sample_rate, clock))
                    turn.spoken.append(piece)
                    clock += speech.duration
                    if plan.live and playback is None and turn.confirmed:
                        playback = turn.playback = Playback(source=turn)
                        self.playback.add(playback)
                    if playback is not None:
                        playback.sent_seconds = clock
            finally:
                segments.put_nowait(None)
                if playback is not None:
                    self.playback.discard(playback)

    async def _render_segments(
        self,
        turn: Turn,
        plan: TurnPlan,
        segments: asyncio.Queue[tuple[Speech, Track, float] | None],
        emit: Callable[[Event], None],
    ) -> None:
        s = self.settings
        priority = Priority.LIVE if plan.live else Priority.BATCH
        while (item := await segments.get()) is not None:
            speech, track, clock = item
            t0 = time.perf_counter()
            mp4, seconds = await self._stage(
                "video",
                "video",
                s.animation_timeout_seconds,
                priority,
                self.engines.animator.local,
                self.engines.animator.video,
                plan.avatar.id,
                speech,
                track,
                clock,
            )
            turn.timings.animation += time.perf_counter() - t0
            emit(VideoSegmentEvent(turn.id, mp4, seconds, clock))
