"""GPU backends up to the GPU: XTTS and SadTalker with stand-ins; the real ones are marked `gpu`."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_server.engines import factory
from avatar_server.engines.animator.sadtalker import SadTalkerOptions, SadTalkerRunner
from avatar_server.engines.factory import EngineConfigError
from avatar_server.engines.tts.xtts import XttsTTS
from avatar_server.errors import EngineFailure
from avatar_server.settings import Settings
from avatar_server.values import Speech

SPEECH = Speech((0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)


class FakeXtts:
    def __init__(self) -> None:
        self.latent_calls: list[list[str]] = []
        self.calls: list[tuple[str, str]] = []

    def get_conditioning_latents(self, audio_path: list[str]) -> tuple[Any, Any]:
        self.latent_calls.append(audio_path)
        return "latent", "embedding"

    def inference_stream(self, text: str, language: str, gpt_cond_latent: Any, speaker_embedding: Any) -> list[Any]:
        assert (gpt_cond_latent, speaker_embedding) == ("latent", "embedding")
        self.calls.append((text, language))
        return [np.full(2400, 0.1, np.float32), np.full(2400, -0.1, np.float32)]


@pytest.fixture
def xtts_dir(tmp_path: Path) -> Path:
    for name in ("config.json", "model.pth", "vocab.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "grace.wav").write_bytes(b"RIFF")
    return tmp_path


def test_xtts_streams_and_clones_a_voice(xtts_dir: Path) -> None:
    fake = FakeXtts()
    loaded: list[tuple[Path, str]] = []

    def loader(model_dir: Path, device: str) -> FakeXtts:
        loaded.append((model_dir, device))
        return fake

    tts = XttsTTS(xtts_dir, speakers={"grace": xtts_dir / "grace.wav"}, device="cuda:0", loader=loader)
    speech = tts.synthesize("Hello.", voice="xtts:grace", language="en-US")
    tts.synthesize("Hola.", voice="xtts:grace", language="es")
    assert loaded == [(xtts_dir, "cuda:0")]
    assert speech.sample_rate == 24000 and len(speech.samples) == 4800 and speech.phonemes is None
    assert fake.calls == [("Hello.", "en"), ("Hola.", "es")]
    assert fake.latent_calls == [[str(xtts_dir / "grace.wav")]]  # conditioning computed once per voice
    assert not tts.capabilities.speaks("uk")  # Ukrainian goes to the fallback voice
    with pytest.raises(ValueError, match="does not speak 'uk'"):
        tts.synthesize("Привіт", voice="xtts:grace", language="uk")


def test_xtts_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.pth"):
        XttsTTS(tmp_path, speakers={"a": tmp_path / "a.wav"}, loader=lambda *_: FakeXtts())


STAND_IN = """
import argparse, pathlib, sys, time
p = argparse.ArgumentParser()
FLAGS = ("--driven_audio", "--source_image", "--result_dir", "--checkpoint_dir")
for flag in FLAGS + ("--preprocess", "--size", "--enhancer"):
    p.add_argument(flag)
p.add_argument("--still", action="store_true")
a = p.parse_args()
mode = pathlib.Path(a.checkpoint_dir, "mode").read_text().strip()
pathlib.Path(a.checkpoint_dir, "args").write_text(" ".join(sys.argv[1:]))
if mode == "fail":
    print("CUDA out of memory", file=sys.stderr); sys.exit(3)
if mode == "slow":
    time.sleep(30)
if mode == "ok":
    import av, numpy as np
    out = pathlib.Path(a.result_dir, "2026_01_01", "result.mp4"); out.parent.mkdir()
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=25); s.width = s.height = 64; s.pix_fmt = "yuv420p"
        for k in range(25):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), k * 9, np.uint8), format="rgb24"); f.pts = k
            c.mux(s.encode(f))
        c.mux(s.encode(None))
