"""Memory that keeps the LLM's prompt cache warm: history trimmed in blocks, a token budget, the prompt
fitted to the context, the cache warmed after a trim."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from avatar_server import models
from avatar_server.core.service import AvatarCore
from avatar_server.engines.llm.base import LlmCapabilities
from avatar_server.engines.llm.budget import PER_MESSAGE, TokenCounter, fit_to_context
from avatar_server.engines.llm.reply import build_messages
from avatar_server.memory import ConversationMemory
from avatar_server.settings import Settings
from avatar_server.values import ChatMessage, Exchange, Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, fake_core

NO_MEDIA = Outputs(audio=False, video=False, animation=False)


class WordModel:
    """A model whose tokens are words."""

    def __init__(self) -> None:
        self.counted: list[str] = []

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return len(text.split())


def starts_with(prompt: list[ChatMessage], prefix: list[ChatMessage]) -> bool:
    return prompt[: len(prefix)] == prefix


@pytest.mark.parametrize("max_turns", [4, 6, 8])
def test_each_prompt_starts_with_the_last_one_except_at_block_boundaries(max_turns: int) -> None:
    memory = ConversationMemory(max_turns=max_turns, ttl_seconds=60, max_sessions=4, max_tokens=10_000)
    count = TokenCounter(WordModel())
    last: list[ChatMessage] = []
    trimmed_before = False
    breaks = []
    for k in range(1, 21):
        prompt = build_messages("You are Grace.", memory.history("s"), f"question {k}?")
        # The cache holds the last prompt and the reply: the next prompt continues it, but after a trim.
        if k > 1:
            assert starts_with(prompt, last) is not trimmed_before, k
            if trimmed_before:
                breaks.append(k)
        exchange = Exchange(f"question {k}?", f"answer {k}.")
        trimmed_before = memory.add("s", exchange, tokens=count.exchange(exchange))
        last = prompt
    # A trim drops the oldest half at once: the prompt's beginning changes once every max_turns // 2 + 1 turns.
    assert breaks == list(range(max_turns + 2, 21, max_turns // 2 + 1))


def test_the_token_budget_trims_in_blocks_too() -> None:
    memory = ConversationMemory(max_turns=100, ttl_seconds=60, max_sessions=4, max_tokens=1000)
    trims = [memory.add("s", Exchange(f"q{k}", f"a{k}"), tokens=300) for k in range(8)]
    # 300, 600, 900, then 1200 > 1000: the oldest go until at most 500 is left; and again.
    assert trims == [False, False, False, True, False, False, True, False]
    assert [e.user for e in memory.history("s")] == ["q6", "q7"]
    assert memory.add("s", Exchange("huge", "huge"), tokens=1200)  # larger than the whole budget: nothing kept
    assert memory.history("s") == []


def test_the_counter_counts_each_text_once() -> None:
    model = WordModel()
    count = TokenCounter(model)
    messages = build_messages("You are Grace Hopper.", [Exchange("hi there", "hello")], "how are you?")
    assert count.messages(messages) == 4 + 2 + 1 + 3 + 4 * PER_MESSAGE
    count.messages(messages)
    assert sorted(model.counted) == sorted(m.content for m in messages)  # the second turn looked them up
    assert TokenCounter(object())("a" * 30) == 11  # no tokenizer: bytes / 3, above real counts


def test_a_prompt_that_fits_is_left_alone() -> None:
    messages = build_messages("system words", [Exchange("q", "a")], "question")
    assert fit_to_context(messages, count=TokenCounter(WordModel()), context_tokens=200, reply_tokens=60) is messages


def test_an_overflowing_prompt_loses_its_oldest_exchanges_then_the_middle_of_the_question() -> None:
    count = TokenCounter(WordModel())
    history = [Exchange(f"question {k} " + "word " * 20, f"answer {k} " + "word " * 20) for k in range(6)]
    messages = build_messages("You are Grace.", history, "What now?")
    fitted = fit_to_context(messages, count=count, context_tokens=300, reply_tokens=60)
    assert count.messages(fitted) <= 300 - 60
    kept = [m.content.split()[1] for m in fitted[1:-1:2]]
    assert kept == ["3", "4", "5"]  # the oldest half went at once, as the memory's own blocks do
    assert fitted[0] == messages[0] and fitted[-1] == messages[-1]

    long_question = "Start of my question. " + "blah " * 2000 + "So, what do you think?"
    fitted = fit_to_context(
        build_messages("You are Grace.", history, long_question), count=count, context_tokens=300, reply_tokens=60
    )
    assert len(fitted) == 2 and count.messages(fitted) <= 300 - 60
    assert fitted[1].content.startswith("Start of my question.") and fitted[1].content.endswith("what do you think?")
    assert " … " in fitted[1].content


class CachingLLM(FakeLLM):
    """A local model with a tokenizer, a small context and a prompt cache to warm."""

    capabilities = LlmCapabilities(streaming=True, model="fake", local=True, context_tokens=400)

    def __init__(self) -> None:
        super().__init__("I am fine. Thanks for asking.")
        self.warmed: list[list[ChatMessage]] = []
        self.vary = False  # each reply opens differently (a model that repeats itself is asked again)

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        if self.vary:
            self.reply = f"Reply {len(self.seen)}: I am fine."
        return super().stream(messages, max_tokens=max_tokens, temperature=temperature)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def warm(self, messages: list[ChatMessage], *, max_tokens: int = 64) -> int:
        self.warmed.append(messages)
        return 0


def make_core(llm: CachingLLM) -> AvatarCore:
    core, _ = fake_core(llm, Settings(memory_turns=4, memory_max_tokens=10_000, llm_max_tokens=60))
    return core  # type: ignore[return-value]


async def test_after_a_trim_the_next_prompt_is_warmed_while_the_reply_is_spoken() -> None:
    llm = CachingLLM()
    llm.vary = True
    core = make_core(llm)
    for k in range(6):
        await core.interact(TurnRequest(text=f"How are you, take {k}?", session_id="s", outputs=NO_MEDIA))
        await _settle(core)
    # Turn 5 made the memory trim (5 > 4 exchanges: 2 left): the prompt of turn 6 began with a prefix
    # warmed right after turn 5, the persona and the two exchanges left.
    assert len(llm.warmed) == 1
    prefix = llm.warmed[0]
    assert [m.role for m in prefix] == ["system", "user", "assistant", "user", "assistant"]
    assert prefix[1].content == "How are you, take 3?"
    assert starts_with(llm.seen[5], prefix)


async def test_a_reply_asked_again_without_the_history_warms_the_next_prompt() -> None:
    llm = CachingLLM()  # every reply opens as the last: the second turn asks again with the question alone
    core = make_core(llm)
    for k in range(2):
        await core.interact(TurnRequest(text=f"How are you, take {k}?", session_id="s", outputs=NO_MEDIA))
        await _settle(core)
    assert [m.role for m in llm.seen[-1]] == ["system", "user"]
    # That left the context's cache with the question alone: the next prompt's prefix (persona + history)
    # is evaluated again while the reply is spoken.
    assert len(llm.warmed) == 1
    assert [m.role for m in llm.warmed[0]] == ["system", "user", "assistant", "user", "assistant"]


async def test_a_long_question_never_overflows_the_context() -> None:
    llm = CachingLLM()
    core = make_core(llm)
    await core.interact(TurnRequest(text="Hello there.", session_id="s", outputs=NO_MEDIA))
    question = "Tell me " + "more " * 300 + "please."  # 302 words against a context of 400 tokens
    result = await core.interact(TurnRequest(text=question, session_id="s", outputs=NO_MEDIA))
    assert result.reply_text == "I am fine. Thanks for asking."
    prompt = llm.seen[-1]
    assert TokenCounter(llm).messages(prompt) <= 400 - 60
    assert prompt[-1].content.startswith("Tell me more") and prompt[-1].content.endswith("please.")


async def _settle(core: AvatarCore) -> None:
    """Wait for background warm-ups of the prompt cache."""
    await asyncio.gather(*core.runner.warmer.warming)


def test_llama_cpp_warms_exactly_the_prefix_of_the_next_prompt() -> None:
    from avatar_server.engines.llm.llama_cpp import LlamaCppChat

    llm = LlamaCppChat(models.smollm2(), context_tokens=1024)
    history = [Exchange(f"Question {k}?", f"Answer {k}, in a few words.") for k in range(4)]
    assert llm.count_tokens("Hello there, how are you?") == 7
    list(llm.stream(build_messages("You are Grace.", history, "Next?"), max_tokens=2, temperature=0.0))
    prefix = build_messages("You are Grace.", history[2:], "")[:-1]  # after a trim
    tokens = llm.prefix_tokens(prefix)
    assert tokens
    left = llm.warm(prefix, max_tokens=8)
    assert 0 < left < len(tokens)  # a chunk at a time
    while left:
        left = llm.warm(prefix, max_tokens=8)
    assert list(llm._llm.eval_tokens)[: len(tokens)] == tokens
    assert llm.warm(prefix) == 0  # already there: nothing to do
    # The next request continues the warmed prefix: its prompt's tokens start with it.
    next_prompt = llm.prefix_tokens(build_messages("You are Grace.", history[2:], "And then?"))
    assert next_prompt is not None and next_prompt[: len(tokens)] == tokens


def test_a_20_turn_session_evaluates_only_its_new_text_at_every_turn() -> None:
    """The real model and the server's turn: after a trim the prefix was warmed while the reply was spoken, so
    no turn evaluates its history again (before: from turn 8 on, ~200 of ~400 prompt tokens every turn)."""
    from avatar_server.engines.llm.llama_cpp import LlamaCppChat

    evaluated: list[int] = []

    class Counting(LlamaCppChat):
        def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
            prompt = self.prefix_tokens(messages) or []
            cached = 0
            for a, b in zip(self._llm.eval_tokens, prompt, strict=False):
                if a != b:
                    break
                cached += 1
            evaluated.append(len(prompt) - cached)
            return super().stream(messages, max_tokens=max_tokens, temperature=temperature)

    llm = Counting(models.smollm2(), context_tokens=2048, seed=3)
    core: AvatarCore = fake_core(llm, Settings(llm_max_tokens=40, memory_turns=6))[0]  # type: ignore[assignment]

    async def session() -> list[float]:
        firsts = []
        for k in range(20):
            result = await core.interact(
                TurnRequest(text=f"Tell me about computers, part {k + 1}.", session_id="s", outputs=NO_MEDIA)
            )
            firsts.append(result.timings.llm_first_token)
            await _settle(core)  # the reply would be playing meanwhile
        return firsts

    firsts = asyncio.run(session())
    # Each turn evaluates its question and the last reply, never the history again (a trim came at turns 7,
    # 11, 15 and 19); the first turn evaluates the persona too.
    assert max(evaluated[1:]) <= 80, evaluated
    assert evaluated[19] <= 1.5 * evaluated[1] + 16, evaluated
    print("first token per turn (s):", " ".join(f"{f:.3f}" for f in firsts), "evaluated:", evaluated)


def test_llama_cpp_runs_with_llm_threads() -> None:
    from avatar_server.engines.factory import build_llm

    def threads(**overrides: object) -> tuple[int, int]:
        llm = build_llm(Settings(llm_bundled="smollm2-135m", **overrides))  # type: ignore[arg-type]
        return llm._llm.n_threads, llm._llm.n_threads_batch  # type: ignore[attr-defined]

    assert threads() == (2, 2)  # at most; `_Threads` drops to one while a core is busy
    assert threads(llm_threads=1) == (1, 1)
    assert threads(llm_threads=0, threads=3) == (3, 3)


def test_a_long_question_is_shortened_to_its_own_cap_first() -> None:
    count = TokenCounter(WordModel())
    history = [Exchange("question one", "answer one")]
    long_question = "Start of my question. " + "blah " * 500 + "So, what do you think?"
    messages = build_messages("You are Grace.", history, long_question)
    fitted = fit_to_context(messages, count=count, context_tokens=2048, reply_tokens=60, question_tokens=40)
    assert count(fitted[-1].content) <= 40 and fitted[:-1] == messages[:-1]  # the history stays: it fits
    assert fitted[-1].content.startswith("Start of my question.") and fitted[-1].content.endswith("think?")
    short = build_messages("You are Grace.", history, "What now?")
    assert fit_to_context(short, count=count, context_tokens=2048, reply_tokens=60, question_tokens=40) is short
