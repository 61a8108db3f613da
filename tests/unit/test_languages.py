"""Languages that work: detection limited to the served languages, the fallback when unsure, a typed text's
language, requests for languages not served, and a turn in a language the avatar cannot answer in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from avatar_server import languages
from avatar_server.core import validation
from avatar_server.core.engines import Engines
from avatar_server.core.service import AvatarCore
from avatar_server.core.voices import home_language
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.engines.stt.base import choose_language
from avatar_server.engines.stt.faster_whisper import FasterWhisperSTT
from avatar_server.engines.stt.openai import OpenAITranscriptionSTT
from avatar_server.errors import InvalidInput
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.values import AudioData, Outputs, TurnRequest
from tests.scripted_http import Reply, scripted_server
from tests.unit.fakes import FakeLLM, FakeSTT, FakeTTS

# Whisper base's detection (6 s window) on CMU Sphinx's "go forward ten meters" (pocketsphinx's goforward.raw).
GO_FORWARD = [("zh", 0.517), ("en", 0.354), ("ja", 0.104), ("nn", 0.006), ("uk", 0.0001)]
# ... and on espeak-ng's Ukrainian "Привіт! Як справи?": Whisper base does not hear Ukrainian in it.
ESPEAK_UK = [("la", 0.233), ("he", 0.176), ("el", 0.116), ("en", 0.019), ("uk", 0.003)]
SERVED = ("en", "uk")


# -- choosing among the served languages ------------------------------------------------------------------


def test_detection_takes_the_best_served_language() -> None:
    assert choose_language(GO_FORWARD, SERVED) == ("en", 0.354)
    assert choose_language([("ru", 0.5), ("uk", 0.4), ("en", 0.05)], SERVED) == ("uk", 0.4)
    assert choose_language(GO_FORWARD, ()) == ("zh", 0.517)  # nothing served: anything Whisper knows


def test_unsure_detection_takes_the_fallback() -> None:
    assert choose_language(ESPEAK_UK, SERVED, min_probability=0.25, fallback="uk") == ("uk", 0.003)
    assert choose_language(ESPEAK_UK, SERVED, min_probability=0.25, fallback="en") == ("en", 0.019)
    assert choose_language(ESPEAK_UK, SERVED, min_probability=0.25) == ("en", 0.019)  # no fallback: the best
    assert choose_language(GO_FORWARD, SERVED, min_probability=0.25, fallback="uk") == ("en", 0.354)  # sure
    assert choose_language(GO_FORWARD, SERVED, min_probability=0.5, fallback="uk") == ("uk", 0.0001)


def test_served_languages_the_detector_does_not_know() -> None:
    assert choose_language([("en", 0.9)], ("xx", "yy")) == ("xx", 0.0)
    assert choose_language([], (), fallback="en") == ("en", 0.0)


class _Detector:
    """Whisper's CTranslate2 model as far as detection goes: (token, probability) pairs, best first."""

    def __init__(self, pairs: list[tuple[str, float]]) -> None:
        self.pairs = pairs

    def detect_language(self, encoder_output: object) -> list[list[tuple[str, float]]]:
        return [[(f"<|{code}|>", p) for code, p in self.pairs]]


def _whisper(pairs: list[tuple[str, float]], served: tuple[str, ...], threshold: float) -> FasterWhisperSTT:
    stt = object.__new__(FasterWhisperSTT)  # the detection logic alone, without loading a model
    stt._model = type("Model", (), {"model": _Detector(pairs)})()  # type: ignore[assignment]
    stt._languages = served
    stt._min_probability = threshold
    return stt


def test_faster_whisper_detects_among_the_served_languages_only() -> None:
    stt = _whisper(GO_FORWARD, SERVED, 0.25)
    assert stt._language(object(), None, "uk") == ("en", 0.354)
    assert stt._language(object(), "uk", "en") == ("uk", 1.0)  # asked for: no detection
    assert _whisper(ESPEAK_UK, SERVED, 0.25)._language(object(), None, "uk") == ("uk", 0.003)
    assert _whisper(GO_FORWARD, (), 0.0)._language(object(), None, None) == ("zh", 0.517)


# -- the OpenAI transcription API: told the language when one is served, else checked afterwards ------------

SPEECH = (0.1 * np.sin(np.arange(16000) / 8)).astype(np.float32)


