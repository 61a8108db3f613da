"""A 2D talking portrait: the jaw and lips of a still photo warped by an animation track, plus blinks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_server.animation.track import frame_count
from avatar_server.cooperation import yield_cores
from avatar_server.values import Landmarks, Track

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class _Geometry:
    size: int
    mouth: tuple[float, float]
    mouth_width: float
    eyes: tuple[tuple[float, float], tuple[float, float]]
    eye_width: float


class PortraitRenderer:
    """Renders RGB frames of one portrait. Construct once per avatar; `frames()` is cheap per frame."""

    def __init__(self, image_rgb: Image, landmarks: Landmarks, size: int) -> None:
        import cv2

        fx, fy, fw, fh = landmarks.face
        # A square crop around the face with room for hair and shoulders.
        side = int(min(max(fw, fh) * 1.9, image_rgb.shape[0], image_rgb.shape[1]))
        cx, cy = fx + fw / 2, fy + fh * 0.55
        x0 = int(np.clip(cx - side / 2, 0, image_rgb.shape[1] - side))
        y0 = int(np.clip(cy - side / 2, 0, image_rgb.shape[0] - side))
        crop = image_rgb[y0 : y0 + side, x0 : x0 + side]
        scale = size / side
        self._base: Image = np.ascontiguousarray(
            cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8
        )

        def to_px(p: tuple[int, int]) -> tuple[float, float]:
            return ((p[0] - x0) * scale, (p[1] - y0) * scale)

        self._g = _Geometry(
            size=size,
            mouth=to_px(landmarks.mouth),
            mouth_width=landmarks.mouth_width * scale,
            eyes=(to_px(landmarks.left_eye), to_px(landmarks.right_eye)),
            eye_width=landmarks.eye_width * scale,
        )
        self._prepare_mouth_region()
        self._lid_colour = self._sample_lid_colour()

    @property
    def size(self) -> int:
        return self._g.size

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in output pixels: the region where the mouth opens, for measurements."""
        mx, my = self._g.mouth
        w = self._g.mouth_width
        return (int(mx - 0.6 * w), int(my - 0.3 * w), int(mx + 0.6 * w), int(my + 0.6 * w))

    def _prepare_mouth_region(self) -> None:
        g = self._g
        mx, my = g.mouth
        w = g.mouth_width
        x0, x1 = int(max(0, mx - 1.3 * w)), int(min(g.size, mx + 1.3 * w))
        y0, y1 = int(max(0, my - 0.6 * w)), int(min(g.size, my + 1.6 * w))
        self._roi = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._xs, self._ys = xs, ys
        # Weight of the jaw's pull: strongest under the mouth's centre, none at the region's edges.
        gx = np.exp(-(((xs - mx) / (0.75 * w)) ** 2))
        below = np.clip((ys - my) / (0.06 * w), 0.0, 1.0)  # only what lies under the lip line moves down
        fade = np.clip((y1 - ys) / (0.9 * w), 0.0, 1.0)  # the chin moves, the neck does not
        self._jaw_field = (gx * below * fade).astype(np.float32)
        # Horizontal squeeze/stretch of the lips around the mouth centre.
        self._width_field = (np.exp(-(((xs - mx) / (1.0 * w)) ** 2) - ((ys - my) / (0.45 * w)) ** 2)).astype(np.float32)

    def _sample_lid_colour(self) -> npt.NDArray[np.float32]:
        # Skin just above the eyes' centre line; a closed lid is about that colour.
        (lx, ly), (rx, ry) = self._g.eyes
        ew = self._g.eye_width
        patches = []
        for ex, ey in ((lx, ly), (rx, ry)):
            y = int(max(0, ey - 0.55 * ew))
            patches.append(self._base[y : y + 3, int(ex - ew * 0.2) : int(ex + ew * 0.2)].reshape(-1, 3))
        return np.asarray(np.concatenate(patches).astype(np.float32).mean(axis=0), dtype=np.float32)

    def render(self, weights: dict[str, float]) -> Image:
        """One frame for a dict of track weights (jawOpen, mouthPucker, ..., eyeBlinkLeft)."""
        import cv2

        frame: Image = self._base.copy()
        g = self._g
        mx, my = g.mouth
        w = g.mouth_width
        jaw = float(np.clip(weights.get("jawOpen", 0.0) - 0.5 * weights.get("mouthClose", 0.0), 0.0, 1.0))
        spread = 0.5 * (weights.get("mouthSmileLeft", 0) + weights.get("mouthSmileRight", 0))
        stretch = 0.5 * (weights.get("mouthStretchLeft", 0) + weights.get("mouthStretchRight", 0))
        pucker = max(weights.get("mouthPucker", 0.0), 0.7 * weights.get("mouthFunnel", 0.0))
        width_factor = float(np.clip(1.0 + 0.18 * spread + 0.12 * stretch - 0.3 * pucker, 0.6, 1.3))
        drop = jaw * 0.32 * w
        if drop > 0.3 or abs(width_factor - 1.0) > 0.01:
            x0, y0, x1, y1 = self._roi
            map_y = self._ys - drop * self._jaw_field
            squeeze = 1.0 + (1.0 / width_factor - 1.0) * self._width_field
            map_x = mx + (self._xs - mx) * squeeze
            frame[y0:y1, x0:x1] = np.asarray(
                cv2.remap(self._base, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                dtype=np.uint8,
            )
            if drop > 0.8:
                self._draw_opening(frame, mx, my, w * width_factor, drop)
        for side, name in ((0, "eyeBlinkLeft"), (1, "eyeBlinkRight")):
            blink = weights.get(name, 0.0)
            if blink > 0.05:
                self._draw_lid(frame, g.eyes[side], blink)
        return frame

    def _draw_opening(self, frame: Image, mx: float, my: float, width: float, drop: float) -> None:
        import cv2

        cx, cy = mx, my + drop * 0.5
        ax, ay = max(1.0, width * 0.42), max(1.0, drop * 0.5)
        # Work only in the opening's bounding box.
        x0, y0 = int(max(0, cx - ax - 2)), int(max(0, cy - ay - 2))
        x1, y1 = int(min(self._g.size, cx + ax + 3)), int(min(self._g.size, cy + ay + 3))
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        centre = (round(cx - x0), round(cy - y0))
        cv2.ellipse(mask, centre, (int(ax), int(ay)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        alpha = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
        inside = np.empty((y1 - y0, x1 - x0, 3), dtype=np.float32)
        inside[:] = (52, 22, 26)  # the mouth's dark interior
        top = centre[1] - int(ay)
        inside[max(0, top) : max(0, top + int(max(1, drop * 0.22)))] = (205, 195, 185)  # upper teeth
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (region * (1 - alpha) + inside * alpha).astype(np.uint8)

    def _draw_lid(self, frame: Image, eye: tuple[float, float], amount: float) -> None:
        import cv2

        ex, ey = eye
        ew = self._g.eye_width
        half_w, half_h = int(ew * 0.5), int(ew * 0.32)
        x0, y0 = int(max(0, ex - half_w - 2)), int(max(0, ey - half_h - 2))
        x1, y1 = int(min(self._g.size, ex + half_w + 2)), int(min(self._g.size, ey + half_h + 2))
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        # The lid comes down from the top: an ellipse whose lower edge descends with `amount`.
        lid_h = max(1, int(2 * half_h * amount))
        cv2.ellipse(mask, (int(ex - x0), int(ey - half_h - y0)), (half_w, lid_h), 0, 0, 180, 255, -1, cv2.LINE_AA)
        mask_f = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255.0 * 0.92
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (region * (1 - mask_f) + self._lid_colour * mask_f).astype(np.uint8)

    def frames(self, track: Track, fps: float, duration: float) -> Iterator[Image]:
        """The frames at `fps` that cover `duration` seconds; frame k shows the track at k / fps."""
        names = track.names
        for k in range(frame_count(duration, fps)):
            if k % 5 == 4:
                yield_cores()  # a whole reply's video takes seconds: live work goes first
            row = track.weights[min(len(track.weights) - 1, int(k * track.fps / fps + 1e-6))]
            yield self.render(dict(zip(names, row.tolist(), strict=True)))
