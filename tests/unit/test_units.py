"""Audio codec, memory, reply shaping, models, settings, personas, espeak-ng engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from avatar_server import models
from avatar_server.engines.llm.reply import collect_reply, shape_reply
from avatar_server.engines.tts.espeak import EspeakTTS
from avatar_server.errors import InvalidInput, TooLarge
from avatar_server.media.audio import MimeType, decode_audio, encode_wav, resample, to_pcm16
from avatar_server.memory import ConversationMemory
from avatar_server.models import ModelError, verify
from avatar_server.personas import AvatarConfigError, load_avatars
from avatar_server.settings import Settings
from avatar_server.values import Exchange


def tone(seconds: float, rate: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_wav_roundtrip_resamples_to_16k() -> None:
    wav = encode_wav(tone(1.5, 22050), 22050)
    out = decode_audio(wav, "audio/wav", max_seconds=10)
    assert len(out) == pytest.approx(24000, abs=32)


def test_raw_pcm_with_rate() -> None:
    out = decode_audio(to_pcm16(tone(1.0, 8000)), "audio/pcm; rate=8000", max_seconds=10)
    assert len(out) == pytest.approx(16000, abs=32)


def test_audio_caps_and_errors() -> None:
    with pytest.raises(TooLarge, match="limit is 1 s"):
        decode_audio(encode_wav(tone(2.0, 16000), 16000), "audio/wav", max_seconds=1)
    with pytest.raises(InvalidInput, match="outside"):
        decode_audio(b"\0\0" * 10, "audio/pcm;rate=100", max_seconds=1)
    with pytest.raises(InvalidInput, match="not audio/ogg"):
        decode_audio(encode_wav(tone(0.5, 16000), 16000), "audio/ogg", max_seconds=1)


def test_mime_parse() -> None:
    m = MimeType.parse("Audio/PCM; rate=16000; channels=1")
    assert m.essence == "audio/pcm" and m.params == {"rate": "16000", "channels": "1"}


def test_resample_keeps_duration() -> None:
    assert len(resample(tone(1.0, 48000), 48000, 16000)) == pytest.approx(16000, abs=32)


def test_memory_is_bounded_and_expires() -> None:
    now = [0.0]
    mem = ConversationMemory(max_turns=2, ttl_seconds=10, max_sessions=2, clock=lambda: now[0])
    for i in range(3):
        mem.add("a", Exchange(f"u{i}", f"a{i}"))
    assert [e.user for e in mem.history("a")] == ["u2"]  # over the limit: down to half of it
    mem.add("b", Exchange("x", "y"))
    mem.add("c", Exchange("x", "y"))
    assert mem.history("a") == [] and len(mem) == 2  # least recently used dropped
    now[0] = 11.0
    assert mem.history("b") == [] and len(mem) == 0


def test_a_full_memory_drops_its_oldest_half_at_once() -> None:
    mem = ConversationMemory(max_turns=6, ttl_seconds=10, max_sessions=2)
    sizes = []
    for i in range(12):
        mem.add("a", Exchange(f"u{i}", f"a{i}"))
        sizes.append(len(mem.history("a")))
    assert sizes == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4]  # the prompt's beginning changes every fourth turn
    assert [e.user for e in mem.history("a")] == ["u8", "u9", "u10", "u11"]


def test_shape_reply() -> None:
    assert shape_reply("assistant: One. Two! Three?", max_sentences=2, max_chars=100) == "One. Two!"
    # No whole sentence fits: the words that do (not the one the limit cuts through), ended as a sentence.
    assert shape_reply("word " * 50, max_sentences=2, max_chars=20) == "word word word word."
    assert shape_reply("A long first sentence here. B.", max_sentences=2, max_chars=10) == "A long."


def test_collect_reply_stops_early() -> None:
    produced = []

    def gen():  # type: ignore[no-untyped-def]
        for w in ["Hi.", " I", " am", " Grace.", " More", " text", " here."]:
            produced.append(w)
            yield w

    assert collect_reply(gen(), max_sentences=2, max_chars=100) == "Hi. I am Grace."
    assert len(produced) == 4


def test_a_configured_seed_makes_llama_replies_reproducible() -> None:
    from avatar_server.engines.llm.llama_cpp import LlamaCppChat
    from avatar_server.values import ChatMessage

    ask = [ChatMessage("user", "Tell me a story about a ship.")]

    def replies(llm: LlamaCppChat) -> list[str]:
        return ["".join(llm.stream(ask, max_tokens=16, temperature=0.9)) for _ in range(3)]

    seeded = replies(LlamaCppChat(models.smollm2(), seed=7))
    assert len(set(seeded)) == 1 and seeded[0]
    assert len(set(replies(LlamaCppChat(models.smollm2())))) > 1  # unseeded, sampling varies


def test_model_checksum_is_verified(tmp_path: Path) -> None:
    f = tmp_path / "pkg" / "m.bin"
    f.parent.mkdir()
    f.write_bytes(b"model")
    good = hashlib.sha256(b"model").hexdigest()
    verify(f, good)
    verify(f, good, tmp_path / "models" / "verified")
    assert [p.name for p in f.parent.iterdir()] == ["m.bin"]  # nothing written beside the model
    assert len(list((tmp_path / "models" / "verified").iterdir())) == 1
    f.write_bytes(b"tampered")  # size and mtime change: the stamp no longer vouches for it
    with pytest.raises(ModelError, match="sha256"):
        verify(f, good, tmp_path / "models" / "verified")
    with pytest.raises(ModelError, match="sha256"):
        verify(f, good)
    with pytest.raises(ModelError, match="missing"):
        verify(tmp_path / "none.bin", "0" * 64)


def test_settings_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 6000\nmax_text_chars: 10\n")
    monkeypatch.setenv("AVATAR_MAX_TEXT_CHARS", "20")
    s = Settings(config_file=cfg)
    assert s.port == 6000 and s.max_text_chars == 20  # environment wins over the file
    with pytest.raises(FileNotFoundError):
        Settings(config_file=tmp_path / "missing.yaml")


def test_avatar_files(tmp_path: Path) -> None:
    avatars = load_avatars(Settings().avatars_dir)
    grace = avatars["grace"]
    assert grace.portrait.path.is_file() and grace.portrait.landmarks is not None
    prompt = grace.system_prompt("uk")
    assert "A-0" in prompt and "Always answer in Ukrainian." in prompt
    (tmp_path / "bad.yaml").write_text("id: x\n")
    with pytest.raises(AvatarConfigError, match=r"bad\.yaml"):
        load_avatars(tmp_path)


def test_espeak_engine_gives_phoneme_timings_in_many_languages() -> None:
    tts = EspeakTTS()
    assert tts.voice_for("uk") == "espeak:uk" and tts.voice_for("en") == "espeak:en-us"
    speech = tts.synthesize("Hello world", voice="", language="en")
    assert 0.5 < speech.duration < 3
    assert speech.phonemes and speech.phonemes[0].start < speech.phonemes[-1].end <= speech.duration + 1e-6
    assert any("l" in p.phoneme for p in speech.phonemes)
    uk = tts.synthesize("Привіт", voice="espeak:uk", language="uk")
    assert uk.duration > 0.3 and uk.phonemes


def test_llama_threads_back_off_to_one_while_a_core_is_busy_and_try_all_again() -> None:
    from avatar_server.engines.llm.llama_cpp import _Threads

    threads = _Threads(2)
    assert [threads.step(0.021) for _ in range(5)] == [2] * 5  # free cores: both threads
    assert threads.step(0.0) == 2  # a step that computed nothing says nothing
    assert threads.step(0.045) == 1  # twice the fastest step: a core is taken
    steps = [threads.step(0.033) for _ in range(_Threads._BACK_OFF)]
    assert steps[:-1] == [1] * (_Threads._BACK_OFF - 1) and steps[-1] == 2  # then all again
    assert threads.step(0.022) == 2
    assert _Threads(1).step(0.5) == 1  # one thread: nothing to adapt
