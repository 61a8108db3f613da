"""One turn, for both RPCs: decode → STT → persona + memory → streamed LLM → pieces → TTS → animation →
remember what was said. It emits typed events; Interact collects them, Converse streams them.

A turn's state lives in its `Turn`; its tasks run in one TaskGroup, so cancelling the turn's task
(interrupt, disconnect, deadline) cancels all of them, and `turn.stop` ends the LLM's worker thread at
its next token. Every blocking engine call runs on that engine's own worker (see workers.py) with a
per-stage time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from avatar_server.character import breaks_character, persona_line
from avatar_server.core import validation
from avatar_server.core.contexts import LiveContexts
from avatar_server.core.engines import Engines
from avatar_server.core.events import (
    Event,
    ReplyDelta,
    TranscriptEvent,
    TurnCompleted,
)
from avatar_server.core.playback import PlaybackGuard
from avatar_server.core.prompt_cache import PromptWarmer
from avatar_server.core.speaking import Speaker
from avatar_server.core.stages import Stages
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.core.voices import home_language, reply_language
from avatar_server.core.workers import Priority, Workers
from avatar_server.engines.llm.base import ChatModel
from avatar_server.engines.llm.budget import TokenCounter, fit_prompt
from avatar_server.engines.llm.repeats import OpeningCheck, asked_again
from avatar_server.engines.llm.reply import SentenceSplitter, build_messages, ends_sentence, shape_reply
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.errors import AvatarError, InvalidInput, StageTimeout
from avatar_server.languages import no_answer, only_speaks
from avatar_server.media.audio import decode_audio
from avatar_server.memory import Memory
from avatar_server.observability import tracing
from avatar_server.settings import Settings
from avatar_server.values import ChatMessage, Exchange

log = logging.getLogger("avatar_server.turn")
# A reply cut for breaking character after fewer words than this said (a greeting) gets the persona line.
_SAID_ENOUGH = 4
T = TypeVar("T")

# A reply is cut at `reply_max_sentences` sentences; generation also stops this many characters past
# `reply_max_chars`, since the sentence that crosses the limit is not kept anyway.
_CHAR_SLACK = 40
# Audio in hand below which the next live piece is cut short: a whole sentence takes about this long to
# write and synthesize on 2 cores.
_HURRY_BELOW = 1.5
# The LLM pauses while a live turn's first piece is synthesized (2 cores), at most this long.
_FIRST_PIECE_PAUSE = 1.5


class TurnRunner:
    """Runs turns with the server's engines, workers, memory and playback guard."""

    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        workers: Workers,
        memory: Memory,
        playback: PlaybackGuard,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.workers = workers
        self.memory = memory
        self.playback = playback
        self.live_turns = 0  # live turns generating right now, across sessions
        self._stage = Stages(workers)
        self._speaker = Speaker(settings, engines, self._stage, playback)
        self.live_contexts = LiveContexts(engines.live_llms)
        self.count = TokenCounter(engines.llm)  # the prompt's tokens, by the model's tokenizer where it has one
        self.warmer = PromptWarmer(engines.llm, workers, self.live_contexts)

    async def run(self, plan: TurnPlan, turn: Turn, emit: Callable[[Event], None]) -> None:
        """The whole turn. Errors are raised (AvatarError); the caller maps them."""
        rpc = "converse" if plan.live else "interact"
        with tracing.turn_span(turn_id=turn.id, session_id=plan.session_id, rpc=rpc, avatar=plan.avatar.id) as span:
            try:
                await self._run(plan, turn, emit)
            finally:
                tracing.finish_turn(span, language=turn.language, completed=turn.completed, timings=turn.timings)

    async def _run(self, plan: TurnPlan, turn: Turn, emit: Callable[[Event], None]) -> None:
        s = self.settings
        started = time.perf_counter()
        timings = turn.timings
        priority = Priority.LIVE if plan.live else Priority.BATCH
        language = plan.language.lower()  # validated: empty or a served language
        served = s.languages
        home = home_language(plan.avatar.language, served)  # when unsure, or the person's is not served
        try:
            if turn.audio is not None:
                t0 = time.perf_counter()
                audio = turn.audio
                turn.samples = await self._stage(
                    "audio decoding",
                    "decode",
                    s.decode_timeout_seconds,
                    priority,
                    False,
                    decode_audio,
                    audio.data,
                    audio.mime_type,
                    max_seconds=s.max_audio_seconds,
                )
                timings.stt = time.perf_counter() - t0
            if turn.samples is not None:
                if plan.live:
                    await self._step_aside_for_playback(turn)
                t0 = time.perf_counter()
                transcript = await self._stage(
                    "speech-to-text",
                    "stt",
                    s.stt_timeout_seconds,
                    priority,
                    self.engines.stt.capabilities.local,
                    self.engines.stt.transcribe,
                    turn.samples,
                    language=language.split("-")[0] or None,
                    fallback=home,
                )
                timings.stt += time.perf_counter() - t0
                turn.user_text = transcript.text.strip()
                if not turn.user_text:
                    raise InvalidInput("No speech was recognized in the audio.")
                language = language or transcript.language
            else:
                language = language or validation.text_language(turn.user_text, served, home)
            emit(TranscriptEvent(turn.id, turn.user_text, True))
            speaking = plan.outputs.audio or plan.outputs.video or plan.outputs.animation
            # The reply's language and voice are chosen before the LLM runs. A language the avatar cannot
            # answer in (not served, or no voice speaks it) never fails the turn: it says, in its own
            # language, which ones it speaks (a line: a small model answers in the person's language anyway).
            reply = reply_language(
                self.engines,
                served,
                wanted_voice=plan.voice or plan.avatar.voice,
                home=home,
                language=language,
                speaking=speaking,
            )
            turn.language = language = reply.language
            voice = reply.voice
            fixed = only_speaks(language, served) if reply.unserved else ""
            system_prompt = plan.avatar.system_prompt(language)
            # Off the event loop: the memory may be Redis (bounded by its timeout, but not free).
            history = await asyncio.to_thread(self.memory.history, plan.session_id)
            messages = build_messages(system_prompt, history, turn.user_text)
            # The prompt and the reply always fit the model's context (a remote model's is taken to be
            # llm_context_tokens): older exchanges go first, then the question is shortened.
            messages = fit_prompt(messages, self.count, self.engines.llm, s)
            await self._reply(plan, turn, messages, voice, emit, fixed)
            timings.total = time.perf_counter() - started
            turn.completed = True
            emit(TurnCompleted(turn.id, turn.user_text, " ".join(turn.spoken), timings))
            log.info(
                "turn %s session=%s %s lang=%s%s voice=%s stt=%.3fs llm_first=%.3fs llm=%.3fs tts_first=%.3fs "
                "tts=%.3fs animation=%.3fs stepped_aside=%.3fs total=%.3fs",
                turn.id,
                plan.session_id,
                "live" if plan.live else "interact",
                language,
                f" (not served: {reply.unserved})" if reply.unserved else "",
                voice[1] if voice else "-",
                timings.stt,
                timings.llm_first_token,
                timings.llm,
                timings.tts_first_byte,
                timings.tts,
                timings.animation,
                turn.playback_wait,
                timings.total,
            )
        finally:
            turn.stop.set()  # the LLM's thread ends at its next token
            # Memory keeps only what was said: all of a completed turn, what went out of an interrupted live
            # one, nothing of an Interact reply nobody received.
            if turn.confirmed and turn.user_text and turn.spoken and (turn.completed or plan.live):
                exchange = Exchange(turn.user_text, " ".join(turn.spoken))
                # Shielded: a turn cancelled again while this runs still remembers what was said.
                add = asyncio.to_thread(
                    self.memory.add, plan.session_id, exchange, tokens=self.count.exchange(exchange)
                )
                trimmed = await asyncio.shield(add)
                if trimmed or turn.asked_again:  # the next prompt's beginning is not in the cache
                    history = await asyncio.to_thread(self.memory.history, plan.session_id)
                    prefix = build_messages(system_prompt, history, "")[:-1]
                    self.warmer.warm_later(plan, prefix)

    # -- stages -----------------------------------------------------------------------------------

    async def _step_aside_for_playback(self, turn: Turn) -> None:
        """Let another live reply that runs dry go first: at most `max_wait` over the whole turn."""
        turn.playback_wait += await self.playback.yield_to_playback(self.playback.max_wait - turn.playback_wait)

    async def _reply(
        self,
        plan: TurnPlan,
        turn: Turn,
        messages: list[ChatMessage],
        voice: tuple[TextToSpeech, str] | None,
        emit: Callable[[Event], None],
        fixed: str = "",
    ) -> None:
        """`fixed`: the whole reply, said instead of the model's (which then does not run)."""
        if plan.live:
            await self._step_aside_for_playback(turn)
        priority = Priority.LIVE if plan.live else Priority.BATCH
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[str | None] = asyncio.Queue()  # bounded by llm_max_tokens
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self.live_turns += plan.live
        try:
            async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as group:
                if fixed:  # said as it is: no model runs
                    tokens.put_nowait(None)
                else:
                    # Live turns get a model context of their own (the session's last one when it is free): the
                    # contexts take turns per token, live first, so a live reply never waits for another to end.
                    llm, worker = self.engines.llm, "llm"
                    if plan.live and self.live_contexts.models:
                        try:
                            async with asyncio.timeout(self.settings.llm_timeout_seconds):
                                index = await stack.enter_async_context(self.live_contexts.take(plan.session_id))
                        except TimeoutError:
                            raise StageTimeout("No language model context was free for a live reply in time.") from None
                        llm, worker = self.live_contexts.models[index], LiveContexts.worker(index)
                    group.create_task(
                        self._stage(
                            "language model",
                            worker,
                            None,
                            priority,
                            False,
                            self._produce,
                            llm,
                            worker,
                            messages,
                            tokens,
                            loop,
                            turn,
                            priority,
                        )
                    )
                if voice is not None:
                    group.create_task(self._speaker.speak(plan, turn, pieces, voice, emit))
                await self._shape(plan, turn, tokens, pieces if voice is not None else None, emit, fixed)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        finally:
            self.live_turns -= plan.live
            turn.generating = False
            turn.stop.set()

    def _produce(
        self,
        llm: ChatModel,
        worker_name: str,
        messages: list[ChatMessage],
        out: asyncio.Queue[str | None],
        loop: asyncio.AbstractEventLoop,
        turn: Turn,
        priority: Priority,
    ) -> None:
        """The LLM's worker thread: stream tokens into the loop until done or told to stop (every token).
        A local model holds a compute slot per token, so live work of other stages runs between tokens.
        Each model context has exactly one worker, so its lock is never contended: a token step holding a
        slot never waits for a context held by a generation that waits for that slot."""
        s = self.settings
        worker = self.workers[worker_name]
        deltas = llm.stream(messages, max_tokens=s.llm_max_tokens, temperature=s.llm_temperature)
        cores = self.workers.budget.hold if llm.capabilities.local else None
        check = OpeningCheck(messages)  # a reply opening as an earlier one or the question did: asked again, once
        try:
            while True:
                if cores is not None:
                    with cores(priority):
                        delta = next(deltas, None)
                else:
                    delta = next(deltas, None)
                if delta is None:
                    if rest := check.flush():
                        loop.call_soon_threadsafe(out.put_nowait, rest)
                    break
                worker.beat()
                if turn.stop.is_set():
                    break
                delta, repeats = check.feed(delta)
                if repeats:
                    turn.asked_again = True
                    log.info("turn %s: the reply opened as the %s did; asked again", turn.id, repeats)
                    _close(deltas)
                    fresh = asked_again(messages, repeats, turn.language)
                    deltas = llm.stream(fresh, max_tokens=s.llm_max_tokens, temperature=s.llm_temperature)
                    continue
                if not delta:
                    continue
                loop.call_soon_threadsafe(out.put_nowait, delta)
                # 2 cores: while a live turn's first piece is synthesized, the next token waits, so the first
                # audio comes sooner. Never while another turn waits for the model, and never for long: the
                # pause must not hold the engine from anyone.
                paused = time.monotonic()
                while (
                    not turn.llm_go.wait(0.02)
                    and not turn.stop.is_set()
                    and worker.waiting == 0
                    and time.monotonic() - paused < _FIRST_PIECE_PAUSE
                ):
                    worker.beat()
        finally:
            _close(deltas)
            with contextlib.suppress(RuntimeError):  # the loop may be gone when a session is torn down
                loop.call_soon_threadsafe(out.put_nowait, None)

    async def _shape(
        self,
        plan: TurnPlan,
        turn: Turn,
        tokens: asyncio.Queue[str | None],
        pieces: asyncio.Queue[str | None] | None,
        emit: Callable[[Event], None],
        fixed: str = "",
    ) -> None:
        """Tokens → pieces to speak, within the reply limits (one rule for both RPCs); `fixed`: said first."""
        s = self.settings
        timings = turn.timings
        # Alone, a live turn speaks a short piece whenever its listener has little audio in hand (at first,
        # nothing). Under load whole sentences keep each session's audio continuous.
        busy = self.live_turns > 1
        splitter = SentenceSplitter(hurry=plan.live and not busy)
        sentences = chars = 0
        done = False
        ended = False  # the last piece ended a sentence
        whole: list[str] = []  # not live: the reply is spoken as one piece at the end
        produced = 0

        broke = ""  # why the reply broke character, if it did: nothing from there on is said
        said_words = 0

        def out(piece: str) -> None:
            nonlocal produced, broke, done, said_words
            if not broke and piece != fixed:
                broke = breaks_character(piece, plan.avatar.name)
            if broke:
                done = True
                turn.stop.set()
                return
            produced += 1
            said_words += len(piece.split())
            if not plan.live:
                whole.append(piece)
            elif pieces is None:
                turn.spoken.append(piece)
            else:
                if produced == 1:
                    turn.llm_go.clear()  # 2 cores: the first audio comes before more tokens
                pieces.put_nowait(piece)

        t0 = time.perf_counter()
        turn.generating = True
        try:
            if fixed:
                emit(ReplyDelta(turn.id, fixed))
                chars += len(fixed)
                sentences += ends_sentence(fixed)
                out(fixed)
            while True:
                try:
                    async with asyncio.timeout(s.llm_timeout_seconds):  # (wait_for would swallow a cancel)
                        delta = await tokens.get()
                except TimeoutError:
                    raise StageTimeout(
                        f"The language model stage wrote nothing for {s.llm_timeout_seconds:g} s."
                    ) from None
                if delta is None:
                    break
                if done:
                    continue  # what the thread produced before it saw the stop
                if not timings.llm_first_token:
                    timings.llm_first_token = time.perf_counter() - t0
                emit(ReplyDelta(turn.id, delta))
                chars += len(delta)
                if plan.live:
                    in_hand = turn.playback.slack(time.perf_counter()) if turn.playback else 0.0
                    splitter.hurry = not busy and in_hand < _HURRY_BELOW
                for piece in splitter.feed(delta):
                    ended = ends_sentence(piece)
                    sentences += ended
                    out(piece)
                if sentences >= s.reply_max_sentences or chars > s.reply_max_chars + _CHAR_SLACK:
                    done = True
                    turn.stop.set()
            rest = splitter.flush()
            # Not spoken: a fragment the limits cut off, an unfinished sentence after a finished one (the
            # token limit cut it: a reply ends at a sentence end).
            if rest and not done and (ends_sentence(rest) or not ended):
                out(rest)
            if not plan.live:  # one piece: the whole reply, shaped
                text = shape_reply(" ".join(whole), max_sentences=s.reply_max_sentences, max_chars=s.reply_max_chars)
                if broke and len(text.split()) < _SAID_ENOUGH:  # "Hello!" and then someone else: the line alone
                    text = persona_line(plan.avatar.name, turn.language)
                (turn.spoken.append if pieces is None else pieces.put_nowait)(text or no_answer(turn.language))
            elif broke and said_words < _SAID_ENOUGH:  # live: a greeting may be out already; the line follows
                line, broke = persona_line(plan.avatar.name, turn.language), ""
                out(line)
            elif not produced:
                out(no_answer(turn.language))
            if broke:
                log.info("turn %s: the reply broke character (%r) and was cut there", turn.id, broke)
            timings.llm = time.perf_counter() - t0
        finally:
            turn.generating = False
            if pieces is not None:
                pieces.put_nowait(None)


def _close(deltas: object) -> None:
    close = getattr(deltas, "close", None)
    if close is not None:
        close()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a person should see from a turn's task group: an AvatarError before anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, AvatarError):
            return exc
    return leaves[0] if leaves else group