def _openai(url: str, served: tuple[str, ...], model: str = "whisper-1") -> OpenAITranscriptionSTT:
    return OpenAITranscriptionSTT(base_url=f"{url}/v1", api_key="sk-test", model=model, languages=served)


def _asked_language(body: bytes) -> str | None:
    marker = b'name="language"\r\n\r\n'
    if marker not in body:
        return None
    return body.split(marker, 1)[1].split(b"\r\n", 1)[0].decode()


def test_openai_stt_is_told_the_only_served_language() -> None:
    with scripted_server() as s:
        s.script("/v1/audio/transcriptions", Reply(body={"text": "go forward", "language": "english"}))
        result = _openai(s.url, ("en",)).transcribe(SPEECH, language=None, fallback="en")
        assert (result.text, result.language) == ("go forward", "en")
        assert [_asked_language(seen.body) for seen in s.seen] == ["en"]


def test_openai_stt_asks_again_when_it_heard_a_language_not_served() -> None:
    with scripted_server() as s:
        s.script(
            "/v1/audio/transcriptions",
            Reply(body={"text": "前进十米", "language": "chinese"}),
            Reply(body={"text": "go forward ten meters", "language": "english"}),
        )
        result = _openai(s.url, SERVED).transcribe(SPEECH, language=None, fallback="en")
        assert (result.text, result.language) == ("go forward ten meters", "en")
        assert [_asked_language(seen.body) for seen in s.seen] == [None, "en"]


def test_openai_stt_keeps_a_served_language_and_reads_letters_when_unnamed() -> None:
    with scripted_server() as s:
        s.script("/v1/audio/transcriptions", Reply(body={"text": "Привіт", "language": "ukrainian"}))
        assert _openai(s.url, SERVED).transcribe(SPEECH, language=None, fallback="en").language == "uk"
        # gpt-4o transcription models answer plain json, naming no language: the letters tell.
        s.script("/v1/audio/transcriptions", Reply(body={"text": "Як справи?"}))
        result = _openai(s.url, SERVED, model="gpt-4o-transcribe").transcribe(SPEECH, language=None, fallback="en")
        assert result.language == "uk"
        s.script("/v1/audio/transcriptions", Reply(body={"text": "How are you?"}))
        result = _openai(s.url, SERVED, model="gpt-4o-transcribe").transcribe(SPEECH, language=None, fallback="en")
        assert result.language == "en"
        assert len(s.seen) == 3  # none asked twice


# -- a typed text's language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Who are you?", "en"),
        ("Wer bist du?", "en"),  # Latin letters say nothing: the avatar's language
        ("Привіт! Як справи?", "uk"),
        ("Як справи?", "uk"),  # no letter of either's own: Ukrainian (served)
        ("Привет! Как дела? Всё хорошо.", "ru"),
        ("你好，你是谁？", "zh"),
        ("こんにちは、お元気ですか？元気です。", "ja"),
        ("안녕하세요, 누구세요?", "ko"),
        ("مرحبا، من أنت؟", "ar"),
        ("שלום, מי אתה?", "he"),
        ("Γεια σου, ποιος είσαι;", "el"),
        ("🙂🚀🎉 123 !!!", "en"),
        ("Hello Привіт", "uk"),  # more Cyrillic letters than Latin
        ("Tell me about Київ, please, in English", "en"),
    ],
)
def test_text_language_by_script(text: str, expected: str) -> None:
    assert languages.text_language(text, SERVED, "en") == expected


def test_russian_letters_are_russian_where_only_russian_is_served() -> None:
    assert languages.text_language("Как дела?", ("en", "ru"), "en") == "ru"
    assert languages.text_language("Как дела?", SERVED, "en") == "uk"


def test_lines_in_the_avatars_language() -> None:
    assert languages.only_speaks("en", SERVED) == "Sorry, I only speak English and Ukrainian."
    assert languages.only_speaks("uk", SERVED) == "Вибачте, я розмовляю лише англійською та українською."
    assert languages.only_speaks("en-us", ("en", "uk", "de")) == "Sorry, I only speak English, Ukrainian and German."
    assert languages.only_speaks("en", ("en",)) == "Sorry, I only speak English."
    assert languages.describe(SERVED) == "en (English), uk (Ukrainian)"
    assert languages.answer_in("uk") == "Always answer in Ukrainian."


