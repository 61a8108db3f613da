"""Face rendering benchmark: the server's mesh warp per second of video, alone and with H.264 + AAC encoding.

For each avatar, Piper speaks a few typical replies; the embedded animator builds their tracks and renders
them at the configured size and frame rate (384 px, 25 fps). Reports seconds of compute per second of video
(the issue's target: <= 0.25 at 384 px on 2 cores), best of a few runs. Saves bench/results/face-latest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_server.engines.animator.portrait import PortraitAnimator  # noqa: E402
from avatar_server.engines.factory import build_tts  # noqa: E402
from avatar_server.personas import load_avatars  # noqa: E402
from avatar_server.settings import Settings  # noqa: E402

REPLIES = [
    "I wrote the first compiler, A-0, in 1952.",
    "People told me computers could only do arithmetic, so I showed them otherwise.",
    "Hello! It's good to meet you. What would you like to know about programming?",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    avatars = load_avatars(settings.avatars_dir)
    tts = build_tts("piper", settings)
    speeches = [tts.synthesize(text, voice="", language="en") for text in REPLIES]
    animator = PortraitAnimator(avatars, video_fps=settings.video_fps, video_size=settings.video_size)
    seconds = sum(s.duration for s in speeches)
    rows = []
    for avatar_id in avatars:
        renderer = animator._renderers[avatar_id]
        tracks = [animator.track(s, t) for s, t in zip(speeches, REPLIES, strict=True)]
        render, video = float("inf"), float("inf")
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for s, track in zip(speeches, tracks, strict=True):
                for _frame in renderer.frames(track, settings.video_fps, s.duration):
                    pass
            render = min(render, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s, track in zip(speeches, tracks, strict=True):
                animator.video(avatar_id, s, track)
            video = min(video, time.perf_counter() - t0)
        row = {
            "avatar": avatar_id,
            "video_seconds": round(seconds, 2),
            "render_per_second": round(render / seconds, 3),
            "render_and_encode_per_second": round(video / seconds, 3),
            "ms_per_frame": round(1000 * render / (seconds * settings.video_fps), 2),
        }
        rows.append(row)
        print(
            f"{avatar_id:8s} {settings.video_size} px @ {settings.video_fps} fps: "
            f"render {row['render_per_second']:.3f} s/s "
            f"({row['ms_per_frame']:.1f} ms/frame), render + encode {row['render_and_encode_per_second']:.3f} s/s"
        )
    out = ROOT / "bench" / "results" / "face-latest.json"
    out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}, indent=2))
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
