"""Compute an avatar's face landmarks once and store them in its YAML file.

Runs in its own small environment (`make landmarks AVATAR=...` builds it): MediaPipe 0.10.21
(Apache-2.0) is the last release whose wheel bundles the face-mesh model, and it needs numpy<2,
so it stays out of the server's dependencies. The server only reads the stored points.

Usage: python scripts/face_landmarks.py AVATAR.yaml IMAGE
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MODEL = "mediapipe-face-mesh-478"


def landmarks(image_path: Path) -> list[tuple[float, float]]:
    import cv2
    import mediapipe as mp

    bgr = cv2.imread(str(image_path))
    if bgr is None:
        raise SystemExit(f"cannot read the portrait {image_path}")
    h, w = bgr.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        result = mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not result.multi_face_landmarks:
        raise SystemExit(f"no face found in {image_path}: use a frontal portrait with the whole face visible")
    return [(p.x * w, p.y * h) for p in result.multi_face_landmarks[0].landmark]


def block(points: list[tuple[float, float]]) -> str:
    pairs = [f"[{x:.1f}, {y:.1f}]" for x, y in points]
    rows = [", ".join(pairs[i : i + 8]) for i in range(0, len(pairs), 8)]
    body = ",\n".join(f"      {r}" for r in rows)
    return (
        f"  # {len(points)} points of MediaPipe's face mesh (x, y in portrait pixels), from\n"
        f"  # `make landmarks AVATAR=<this file>`; the face model (avatar_server/animation/face_model.py) reads them.\n"
        f"  landmarks:\n    model: {MODEL}\n    points: [\n{body}\n    ]\n"
    )


def store(yaml_path: Path, points: list[tuple[float, float]]) -> None:
    text = yaml_path.read_text(encoding="utf-8")
    # Drop any earlier landmarks (and their comment lines) inside the portrait section.
    text = re.sub(r"(?m)^  # \d+ points of MediaPipe.*\n(^  #.*\n)*", "", text)
    text = re.sub(r"(?m)^  landmarks:\n(^    .*\n|^[ \t]*\n)*", "", text)
    if not re.search(r"(?m)^portrait:\n", text):
        raise SystemExit(f"{yaml_path} has no 'portrait:' section")
    match = re.search(r"(?m)^portrait:\n(^  .*\n)*", text)
    assert match is not None
    end = match.end()
    text = text[:end] + block(points) + text[end:]
    yaml_path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    yaml_path, image = Path(argv[0]), Path(argv[1])
    points = landmarks(image)
    store(yaml_path, points)
    print(f"{yaml_path}: stored {len(points)} landmarks of {image}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
