"""A 2D talking portrait: the face model's mesh (`face_model.py`) warped piecewise-affinely by a track."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_server.animation.face_model import FaceMesh, build, mouth_texture
from avatar_server.animation.track import frame_count
from avatar_server.cooperation import yield_cores
from avatar_server.values import Landmarks, Track

Image = npt.NDArray[np.uint8]
_SUB = 4  # fixed-point bits when rasterizing triangles
_MOVED = 0.02  # px: a triangle whose corners moved less than this keeps the portrait's pixels


@dataclass(frozen=True)
class FaceAssets:
    """What a client needs to draw the face itself: the portrait crop, the mouth image, the face model."""

    portrait_png: bytes
    mouth_png: bytes
    face_model_json: str


@functools.lru_cache(maxsize=32)
def _mesh(landmarks: Landmarks, width: int, height: int) -> FaceMesh:
    return build(landmarks.points, width, height)


@functools.lru_cache(maxsize=32)
def read_portrait(path: Path) -> Image:
    """An avatar's portrait as RGB, read once per process."""
    import cv2

    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"cannot read the portrait {path}")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


@functools.lru_cache(maxsize=32)
def renderer_for(path: Path, landmarks: Landmarks, size: int) -> PortraitRenderer:
    """One renderer per portrait and size, shared by everything in the process."""
    return PortraitRenderer(read_portrait(path), landmarks, size)


@functools.lru_cache(maxsize=32)
def face_assets(path: Path, landmarks: Landmarks, size: int = 512) -> FaceAssets:
    """The portrait crop (PNG, `size` square), the mouth texture (PNG) and the face model (JSON)."""
    import cv2

    renderer = renderer_for(path, landmarks, size)

    def png(rgb: Image) -> bytes:
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return bytes(data)

    return FaceAssets(
        portrait_png=png(renderer.base),
        mouth_png=png(mouth_texture()),
        face_model_json=json.dumps(renderer.mesh.as_dict(), separators=(",", ":")),
    )


