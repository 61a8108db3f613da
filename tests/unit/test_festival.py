"""Festival's HTS voice (the default avatar's): real festival processes, and the text and phone handling."""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avatar_server.engines.tts.festival import FestivalError, FestivalTTS, festival_text, parse_phones
from tests.helpers import median_pitch_of


@pytest.fixture(scope="module")
def festival() -> Iterator[FestivalTTS]:
    tts = FestivalTTS()
    yield tts
    tts.close()


def test_text_is_ascii_and_a_safe_scheme_string() -> None:
    assert festival_text("Café “naïve” — ok…") == 'Cafe \\"naive\\" , ok...'
    assert festival_text('a "quote" and a \\ backslash') == 'a \\"quote\\" and a \\\\ backslash'
    assert festival_text('") (system "rm -rf /")') == '\\") (system \\"rm -rf /\\")'  # stays inside the string
    assert festival_text("Привіт 你好") == ""
    assert festival_text("a US Navy admiral, USA, US.") == "a U.S. Navy admiral, U.S.A., U.S.."  # not "us"


def test_phones_become_ipa_from_the_previous_end_without_pauses() -> None:
    lines = ["pau 0.165000", "hh 0.255000", "ax 0.285000", "l 0.335000", "ow 0.430000", "pau 0.6", "SIOD ERROR"]
    out = parse_phones(lines)
    assert [p.phoneme for p in out] == ["h", "ə", "l", "oʊ"]
    assert out[0].start == pytest.approx(0.165 + 0.015) and out[-1].end == pytest.approx(0.43 + 0.015)
    assert all(a.end == b.start for a, b in itertools.pairwise(out))


def test_a_woman_s_voice_with_phones_over_the_audio(festival: FestivalTTS) -> None:
    speech = festival.synthesize("I wrote the first compiler in 1952.", voice=festival.voice_id, language="en")
    assert speech.sample_rate == festival.sample_rate and 1.5 < speech.duration < 5
    assert speech.phonemes and speech.phonemes[-1].end <= speech.duration + 0.01
    assert speech.phonemes[-1].end > 0.7 * speech.duration  # the phones cover the speech, not a part of it
    assert {"k", "m", "p"} <= {p.phoneme for p in speech.phonemes}
    assert median_pitch_of(speech.samples, speech.sample_rate) > 150  # a woman's voice (a man's is ~100 Hz)


def test_quotes_and_scheme_in_text_are_spoken_not_run(festival: FestivalTTS, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    speech = festival.synthesize(f'") (system "touch {marker}") ("', voice="", language="en")
    assert speech.duration > 0.5 and not marker.exists()
    assert festival.synthesize("A plain sentence.", voice="", language="en").duration > 0.5


def test_nothing_to_say_is_silence_without_a_call(festival: FestivalTTS) -> None:
    speech = festival.synthesize(" — … ", voice="", language="en")
    assert speech.duration == 0 and speech.phonemes == []


def test_an_unknown_voice_id_is_refused(festival: FestivalTTS) -> None:
    with pytest.raises(ValueError, match="not loaded"):
        festival.synthesize("Hello.", voice="festival:kal_diphone", language="en")


def test_a_killed_process_is_replaced_by_the_next_request(festival: FestivalTTS) -> None:
    process = festival._process
    assert process is not None
    os.kill(process._proc.pid, signal.SIGKILL)
    process._proc.wait()
    assert festival.synthesize("Still here.", voice="", language="en").duration > 0.5


def test_concurrent_requests_are_serialized_and_each_gets_its_own_audio(festival: FestivalTTS) -> None:
    texts = ["One.", "This sentence is quite a bit longer than the first one.", "Three three three."]
    results: dict[str, float] = {}

    def say(text: str) -> None:
        results[text] = festival.synthesize(text, voice="", language="en").duration

    threads = [threading.Thread(target=say, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["One."] < results["Three three three."] < results[texts[1]]


def test_a_missing_voice_or_binary_is_a_clear_error() -> None:
    with pytest.raises(FestivalError, match="apt-get install festvox"):
        FestivalTTS(voice="no_such_voice_hts")
    with pytest.raises(FestivalError, match="not installed"):
        FestivalTTS(binary="/nonexistent/festival")


def test_a_stalled_festival_times_out_and_is_restarted(tmp_path: Path) -> None:
    # A stand-in that answers the start-up and then stalls on the first request: the request fails within
    # the timeout, and the next request gets a fresh process.
    script = tmp_path / "festival"
    count = tmp_path / "starts"
    script.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{count}"\n'
        'while read -r line; do case "$line" in\n'
        '  *"##ready"*) echo "##ready t";;\n'
        '  "(avatar_say "*) sleep 30;;\n'
        "esac; done\n"
    )
    script.chmod(0o755)
    tts = FestivalTTS(voice="v", binary=str(script), timeout=1.0, warm=False)
    with pytest.raises(FestivalError, match="no answer in time"):
        tts.synthesize("Hello.", voice="", language="en")
    with pytest.raises(FestivalError, match="no answer in time"):
        tts.synthesize("Hello again.", voice="", language="en")
    assert len(count.read_text().split()) == 2
    tts.close()


def test_median_pitch_helper_sees_a_low_and_a_high_tone() -> None:
    t = np.arange(16000) / 16000
    assert 95 < median_pitch_of((0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32), 16000) < 105
    assert 190 < median_pitch_of((0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000) < 210


def test_an_avatar_voice_engine_that_cannot_load_leaves_the_primary_speaking(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from avatar_server.engines import factory
    from avatar_server.settings import Settings

    real = factory.build_tts

    def build(name: str, settings: Settings | None = None) -> object:
        if name == "festival":
            raise factory.EngineConfigError("Festival is not installed")
        return real(name, settings)

    monkeypatch.setattr(factory, "build_tts", build)
    engines = factory.build_tts_engines(Settings(), ["festival:cmu_us_slt_arctic_hts", "espeak:en-us+f3"])
    assert set(engines) == {"piper", "espeak"}
    assert "'festival' is not available (Festival is not installed); 'piper' speaks instead" in caplog.text
