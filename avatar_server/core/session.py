"""One live conversation: endpointing, turns that stream every stage, barge-in, clean shutdown.

Each turn runs as a task: STT → LLM tokens (a worker thread) → sentences → TTS per sentence → animation
frames, then the audio chunk they belong to. An interrupt marks the turn cancelled (no further event of it
is emitted, queued ones are dropped), stops the token thread at its next token and cancels the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

import numpy as np
import numpy.typing as npt

from avatar_server.conversation.audio_input import AudioInput
from avatar_server.conversation.events import (
    AudioChunkEvent,
    ErrorEvent,
    Event,
    SpeechEnded,
    SpeechStarted,
    TranscriptEvent,
    TurnCompleted,
)
from avatar_server.conversation.speaking import ReplySpeaker
from avatar_server.conversation.turn import SessionConfig, Turn
from avatar_server.engines.vad import WINDOW, Endpointer, VadEvent
from avatar_server.errors import AvatarError, InvalidInput
from avatar_server.media.audio import STT_SAMPLE_RATE
from avatar_server.memory import Exchange
from avatar_server.pipeline import Pipeline

log = logging.getLogger("avatar_server.converse")
_PREROLL = int(0.3 * STT_SAMPLE_RATE)  # audio kept before the detected speech start
_TAIL = int(0.2 * STT_SAMPLE_RATE)  # audio kept after the detected speech end


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
        self._early: Turn | None = None
        self._early_end = 0
        self._speech_end_wall = 0.0  # when the last speech sample before the latest pause reached the server
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=512)  # (stream position after a chunk, wall time)
        self._current: Turn | None = None
        self._cancelled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._partial: asyncio.Task[None] | None = None
        self._partial_at = 0
        self._speaker = ReplySpeaker(pipeline, config, self.avatar, self.session_id, self._emit_turn)

    # -- client messages --------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        samples = self._input.convert(data)
        if len(samples) == 0:
            return
        self._audio = np.concatenate([self._audio, samples])
        self._arrivals.append((self._position(), time.perf_counter()))
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
        elif self.config.interim_results and self._endpointer.in_speech:
            self._maybe_partial()

    def _maybe_partial(self) -> None:
        """Every second of speech, a partial transcript of the utterance so far (one at a time)."""
        position = self._position()
        if self._partial is not None and not self._partial.done():
            return
        if position - max(self._utterance_start, self._partial_at) < STT_SAMPLE_RATE:
            return
        self._partial_at = position
        turn_id = self._next_turn_id
        audio = self._slice(self._utterance_start, position)

        async def partial() -> None:
            transcript = await asyncio.to_thread(self._transcribe, audio)
            text = str(getattr(transcript, "text", "")).strip()
            if text and self._next_turn_id == turn_id:  # the utterance has not ended meanwhile
                self._emit(TranscriptEvent(turn_id, text, False))

        self._partial = asyncio.create_task(partial())
        self._tasks.add(self._partial)
        self._partial.add_done_callback(self._tasks.discard)

    async def text(self, text: str) -> None:
        turn_id = self._take_turn_id()
        if not text.strip():
            self._emit(ErrorEvent(turn_id, "INVALID_ARGUMENT", "The text is empty."))
            return
        if len(text) > self.pipeline.settings.max_text_chars:
            limit = self.pipeline.settings.max_text_chars
            self._emit(ErrorEvent(turn_id, "RESOURCE_EXHAUSTED", f"The text is over {limit} characters."))
            return
        self._start_turn(Turn(turn_id, time.perf_counter(), user_text=text.strip()), audio=None)

    async def end_of_utterance(self) -> None:
        """Push-to-talk release: the utterance ends now, whatever the VAD thinks."""
        end = self._position()
        if self._endpointer.in_speech:
            self._speech_end_wall = time.perf_counter()
            self._early_end = -1  # push-to-talk: everything up to now is the utterance
            self._finish_utterance(end)
        elif end - self._utterance_start > WINDOW and self._utterance_start < end and self._endpointer.windows:
            # Speech too short for the VAD to call it speech still counts when the client says it ended.
            self._speech_end_wall = time.perf_counter()
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
            # Voice-to-first-audio counts from the end of the speech, not from noticing the pause.
            self._speech_end_wall = self._arrival(ep.speech_end_window * WINDOW)
            end = ep.speech_end_window * WINDOW + _TAIL
            turn = Turn(self._next_turn_id, self._speech_end_wall, confirmed=False)
            self._early = turn
            self._early_end = end
            self._start_turn(turn, audio=self._slice(self._utterance_start, end))
        elif event is VadEvent.RESUMED:
            self._drop_early_turn()
        elif event is VadEvent.SPEECH_ENDED:
            self._finish_utterance(ep.speech_end_window * WINDOW + _TAIL)

    def _arrival(self, position: int) -> float:
        """The wall time at which the stream's sample at `position` reached the server."""
        for after, wall in self._arrivals:
            if after > position:
                return wall
        return time.perf_counter()

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
            self._start_turn(Turn(turn_id, self._speech_end_wall or time.perf_counter()), audio=audio)
        self._utterance_start = end

    def _take_turn_id(self) -> str:
        turn_id, self._next_turn_id = self._next_turn_id, uuid.uuid4().hex
        return turn_id

    # -- turns ------------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if event.turn_id not in self._cancelled and not self._closed:
            self.events.put_nowait(event)

    def _emit_turn(self, turn: Turn, event: Event) -> None:
        if not turn.confirmed:
            turn.held.append(event)
            return
        if isinstance(event, AudioChunkEvent) and not turn.timings.voice_to_first_audio:
            turn.timings.voice_to_first_audio = time.perf_counter() - turn.speech_end_wall
        self._emit(event)

    def _confirm(self, turn: Turn) -> None:
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

    def _start_turn(self, turn: Turn, *, audio: npt.NDArray[np.float32] | None) -> None:
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

    async def _run_turn(self, turn: Turn, audio: npt.NDArray[np.float32] | None) -> None:
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
            await self._speaker.reply(turn, language, timings)
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
