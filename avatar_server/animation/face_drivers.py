"""The face model's drivers: how the ARKit weights of a track move the contours of a portrait's face.

Each driver is a morph target over the face model's vertices (`face_model.py` says how a renderer applies
it). The rules here place the contours of the lips, the jaw line and the eyelids for each driver's extreme,
from the portrait's MediaPipe landmarks and sizes relative to its mouth; `face_model.build` then fills the
skin between them harmonically and refuses a face that would fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Points = npt.NDArray[np.float32]

MODEL = "mediapipe-face-mesh-478"

# MediaPipe face-mesh indices (the model's canonical topology), in order along each contour.
OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# The subject's own left/right, as ARKit names them (their left eye is on the image's right).
EYES = {
    "Right": {
        "upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
        "lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
        "upper_fold": (247, 30, 29, 27, 28, 56, 190),
        "lower_fold": (130, 25, 110, 24, 23, 22, 26, 112, 243),
        "brow_fold": (113, 225, 224, 223, 222, 221, 189),
    },
    "Left": {
        "upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
        "lower": (263, 249, 390, 373, 374, 380, 381, 382, 362),
        "upper_fold": (467, 260, 259, 257, 258, 286, 414),
        "lower_fold": (359, 255, 339, 254, 253, 252, 256, 341, 463),
        "brow_fold": (342, 445, 444, 443, 442, 441, 413),
    },
}
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
BROW = {"Right": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107), "Left": (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)}
BROWS = BROW["Right"] + BROW["Left"]
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
CHIN, FOREHEAD = 152, 10


@dataclass(frozen=True)
class Driver:
    name: str
    inputs: dict[str, float]
    offsets: Points  # (n_vertices, 2)

    def amount(self, weights: dict[str, float]) -> float:
        total = sum(weights.get(name, 0.0) * k for name, k in self.inputs.items())
        return min(1.0, max(0.0, total))


def smoothstep(x: npt.NDArray[np.floating] | float) -> npt.NDArray[np.float32]:
    t = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.asarray(t * t * (3 - 2 * t), dtype=np.float32)


def driver_rules(
    vertices: Points,
    n_face: int,
    v: object,
    pts: Points,
    mw: float,
    mcx: float,
    face_h: float,
) -> list[Driver]:
    """The morph targets, as rules on the landmarks (sizes relative to the mouth width `mw`)."""
    assert callable(v)
    n = len(vertices)
    face = vertices[:n_face]
    xs, ys = face[:, 0], face[:, 1]

    def zeros() -> Points:
        return np.zeros((n, 2), dtype=np.float32)

    def ids(group: Sequence[int]) -> list[int]:
        return [v(i) for i in group]

    corners = ids((61, 291, 78, 308))
    lower_lip = ids(OUTER_LOWER[1:-1] + INNER_LOWER[1:-1])
    upper_outer, upper_inner = ids(OUTER_UPPER[1:-1]), ids(INNER_UPPER[1:-1])
    lower_outer, lower_inner = ids(OUTER_LOWER[1:-1]), ids(INNER_LOWER[1:-1])
    all_lips = sorted(set(ids(OUTER_UPPER + OUTER_LOWER + INNER_UPPER + INNER_LOWER)))
    # Along the mouth: -1 at the left corner, 0 in the middle, 1 at the right corner.
    along = np.clip((xs - mcx) / (0.5 * mw), -1.5, 1.5)
    corner_y = float((pts[61, 1] + pts[291, 1]) / 2)
    chin_y = float(pts[CHIN, 1])
    near_mouth = np.exp(-(((xs - mcx) / (0.9 * mw)) ** 2) - ((ys - corner_y) / (0.6 * mw)) ** 2).astype(np.float32)

    # jaw: everything on the jaw drops; the lower lip and chin fully, the jaw line less towards the ears.
    jaw = zeros()
    below = smoothstep((ys - corner_y) / (0.35 * mw))
    lateral = 1.0 - 0.6 * smoothstep((np.abs(xs - mcx) - 0.6 * mw) / (1.2 * mw))
    reach = smoothstep((chin_y + 0.3 * mw - ys) / (0.3 * mw)) * 0.4 + 0.6  # below the chin: the neck stays
    jaw[:n_face, 1] = below * lateral * reach
    jaw[lower_lip, 1] = 1.0 - 0.65 * np.clip(np.abs(along[lower_lip]), 0, 1) ** 1.5  # less towards the corners
    jaw[corners, 1] = 0.35
    jaw[:, 1] *= 0.5 * mw

    lower_down = zeros()
    lower_down[lower_lip, 1] = 0.1 * mw * (1 - 0.5 * along[lower_lip] ** 2)

    upper_up = zeros()
    upper_up[upper_inner, 1] = -0.08 * mw * (1 - along[upper_inner] ** 2)
    upper_up[upper_outer, 1] = -0.07 * mw * (1 - 0.7 * along[upper_outer] ** 2)

    def sideways(out: float, up: float) -> Points:
        d = zeros()
        w = np.clip(np.abs(along), 0, 1) ** 1.5 * near_mouth
        d[:n_face, 0] = out * mw * np.sign(along) * w
        d[:n_face, 1] = -up * mw * w
        return d

    smile = sideways(0.12, 0.06)
    stretch = sideways(0.1, -0.015)

    pucker = zeros()
    lips_arr = np.array(all_lips)
    pucker[lips_arr, 0] = -0.34 * (xs[lips_arr] - mcx)
    pucker[upper_outer, 1] += -0.025 * mw
    pucker[lower_outer, 1] += 0.03 * mw

    funnel = zeros()
    profile = np.cos(np.clip(along, -1, 1) * np.pi / 2)
    funnel[upper_inner, 1] = -0.07 * mw * profile[upper_inner]
    funnel[lower_inner, 1] = 0.12 * mw * profile[lower_inner]
    funnel[upper_outer, 1] = -0.045 * mw * profile[upper_outer]  # the lips move out with the opening
    funnel[lower_outer, 1] = 0.08 * mw * profile[lower_outer]
    funnel[lips_arr, 0] += -0.18 * (xs[lips_arr] - mcx)

    press = zeros()  # lips pressed thin: the outer edges move towards the line where the lips meet
    for outer, inner in ((OUTER_UPPER, INNER_UPPER), (OUTER_LOWER, INNER_LOWER)):
        for o, i in zip(outer[1:-1], inner[1:-1], strict=True):
            press[v(o), 1] = 0.35 * (pts[i, 1] - pts[o, 1])

    close = zeros()  # M, B, P on a face whose lips are apart in the portrait: they meet
    for u, lo, ou, ol in zip(INNER_UPPER[1:-1], INNER_LOWER[1:-1], OUTER_UPPER[1:-1], OUTER_LOWER[1:-1], strict=True):
        gap = max(0.0, float(pts[lo, 1] - pts[u, 1]))  # each lip moves as a whole, less near the corners
        taper = 1.0 - 0.5 * min(1.0, abs(float(along[v(u)]))) ** 2
        close[[v(u), v(ou)], 1] = 0.45 * gap * taper
        close[[v(lo), v(ol)], 1] = -0.65 * gap * taper

    tuck = zeros()  # F, V: the lower lip rolls in under the upper teeth
    for o, i in zip(OUTER_LOWER[1:-1], INNER_LOWER[1:-1], strict=True):
        tuck[v(o), 1] = 0.5 * (pts[i, 1] - pts[o, 1])
        tuck[v(i), 1] = -0.02 * mw

    drivers = [
        Driver("jaw", {"jawOpen": 1.0, "mouthClose": -1.0}, jaw),
        Driver("lowerLipDown", {"mouthLowerDownLeft": 0.5, "mouthLowerDownRight": 0.5}, lower_down),
        Driver("upperLipUp", {"mouthUpperUpLeft": 0.5, "mouthUpperUpRight": 0.5}, upper_up),
        Driver("smile", {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5}, smile),
        Driver("stretch", {"mouthStretchLeft": 0.5, "mouthStretchRight": 0.5}, stretch),
        Driver("pucker", {"mouthPucker": 1.0, "mouthFunnel": 0.3}, pucker),
        Driver("funnel", {"mouthFunnel": 1.0}, funnel),
        Driver("press", {"mouthPressLeft": 0.5, "mouthPressRight": 0.5, "mouthClose": 0.5}, press),
        Driver("lipsClose", {"mouthClose": 1.0, "mouthPressLeft": 0.5, "mouthPressRight": 0.5}, close),
        Driver("lowerLipTuck", {"mouthRollLower": 1.0}, tuck),
    ]
    for side, eye in EYES.items():
        # The upper lid comes down to the lower lid's line (at the same x), which rises a little.
        up_x, up_y = pts[list(eye["upper"]), 0], pts[list(eye["upper"]), 1]
        lo_x, lo_y = pts[list(eye["lower"]), 0], pts[list(eye["lower"]), 1]
        order_u, order_l = np.argsort(up_x), np.argsort(lo_x)

        upper_curve = (up_x[order_u], up_y[order_u])
        lower_curve = (lo_x[order_l], lo_y[order_l])

        def gap_at(
            i: int, upper: tuple[Points, Points] = upper_curve, lower: tuple[Points, Points] = lower_curve
        ) -> float:
            x = float(pts[i, 0])
            return float(np.interp(x, *lower)) - float(np.interp(x, *upper))

        blink = zeros()
        for i in eye["upper"][1:-1]:
            blink[v(i), 1] = 0.85 * gap_at(i)
        for i in eye["lower"][1:-1]:
            blink[v(i), 1] = -0.12 * gap_at(i)
        for i in eye["upper_fold"]:  # the skin above the lid follows it part way
            blink[v(i), 1] = 0.35 * gap_at(i)
        drivers.append(Driver(f"blink{side}", {f"eyeBlink{side}": 1.0}, blink))
    return drivers
