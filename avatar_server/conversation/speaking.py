"""Speaking a live reply: LLM tokens (a worker thread) → sentences → TTS per sentence → animation
frames, then the audio chunk they belong to; optional video segments beside the audio path."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

from avatar_server.conversation.events import (
    AnimationFramesEvent,
    AudioChunkEvent,
    Event,
    ReplyDelta,
    VideoSegmentEvent,
)
from avatar_server.conversation.playback import Playback
from avatar_server.conversation.turn import SessionConfig, Turn
from avatar_server.domain import Timings
from avatar_server.engines.llm.base import ChatMessage
from avatar_server.engines.llm.reply import SentenceSplitter, build_messages, ends_sentence
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.media.audio import to_pcm16
from avatar_server.personas import Avatar
from avatar_server.pipeline import Pipeline

# Audio in hand below which the next piece is cut short: a whole sentence takes about this long to write
# and synthesize on 2 cores.
_HURRY_BELOW = 1.5


class ReplySpeaker:
    """Speaks replies for one session; events go out through `emit`, which holds back unconfirmed turns."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: SessionConfig,
        avatar: Avatar,
        session_id: str,
        emit: Callable[[Turn, Event], None],
    ) -> None:
        self._pipeline = pipeline
        self._config = config
        self._avatar = avatar
        self._session_id = session_id
        self._emit = emit

    async def reply(self, turn: Turn, language: str, timings: Timings) -> None:
        """Generate, speak and animate the reply to `turn.user_text`; `turn.spoken` collects what went out."""
        self._pipeline.active_turns += 1
        try:
            await self._reply_streaming(turn, language, timings)
        finally:
            self._pipeline.active_turns -= 1

    async def _reply_streaming(self, turn: Turn, language: str, timings: Timings) -> None:
        p = self._pipeline
        s = p.settings
        outputs = self._config.outputs
        engine, voice = p.pick_voice(self._config.voice or self._avatar.voice, language)
        messages = build_messages(
            self._avatar.system_prompt(language), p.memory.history(self._session_id), turn.user_text
        )
        await p.playback.yield_to_playback()
        tokens: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        producer = asyncio.ensure_future(
            asyncio.to_thread(self._produce, messages, tokens, loop, turn.stop, turn.llm_go)
        )
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = outputs.audio or outputs.animation or outputs.video
        speaker = (
            asyncio.create_task(self._speak(turn, sentences, engine, voice, language, timings)) if speaking else None
        )
        # Alone, a turn speaks a short piece whenever its listener has little audio in hand (at first,
        # nothing): the first few words, not the first sentence. Under load whole sentences keep each
        # session's audio continuous (a short piece leaves little time to make the next).
        busy = p.active_turns > 1
        splitter, count, chars, capped = SentenceSplitter(hurry=not busy), 0, 0, False
        first_sent = False
        t0 = time.perf_counter()
        turn.generating = True
        try:
            while (delta := await tokens.get()) is not None:
                if count >= s.reply_max_sentences:
                    continue  # drain what the thread already produced
                if not timings.llm_first_token:
                    timings.llm_first_token = time.perf_counter() - t0
                self._emit(turn, ReplyDelta(turn.id, delta))
                chars += len(delta)
                in_hand = turn.playback.slack(time.perf_counter()) if turn.playback else 0.0
                splitter.hurry = not busy and in_hand < _HURRY_BELOW
                for sentence in splitter.feed(delta):
                    count += ends_sentence(sentence)
                    if speaker is not None:
                        if not first_sent:
                            first_sent = True
                            turn.llm_go.clear()  # 2 cores: the first audio comes before more tokens
                        sentences.put_nowait(sentence)
                    else:
                        turn.spoken.append(sentence)
                if count >= s.reply_max_sentences or chars > s.reply_max_chars + 40:
                    capped = chars > s.reply_max_chars + 40
                    turn.stop.set()
            rest = splitter.flush()
            if rest and count < s.reply_max_sentences and not capped:  # a cut-off fragment is not spoken
                (sentences.put_nowait if speaker is not None else turn.spoken.append)(rest)
            timings.llm = time.perf_counter() - t0
            turn.generating = False
            sentences.put_nowait(None)
            await producer
            if speaker is not None:
                await speaker
        finally:
            turn.generating = False
            turn.stop.set()  # the token thread ends at its next token
            for task in (producer, speaker):
                if task is not None and not task.done():
                    task.cancel()

    def _produce(
        self,
        messages: list[ChatMessage],
        out: asyncio.Queue[str | None],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
        go: threading.Event,
    ) -> None:
        """Worker thread: stream tokens into the loop until done or told to stop (checked every token).
        While `go` is clear the next token waits: the first sentence's TTS has the cores to itself."""
        s = self._pipeline.settings
        deltas = self._pipeline.engines.llm.stream(messages, max_tokens=s.llm_max_tokens, temperature=s.llm_temperature)
        try:
            for delta in deltas:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(out.put_nowait, delta)
                while not go.wait(0.02) and not stop.is_set():
                    pass
        finally:
            close = getattr(deltas, "close", None)
            if close is not None:
                close()
            with contextlib.suppress(RuntimeError):  # the loop may be gone when a session is torn down
                loop.call_soon_threadsafe(out.put_nowait, None)

    async def _speak(
        self,
        turn: Turn,
        sentences: asyncio.Queue[str | None],
        engine: TextToSpeech,
        voice: str,
        language: str,
        timings: Timings,
    ) -> None:
        outputs = self._config.outputs
        # Video segments render beside the audio path, never in front of it.
        segments: asyncio.Queue[tuple[object, object, float] | None] = asyncio.Queue()
        video = asyncio.create_task(self._render_segments(turn, segments)) if outputs.video else None
        try:
            await self._speak_sentences(turn, sentences, engine, voice, language, timings, segments)
        finally:
            segments.put_nowait(None)
            if video is not None:
                await video

    async def _render_segments(self, turn: Turn, segments: asyncio.Queue[tuple[object, object, float] | None]) -> None:
        animator = self._pipeline.engines.animator
        while (item := await segments.get()) is not None:
            speech, track, clock = item
            mp4, seconds = await asyncio.to_thread(animator.video, self._avatar.id, speech, track)  # type: ignore[arg-type]
            self._emit(turn, VideoSegmentEvent(turn.id, mp4, seconds, clock))

    async def _speak_sentences(
        self,
        turn: Turn,
        sentences: asyncio.Queue[str | None],
        engine: TextToSpeech,
        voice: str,
        language: str,
        timings: Timings,
        segments: asyncio.Queue[tuple[object, object, float] | None],
    ) -> None:
        outputs = self._config.outputs
        animator = self._pipeline.engines.animator
        guard = self._pipeline.playback
        clock = 0.0
        playback: Playback | None = None
        try:
            while (sentence := await sentences.get()) is not None:
                t0 = time.perf_counter()
                speech = await asyncio.to_thread(engine.synthesize, sentence, voice=voice, language=language)
                timings.tts += time.perf_counter() - t0
                turn.llm_go.set()
                if not timings.tts_first_byte:
                    timings.tts_first_byte = time.perf_counter() - t0
                t0 = time.perf_counter()
                track = await asyncio.to_thread(animator.track, speech, sentence)
                timings.animation += time.perf_counter() - t0
                if outputs.animation:  # the frames go out no later than the audio they belong to
                    self._emit(turn, AnimationFramesEvent(turn.id, track, clock))
                if outputs.audio:
                    self._emit(turn, AudioChunkEvent(turn.id, to_pcm16(speech.samples), speech.sample_rate, clock))
                turn.spoken.append(sentence)
                if outputs.video:
                    segments.put_nowait((speech, track, clock))
                clock += speech.duration
                if playback is None and turn.confirmed:
                    playback = turn.playback = Playback(source=turn)
                    guard.add(playback)
                if playback is not None:
                    playback.sent_seconds = clock
        finally:
            if playback is not None:
                guard.discard(playback)
