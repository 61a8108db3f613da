"""The `avatar` CLI against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Clip, ServerProcess
from tests.helpers import probe_mp4, wav_duration

pytestmark = pytest.mark.slow


def avatar(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "avatar_client.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_interact_audio_writes_outputs(server: ServerProcess, clips: dict[str, Clip], tmp_path: Path) -> None:
    out = avatar("--target", server.target, "interact", "--audio", str(clips["arctic"].path), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "transcription: " in out.stdout and "superlative" in out.stdout.lower().replace("separative", "superlative")
    assert "timings (s):" in out.stdout
    audio_seconds = wav_duration((tmp_path / "reply.wav").read_bytes())
    assert abs(float(probe_mp4((tmp_path / "reply.mp4").read_bytes())["video_seconds"]) - audio_seconds) <= 0.04
    track = json.loads((tmp_path / "track.json").read_text())
    assert track["fps"] == 30 and "jawOpen" in track["names"] and track["frames"]


def test_interact_text_and_errors(server: ServerProcess, tmp_path: Path) -> None:
    out = avatar("--target", server.target, "interact", "--text", "Hi there", "--no-video")
    assert out.returncode == 0, out.stderr
    assert "reply:" in out.stdout
    out = avatar("--target", server.target, "interact", "--text", "hi", "--avatar", "nobody")
    assert out.returncode == 1
    assert "INVALID_ARGUMENT" in out.stderr and "Unknown avatar" in out.stderr
    bad = tmp_path / "x.mp3"
    bad.write_bytes(b"abc")
    out = avatar("--target", server.target, "interact", "--audio", str(bad))
    assert out.returncode == 2 and "unknown audio file type" in out.stderr


def test_capabilities(server: ServerProcess) -> None:
    out = avatar("--target", server.target, "capabilities")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["default_avatar_id"] == "grace"
