"""The reply harness's fixed subset against the real server (`make eval` asks all 42 questions).

What the avatar says is scored by bench/eval_replies.py's checks (in character, not an echo, in the user's
language, the persona's fact when asked, a complete sentence within the limits). The bars are the embedded
chain's level when the harness was written, less a margin: a regression in the persona prompt, the reply
shaping, memory or language handling fails here.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from bench.eval_replies import (
    Scored,
    ask_all,
    check_pass_rate,
    check_reply,
    grpc_interact,
    load_questions,
    persona_names,
    subset,
)
from bench.reference_llm import MODEL, Reference, running
from tests.conftest import ServerProcess, start_server, stop_server

pytestmark = pytest.mark.slow

MIN_ENGLISH = 0.85  # of the applicable checks (all 42 questions: 0.98 with Qwen2.5-Coder-0.5B, 0.88 with SmolLM2)
MIN_UKRAINIAN = 0.5  # (all 42: 0.80 with Qwen, 0.67 with SmolLM2: small models echo or answer in English)


@pytest.fixture(scope="module")
def results(server: ServerProcess, channel: grpc.Channel) -> list[Scored]:
    settings = Settings()
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    questions = load_questions()
    names = persona_names(avatar.name, questions)
    return ask_all(
        subset(questions),
        grpc_interact(server.target),
        lambda q, reply: check_reply(q, reply, persona_names=names, max_chars=settings.reply_max_chars),
    )


def _report(results: list[Scored]) -> str:
    return "\n".join(
        f"[{r.question.id}] {r.reply!r} failed: {[c for c, v in r.checks.items() if v is False]}" for r in results
    )


def test_english_replies_pass_the_checks(results: list[Scored]) -> None:
    assert check_pass_rate(results, "en") >= MIN_ENGLISH, _report(results)
    who = next(r for r in results if r.question.id == "en-who")
    assert who.checks["fact"], _report(results)  # it knows its own name


def test_ukrainian_replies_pass_the_checks(results: list[Scored]) -> None:
    assert check_pass_rate(results, "uk") >= MIN_UKRAINIAN, _report(results)


def test_memory_follow_up(results: list[Scored]) -> None:
    follow_up = next(r for r in results if r.question.id == "en-mem-1b")
    assert follow_up.checks["not_echo"] and follow_up.checks["in_character"] is not None, _report(results)


def test_the_production_wiring_with_a_capable_model_passes_95_percent(tmp_path: Path) -> None:
    """All 42 questions through the openai-compatible engine, answered by the harness's reference endpoint
    (bench/reference_llm.py) on loopback: the persona prompt, memory, streaming and reply shaping carry a good
    model's replies intact. The reference answers a follow-up only when the request holds its session."""
    settings = Settings()
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    questions = load_questions()
    names = persona_names(avatar.name, questions)
    with running(avatar.name) as url:
        env = {"AVATAR_LLM_ENGINE": "openai-compatible", "AVATAR_LLM_BASE_URL": url, "AVATAR_LLM_MODEL": MODEL}
        server = start_server(tmp_path / "server.log", extra_env=env)
        try:
            results = ask_all(
                questions,
                grpc_interact(server.target),
                lambda q, reply: check_reply(q, reply, persona_names=names, max_chars=settings.reply_max_chars),
            )
        finally:
            stop_server(server)
    assert check_pass_rate(results, "en") >= 0.95, _report(results)
    assert check_pass_rate(results, "uk") >= 0.95, _report(results)
    memory = {r.question.id: r.reply for r in results if r.question.kind == "memory"}
    assert "Taras" in memory["en-mem-1b"] and "Оксана" in memory["uk-mem-1b"], memory


def test_the_reference_answers_only_what_the_request_carries() -> None:
    reference = Reference("Grace Hopper")
    system = {"role": "system", "content": "You are Grace Hopper."}
    assert reference.answer([system, {"role": "user", "content": "Who are you?"}]).startswith("I'm Grace Hopper")
    assert reference.answer([{"role": "user", "content": "Who are you?"}]) == "Hello."  # no persona prompt
    follow_up = {"role": "user", "content": "What is my name?"}
    assert reference.answer([system, follow_up]) == "I don't know."  # memory lost
    remembered = [system, {"role": "user", "content": "My name is Taras."}, {"role": "assistant", "content": "Hi!"}]
    assert reference.answer([*remembered, follow_up]) == "Your name is Taras."
