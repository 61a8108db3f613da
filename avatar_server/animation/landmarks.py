"""Face landmarks for the 2D portrait renderer, found once per portrait with OpenCV's Haar cascades.

Run `python -m avatar_server.animation.landmarks IMAGE` to print them for an avatar file.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from avatar_server.values import Landmarks


def detect(image_bgr: npt.NDArray[np.uint8]) -> Landmarks:
    """The largest face; eyes and mouth from cascades, else from typical face proportions."""
    import cv2

    _CASCADES = str(cv2.data.haarcascades)  # type: ignore[attr-defined]
    gray = cv2.equalizeHist(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY))
    cascade = cv2.CascadeClassifier(_CASCADES + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(gray, 1.1, 5, minSize=(60, 60))
    if len(faces) == 0:
        raise ValueError("no face found in the portrait")
    x, y, w, h = (int(v) for v in max(faces, key=lambda f: f[2] * f[3]))
    # Typical proportions of a frontal face box from this cascade.
    left_eye, right_eye = (x + int(0.31 * w), y + int(0.40 * h)), (x + int(0.69 * w), y + int(0.40 * h))
    eye_cascade = cv2.CascadeClassifier(_CASCADES + "haarcascade_eye_tree_eyeglasses.xml")
    eyes = eye_cascade.detectMultiScale(gray[y : y + h // 2, x : x + w], 1.05, 4, minSize=(w // 10, w // 10))
    centres = sorted((x + ex + ew // 2, y + ey + eh // 2) for ex, ey, ew, eh in eyes)
    left = [c for c in centres if c[0] < x + w // 2]
    right = [c for c in centres if c[0] >= x + w // 2]
    if left:
        left_eye = left[0]
    if right:
        right_eye = right[-1]
    mouth = (x + w // 2, y + int(0.80 * h))
    mouth_width = int(0.36 * w)
    mouth_cascade = cv2.CascadeClassifier(_CASCADES + "haarcascade_smile.xml")
    lower = gray[y + h // 2 : y + h, x : x + w]
    smiles = mouth_cascade.detectMultiScale(lower, 1.3, 15, minSize=(w // 5, h // 10))
    if len(smiles):
        sx, sy, sw, sh = max(smiles, key=lambda s: s[2] * s[3])
        mouth = (x + int(sx + sw // 2), y + h // 2 + int(sy + sh // 2))
        mouth_width = int(0.7 * sw)
    return Landmarks(
        face=(x, y, w, h),
        left_eye=(int(left_eye[0]), int(left_eye[1])),
        right_eye=(int(right_eye[0]), int(right_eye[1])),
        eye_width=int(0.2 * w),
        mouth=(int(mouth[0]), int(mouth[1])),
        mouth_width=mouth_width,
    )


def main(argv: list[str]) -> int:
    import cv2
    import yaml

    image = cv2.imread(argv[0])
    if image is None:
        print(f"cannot read {argv[0]}", file=sys.stderr)
        return 2
    print(
        yaml.safe_dump(
            {"landmarks": detect(np.asarray(image, dtype=np.uint8)).as_dict()}, default_flow_style=None, sort_keys=False
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
