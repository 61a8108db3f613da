"""The in-character guard: what breaks character, and a turn that never says it."""

from __future__ import annotations

import pytest

from avatar_server.character import breaks_character, persona_line
from avatar_server.core.service import AvatarCore
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.personas import Avatar
from avatar_server.settings import Settings
from avatar_server.values import Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, fake_core


@pytest.mark.parametrize(
    "text",
    [
        "I'm an AI designed to assist with programming tasks.",
        "Hello! I'm Sarah, a creative writing assistant.",
        "As an AI language model, I cannot have opinions.",
        "My name is Alex.",
        "My name is Olena and I am a student.",  # the person's words said back as the avatar's
        "Facts about you: you were born in 1906.",
        "I am Qwen, created by Alibaba Cloud.",
        "Я штучний інтелект і не маю імені.",
        "Я мовна модель.",
        "I am a robot.",
        "As a rear admiral, I don't have personal preferences or opinions.",
        "What you say about yourself: I was born in 1906.",
    ],
)
def test_out_of_character_pieces_are_caught(text: str) -> None:
    assert breaks_character(text, "Grace Hopper")


@pytest.mark.parametrize(
    "text",
    [
        "I'm Grace Hopper, and I wrote the first compiler.",
        "I am Grace. Ask me anything.",
        "I'm happy to help you with that.",
        "I'm Glad you asked! Compilers translate code.",  # a capital that is not a name: a word follows
        "I programmed the Harvard Mark I.",
        "Your name is Taras.",
        "Мене звати Ґрейс Хоппер, я програмістка.",
        "The assistant secretary of the Navy visited us.",
        "I am a computer pioneer and a rear admiral.",
        "A robot is a machine that follows a program.",
    ],
)
def test_the_persona_s_own_words_pass(text: str) -> None:
    assert breaks_character(text, "Grace Hopper") == ""


def _core(reply: str) -> tuple[AvatarCore, dict[str, Avatar]]:
    core, avatars = fake_core(FakeLLM(reply), Settings(reply_max_sentences=3))
    return core, avatars  # type: ignore[return-value]


@pytest.mark.parametrize("live", [False, True])
async def test_a_reply_that_breaks_character_first_is_replaced_by_the_persona_line(live: bool) -> None:
    core, avatars = _core("Hello! I'm Sarah, a creative writing assistant. I love stories.")
    outputs = Outputs(audio=False, video=False, animation=False)
    if live:
        turn = Turn(id="t", user_text="Who are you?")
        await core.runner.run(TurnPlan(avatars["grace"], "s", "en", "", outputs, live=True), turn, lambda e: None)  # type: ignore[arg-type]
        reply = " ".join(turn.spoken)
    else:
        reply = (await core.interact(TurnRequest(text="Who are you?", outputs=outputs))).reply_text
    # Live, the greeting was out before the next piece broke character; the line follows it.
    assert reply == ("Hello! " if live else "") + persona_line("Grace Hopper", "en")
    assert "Sarah" not in reply


async def test_a_reply_that_breaks_character_later_ends_before_it() -> None:
    core, _ = _core("A compiler turns words into machine code. As an AI, I find that fascinating. Bye.")
    outputs = Outputs(audio=False, video=False, animation=False)
    reply = (await core.interact(TurnRequest(text="What is a compiler?", outputs=outputs))).reply_text
    assert reply == "A compiler turns words into machine code."
    llm = core.engines.llm
    assert isinstance(llm, FakeLLM) and llm.closed  # the model was stopped


def test_the_persona_line_is_in_the_reply_language() -> None:
    assert "Grace Hopper" in persona_line("Grace Hopper", "en")
    assert any("а" <= c <= "я" for c in persona_line("Grace Hopper", "uk"))
