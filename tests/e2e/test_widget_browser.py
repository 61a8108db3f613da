"""The widget in a real browser: Debian's Chromium driven by Playwright, a fake microphone playing a clip."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, BridgeProcess, Clip
from tests.helpers import word_error_rate

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "tests" / "artifacts"
SCRIPT = ROOT / "clients" / "web" / "e2e" / "widget.e2e.mjs"


def run_browser(bridge: BridgeProcess, clip: Clip, seconds: float, mode: str) -> dict[str, object]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the browser test"
    assert Path("/usr/bin/chromium").is_file(), "Debian's chromium comes from `make test` (apt-get)"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"widget-{mode}.png"
    out = subprocess.run(
        [node, str(SCRIPT), bridge.url, str(clip.path), f"{seconds:.2f}", str(shot), mode],
        cwd=ROOT / "clients" / "web",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert shot.is_file() and shot.stat().st_size > 10_000
    return result


def test_speak_into_the_microphone_and_see_the_avatar_answer(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    from tests.helpers import wav_duration

    clip = clips["espeak"]
    result = run_browser(bridge, clip, wav_duration(clip.path.read_bytes()), "voice")
    assert result["stateWhileRecording"] == "Listening…"
    heard = str(result["transcription"]).removeprefix("You:").strip()
    assert word_error_rate(clip.text, heard) <= 0.2, heard
    assert len(str(result["reply"]).removeprefix("Avatar:").strip()) > 2
    assert float(str(result["videoTime"])) > 0.5  # the reply video really plays
    assert "/static/video/" in str(result["videoSrc"])


def test_face_mode_moves_with_the_reply_audio(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    result = run_browser(bridge, clips["espeak"], 0, "face")
    assert str(result["transcription"]).endswith("Who are you?")
    assert int(str(result["distinctFaceFrames"])) >= 4, result  # the canvas face is animated, not still


def test_live_conversation_in_the_browser_with_interrupt(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    clip = clips["espeak"]
    result = run_browser(bridge, clip, 0, "live")
    assert result["stateWhileListening"] == "Listening…"
    heard = str(result["transcription"]).removeprefix("You:").strip()
    assert word_error_rate(clip.text, heard) <= 0.2, heard
    assert len(str(result["reply"]).removeprefix("Avatar:").strip()) > 2
    assert int(str(result["distinctFaceFrames"])) >= 3, result  # the face moves with the streamed audio
    assert int(str(result["stopMs"])) < 1000, result  # playback stops at once on interrupt
    assert result["audioAfterClose"] == 0, result  # nothing more of that reply arrives
    # The page plays nothing more of it; only a turn begun after the interrupt, on speech it heard, may speak.
    assert result["newTurnsWithoutTranscript"] == 0, result
    assert result["chunksAfterInterrupt"] <= result["newTurnChunks"], result
