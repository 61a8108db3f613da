"""The reply harness's automatic checks (bench/eval_replies.py) on replies written to pass or fail them."""

from __future__ import annotations

import pytest

from bench.eval_replies import Question, check_reply, language_of, load_questions

Q_EN = Question(id="t", lang="en", kind="fact", text="Where were you born?", expect=("New York",))
Q_UK = Question(id="t", lang="uk", kind="small-talk", text="Привіт! Як справи?")


def check(q: Question, reply: str) -> dict[str, bool | None]:
    return check_reply(q, reply, persona_names=("Grace", "Hopper", "Грейс", "Гоппер"), max_chars=160)


def test_a_good_reply_passes_everything() -> None:
    assert check(Q_EN, "I was born in New York City in 1906.") == {
        "in_character": True, "not_echo": True, "language": True, "fact": True, "complete": True,
    }  # fmt: skip
    assert check(Q_UK, "Привіт! У мене все добре, дякую.")["language"] is True


@pytest.mark.parametrize(
    "reply",
    [
        "As an AI, I don't have a birthplace.",
        "I've been a brilliant and creative AI, born in New York.",
        "My name is Alex and I was born in New York.",
        "Hello! I'm Sarah, born in New York.",
        "You're right, I'm a computer.",
        "Facts about you: you were born in New York.",
        "Я штучний інтелект.",
    ],
)
def test_out_of_character(reply: str) -> None:
    assert check(Q_EN, reply)["in_character"] is False


def test_the_persona_may_say_what_it_is() -> None:
    assert check(Q_EN, "I am a computer pioneer, born in New York.")["in_character"] is True
    assert check(Q_UK, "Завжди відповідай українською мовою.")["in_character"] is False  # the prompt's words


def test_the_persona_may_say_its_own_name() -> None:
    assert check(Q_EN, "I'm Grace Hopper, born in New York.")["in_character"] is True
    assert check(Q_UK, "Я Грейс Гоппер, радо вітаю!")["in_character"] is True


def test_echo_language_fact_and_completeness() -> None:
    assert check(Q_EN, "Where were you born?")["not_echo"] is False
    assert check(Q_EN, "Where were you born? Hmm.")["not_echo"] is False
    assert check(Q_EN, "I was born in Boston.")["fact"] is False
    assert check(Q_EN, "I was born in New York and")["complete"] is False
    assert check(Q_EN, "I was born in New York. " * 10)["complete"] is False  # over the length limit
    assert check(Q_UK, "Привет! У меня всё хорошо, спасибо.")["language"] is False  # Russian, not Ukrainian
    assert check(Q_UK, "Hello! I'm fine, thank you.")["language"] is False
    assert language_of("Я народилася в Нью-Йорку в 1906 році.") == "uk"


def test_the_question_set() -> None:
    questions = load_questions()
    assert len(questions) >= 40 and {q.lang for q in questions} == {"en", "uk"}
    assert {"identity", "fact", "small-talk", "off-topic", "joke", "help", "goodbye", "memory"} <= {
        q.kind for q in questions
    }
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:  # a follow-up's session starts with a turn before it
        if q.session and q.expect:
            assert any(p.session == q.session and p.id < q.id for p in questions), q.id
