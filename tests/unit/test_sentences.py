"""Sentence ends in English and Ukrainian: abbreviations, decimals, initials, numbers; whole texts, streams
token by token, reply shaping and a whole turn."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from avatar_server.core.engines import Engines
from avatar_server.core.service import AvatarCore
from avatar_server.core.turn_state import Turn, TurnPlan
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.engines.llm.reply import SentenceSplitter, collect_reply, shape_reply
from avatar_server.engines.llm.sentences import ends_sentence, split_sentences
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.values import Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, FakeSTT, FakeTTS

SPLITS = [
    # English: titles, Latin abbreviations, "U.S.", times, decimals, initials, ordinals, years, lists
    ["I met the next-door neighbor, Mr. Smith.", "He was kind."],
    ["Mrs. Jones and Ms. Lee met Dr. Watson on Baker St. in London.", "It rained."],
    ["Prof. Smith and Martin Luther King Jr. spoke.", "Then St. Louis cheered."],
    ["I like fruit, e.g. apples, i.e. red ones, etc. and more.", "Really."],
    ["We had apples, pears, etc.", "Then we left."],
    ["I served in the U.S. Navy and moved to the U.S. in 1952.", "It was cold."],
    ["We meet at 9 a.m. tomorrow.", "Bring coffee."],
    ["Pi is 3.14 and e is about 2.72.", "Nice numbers, 1.5 times better."],
    ["J. R. R. Tolkien wrote books.", "Grace M. Hopper wrote compilers."],
    ["She came 1st.", "He came 2nd."],
    ["I was born in 1906.", "I joined the Navy in 1943."],
    ["Two steps: 1. Open it.", "2. Save it."],
    ["No.", "I don't think so, see No. 5 instead."],
    ["So did I.", "Then we left."],
    ['"Really?" she asked.', "Yes!", "Wait...", "What?"],
    ["Rear Adm. Grace Hopper retired in 1986.", "She was 79."],
    # Ukrainian: "т. д.", "т. п.", "ім.", "вул.", "р." after a year, "с.", "див.", "напр.", initials
    ["Я люблю яблука, груші і т. д.", "Це смачно."],
    ["Фрукти, овочі і т. п.", "Все корисне."],
    ["Ми вчили фізику, хімію і т.д.", "Було цікаво."],
    ["Університет ім. Т. Г. Шевченка великий.", "Він у Києві."],
    ["Я живу на вул. Хрещатик.", "Це центр."],
    ["Вона народилася у 1906 р. в Нью-Йорку.", "Вона була вченою."],
    ["Вона народилася у 1906 р.", "Вона була вченою."],
    ["Біля р. Дніпро гарно.", "У XX ст.", "Він жив там."],
    ["Див. розділ 3.5 у книзі.", "Там усе є."],
    ["Напр. комп'ютери, телефони тощо.", "Все це техніка."],
    ["Це було у с. Моринці.", "Гарне село."],
    ["Тарас Г. Шевченко писав вірші.", "Проф. Іваненко знає це."],
    ["Хто там?", "Це я.", "Добре!"],
]


@pytest.mark.parametrize("sentences", SPLITS, ids=lambda s: s[0][:32])
def test_split_sentences(sentences: list[str]) -> None:
    assert split_sentences(" ".join(sentences)) == sentences


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("I met the next-door neighbor, Mr.", False),
        ("Ask Dr.", False),
        ("It was Grace M.", False),
        ("Я живу на вул.", False),
        ("Університет ім.", False),
        ("Фрукти, овочі і т.", False),
        ("for example, e.g.", False),
        ("Hello", False),
        ("I was born in 1906.", True),
        ("I moved to the U.S.", True),
        ("We had apples, pears, etc.", True),
        ("Фрукти, овочі і т. д.", True),
        ("Вона народилася у 1906 р.", True),
        ("Хто там? Це я.", True),
        ("Hello!", True),
        ('He said "Hi."', True),
        ("Really…", True),
    ],
)
def test_ends_sentence(text: str, ends: bool) -> None:
    assert ends_sentence(text) is ends


def test_a_number_at_the_end_of_a_stream_may_go_on() -> None:
    assert ends_sentence("It costs 3.")
    assert not ends_sentence("It costs 3.", more_may_follow=True)  # "3.14" may follow
    assert ends_sentence("I met Mr. Smith.", more_may_follow=True)


TOKENIZATIONS = {
    "characters": lambda text: list(text),
    "word pieces": lambda text: re.findall(r"\s*\S{1,3}", text),
    "words": lambda text: re.findall(r"\s*\S+", text),
    # the way a BPE tokenizer cuts abbreviations: " Mr", ".", " Smith"
    "points apart": lambda text: re.findall(r"\s*[^\s.]+|\.", text),
}


def feed(splitter: SentenceSplitter, tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        out += splitter.feed(token)
    rest = splitter.flush()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize("how", TOKENIZATIONS)
@pytest.mark.parametrize("sentences", SPLITS, ids=lambda s: s[0][:32])
def test_a_stream_is_cut_where_the_whole_text_is(sentences: list[str], how: str) -> None:
    text = " ".join(sentences)
    assert feed(SentenceSplitter(), TOKENIZATIONS[how](text)) == sentences


@pytest.mark.parametrize("sentences", SPLITS, ids=lambda s: s[0][:32])
def test_hurried_pieces_never_end_at_an_abbreviation(sentences: list[str]) -> None:
    text = " ".join(sentences)
    pieces = feed(SentenceSplitter(min_words=2, max_words=3, hurry=True), TOKENIZATIONS["points apart"](text))
    assert " ".join(pieces) == text
    # A piece ends a sentence exactly where the text has one: a piece ending "Mr." or "Т." never counts.
    ended = [p for p in pieces if ends_sentence(p)]
    assert len(ended) == len(sentences)
    for piece in pieces:
        last = piece.split()[-1]
        assert not re.fullmatch(r"(Mr|Mrs|Ms|Dr|Prof|St|Adm|ім|вул|див|напр|с|т)\.|(?!I\.)[A-ZА-ЯІЇЄҐ]\.", last), pieces


def test_the_stream_holds_an_abbreviation_until_the_next_word() -> None:
    s = SentenceSplitter()
    assert s.feed("I met the next-door neighbor, Mr") == []
    assert s.feed(".") == []
    assert s.feed(" ") == []  # the next word decides
    assert s.feed("Smith. He") == ["I met the next-door neighbor, Mr. Smith."]
    assert s.flush() == "He"


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        (
            "I met the next-door neighbor, Mr. Smith. He was kind. He had a dog.",
            "I met the next-door neighbor, Mr. Smith. He was kind.",
        ),
        ("Hello there. I think that the", "Hello there."),  # the token limit cut the second sentence
        ("I live next to my neighbor, Mr.", "I live next to my neighbor."),  # no finished sentence: clipped
        (
            "Університет ім. Т. Г. Шевченка великий. Він у Києві. Там гарно.",
            "Університет ім. Т. Г. Шевченка великий. Він у Києві.",
        ),
        ("Ми були у 1906 р. в Нью-Йорку. Потім у Вашингтоні і т.", "Ми були у 1906 р. в Нью-Йорку."),
        ("Nice to meet you", "Nice to meet you."),
    ],
)
def test_shape_reply_ends_at_a_sentence_end(text: str, reply: str) -> None:
    assert shape_reply(text, max_sentences=2, max_chars=200) == reply


def test_collect_reply_stops_at_the_second_sentence_not_at_an_abbreviation() -> None:
    produced: list[str] = []

    def tokens(text: str) -> Iterator[str]:
        for token in TOKENIZATIONS["points apart"](text):
            produced.append(token)
            yield token

    text = "I met Mr. Smith in the U.S. Navy. It costs 3.14 dollars. Never computed."
    assert collect_reply(tokens(text), max_sentences=2, max_chars=200) == (
        "I met Mr. Smith in the U.S. Navy. It costs 3.14 dollars."
    )
    assert "".join(produced) == "I met Mr. Smith in the U.S. Navy. It costs 3.14 dollars."


@pytest.mark.parametrize("live", [False, True])
async def test_a_turn_is_never_cut_at_mr(live: bool) -> None:
    settings = Settings(reply_max_sentences=2)
    avatars = load_avatars(settings.avatars_dir)
    engines = Engines(
        stt=FakeSTT(),
        llm=FakeLLM("Yes, I met the next-door neighbor, Mr. Smith. He was kind to Dr. J. Watson. He had a dog."),
        tts={"piper": FakeTTS("piper", ("en-us",)), "espeak": FakeTTS("espeak", ("en-us", "uk"))},
        fallback_tts="espeak",
        animator=PortraitAnimator(avatars, video_fps=25, video_size=128),
    )
    core = AvatarCore(settings, engines, avatars)
    outputs = Outputs(audio=False, video=False, animation=False)
    if live:  # pieces as they are cut (short ones first: nothing is playing yet)
        plan = TurnPlan(avatars["grace"], "s", "en", "", outputs, live=True)
        turn = Turn(id="t", user_text="Did you meet him?")
        await core.runner.run(plan, turn, lambda event: None)
        assert not any(p.endswith(("Mr.", "J.", "Dr.")) for p in turn.spoken), turn.spoken
        reply = " ".join(turn.spoken)
    else:
        reply = (await core.interact(TurnRequest(text="Did you meet him?", outputs=outputs))).reply_text
    assert reply == "Yes, I met the next-door neighbor, Mr. Smith. He was kind to Dr. J. Watson."


def test_sentences_run_together_get_their_space() -> None:
    assert shape_reply("No, I did not find a moth.As a rear admiral, I was brave.", max_sentences=1, max_chars=200) == (
        "No, I did not find a moth."
    )
    assert shape_reply("I served in the U.S.Navy and e.g.The Mark I.", max_sentences=3, max_chars=200) == (
        "I served in the U.S.Navy and e.g.The Mark I."
    )
    splitter = SentenceSplitter()
    assert splitter.feed("I did not find a moth.") == []
    assert splitter.feed("As a rear admiral, ") == ["I did not find a moth."]
