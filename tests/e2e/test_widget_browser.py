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

# The canvas against a portrait (clients/web/e2e/face-probe.mjs): mean |difference| per RGB channel, 0..255, at
# the best shift within ±4 px (the idle head motion). The right portrait is within a few levels away from the
# mouth; the other avatar's is ~80 away.
SAME_FACE = 10.0
OTHER_FACE = 40.0
MOUTH_STILL = 12.0  # the mouth region in silence: the portrait's own closed (or smiling) mouth
MOUTH_OPEN = 25.0  # while the reply plays, the mouth opens at least this far from the portrait at times
MIN_FPS = 30.0


def assert_shows(face: object, avatar: str) -> None:
    """The canvas shows `avatar`'s portrait, not the other one's, drawn with WebGL."""
    assert isinstance(face, dict), face
    assert face["shown"] == avatar and face["renderer"] == "webgl", face
    assert face["awayFromMouth"] < SAME_FACE, face
    assert face["otherAwayFromMouth"] > OTHER_FACE, face


def assert_still(series: object) -> None:
    assert isinstance(series, list) and series, series
    assert max(series) < MOUTH_STILL, series


def assert_talks(series: object) -> None:
    assert isinstance(series, list) and len(series) >= 3, series
    assert max(series) > MOUTH_OPEN and max(series) - min(series) > 10.0, series


def run_browser(bridge: BridgeProcess, clip: Clip, seconds: float, mode: str) -> dict[str, object]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the browser test"
    assert Path("/usr/bin/chromium").is_file(), "Debian's chromium comes from `make test` (apt-get)"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / ("widget-face-grace.png" if mode == "face" else f"widget-{mode}.png")
    out = subprocess.run(
        [node, str(SCRIPT), bridge.url, str(clip.path), f"{seconds:.2f}", str(shot), mode],
        cwd=ROOT / "clients" / "web",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in result.items() if k != "console"}))  # shown with -s, or on failure
    assert result["ok"], result
    if mode != "parity":  # parity draws its own images (<shot>-<n>.png)
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
    """Interact without video: the avatar's portrait on the canvas, its mouth moving with the reply only."""
    result = run_browser(bridge, clips["espeak"], 0, "face")
    assert str(result["transcription"]).endswith("Who are you?")
    assert_shows(result["rest"], "grace")
    assert_still(result["mouthSilent"])
    assert_talks(result["mouthSpeaking"])
    assert_still(result["mouthAfter"])
    assert float(str(result["fps"])) >= MIN_FPS, result
    # The second avatar from the picker: her face, and the page's URL names her.
    assert_shows(result["eileen"], "eileen")
    assert "avatar=eileen" in str(result["url"])
    assert (ARTIFACTS / "widget-face-eileen.png").is_file()


def test_live_conversation_in_the_browser_with_interrupt(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    clip = clips["espeak"]
    result = run_browser(bridge, clip, 0, "live")
    assert result["stateWhileListening"] == "Listening"
    heard = str(result["transcription"]).removeprefix("You:").strip()
    assert word_error_rate(clip.text, heard) <= 0.2, heard
    assert len(str(result["reply"]).removeprefix("Avatar:").strip()) > 2
    assert_talks(result["mouthSpeaking"])  # the face moves with the streamed audio
    assert float(str(result["fps"])) >= MIN_FPS, result
    assert int(str(result["stopMs"])) < 1000, result  # playback stops at once on interrupt
    assert result["audioAfterClose"] == 0, result  # nothing more of that reply arrives
    # The page plays nothing more of it; only a turn begun after the interrupt, on speech it heard, may speak.
    assert result["newTurnsWithoutTranscript"] == 0, result
    assert result["chunksAfterInterrupt"] <= result["newTurnChunks"], result
    assert result["capture"] == "worklet", result  # the microphone is read off the page's main thread
    if result["newTurnChunks"] == 0:
        assert_still(result["mouthAfterInterrupt"])  # nothing plays: the mouth is still again
    assert_shows(result["rest"], "grace")
    # The second avatar, live: her face on the canvas, her mouth still while she listens.
    assert_shows(result["eileen"], "eileen")
    assert_still(result["mouthSilent"])
    assert (ARTIFACTS / "widget-live-eileen.png").is_file()


def test_the_browser_draws_the_servers_face(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    """The widget's WebGL renderer and the server's video renderer draw the same face for the same weights."""
    import numpy as np
    from PIL import Image

    from avatar_server.animation.portrait import renderer_for
    from avatar_server.personas import load_avatars

    result = run_browser(bridge, clips["espeak"], 0, "parity")
    avatars = load_avatars(ROOT / "avatar_server" / "avatars")
    cases = result["cases"]
    assert isinstance(cases, list) and len(cases) >= 4, result
    for case in cases:
        avatar = avatars[case["avatar"]]
        server = renderer_for(avatar.portrait.path, avatar.portrait.landmarks, int(case["size"]))
        want = server.render(case["weights"], float(case["t"])).astype(np.int16)
        with Image.open(case["file"]) as im:
            got = np.asarray(im.convert("RGB")).astype(np.int16)
        assert case["renderer"] == "webgl" and got.shape == want.shape, case
        diff = np.abs(got - want)
        x0, y0, x1, y1 = server.mouth_box
        # The same pixels but for rounding, and at the mouth opening's edge (the server blends it over a
        # pixel or two; the browser draws it sharp).
        assert diff.mean() < 1.0, (case, diff.mean())
        assert diff[y0:y1, x0:x1].mean() < 6.0, (case, diff[y0:y1, x0:x1].mean())
