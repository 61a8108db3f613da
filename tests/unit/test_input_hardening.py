"""Input hardening: audio containers (forced demuxer, codecs, rate, channels, length caps, no network), text
cleaning, language tags, ids and names, the token budget, session ids, error ids."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import threading
import time

import av
import numpy as np
import pytest

from avatar_server.core import validation
from avatar_server.engines.llm.base import LlmCapabilities
from avatar_server.engines.llm.budget import TokenCounter, estimate_tokens, fit_prompt
from avatar_server.engines.llm.reply import build_messages
from avatar_server.errors import AvatarError, EngineFailure, ErrorCode, InvalidInput, TooLarge, for_client
from avatar_server.media.audio import decode_audio, encode_wav
from avatar_server.session_ids import SessionIds, caller_id
from avatar_server.settings import Settings

SETTINGS = Settings()


# -- audio ---------------------------------------------------------------------------------------------


def wav_header_rate(rate: int, seconds: float = 0.1, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV whose header states `rate` and `channels`, holding `seconds` of 16 kHz-worth data."""
    data = b"\x00\x00" * int(16000 * seconds) * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encoded(fmt: str, codec: str, seconds: float, *, rate: int = 48000, options: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options or {}) as c:
        stream = c.add_stream(codec, rate=rate, layout="mono")
        if codec == "libopus":
            stream.bit_rate = 6000
        step = 960 * 50 if rate == 48000 else rate // 10
        silence = np.zeros((1, step), np.float32 if codec != "flac" else np.int16)
        for k in range(int(seconds * rate / step)):
            frame = av.AudioFrame.from_ndarray(silence, format="fltp" if codec != "flac" else "s16", layout="mono")
            frame.sample_rate, frame.pts = rate, k * step
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return buf.getvalue()


def refused(data: bytes, mime: str, max_seconds: float = 120) -> AvatarError:
    with pytest.raises(AvatarError) as err:
        decode_audio(data, mime, max_seconds=max_seconds)
    return err.value


def test_a_wav_header_of_1_hz_is_refused_for_its_rate_not_its_length() -> None:
    err = refused(wav_header_rate(1), "audio/wav")
    assert err.code is ErrorCode.INVALID_ARGUMENT and "sample rate is 1 Hz" in err.message


def test_six_channels_are_refused_before_decoding() -> None:
    err = refused(wav_header_rate(16000, channels=6), "audio/wav")
    assert err.code is ErrorCode.INVALID_ARGUMENT and "6 channels" in err.message


def test_a_codec_outside_pcm_opus_vorbis_is_named() -> None:
    err = refused(encoded("ogg", "flac", 1.0, rate=16000), "audio/ogg")
    assert err.code is ErrorCode.INVALID_ARGUMENT and "'flac'" in err.message


def test_the_declared_type_forces_the_demuxer() -> None:
    err = refused(encode_wav(np.zeros(16000, np.float32), 16000), "audio/ogg")
    assert err.code is ErrorCode.INVALID_ARGUMENT and "not audio/ogg" in err.message
    assert "Errno" not in err.message  # FFmpeg's words stay in the log


@pytest.mark.parametrize("mime", ["audio/ogg", "audio/webm"])
def test_a_stated_length_over_the_cap_is_refused_before_decoding(mime: str) -> None:
    data = encoded("ogg" if mime == "audio/ogg" else "webm", "libopus", 300)
    t0 = time.perf_counter()
    err = refused(data, mime, max_seconds=20)
    assert err.code is ErrorCode.RESOURCE_EXHAUSTED and "limit is 20 s" in err.message
    assert time.perf_counter() - t0 < 0.5


def test_a_stream_of_silence_without_a_stated_length_stops_at_the_cap() -> None:
    data = encoded("webm", "libopus", 300, options={"live": "1"})  # as MediaRecorder writes: no duration
    t0 = time.perf_counter()
    err = refused(data, "audio/webm", max_seconds=20)
    assert err.code is ErrorCode.RESOURCE_EXHAUSTED and "limit is 20 s" in err.message
    assert time.perf_counter() - t0 < 2.0  # 20 s of it decoded, not 300


