"""A reply that opens as an earlier one did is asked again without the history, once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.engines.llm.repeats import HISTORY as HISTORY_REASON
from avatar_server.engines.llm.repeats import QUESTION, OpeningCheck, asked_again, opening, without_history
from avatar_server.values import ChatMessage, Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, fake_core

HISTORY = [
    ChatMessage("system", "You are Grace."),
    ChatMessage("user", "Were you afraid?"),
    ChatMessage("assistant", "As a rear admiral, I was not afraid of failing."),
    ChatMessage("user", "What is COBOL?"),
]


def test_openings_are_the_first_four_words() -> None:
    assert opening("As a rear admiral, I was brave.") == ("as", "a", "rear", "admiral")
    assert opening("Hi there!") is None


def test_the_first_words_are_held_until_the_opening_is_known() -> None:
    check = OpeningCheck(HISTORY)
    assert check.feed("As ") == ("", "")
    assert check.feed("a rear adm") == ("", "")
    assert check.feed("iral") == ("", "")  # "admiral" may still grow ("admirals")
    assert check.feed(",") == ("", HISTORY_REASON)

    check = OpeningCheck(HISTORY)
    assert check.feed("COBOL is a ") == ("", "")
    assert check.feed("language ") == ("COBOL is a language ", "")  # released at once
    assert check.feed("for business.") == ("for business.", "")


def test_without_history_nothing_is_held_and_a_short_reply_is_released_at_the_end() -> None:
    asked = ChatMessage("user", "Were you ever afraid, Grace?")
    assert OpeningCheck([HISTORY[0], asked]).feed("Yes ") == ("", "")  # it may open as the question does
    assert OpeningCheck([HISTORY[0], ChatMessage("user", "Hi?")]).feed("Yes ") == ("Yes ", "")
    check = OpeningCheck(HISTORY)
    assert check.feed("Yes.") == ("", "")
    assert check.flush() == "Yes."
    assert without_history(HISTORY) == [HISTORY[0], HISTORY[-1]]


class CopyingLLM(FakeLLM):
    """With a history, says its last reply again with the question's topic; without one, answers fresh."""

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        said = [m.content for m in messages if m.role == "assistant"]
        topic = messages[-1].content.rstrip("?").split()[-1]
        self.reply = f"{said[-1].rstrip('.')} and {topic}." if said else f"Fresh words about {topic}."
        return super().stream(messages, max_tokens=max_tokens, temperature=temperature)


@pytest.mark.parametrize("live", [False, True])
async def test_a_reply_copying_an_earlier_one_is_asked_again_without_the_history(live: bool) -> None:
    llm = CopyingLLM()
    core, avatars = fake_core(llm)
    outputs = Outputs(audio=False, video=False, animation=False)

    async def ask(text: str) -> str:
        if not live:
            return (await core.interact(TurnRequest(text=text, session_id="s", outputs=outputs))).reply_text
        turn = Turn(id=text, user_text=text)
        await core.runner.run(TurnPlan(avatars["grace"], "s", "en", "", outputs, live=True), turn, lambda e: None)
        return " ".join(turn.spoken)

    assert await ask("What about compilers?") == "Fresh words about compilers."
    assert await ask("And the Navy?") == "Fresh words about Navy."  # not "Fresh words about compilers and Navy."
    assert [m.role for m in llm.seen[-1]] == ["system", "user"]  # asked again with the question alone
    assert any(m.role == "assistant" for m in llm.seen[-2])


def test_a_reply_that_says_the_question_back_is_asked_again_with_a_nudge_after_the_question() -> None:
    messages = [ChatMessage("system", "You are Grace."), ChatMessage("user", "Де ти захистила докторську?")]
    check = OpeningCheck(messages)
    assert check.feed("Де ти захистила докторську.") == ("", QUESTION)
    again = asked_again(messages, QUESTION, "uk")
    assert again[0] == messages[0]  # the cached beginning stays
    assert again[1].content.startswith("Де ти захистила докторську?\n(") and "Ukrainian" in again[1].content
    assert asked_again(HISTORY, HISTORY_REASON) == without_history(HISTORY)