class PortraitRenderer:
    """Renders RGB frames of one portrait. Construct once per avatar; `render()` costs a few ms."""

    def __init__(self, image_rgb: Image, landmarks: Landmarks, size: int) -> None:
        import cv2

        self.mesh: FaceMesh = _mesh(landmarks, image_rgb.shape[1], image_rgb.shape[0])
        x0, y0, side = self.mesh.crop
        crop = image_rgb[int(y0) : int(y0 + side), int(x0) : int(x0 + side)]
        self._size = size
        self._base: Image = np.ascontiguousarray(
            cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
        self._mouth: Image = mouth_texture()
        self._rest = self.mesh.vertices * size
        # The inside of the lips is skin too (the portrait at rest), then the mouth image goes over it.
        self._skin = np.vstack([self.mesh.triangles, self.mesh.mouth_triangles])
        self._mouth_tris = self.mesh.mouth_triangles

    @property
    def size(self) -> int:
        return self._size

    @property
    def base(self) -> Image:
        """The still portrait crop the frames are warped from."""
        return self._base

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in output pixels: the region where the mouth opens, for measurements."""
        x0, y0, x1, y1 = (round(c * self._size) for c in self.mesh.mouth_box)
        return (max(0, x0), max(0, y0), min(self._size, x1), min(self._size, y1))

    def render(self, weights: dict[str, float], t: float = 0.0) -> Image:
        """One frame for a dict of track weights (jawOpen, mouthPucker, ..., eyeBlinkLeft) at time t."""
        posed = self.mesh.pose(weights, t)
        dst = posed * self._size
        frame: Image = self._base.copy()
        moved = np.abs(dst - self._rest).max(axis=1) > _MOVED
        skin = self._skin[moved[self._skin].any(axis=1)]
        if len(skin):
            self._warp(frame, dst, skin, self._rest, self._base, step=2)
        uva = self.mesh.mouth_uva(posed)
        if uva[:, 2].max() > 0.0:
            mh, mw = self._mouth.shape[:2]
            tex = uva * (mw - 1, mh - 1, 1.0)
            self._warp(frame, dst, self._mouth_tris, tex.astype(np.float32), self._mouth)
        return frame

    def _warp(
        self,
        frame: Image,
        dst: npt.NDArray[np.float32],
        tris: npt.NDArray[np.int32],
        src: npt.NDArray[np.float32],
        texture: Image,
        *,
        step: int = 1,
    ) -> None:
        """Fill `tris` at their `dst` corners with `texture` sampled at their `src` corners.

        `src` has two columns (texture pixels) or three (and an opacity). With `step` 2 the map back to
        the texture is computed on every other pixel and interpolated: exact inside a triangle, and the
        map is continuous across edges (also into the still part, where it is the identity), so only the
        skin, never the mouth's edge, takes that shortcut.
        """
        import cv2

        d = dst[tris]  # (T, 3, 2)
        area = (d[:, 1, 0] - d[:, 0, 0]) * (d[:, 2, 1] - d[:, 0, 1]) - (d[:, 1, 1] - d[:, 0, 1]) * (
            d[:, 2, 0] - d[:, 0, 0]
        )
        visible = np.abs(area) > 0.05
        if not visible.any():
            return
        tris, d = tris[visible], d[visible]
        x0, y0 = np.floor(d.reshape(-1, 2).min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(d.reshape(-1, 2).max(axis=0)).astype(int) + 3
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(self._size, x1), min(self._size, y1)
        if x1 <= x0 or y1 <= y0:
            return
        # With step 2 the grid reaches `step` pixels past the box on every side (maps may point outside the
        # frame: the texture's edge repeats), so that interpolation never runs out of samples in the box.
        pad = step if step > 1 else 0
        bx0, by0 = x0 - pad, y0 - pad
        w, h = x1 - bx0 + pad, y1 - by0 + pad
        gw, gh = -(-w // step), -(-h // step)
        # Grid sample (i, j) sits at frame pixel (bx0 + step*i + (step-1)/2, ...): the centre of its block.
        half = (step - 1) / 2
        label = np.zeros((gh, gw), dtype=np.int32)  # which triangle covers each sample (0: none)
        corners = np.round((d - (bx0 + half, by0 + half)) / step * (1 << _SUB)).astype(np.int32)
        for k in range(len(tris)):
            cv2.fillConvexPoly(label, corners[k], k + 1, cv2.LINE_8, _SUB)
        if not label.any():
            return
        # Per triangle, the affine map from frame pixels back to texture pixels (and opacity, if given).
        ones = np.ones((len(tris), 3, 1), dtype=np.float32)
        maps = np.linalg.solve(np.concatenate([d, ones], axis=2), src[tris]).astype(np.float32)  # (T, 3, C)
        # Row 0, "no triangle": the identity for the skin (what lies outside did not move), else nothing.
        none = np.zeros((1, 3, maps.shape[2]), np.float32)
        if step > 1:
            none[0, 0, 0] = none[0, 1, 1] = 1.0
        else:
            none[0, 2, :] = -1.0
        maps = np.concatenate([none, maps])
        covered = label > 0
        kernel = np.ones((3, 3), np.uint8)
        if src.shape[1] == 3:
            # The mouth's edge is blended a pixel out over the lips: there its nearest triangle's map goes on.
            grown = cv2.dilate(label.astype(np.float32), kernel).astype(np.int32)
            label = np.where(covered, label, grown)
        gx = (bx0 + half + step * np.arange(gw, dtype=np.float32))[None, :]
        gy = (by0 + half + step * np.arange(gh, dtype=np.float32))[:, None]

        def channel(c: int) -> npt.NDArray[np.float32]:
            m = maps[:, 0, c][label] * gx + maps[:, 1, c][label] * gy + maps[:, 2, c][label]
            if step > 1:
                m = cv2.resize(m, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)
            return np.asarray(m[pad : pad + y1 - y0, pad : pad + x1 - x0], dtype=np.float32)

        map_x, map_y = channel(0), channel(1)
        warped = cv2.remap(texture, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = frame[y0:y1, x0:x1]
        if src.shape[1] == 3:  # an opacity per pixel; the lips' inner edge blends over a pixel's width
            inside = covered[: y1 - y0, : x1 - x0].astype(np.float32)
            edge = cv2.GaussianBlur(cv2.dilate(inside, kernel), (3, 3), 0)
            alpha = np.clip(channel(2), 0.0, 1.0) * edge
            alpha3 = alpha[..., None]
            region[:] = (region * (1 - alpha3) + warped * alpha3 + 0.5).astype(np.uint8)
        elif step > 1:
            region[:] = warped
        else:
            covered_mask = covered[: y1 - y0, : x1 - x0]
            region[covered_mask] = warped[covered_mask]

    def frames(self, track: Track, fps: float, duration: float, start: float = 0.0) -> Iterator[Image]:
        """The frames at `fps` that cover `duration` seconds; `start` is the first one's time on the clock of
        the idle motion.

        A track row and a video frame each show the face at the middle of their time on screen, so frame k
        shows the track interpolated at (k + 0.5) / fps (the rates differ: 30 and 25 by default).
        """
        names = track.names
        rows = track.weights
        last = len(rows) - 1
        for k in range(frame_count(duration, fps)):
            if k % 5 == 4:
                yield_cores()  # a whole reply's video takes seconds: live work goes first
            p = min(max(0.0, (k + 0.5) / fps * track.fps - 0.5), float(last))
            j = int(p)
            f = p - j
            row = rows[j] if f == 0.0 or j >= last else rows[j] * (1 - f) + rows[j + 1] * f
            yield self.render(dict(zip(names, row.tolist(), strict=True)), start + k / fps)