def test_raw_pcm_length_is_checked_before_resampling() -> None:
    data = b"\x00\x00" * 8000 * 30  # 30 s at 8 kHz
    err = refused(data, "audio/pcm;rate=8000", max_seconds=10)
    assert err.code is ErrorCode.RESOURCE_EXHAUSTED and "30.0 s" in err.message


def test_good_audio_still_decodes() -> None:
    speech = np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3
    assert len(decode_audio(encode_wav(speech, 16000), "audio/wav", max_seconds=10)) == 16000
    assert len(decode_audio(encoded("ogg", "libopus", 2.0), "audio/ogg", max_seconds=10)) > 16000
    assert len(decode_audio(encoded("webm", "libopus", 2.0), "audio/webm", max_seconds=10)) > 16000


@pytest.mark.parametrize("mime", ["audio/wav", "audio/ogg", "audio/webm"])
def test_playlists_disguised_as_audio_open_no_connection(mime: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    seen: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the timeout: nobody came
            seen.append(listener.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        for text in (
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{url}/a.ts\n#EXT-X-ENDLIST\n",
            f"ffconcat version 1.0\nfile '{url}/a.wav'\n",
            f"[playlist]\nFile1={url}/a.mp3\n",
            url,
        ):
            err = refused(text.encode(), mime)
            assert err.code is ErrorCode.INVALID_ARGUMENT
        thread.join()
    finally:
        listener.close()
    assert seen == []


# -- text, languages, names -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["\u200b\u200c\u200d\u2060\ufeff", "\x00\x00", "\x01\x7f \t\n", "\ud800", "\u00ad"])
def test_text_of_invisible_or_control_characters_is_empty(text: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        validation.text(text, SETTINGS)


def test_text_is_normalised_and_cleaned() -> None:
    assert validation.text("  Cafe\u0301\u200b\x00 line\r\nnext\tok ", SETTINGS) == "Café line\n\nnext\tok"
    assert validation.text("hi\ud800 there", SETTINGS) == "hi there"


def test_the_text_cap_counts_the_cleaned_text() -> None:
    assert validation.text("a" + "\u200b" * 5000, SETTINGS) == "a"
    with pytest.raises(TooLarge):
        validation.text("a" * 2001, SETTINGS)


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("en-" + "a" * 6000, "at most 35"),
        ("zz", "not served"),
        ("en\n", "not a language code"),
        ("english!", "not a language code"),
    ],
)
def test_bad_language_tags(tag: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as err:
        validation.language(tag, ("en", "uk"))
    assert len(err.value.message) < 200


@pytest.mark.parametrize("tag", ["", "en", "uk-UA", "EN-gb", "zh-Hant-TW"[:2]])
def test_served_language_tags_pass(tag: str) -> None:
    validation.language(tag, ("en", "uk", "zh"))


def test_names_are_capped_and_echoed_truncated() -> None:
    with pytest.raises(InvalidInput, match="limit is 128"):
        validation.common(language="", session_id="", voice="v" * 129, tts_engines=("piper",), served=("en",))
    with pytest.raises(InvalidInput) as err:
        validation.common(language="", session_id="", voice="x" * 100, tts_engines=("piper",), served=("en",))
    assert "x" * 40 + "…" in err.value.message and "x" * 41 not in err.value.message
    with pytest.raises(InvalidInput, match="control"):
        validation.name("a\x00b", "avatar_id")
    for bad in ("a" * 129, "a b", "ok\n", "é"):
        with pytest.raises(InvalidInput, match="session_id"):
            validation.session_id(bad)


# -- the token budget -----------------------------------------------------------------------------------


class _Remote:
    """A model that states no context and has no tokenizer here (as an OpenAI-compatible service)."""

    name = "remote"
    capabilities = LlmCapabilities(streaming=True, model="m", local=False)


@pytest.mark.parametrize("question", ["😀" * 2000, "ж" * 2000, "👩‍👩‍👧‍👦" * 500])
def test_a_long_question_fits_a_model_that_states_no_context(question: str) -> None:
    count = TokenCounter(_Remote())
    messages = build_messages("You are Grace.", [], question)
    fitted = fit_prompt(messages, count, _Remote(), SETTINGS)
    budget = SETTINGS.llm_context_tokens - SETTINGS.llm_max_tokens
    assert count.messages(fitted) <= budget and fitted[-1].content
    assert count(fitted[-1].content) <= SETTINGS.llm_question_max_tokens


def test_the_token_estimate_is_on_the_safe_side_for_emoji_and_cyrillic() -> None:
    assert estimate_tokens("😀" * 100) >= 200
    assert estimate_tokens("ж" * 100) >= 100
    assert estimate_tokens("hello " * 100) >= 150


def test_a_persona_that_leaves_no_room_is_refused_plainly() -> None:
    messages = build_messages("persona " * 3000, [], "hi")
    with pytest.raises(TooLarge, match="does not fit"):
        fit_prompt(messages, TokenCounter(_Remote()), _Remote(), SETTINGS)


# -- session ids, caller ids, error ids ----------------------------------------------------------------


def test_session_ids_are_bound_to_the_caller_and_the_secret() -> None:
    ids = SessionIds("secret")
    mine = ids.issue("caller-a")
    assert ids.valid(mine, "caller-a") and ids.resolve(mine, "caller-a") == mine
    assert not ids.valid(mine, "caller-b") and ids.resolve(mine, "caller-b") != mine
    assert not SessionIds("other").valid(mine, "caller-a")
    assert SessionIds("secret").valid(mine, "caller-a")  # the same secret after a restart
    random_part, tag = mine.split(".")
    forged = f"{random_part}.{'A' * len(tag)}"
    for given in ("demo", forged, "", f"{random_part}.", mine + "x"):
        fresh = ids.resolve(given, "caller-a")
        assert fresh != given and ids.valid(fresh, "caller-a")
    validation.session_id(mine)  # issued ids pass the format check
    assert len({ids.issue("") for _ in range(100)}) == 100


def test_unset_secret_is_random_per_process() -> None:
    a, b = SessionIds(""), SessionIds("")
    assert not b.valid(a.issue(""), "")


def test_caller_id_from_the_bearer_token() -> None:
    import hashlib

    want = hashlib.sha256(b"k1").hexdigest()[:16]
    assert caller_id((("authorization", "Bearer k1"),)) == want
    assert caller_id((("Authorization", b"bearer  k1 "),)) == want
    assert caller_id((("x-other", "Bearer k1"),)) == ""
    assert caller_id(None) == "" and caller_id((("authorization", "Basic abc"),)) == ""


def test_caller_id_agrees_with_the_auth_interceptor() -> None:
    from avatar_server.transport import auth

    for metadata in (
        (("authorization", "Bearer k1"),),
        (("authorization", b"Bearer k2"), ("authorization", "Bearer k3")),
        (("authorization", "Basic x"), ("authorization", "Bearer k4")),
        (("x", "y"),),
        (),
    ):
        assert caller_id(metadata) == auth.caller_id(metadata)


def test_internal_errors_reach_the_client_as_an_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("connect to 10.0.0.7:8001 refused")
        except RuntimeError as exc:
            public = for_client(EngineFailure(f"SadTalker failed: {exc}"))
    assert public.code is ErrorCode.INTERNAL
    assert "10.0.0.7" not in public.message and "SadTalker" not in public.message
    error_id = public.message.split("error id ")[1].rstrip(").")
    assert len(error_id) == 12 and int(error_id, 16) >= 0
    assert error_id in caplog.text and "SadTalker failed" in caplog.text
    bad = InvalidInput("The text is empty.")
    assert for_client(bad) is bad
    assert "error id" in for_client(ValueError("x")).message
