"""One live conversation: endpointing, turns that stream every stage, barge-in, clean shutdown.

Each turn runs as a task: STT → LLM tokens (a worker thread) → sentences → TTS per sentence → animation
frames, then the audio chunk they belong to. An interrupt marks the turn cancelled (no further event of it
is emitted, queued ones are dropped), stops the token thread at its next token and cancels the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from avatar_server.conversation.audio_input import AudioInput
from avatar_server.conversation.events import (
    AnimationFramesEvent,
    AudioChunkEvent,
    ErrorEvent,
    Event,
    ReplyDelta,
    SpeechEnded,
    SpeechStarted,
    TranscriptEvent,
    TurnCompleted,
    TurnTimings,
    VideoSegmentEvent,
)
from avatar_server.conversation.playback import Playback
from avatar_server.domain import Outputs
from avatar_server.engines.llm.base import ChatMessage
from avatar_server.engines.llm.reply import SentenceSplitter, build_messages, ends_sentence
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.engines.vad import WINDOW, Endpointer, VadEvent
from avatar_server.errors import AvatarError, InvalidInput
from avatar_server.media.audio import STT_SAMPLE_RATE, to_pcm16
from avatar_server.memory import Exchange
from avatar_server.pipeline import Pipeline

log = logging.getLogger("avatar_server.converse")
_PREROLL = int(0.3 * STT_SAMPLE_RATE)  # audio kept before the detected speech start
_TAIL = int(0.2 * STT_SAMPLE_RATE)  # audio kept after the detected speech end


@dataclass(frozen=True)
class SessionConfig:
    session_id: str = ""
    avatar_id: str = ""
    language: str = ""
    voice: str = ""
    encoding: str = "pcm16"
    sample_rate: int = 16000
    outputs: Outputs = field(default_factory=lambda: Outputs(audio=True, video=False, animation=True))
    barge_in: bool = False
    end_silence_ms: int = 0
    interim_results: bool = False


@dataclass
class _Turn:
    id: str
    speech_end_wall: float
    stop: threading.Event = field(default_factory=threading.Event)
    spoken: list[str] = field(default_factory=list)
    user_text: str = ""
    task: asyncio.Task[None] | None = None
    # A turn started at the first pause is held back until the silence confirms the utterance ended.
    confirmed: bool = True
    held: list[Event] = field(default_factory=list)
    timings: TurnTimings = field(default_factory=TurnTimings)


class ConversationSession:
    """Transport-agnostic: feed client messages in, read `events` out (None ends the stream)."""

    def __init__(self, pipeline: Pipeline, config: SessionConfig) -> None:
        pipeline.check_common(language=config.language, session_id=config.session_id, voice=config.voice)
        self.avatar = pipeline.avatar(config.avatar_id)
        if pipeline.engines.vad is None:
            raise AvatarError("Live conversation needs the VAD model, which is not loaded.")
        self.pipeline = pipeline
        self.config = config
        self.session_id = config.session_id or uuid.uuid4().hex
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._input = AudioInput(config.encoding, config.sample_rate)
        self._vad = pipeline.engines.vad.stream()
        self._endpointer = Endpointer(end_silence_ms=config.end_silence_ms or pipeline.settings.end_silence_ms)
        self._audio: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)  # stream audio since `_audio_base`
        self._audio_base = 0
        self._utterance_start = 0
        self._next_turn_id = uuid.uuid4().hex
        self._early: _Turn | None = None
        self._early_end = 0
        self._pause_wall = 0.0
        self._current: _Turn | None = None
        self._cancelled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- client messages --------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        samples = self._input.convert(data)
        if len(samples) == 0:
            return
        self._audio = np.concatenate([self._audio, samples])
        probs = await asyncio.to_thread(self._vad.process, samples)
        for prob in probs:
            event = self._endpointer.push(prob)
            if event is not None:
                await self._on_vad(event)
        if not self._endpointer.in_speech and len(self._audio) > 2 * _PREROLL:
            self._trim(self._audio_base + len(self._audio) - _PREROLL)
        limit = int(self.pipeline.settings.max_audio_seconds * STT_SAMPLE_RATE)
        if self._endpointer.in_speech and self._position() - self._utterance_start > limit:
            await self.end_of_utterance()  # a monologue past the cap is cut into turns

    async def text(self, text: str) -> None:
        turn_id = self._take_turn_id()
        if not text.strip():
            self._emit(ErrorEvent(turn_id, "INVALID_ARGUMENT", "The text is empty."))
            return
        if len(text) > self.pipeline.settings.max_text_chars:
            limit = self.pipeline.settings.max_text_chars
            self._emit(ErrorEvent(turn_id, "RESOURCE_EXHAUSTED", f"The text is over {limit} characters."))
            return
        self._start_turn(_Turn(turn_id, time.perf_counter(), user_text=text.strip()), audio=None)

    async def end_of_utterance(self) -> None:
        """Push-to-talk release: the utterance ends now, whatever the VAD thinks."""
        end = self._position()
        if self._endpointer.in_speech:
            self._pause_wall = time.perf_counter()
            self._early_end = -1  # push-to-talk: everything up to now is the utterance
            self._finish_utterance(end)
        elif end - self._utterance_start > WINDOW and self._utterance_start < end and self._endpointer.windows:
            # Speech too short for the VAD to call it speech still counts when the client says it ended.
            self._pause_wall = time.perf_counter()
            self._finish_utterance(end)
        self._endpointer.reset()

    async def interrupt(self) -> None:
        turn = self._current
        if turn is None:
            return
        if not turn.confirmed:  # nothing of it was sent yet
            self._drop_early_turn()
            return
        self._cancelled.add(turn.id)
        turn.stop.set()
        if turn.task is not None:
            turn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn.task
        # The interrupted turn's last event: what was said of it. Nothing of this turn follows.
        if not self._closed:
            self.events.put_nowait(
                TurnCompleted(turn.id, turn.user_text, " ".join(turn.spoken), turn.timings, interrupted=True)
            )
        log.info("turn %s interrupted after %d sentence(s)", turn.id, len(turn.spoken))

    def is_cancelled(self, turn_id: str) -> bool:
        return turn_id in self._cancelled

    def deliverable(self, event: Event) -> bool:
        """False for events of an interrupted turn still in the queue; its closing TurnCompleted goes out."""
        return event.turn_id not in self._cancelled or (isinstance(event, TurnCompleted) and event.interrupted)

    async def finish(self) -> None:
        """The client sent everything: end a pending utterance, let the running turns finish, end the stream."""
        if self._endpointer.in_speech:
            await self.end_of_utterance()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.events.put_nowait(None)

    async def close(self) -> None:
        """Cancel everything of this session (client cancel or disconnect)."""
        self._closed = True
        self._drop_early_turn()
        for task in list(self._tasks):
            task.cancel()
        if self._current is not None:
            self._current.stop.set()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.events.put_nowait(None)

    # -- endpointing ------------------------------------------------------------------------------

    def _position(self) -> int:
        return self._audio_base + len(self._audio)

    def _trim(self, keep_from: int) -> None:
        cut = keep_from - self._audio_base
        if cut > 0:
            self._audio = self._audio[cut:]
            self._audio_base = keep_from

    def _slice(self, start: int, end: int) -> npt.NDArray[np.float32]:
        return self._audio[max(0, start - self._audio_base) : max(0, end - self._audio_base)].copy()

    async def _on_vad(self, event: VadEvent) -> None:
        ep = self._endpointer
        if event is VadEvent.SPEECH_STARTED:
            self._utterance_start = max(self._audio_base, ep.speech_start_window * WINDOW - _PREROLL)
            self._emit(SpeechStarted(self._next_turn_id, ep.speech_start_window * WINDOW / STT_SAMPLE_RATE))
            if self.config.barge_in and self._current is not None:
                await self.interrupt()
        elif event is VadEvent.PAUSE:
            # Start the turn at the first silence, held back until the silence lasts: if the person does
            # not go on, transcript and reply are under way (or ready) when the utterance is confirmed.
            self._pause_wall = time.perf_counter()
            end = ep.speech_end_window * WINDOW + _TAIL
            turn = _Turn(self._next_turn_id, self._pause_wall, confirmed=False)
            self._early = turn
            self._early_end = end
            self._start_turn(turn, audio=self._slice(self._utterance_start, end))
        elif event is VadEvent.RESUMED:
            self._drop_early_turn()
        elif event is VadEvent.SPEECH_ENDED:
            self._finish_utterance(ep.speech_end_window * WINDOW + _TAIL)

    def _finish_utterance(self, end: int) -> None:
        early = self._early
        if early is not None and self._early_end == end:
            self._early = None
            turn_id = self._take_turn_id()
            assert turn_id == early.id
            self._emit(SpeechEnded(turn_id, end / STT_SAMPLE_RATE))
            self._confirm(early)
        else:
            self._drop_early_turn()
            turn_id = self._take_turn_id()
            self._emit(SpeechEnded(turn_id, end / STT_SAMPLE_RATE))
            audio = self._slice(self._utterance_start, end)
            self._start_turn(_Turn(turn_id, self._pause_wall or time.perf_counter()), audio=audio)
        self._utterance_start = end

    def _take_turn_id(self) -> str:
        turn_id, self._next_turn_id = self._next_turn_id, uuid.uuid4().hex
        return turn_id

    # -- turns ------------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if event.turn_id not in self._cancelled and not self._closed:
            self.events.put_nowait(event)

    def _emit_turn(self, turn: _Turn, event: Event) -> None:
        if not turn.confirmed:
            turn.held.append(event)
            return
        if isinstance(event, AudioChunkEvent) and not turn.timings.voice_to_first_audio:
            turn.timings.voice_to_first_audio = time.perf_counter() - turn.speech_end_wall
        self._emit(event)

    def _confirm(self, turn: _Turn) -> None:
        turn.confirmed = True
        held, turn.held = turn.held, []
        for event in held:
            self._emit_turn(turn, event)

    def _drop_early_turn(self) -> None:
        """The person went on speaking: the turn started at the pause never happened."""
        turn, self._early = self._early, None
        if turn is not None:
            turn.stop.set()
            if turn.task is not None:
                turn.task.cancel()
            if self._current is turn:
                self._current = None

    def _start_turn(self, turn: _Turn, *, audio: npt.NDArray[np.float32] | None) -> None:
        previous = self._current.task if self._current else None

        async def run() -> None:
            if previous is not None:  # turns answer in order
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(previous)
            self._current = turn
            try:
                await self._run_turn(turn, audio)
            finally:
                if self._current is turn:
                    self._current = None

        task: asyncio.Task[None] = asyncio.create_task(run())
        turn.task = task
        self._current = self._current or turn
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _transcribe(self, audio: npt.NDArray[np.float32]) -> object:
        language = self.config.language.split("-")[0] or None
        return self.pipeline.engines.stt.transcribe(audio, language=language)

    async def _run_turn(self, turn: _Turn, audio: npt.NDArray[np.float32] | None) -> None:
        started = time.perf_counter()
        timings = turn.timings
        language = self.config.language.lower()
        try:
            if audio is not None:
                await self.pipeline.playback.yield_to_playback()
                t0 = time.perf_counter()
                transcript = await asyncio.to_thread(self._transcribe, audio)
                timings.stt = time.perf_counter() - t0
                turn.user_text = str(getattr(transcript, "text", "")).strip()
                if not turn.user_text:
                    raise InvalidInput("No speech was recognized in the audio.")
                language = language or str(getattr(transcript, "language", "en"))
                self._emit_turn(turn, TranscriptEvent(turn.id, turn.user_text, True))
            else:
                language = language or self.pipeline.text_language(turn.user_text, self.avatar)
                self._emit_turn(turn, TranscriptEvent(turn.id, turn.user_text, True))
            await self._reply(turn, language, timings)
            timings.total = time.perf_counter() - started
            self._emit_turn(turn, TurnCompleted(turn.id, turn.user_text, " ".join(turn.spoken), timings))
            log.info(
                "converse turn %s session=%s stt=%.3fs llm_first=%.3fs tts_first=%.3fs v2fa=%.3fs total=%.3fs",
                turn.id,
                self.session_id,
                timings.stt,
                timings.llm_first_token,
                timings.tts_first_byte,
                timings.voice_to_first_audio,
                timings.total,
            )
        except AvatarError as exc:
            self._emit_turn(turn, ErrorEvent(turn.id, exc.code.value, exc.message))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("converse turn %s failed", turn.id)
            self._emit_turn(turn, ErrorEvent(turn.id, "INTERNAL", f"The turn failed: {exc}"))
        finally:
            turn.stop.set()
            if turn.confirmed and turn.user_text and turn.spoken:  # memory keeps only what was actually said
                self.pipeline.memory.add(self.session_id, Exchange(turn.user_text, " ".join(turn.spoken)))

    async def _reply(self, turn: _Turn, language: str, timings: TurnTimings) -> None:
        self.pipeline.active_turns += 1
        try:
            await self._reply_streaming(turn, language, timings)
        finally:
            self.pipeline.active_turns -= 1

    async def _reply_streaming(self, turn: _Turn, language: str, timings: TurnTimings) -> None:
        p = self.pipeline
        s = p.settings
        outputs = self.config.outputs
        engine, voice = p.pick_voice(self.config.voice or self.avatar.voice, language)
        messages = build_messages(
            self.avatar.system_prompt(language), p.memory.history(self.session_id), turn.user_text
        )
        await p.playback.yield_to_playback()
        tokens: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        producer = asyncio.ensure_future(asyncio.to_thread(self._produce, messages, tokens, loop, turn.stop))
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = outputs.audio or outputs.animation or outputs.video
        speaker = (
            asyncio.create_task(self._speak(turn, sentences, engine, voice, language, timings)) if speaking else None
        )
        # Alone, the first clause is spoken as soon as it is written; under load whole sentences keep
        # each session's audio continuous (a short first chunk leaves little time to make the next).
        busy = p.active_turns > 1
        splitter, count, chars, capped = SentenceSplitter(first_clause_words=0 if busy else 8), 0, 0, False
        t0 = time.perf_counter()
        try:
            while (delta := await tokens.get()) is not None:
                if count >= s.reply_max_sentences:
                    continue  # drain what the thread already produced
                if not timings.llm_first_token:
                    timings.llm_first_token = time.perf_counter() - t0
                self._emit_turn(turn, ReplyDelta(turn.id, delta))
                chars += len(delta)
                for sentence in splitter.feed(delta):
                    count += ends_sentence(sentence)
                    if speaker is not None:
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
            sentences.put_nowait(None)
            await producer
            if speaker is not None:
                await speaker
        finally:
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
    ) -> None:
        """Worker thread: stream tokens into the loop until done or told to stop (checked every token)."""
        s = self.pipeline.settings
        deltas = self.pipeline.engines.llm.stream(messages, max_tokens=s.llm_max_tokens, temperature=s.llm_temperature)
        try:
            for delta in deltas:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(out.put_nowait, delta)
        finally:
            close = getattr(deltas, "close", None)
            if close is not None:
                close()
            with contextlib.suppress(RuntimeError):  # the loop may be gone when a session is torn down
                loop.call_soon_threadsafe(out.put_nowait, None)

    async def _speak(
        self,
        turn: _Turn,
        sentences: asyncio.Queue[str | None],
        engine: TextToSpeech,
        voice: str,
        language: str,
        timings: TurnTimings,
    ) -> None:
        outputs = self.config.outputs
        # Video segments render beside the audio path, never in front of it.
        segments: asyncio.Queue[tuple[object, object, float] | None] = asyncio.Queue()
        video = asyncio.create_task(self._render_segments(turn, segments)) if outputs.video else None
        try:
            await self._speak_sentences(turn, sentences, engine, voice, language, timings, segments)
        finally:
            segments.put_nowait(None)
            if video is not None:
                await video

    async def _render_segments(self, turn: _Turn, segments: asyncio.Queue[tuple[object, object, float] | None]) -> None:
        animator = self.pipeline.engines.animator
        while (item := await segments.get()) is not None:
            speech, track, clock = item
            mp4, seconds = await asyncio.to_thread(animator.video, self.avatar.id, speech, track)  # type: ignore[arg-type]
            self._emit_turn(turn, VideoSegmentEvent(turn.id, mp4, seconds, clock))

    async def _speak_sentences(
        self,
        turn: _Turn,
        sentences: asyncio.Queue[str | None],
        engine: TextToSpeech,
        voice: str,
        language: str,
        timings: TurnTimings,
        segments: asyncio.Queue[tuple[object, object, float] | None],
    ) -> None:
        outputs = self.config.outputs
        animator = self.pipeline.engines.animator
        guard = self.pipeline.playback
        clock = 0.0
        playback: Playback | None = None
        try:
            while (sentence := await sentences.get()) is not None:
                t0 = time.perf_counter()
                speech = await asyncio.to_thread(engine.synthesize, sentence, voice=voice, language=language)
                timings.tts += time.perf_counter() - t0
                if not timings.tts_first_byte:
                    timings.tts_first_byte = time.perf_counter() - t0
                t0 = time.perf_counter()
                track = await asyncio.to_thread(animator.track, speech, sentence)
                timings.animation += time.perf_counter() - t0
                if outputs.animation:  # the frames go out no later than the audio they belong to
                    self._emit_turn(turn, AnimationFramesEvent(turn.id, track, clock))
                if outputs.audio:
                    self._emit_turn(turn, AudioChunkEvent(turn.id, to_pcm16(speech.samples), speech.sample_rate, clock))
                turn.spoken.append(sentence)
                if outputs.video:
                    segments.put_nowait((speech, track, clock))
                clock += speech.duration
                if playback is None and turn.confirmed:
                    playback = Playback()
                    guard.add(playback)
                if playback is not None:
                    playback.sent_seconds = clock
        finally:
            if playback is not None:
                guard.discard(playback)
