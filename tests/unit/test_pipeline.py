"""Pipeline logic with fake engines: validation, voice fallback, memory, reply shaping, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_server.core.engines import Engines
from avatar_server.core.service import AvatarCore as Pipeline
from avatar_server.core.voices import pick_voice
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.errors import EngineFailure, InvalidInput, TooLarge
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.values import AudioData, Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, FakeSTT, FakeTTS

NO_MEDIA = Outputs(audio=False, video=False, animation=False)


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    settings = Settings()
    return PortraitAnimator(load_avatars(settings.avatars_dir), video_fps=25, video_size=128)


@pytest.fixture
def pipeline(animator: PortraitAnimator) -> Pipeline:
    settings = Settings(max_text_chars=50)
    engines = Engines(
        stt=FakeSTT(),
        llm=FakeLLM(),
        tts={"piper": FakeTTS("piper", ("en-us",)), "espeak": FakeTTS("espeak", ("en-us", "uk", "de"))},
        fallback_tts="espeak",
        animator=animator,
    )
    avatars = load_avatars(settings.avatars_dir)
    avatars["grace"] = avatars["grace"].__class__(**{**avatars["grace"].__dict__, "voice": "piper:en-us"})
    return Pipeline(settings, engines, avatars)


async def test_reply_is_cut_at_sentence_ends_and_generation_stops(pipeline: Pipeline) -> None:
    result = await pipeline.interact(TurnRequest(text="hi", outputs=NO_MEDIA))
    assert result.reply_text == "Hello. I am a fake."
    llm = pipeline.engines.llm
    assert isinstance(llm, FakeLLM) and llm.closed == 1


async def test_memory_carries_a_session_and_only_that_session(pipeline: Pipeline) -> None:
    first = await pipeline.interact(TurnRequest(text="my name is Ann", outputs=NO_MEDIA))
    await pipeline.interact(TurnRequest(text="what is my name?", session_id=first.session_id, outputs=NO_MEDIA))
    await pipeline.interact(TurnRequest(text="who am I?", session_id="other", outputs=NO_MEDIA))
    llm = pipeline.engines.llm
    assert isinstance(llm, FakeLLM)
    second_prompt = [m.content for m in llm.seen[1]]
    assert "my name is Ann" in second_prompt
    assert all("Ann" not in m.content for m in llm.seen[2])


async def test_language_without_the_avatars_voice_falls_back_to_espeak(pipeline: Pipeline) -> None:
    result = await pipeline.interact(
        TurnRequest(text="Привіт!", outputs=Outputs(audio=True, video=False, animation=False))
    )
    assert result.language == "uk"
    espeak = pipeline.engines.tts["espeak"]
    assert isinstance(espeak, FakeTTS) and espeak.calls[-1][1:] == ("espeak:uk", "uk")
    result = await pipeline.interact(
        TurnRequest(text="Hello", outputs=Outputs(audio=True, video=False, animation=False))
    )
    piper = pipeline.engines.tts["piper"]
    assert isinstance(piper, FakeTTS) and piper.calls[-1][1] == "piper:en-us"


async def test_language_not_served_is_refused(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidInput, match=r"'xx' is not served here; served languages: en \(English\), uk"):
        await pipeline.interact(TurnRequest(text="hello", language="xx"))


async def test_engine_failure_is_reported_and_the_next_turn_works(pipeline: Pipeline) -> None:
    llm = pipeline.engines.llm
    assert isinstance(llm, FakeLLM)
    llm.fail_next = True
    with pytest.raises(EngineFailure, match="language model engine failed: model crashed"):
        await pipeline.interact(TurnRequest(text="hi", outputs=NO_MEDIA))
    result = await pipeline.interact(TurnRequest(text="hi", outputs=NO_MEDIA))
    assert result.reply_text


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (TurnRequest(), InvalidInput, "exactly one"),
        (TurnRequest(text="x", audio=AudioData(b"x", "audio/wav")), InvalidInput, "exactly one"),
        (TurnRequest(text="a" * 51), TooLarge, "limit is 50"),
        (TurnRequest(text="hi", avatar_id="zed"), InvalidInput, "Unknown avatar 'zed'"),
    ],
)
async def test_validation(pipeline: Pipeline, request_: TurnRequest, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await pipeline.interact(request_)


async def test_full_outputs_with_fake_speech(pipeline: Pipeline, tmp_path: Path) -> None:
    result = await pipeline.interact(TurnRequest(text="hi"))
    assert result.audio and result.video and result.track is not None
    assert result.video.duration == pytest.approx(1.0, abs=0.04)
    assert result.timings.total >= result.timings.llm


async def test_an_avatar_voice_of_an_engine_not_loaded_uses_the_primary_engine(pipeline: Pipeline) -> None:
    pipeline.avatars["grace"] = pipeline.avatars["grace"].__class__(
        **{**pipeline.avatars["grace"].__dict__, "voice": "xtts:grace"}
    )
    engine, voice = pick_voice(pipeline.engines, "xtts:grace", "en")
    assert (engine.name, voice) == ("piper", "piper:en-us")
    engine, voice = pick_voice(pipeline.engines, "xtts:grace", "uk")
    assert (engine.name, voice) == ("espeak", "espeak:uk")