"""


@pytest.fixture
def sadtalker(tmp_path: Path) -> SadTalkerOptions:
    repo, checkpoints, jobs = tmp_path / "SadTalker", tmp_path / "checkpoints", tmp_path / "jobs"
    repo.mkdir()
    checkpoints.mkdir()
    jobs.mkdir()
    (repo / "inference.py").write_text(textwrap.dedent(STAND_IN))
    (checkpoints / "mode").write_text("ok")
    return SadTalkerOptions(
        repo, checkpoints, python=sys.executable, enhancer="gfpgan", timeout_seconds=20, jobs_dir=jobs
    )


def portrait(tmp_path: Path) -> Path:
    image = tmp_path / "face.jpg"
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    return image


def test_sadtalker_command_job_folder_and_output(sadtalker: SadTalkerOptions, tmp_path: Path) -> None:
    runner = SadTalkerRunner(sadtalker)
    mp4 = runner.render(portrait(tmp_path), SPEECH)
    assert mp4[4:8] == b"ftyp"
    args = (sadtalker.checkpoint_dir / "args").read_text()
    for expected in ("--preprocess full", "--size 256", "--still", "--enhancer gfpgan", "speech.wav", "portrait.jpg"):
        assert expected in args
    assert not list(sadtalker.jobs_dir.iterdir())  # type: ignore[union-attr]  # the job folder is cleaned up


@pytest.mark.parametrize(("mode", "message"), [("fail", "exit 3.*CUDA out of memory"), ("nothing", "wrote no mp4")])
def test_sadtalker_failures(sadtalker: SadTalkerOptions, tmp_path: Path, mode: str, message: str) -> None:
    (sadtalker.checkpoint_dir / "mode").write_text(mode)
    with pytest.raises(EngineFailure, match=message):
        SadTalkerRunner(sadtalker).render(portrait(tmp_path), SPEECH)
    assert not list(sadtalker.jobs_dir.iterdir())  # type: ignore[union-attr]


def test_sadtalker_timeout(sadtalker: SadTalkerOptions, tmp_path: Path) -> None:
    (sadtalker.checkpoint_dir / "mode").write_text("slow")
    options = SadTalkerOptions(**{**sadtalker.__dict__, "timeout_seconds": 1.0})
    with pytest.raises(EngineFailure, match="longer than 1 s"):
        SadTalkerRunner(options).render(portrait(tmp_path), SPEECH)
    assert not list(sadtalker.jobs_dir.iterdir())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"stt_engine": "openai"}, "AVATAR_OPENAI_API_KEY"),
        ({"stt_engine": "nope"}, "unknown STT engine 'nope'"),
        ({"whisper_model": "medium", "whisper_device": "cuda"}, "no CUDA GPU"),
        ({"whisper_model": "medium"}, "whisper-medium"),
        ({"llm_engine": "openai-compatible"}, "AVATAR_LLM_MODEL"),
        ({"animator": "sadtalker", "sadtalker_dir": "/nonexistent"}, "inference.py not found"),
        ({"animator": "cartoon"}, "unknown animator 'cartoon'"),
    ],
)
def test_startup_errors_name_what_is_missing(settings: dict[str, str], message: str, tmp_path: Path) -> None:
    s = Settings(models_dir=tmp_path, **settings)  # type: ignore[arg-type]
    with pytest.raises(EngineConfigError, match=message):
        if "animator" in settings:
            factory.build_animator(s, {})
        elif "llm_engine" in settings:
            factory.build_llm(s)
        else:
            factory.build_stt(s)


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("elevenlabs", {}, "AVATAR_ELEVENLABS_API_KEY"),
        ("elevenlabs", {"elevenlabs_api_key": "k"}, "AVATAR_ELEVENLABS_VOICE_ID"),
        ("xtts", {}, "coqui-tts"),
        ("flite", {}, "unknown TTS engine 'flite'"),
    ],
)
def test_tts_startup_errors(name: str, settings: dict[str, str], message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        factory.build_tts(name, Settings(**settings))  # type: ignore[arg-type]


def _cuda() -> bool:
    try:
        import ctranslate2

        return bool(ctranslate2.get_cuda_device_count())
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU and the production model files")
def test_whisper_medium_on_cuda_transcribes(tmp_path: Path) -> None:  # pragma: no cover - GPU machines only
    settings = Settings(whisper_model="medium", whisper_device="cuda")
    stt = factory.build_stt(settings)
    assert stt.transcribe(SPEECH.samples, language="en").language == "en"


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU, coqui-tts and the XTTS v2 checkpoint")
def test_xtts_v2_speaks_on_cuda() -> None:  # pragma: no cover - GPU machines only
    settings = Settings(tts_engine="xtts")
    tts = factory.build_tts("xtts", settings)
    speech = tts.synthesize("Hello from the GPU.", voice="xtts:default", language="en")
    assert speech.sample_rate == 24000 and speech.duration > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU, SadTalker and its checkpoints")
def test_sadtalker_renders_on_cuda() -> None:  # pragma: no cover - GPU machines only
    from avatar_server.personas import load_avatars

    settings = Settings(animator="sadtalker")
    animator = factory.build_animator(settings, load_avatars(settings.avatars_dir))
    mp4, seconds = animator.video("grace", SPEECH, animator.track(SPEECH, "hello"))
    assert mp4[4:8] == b"ftyp" and seconds == pytest.approx(1.0, abs=0.1)
