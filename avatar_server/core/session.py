"""One live conversation: endpointing and turn-taking around the one turn core.

The session decides only when a turn starts (a typed text, the first pause, the end of an utterance), is held
(started at a pause, its events kept back), confirmed (the silence lasted) or cancelled (the person went on,
barge-in, disconnect). Each turn runs `TurnRunner.run` as one task. Every input is bounded: audio per message,
audio faster than real time, pending turns, and the events waiting for a slow reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from avatar_server.core import validation
from avatar_server.core.audio_input import AudioInput
from avatar_server.core.end_of_turn import EndOfTurn
from avatar_server.core.events import (
    AudioChunkEvent,
    BackchannelEvent,
    ErrorEvent,
    Event,
    SpeechEnded,
    SpeechStarted,
    TranscriptEvent,
    TurnCompleted,
)
from avatar_server.core.overlap import Fragment, OverReply, ReplyEcho
from avatar_server.core.service import AvatarCore
from avatar_server.core.stream_audio import StreamAudio
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.core.voices import home_language
from avatar_server.core.workers import Priority
from avatar_server.engines import turn_model
from avatar_server.engines.vad import WINDOW, Endpointer, VadEvent
from avatar_server.errors import AvatarError, ErrorCode, TooLarge, for_client
from avatar_server.media.audio import STT_SAMPLE_RATE
from avatar_server.values import SessionConfig

log = logging.getLogger("avatar_server.converse")
_PREROLL = int(0.3 * STT_SAMPLE_RATE)  # audio kept before the detected speech start
_TAIL = int(0.2 * STT_SAMPLE_RATE)  # audio kept after the detected speech end
_BURST_SECONDS = 2.0  # audio a client may send ahead of real time at once (a buffered start)
SHUTTING_DOWN = "The server is shutting down; reconnect shortly."


class ConversationSession:
    """Transport-agnostic: feed client messages in, iterate `stream()` for the events to deliver.

    Use as `async with core.admission.session(): session = ConversationSession(core, config)`; the transport
    calls `finish()` when the client has sent everything and `close()` when it is gone.
    """

    def __init__(self, core: AvatarCore, config: SessionConfig) -> None:
        core.check_common(language=config.language, session_id=config.session_id, voice=config.voice)
        self.avatar = core.avatar(config.avatar_id)
        if core.engines.vad is None:
            raise AvatarError("Live conversation needs the VAD model, which is not loaded.")
        settings = core.settings
        self.core = core
        self.settings = settings
        self.config = config
        self.session_id = config.session_id or uuid.uuid4().hex
        self.plan = TurnPlan(
            avatar=self.avatar,
            session_id=self.session_id,
            language=config.language,
            voice=config.voice,
            outputs=config.outputs,
            live=True,
        )
        self.failure: AvatarError | None = None  # what ended the session, for the transport's status
        self._events: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=settings.converse_event_queue + 2)
        self._input = AudioInput(config.encoding, config.sample_rate)
        self._vad = core.engines.vad.stream()
        # The turn model judges each pause, unless the client fixed its own silence or the language is one
        # the model does not know; until its verdict the longer wait holds.
        language = config.language.split("-")[0] or home_language(self.avatar.language, settings.languages)
        model = core.engines.turn_model
        model = model if model and not config.end_silence_ms and language in turn_model.LANGUAGES else None
        end_ms = config.end_silence_ms or (settings.turn_incomplete_ms if model else settings.end_silence_ms)
        self._endpointer = Endpointer(end_silence_ms=end_ms)
        self._eot = EndOfTurn(
            model,
            settings,
            lambda fn, audio: core.workers["turn"].run(fn, audio, priority=Priority.LIVE),
            self._spawn,
            self._end_after,
        )
        self._echo = ReplyEcho(settings.echo_return_loss_db)
        self._reply: Turn | None = None  # the turn whose reply the listener hears (or heard last)
        self._over = OverReply(
            int(settings.backchannel_max_ms * STT_SAMPLE_RATE / 1000),
            self._transcribe,
            self._spawn,
            self._backchannel,
            self._take_turn,
        )
        self._audio = StreamAudio()
        self._utterance_start = 0
        self._next_turn_id = uuid.uuid4().hex
        self._early: Turn | None = None
        self._early_end = 0
        self._speech_end_wall = 0.0  # when the last speech sample before the latest pause reached the server
        self._first_audio_wall = 0.0
        self._current: Turn | None = None
        self._cancelled: set[str] = set()
        self._turns: set[asyncio.Task[None]] = set()  # turn tasks, in order of start
        self._tasks: set[asyncio.Task[None]] = set()  # every task of this session (turns and partials)
        self._closed = False
        self._partial: asyncio.Task[None] | None = None
        self._partial_at = 0

    # -- what the transport reads -----------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Event]:
        """The events to deliver, in order; ends when the session ends. Events of an interrupted turn that
        were still queued are dropped here (its closing TurnCompleted goes out)."""
        while (event := await self._events.get()) is not None:
            if event.turn_id not in self._cancelled or (isinstance(event, TurnCompleted) and event.interrupted):
                yield event

    @property
    def running(self) -> bool:
        """A turn is under way (the client may be silent while it waits for the reply)."""
        return bool(self._turns)

    # -- client messages --------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        s = self.settings
        rate = self._input.rate
        if self._input.encoding == "pcm16" and len(data) > 2 * rate * s.converse_max_chunk_seconds:
            raise TooLarge(
                f"An audio message may hold at most {s.converse_max_chunk_seconds:g} s of audio; this one holds "
                f"{len(data) / 2 / rate:.1f} s. Send chunks of 20-100 ms."
            )
        samples = self._input.convert(data)
        if len(samples) == 0:
            return
        if len(samples) > STT_SAMPLE_RATE * s.converse_max_chunk_seconds:
            raise TooLarge(f"An audio message may hold at most {s.converse_max_chunk_seconds:g} s of audio.")
        now = time.perf_counter()
        if not self._first_audio_wall:
            self._first_audio_wall = now
        sent = (self._audio.position + len(samples)) / STT_SAMPLE_RATE
        allowed = _BURST_SECONDS + s.converse_max_realtime_factor * (now - self._first_audio_wall)
        if sent > allowed:
            raise TooLarge(
                f"Audio arrives faster than {s.converse_max_realtime_factor:g}x real time ({sent:.1f} s of audio "
                f"in {now - self._first_audio_wall:.1f} s); stream it as it is recorded."
            )
        self._audio.append(samples, now)
        heard = self._echo.gate(samples, now)  # the avatar's own voice in the microphone is not the person
        self._over.hear(heard)
        probs = await self.core.workers["vad"].run(self._vad.process, heard, priority=Priority.LIVE)
        ep = self._endpointer
        for prob in probs:
            event = ep.push(prob)
            if event is not None:
                await self._on_vad(event)
            if ep.in_speech and not ep.paused:
                await self._over.voiced(WINDOW)  # speech over the reply too long for a backchannel: a turn
        if not self._endpointer.in_speech and self._audio.kept > 2 * _PREROLL:
            self._audio.trim(self._audio.position - _PREROLL)
        limit = int(s.max_audio_seconds * STT_SAMPLE_RATE)
        if self._endpointer.in_speech and self._audio.position - self._utterance_start > limit:
            await self.end_of_utterance()  # a monologue past the cap is cut into turns
        elif self.config.interim_results and self._endpointer.in_speech:
            self._maybe_partial()

    def _maybe_partial(self) -> None:
        """Every second of speech, a partial transcript of the utterance so far (one at a time)."""
        position = self._audio.position
        if self._partial is not None and not self._partial.done():
            return
        if position - max(self._utterance_start, self._partial_at) < STT_SAMPLE_RATE:
            return
        self._partial_at = position
        turn_id = self._next_turn_id
        audio = self._audio.slice(self._utterance_start, position)

        async def partial() -> None:
            with contextlib.suppress(Exception):  # a partial is a hint; the final transcript reports errors
                text = (await self._transcribe(audio)).strip()
                if text and self._next_turn_id == turn_id:  # the utterance has not ended meanwhile
                    self._emit(TranscriptEvent(turn_id, text, False))

        self._partial = self._spawn(partial())

    async def text(self, text: str) -> None:
        turn_id = self._take_turn_id()
        try:
            user_text = validation.text(text, self.settings)
        except AvatarError as exc:
            self._emit(ErrorEvent(turn_id, exc.code.value, exc.message))
            return
        limit = self.settings.max_pending_turns_per_session
        if len(self._turns) >= limit:
            self._emit(
                ErrorEvent(
                    turn_id,
                    ErrorCode.RESOURCE_EXHAUSTED.value,
                    f"{limit} turns of this conversation are already waiting for their reply; "
                    "send the next one after a reply.",
                )
            )
            await asyncio.sleep(0)  # a flood of refused turns: let the writer deliver them as they come
            return
        self._start_turn(Turn(turn_id, time.perf_counter(), user_text=user_text))

    async def end_of_utterance(self) -> None:
        """Push-to-talk release: the utterance ends now, whatever the VAD thinks."""
        end = self._audio.position
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
        if turn is not self._reply:
            self._stop_heard_reply()  # an earlier reply, sent whole, that the listener still hears
        if turn is None:
            return
        if not turn.confirmed:  # nothing of it was sent yet
            self._drop_early_turn()
            return
        self._echo.stop()
        self._cancelled.add(turn.id)
        turn.stop.set()
        if turn.task is not None:
            turn.task.cancel()
            await _ended(turn.task)
        # The interrupted turn's last event: what was said of it. Nothing of this turn follows.
        self._put(TurnCompleted(turn.id, turn.user_text, " ".join(turn.spoken), turn.timings, interrupted=True))
        log.info("turn %s interrupted after %d piece(s)", turn.id, len(turn.spoken))

    def _stop_heard_reply(self) -> None:
        """An interruption of a reply the server has sent whole while the listener still hears it: a second
        TurnCompleted, interrupted, with about what was heard, tells the client to stop playing it."""
        turn, now = self._reply, time.perf_counter()
        if turn is None or not turn.completed or not self._echo.audible(now, tail=0.0):
            return
        words = " ".join(turn.spoken).split()
        heard = " ".join(words[: int(len(words) * self._echo.heard_fraction(now))])
        self._echo.stop()
        self._put(TurnCompleted(turn.id, turn.user_text, heard, turn.timings, interrupted=True))
        log.info("turn %s interrupted while the listener still heard it", turn.id)

    async def finish(self) -> None:
        """The client sent everything: end a pending utterance, let the running turns finish, end the stream."""
        if self._endpointer.in_speech:
            await self.end_of_utterance()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._end()

    async def close(self, final: AvatarError | None = None) -> None:
        """Cancel everything of this session (client gone, server draining, a limit broken). `final`, if
        given, is delivered as the session's last event."""
        if final is not None and not self._closed:
            public = for_client(final)
            self._put(ErrorEvent("", public.code.value, public.message))
            self.failure = self.failure or final
        self._closed = True
        self._drop_early_turn()
        for task in list(self._tasks):
            task.cancel()
        if self._current is not None:
            self._current.stop.set()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._end()

    # -- endpointing ------------------------------------------------------------------------------

    async def _on_vad(self, event: VadEvent) -> None:
        ep = self._endpointer
        if event is VadEvent.SPEECH_STARTED:
            self._utterance_start = max(self._audio.base, ep.speech_start_window * WINDOW - _PREROLL)
            if self._echo.audible(time.perf_counter()):  # over the reply: a backchannel, or a new turn?
                self._over.begin(ep.speech_start_window * WINDOW, (ep.windows - ep.speech_start_window) * WINDOW)
                return
            self._emit(SpeechStarted(self._next_turn_id, ep.speech_start_window * WINDOW / STT_SAMPLE_RATE))
            if self.config.barge_in and self._current is not None:
                await self.interrupt()
        elif event is VadEvent.PAUSE:
            self._over.paused()  # speech over the reply: judged at its pause
            if self._over.fragment is None:
                self._start_early_turn()
        elif event is VadEvent.RESUMED:
            self._over.resumed()
            self._eot.resumed()
            if self._over.fragment is None:
                self._drop_early_turn()
        elif event is VadEvent.SPEECH_ENDED:
            end = ep.speech_end_window * WINDOW + _TAIL
            if self._over.fragment is not None:
                self._over.fragment.ended = end  # its verdict finishes it
            else:
                self._finish_utterance(end)

    def _start_early_turn(self) -> None:
        """Start the turn at the first silence, held back until the silence lasts: if the person does not go
        on, transcript and reply are under way (or ready) when the utterance is confirmed. Voice-to-first-
        audio counts from the end of the speech, not from noticing the pause."""
        ep = self._endpointer
        self._speech_end_wall = self._audio.arrival(ep.speech_end_window * WINDOW)
        end = ep.speech_end_window * WINDOW + _TAIL
        turn = Turn(self._next_turn_id, self._speech_end_wall, confirmed=False)
        turn.samples = self._audio.slice(self._utterance_start, end)
        self._early = turn
        self._early_end = end
        self._start_turn(turn)
        pause = ep.speech_end_window * WINDOW
        self._eot.pause(
            self._audio.slice(max(self._utterance_start, pause - turn_model.RATE * turn_model.SECONDS), pause)
        )

    def _end_after(self, silence_ms: int) -> None:
        """The verdict at this pause: the turn ends after `silence_ms` of silence (now, if it already lasted)."""
        ep = self._endpointer
        if not self._closed and self._over.fragment is None and ep.require(silence_ms):
            self._finish_utterance(ep.speech_end_window * WINDOW + _TAIL)

    async def _transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        """Speech-to-text of part of the stream (a partial transcript, a fragment over the reply), live."""
        stt = self.core.engines.stt
        transcript = await self.core.workers["stt"].run(
            stt.transcribe,
            audio,
            language=self.config.language.split("-")[0] or None,
            fallback=home_language(self.avatar.language, self.settings.languages),
            priority=Priority.LIVE,
            compute=stt.capabilities.local,
        )
        return transcript.text

    def _backchannel(self, overlap: Fragment, text: str) -> None:
        end = overlap.ended or self._endpointer.speech_end_window * WINDOW + _TAIL
        reply = self._reply.id if self._reply is not None else ""
        self._emit(BackchannelEvent(reply, overlap.start / STT_SAMPLE_RATE, end / STT_SAMPLE_RATE, text))
        log.info("session %s: backchannel %r over the reply", self.session_id, text)
        if self._endpointer.in_speech:
            self._endpointer.reset()
        self._utterance_start = self._audio.position

    async def _take_turn(self, overlap: Fragment, why: str) -> None:
        """Speech over the reply that is not a backchannel: a turn of its own (and an interruption)."""
        log.info("session %s: speech over the reply takes the turn (%s)", self.session_id, why)
        self._emit(SpeechStarted(self._next_turn_id, overlap.start / STT_SAMPLE_RATE))
        if self.config.barge_in:
            await self.interrupt()
        if overlap.ended is not None:
            self._finish_utterance(overlap.ended)
        elif self._endpointer.paused:
            self._start_early_turn()

    def _finish_utterance(self, end: int) -> None:
        early = self._early
        if early is not None and self._early_end == end:
            self._early = None
            turn_id = self._take_turn_id()
            assert turn_id == early.id
            self._emit(SpeechEnded(turn_id, end / STT_SAMPLE_RATE))
            turn = early
            self._confirm(early)
        else:
            self._drop_early_turn()
            turn_id = self._take_turn_id()
            self._emit(SpeechEnded(turn_id, end / STT_SAMPLE_RATE))
            turn = Turn(turn_id, self._speech_end_wall or time.perf_counter())
            turn.samples = self._audio.slice(self._utterance_start, end)
            self._start_turn(turn)
        turn.timings.end_of_turn = max(0.0, time.perf_counter() - turn.speech_end_wall)
        verdict = self._eot.take()
        if verdict is not None and verdict.probability is not None:
            turn.timings.end_of_turn_probability = verdict.probability
        self._utterance_start = end

    def _take_turn_id(self) -> str:
        turn_id, self._next_turn_id = self._next_turn_id, uuid.uuid4().hex
        return turn_id

    # -- events -----------------------------------------------------------------------------------

    def _put(self, event: Event) -> None:
        """Queue an event for the reader; a reader that falls too far behind ends the session."""
        if self._closed:
            return
        if self._events.qsize() >= self.settings.converse_event_queue:
            self._overflow()
            return
        self._events.put_nowait(event)

    def _overflow(self) -> None:
        log.warning("session %s: the client stopped reading events; closing it", self.session_id)
        self.failure = AvatarError(
            f"The client did not read its events ({self.settings.converse_event_queue} waiting); "
            "the conversation was closed.",
            ErrorCode.RESOURCE_EXHAUSTED,
        )
        self._closed = True
        while not self._events.empty():  # what nobody reads is not kept
            self._events.get_nowait()
        for task in list(self._tasks):
            task.cancel()
        self._events.put_nowait(None)

    def _end(self) -> None:
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(None)

    def _emit(self, event: Event) -> None:
        if event.turn_id not in self._cancelled:
            self._put(event)

    def _emit_turn(self, turn: Turn, event: Event) -> None:
        if not turn.confirmed:
            turn.held.append(event)
            if isinstance(event, TranscriptEvent) and turn is self._early:
                self._eot.words(event.text)  # the words of the speculative turn: do they end a sentence?
            return
        if isinstance(event, AudioChunkEvent) and event.turn_id not in self._cancelled:
            now = time.perf_counter()
            if not turn.timings.voice_to_first_audio:
                turn.timings.voice_to_first_audio = now - turn.speech_end_wall
            samples = np.frombuffer(event.pcm, dtype="<i2").astype(np.float32) / 32768.0
            self._echo.add(turn.id, samples, event.sample_rate, event.start_seconds, now)
            self._reply = turn
        self._emit(event)

    # -- turns ------------------------------------------------------------------------------------

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

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_turn(self, turn: Turn) -> None:
        previous = self._current.task if self._current else None

        async def run() -> None:
            if previous is not None:  # turns answer in order
                await _ended(asyncio.shield(previous))
            self._current = turn
            try:
                await self.core.runner.run(self.plan, turn, lambda event: self._emit_turn(turn, event))
            except Exception as exc:  # an AvatarError, or a bug: this turn fails, the session goes on
                public = for_client(exc)  # internal details: to the log, under the error id the client gets
                self._emit_turn(turn, ErrorEvent(turn.id, public.code.value, public.message))
            finally:
                if self._current is turn:
                    self._current = None

        turn.task = self._spawn(run())
        self._turns.add(turn.task)
        turn.task.add_done_callback(self._turns.discard)
        self._current = self._current or turn


async def _ended(awaitable: asyncio.Future[None]) -> None:
    """Wait for a task (often a cancelled one) to end, whatever its outcome: its own events said how it ended.
    Only a cancel of the waiting task itself goes on up: it must not be mistaken for the other's."""
    try:
        await awaitable
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
    except Exception:  # that turn's error event reported it
        pass
