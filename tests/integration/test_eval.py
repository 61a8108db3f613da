"""The reply harness's fixed subset against the real server (`make eval` asks all 42 questions).

What the avatar says is scored by bench/eval_replies.py's checks (in character, not an echo, in the user's
language, the persona's fact when asked, a complete sentence within the limits). The bars are the embedded
chain's level when the harness was written, less a margin: a regression in the persona prompt, the reply
shaping, memory or language handling fails here.
"""

from __future__ import annotations

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
from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow

MIN_ENGLISH = 0.85  # of the applicable checks (measured 0.96 with SmolLM2-135M)
MIN_UKRAINIAN = 0.5  # (measured 0.67: the tiny model often answers Ukrainian in English)


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