# -- settings and request validation --------------------------------------------------------------------


def test_languages_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().languages == ("en", "uk")
    monkeypatch.setenv("AVATAR_LANGUAGES", " EN, uk ,de,uk")
    monkeypatch.setenv("AVATAR_LANGUAGE_MIN_PROBABILITY", "0.4")
    settings = Settings()
    assert settings.languages == ("en", "uk", "de") and settings.language_min_probability == 0.4
    monkeypatch.setenv("AVATAR_LANGUAGES", "english")
    with pytest.raises(ValueError, match="ISO 639-1"):
        Settings()


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zz", r"'zz' is not served here; served languages: en \(English\), uk \(Ukrainian\)"),
        ("de", r"'de' is not served here"),
        ("english!", r"not a language code such as 'en' or 'uk'; served languages: en \(English\)"),
    ],
)
def test_a_language_not_served_is_refused(language: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validation.common(language=language, session_id="", voice="", tts_engines=(), served=SERVED)


def test_served_languages_are_accepted_with_a_region() -> None:
    for language in ("en", "uk", "en-US", "UK"):
        validation.common(language=language, session_id="", voice="", tts_engines=(), served=SERVED)


def test_home_language() -> None:
    assert home_language("en", SERVED) == "en"
    assert home_language("en-us", SERVED) == "en-us"
    assert home_language("de", SERVED) == "en"  # the avatar's own is not served: the first served one


# -- turns with fake engines ----------------------------------------------------------------------------

SPOKEN = Outputs(audio=True, video=False, animation=False)


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    return PortraitAnimator(load_avatars(Settings().avatars_dir), video_fps=25, video_size=128)


def _core(animator: PortraitAnimator, stt: FakeSTT | None = None, **overrides: Any) -> AvatarCore:
    settings = Settings(**overrides)
    engines = Engines(
        stt=stt or FakeSTT(),
        llm=FakeLLM("Hello there. I am Grace. A third sentence."),
        tts={"piper": FakeTTS("piper", ("en-us",)), "espeak": FakeTTS("espeak", ("en-us", "uk", "de", "zh"))},
        fallback_tts="espeak",
        animator=animator,
    )
    avatars = load_avatars(settings.avatars_dir)
    avatars["grace"] = replace(avatars["grace"], voice="piper:en-us")
    return AvatarCore(settings, engines, avatars)


def _calls(core: AvatarCore, engine: str) -> list[tuple[str, str, str]]:
    tts = core.engines.tts[engine]
    assert isinstance(tts, FakeTTS)
    return tts.calls


def _prompts(core: AvatarCore) -> list[str]:
    llm = core.engines.llm
    assert isinstance(llm, FakeLLM)
    return [m[0].content for m in llm.seen]


async def test_ukrainian_text_is_answered_in_ukrainian_by_a_ukrainian_voice(animator: PortraitAnimator) -> None:
    core = _core(animator)
    result = await core.interact(TurnRequest(text="Привіт! Як справи?", outputs=SPOKEN))
    assert result.language == "uk"
    assert _calls(core, "espeak")[-1][1:] == ("espeak:uk", "uk")
    assert "Always answer in Ukrainian." in _prompts(core)[-1]
    assert result.reply_text == "Hello there. I am Grace."  # (the fake model speaks English whatever it is told)


async def test_text_in_a_language_not_served_is_answered_in_the_avatars_own(animator: PortraitAnimator) -> None:
    """espeak-ng has a Chinese voice here, but Chinese is not served: the avatar says, in English, which
    languages it speaks (no model runs: a small one answers in the person's language whatever it is told)."""
    core = _core(animator)
    result = await core.interact(TurnRequest(text="你好，你是谁？", outputs=SPOKEN))
    assert result.language == "en"
    assert result.reply_text == "Sorry, I only speak English and Ukrainian."
    assert _calls(core, "piper")[-1] == (result.reply_text, "piper:en-us", "en")
    assert not _prompts(core) and not _calls(core, "espeak")
    # The conversation goes on in English, with that exchange remembered.
    again = await core.interact(TurnRequest(text="Who are you?", session_id=result.session_id, outputs=SPOKEN))
    assert again.reply_text == "Hello there. I am Grace."
    assert "你好，你是谁？" in [m.content for m in core.engines.llm.seen[-1]]  # type: ignore[attr-defined]


async def test_detected_language_without_a_voice_never_fails_the_turn(animator: PortraitAnimator) -> None:
    """A speech backend that hears a language not served (or one no voice speaks): answered in English."""
    core = _core(animator, stt=FakeSTT("你好", language="zh"))
    audio = AudioData(_wav(), "audio/wav")
    result = await core.interact(TurnRequest(audio=audio, outputs=SPOKEN))
    assert (result.language, result.transcription) == ("en", "你好")
    assert result.reply_text == "Sorry, I only speak English and Ukrainian."
    # German is served here and espeak-ng speaks it; with the piper voice alone it would not be.
    core = _core(animator, stt=FakeSTT("Hallo", language="de"), languages="en,uk,de")
    result = await core.interact(TurnRequest(audio=audio, outputs=SPOKEN))
    assert result.language == "de" and _calls(core, "espeak")[-1][1:] == ("espeak:de", "de")


async def test_a_ukrainian_avatar_says_it_in_ukrainian(animator: PortraitAnimator) -> None:
    core = _core(animator)
    core.avatars["grace"] = replace(core.avatars["grace"], language="uk")
    result = await core.interact(TurnRequest(text="こんにちは", outputs=SPOKEN))
    assert result.language == "uk"
    assert result.reply_text == "Вибачте, я розмовляю лише англійською та українською."
    assert _calls(core, "espeak")[-1][1:] == ("espeak:uk", "uk")


async def test_speech_detection_falls_back_to_the_avatars_language(animator: PortraitAnimator) -> None:
    core = _core(animator, stt=FakeSTT("Привіт"))  # a detector that is never sure: the fallback it is given
    core.avatars["grace"] = replace(core.avatars["grace"], language="uk")
    result = await core.interact(TurnRequest(audio=AudioData(_wav(), "audio/wav"), outputs=SPOKEN))
    assert result.language == "uk"


async def test_language_not_served_is_refused_before_any_engine_runs(animator: PortraitAnimator) -> None:
    core = _core(animator)
    with pytest.raises(InvalidInput, match="served languages: en"):
        await core.interact(TurnRequest(audio=AudioData(_wav(), "audio/wav"), language="zz"))
    assert not _prompts(core) and not _calls(core, "piper") and not _calls(core, "espeak")


def test_a_served_language_no_voice_speaks_stops_the_server(animator: PortraitAnimator) -> None:
    with pytest.raises(ValueError, match="no voice speaks fr"):
        _core(animator, languages="en,uk,fr")


async def test_long_inputs_in_any_script_are_answered(animator: PortraitAnimator) -> None:
    core = _core(animator)
    for chunk in ("Hello world. ", "Привіт світе. ", "你好世界。", "🙂🚀", "مرحبا بالعالم. "):
        text = (chunk * 2000)[:2000]
        result = await core.interact(TurnRequest(text=text, outputs=SPOKEN))
        assert result.reply_text and result.language in SERVED


def _wav() -> bytes:
    from avatar_server.media.audio import encode_wav

    return encode_wav((0.1 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)


async def test_a_live_turn_in_a_language_not_served_is_answered_with_the_line() -> None:
    from avatar_server.core.events import AudioChunkEvent, ReplyDelta, TurnCompleted
    from avatar_server.core.session import ConversationSession
    from avatar_server.engines.vad import SileroModel
    from avatar_server.values import SessionConfig
    from tests.unit.test_conversation import events_of, make_pipeline

    llm = FakeLLM("Hello there.")
    core = make_pipeline(SileroModel(), llm)
    session = ConversationSession(core, SessionConfig(session_id="live"))
    await session.text("مرحبا، من أنت؟")
    await session.finish()
    events = [event async for event in events_of(session)]
    deltas = "".join(e.text for e in events if isinstance(e, ReplyDelta))
    assert deltas == "Sorry, I only speak English and Ukrainian."
    assert any(isinstance(e, AudioChunkEvent) for e in events)
    done = [e for e in events if isinstance(e, TurnCompleted)]
    assert done and done[0].reply_text == deltas and not llm.seen
    assert core.memory.history("live")[0].assistant == deltas
    await session.close()
