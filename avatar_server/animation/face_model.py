"""The face model: one description of how blendshape weights move a portrait, for every renderer.

The server's video renderer (`portrait.py`) and the browser widget (`clients/web/src/faceMesh.ts`) draw the
same face from the same data, which `GetAvatarFace` serves. A face is:

- `vertices`: points of the portrait in crop coordinates (0..1, x right, y down): a subset of MediaPipe's
  478-point face mesh found once per portrait (`make landmarks`), a fixed ring around the head and the
  crop's border.
- `triangles`: the skin, textured from the portrait at the vertices' rest positions.
- `mouth_triangles`: the inside of the lips. They are drawn twice: first with the skin, from the portrait
  at their rest positions (a portrait's own smile, or nothing where its lips are closed), then from the
  mouth image (dark cavity, upper teeth, tongue) at per-frame coordinates and opacity (below), over it.
- `drivers`: morph targets (their rules on the landmarks: `face_drivers.py`). A driver's amount is
  `clamp(sum(weight[name] * k for name, k in inputs), 0, 1)` over the ARKit weights of the animation
  track; it moves every vertex by `amount * offsets[vertex]`.
- `lip_pairs`: the inner lips' (upper, lower) vertex pairs. After the drivers, a lower point above its
  upper partner is moved, with it, to their middle: lips meet, they never cross.
- `head`: idle motion so the face is never frozen. At time t (seconds) the head turns by
  `angle(t)` radians about `pivot` and shifts by `(dx(t), dy(t))`, each a sum of
  `amplitude * (sin(2 pi t / period + phase) - sin(phase))` (so at t = 0 the face is the still
  portrait); a vertex takes part in proportion to its `head_weights`
  (1 on the face, 0 on the ring and the border, so the background stays still).
- The mouth, per frame: the inner lips' vertex i of n has u = i / (n - 1); upper-lip vertices and the
  corners have v = 0; a lower-lip vertex has v = clamp(gap / cavity_height, 0, 1), gap being its distance
  below its upper partner now. Teeth therefore show first and keep their size, the tongue only when the
  mouth is wide open. Its opacity is clamp((gap - rest_gap) / fade, 0, 1) at a lower-lip vertex (rest_gap:
  the gap in the still portrait), the same at its upper partner, 0 at the corners: a portrait's own closed
  lips or smile show until the mouth opens further. Lips closing tighter than in the portrait (gap <
  rest_gap, a smiling portrait saying M) show the dark cavity (v = 0.5 at both lips) with opacity
  clamp((rest_gap - gap) / fade, 0, 1), not the portrait's teeth squeezed into a line.
- A frame is the still portrait where no triangle moved (the crop's border, the background).

Everything here is computed once per avatar; rendering is the five steps above, in that order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_server.animation.face_drivers import (
    BROW,
    BROWS,
    CHIN,
    EYES,
    FACE_OVAL,
    FOREHEAD,
    INNER_LOWER,
    INNER_UPPER,
    MODEL,
    NOSE,
    OUTER_LOWER,
    OUTER_UPPER,
    Driver,
    Points,
    driver_rules,
    smoothstep,
)

_OSCILLATIONS = (  # (what, amplitude, period s, phase): a slow sway, a nod, breathing
    ("angle", 0.010, 7.3, 0.0),
    ("angle", 0.004, 3.1, 1.3),
    ("dx", 0.004, 5.7, 0.5),
    ("dy", 0.003, 4.2, 2.0),
    ("dy", 0.0015, 2.3, 0.7),
)


@dataclass(frozen=True)
class Oscillation:
    what: str  # "angle" (radians), "dx" or "dy" (crop units)
    amplitude: float
    period: float
    phase: float


@dataclass(frozen=True)
class FaceMesh:
    """One avatar's face, in crop coordinates (0..1); see the module docstring for how to draw it."""

    crop: tuple[float, float, float]  # x0, y0, side of the square crop in the source portrait's pixels
    vertices: Points
    triangles: npt.NDArray[np.int32]
    mouth_triangles: npt.NDArray[np.int32]
    mouth_ring: tuple[int, ...]  # inner-lip vertices in u order: upper lip left to right, then lower
    lip_pairs: tuple[tuple[int, int], ...]  # (upper, lower) inner-lip vertices, corners excluded
    rest_gaps: tuple[float, ...]  # per lip pair: how far apart the lips are in the portrait
    cavity_height: float
    fade: float
    drivers: tuple[Driver, ...]
    head_pivot: tuple[float, float]
    head_weights: npt.NDArray[np.float32]
    oscillations: tuple[Oscillation, ...]
    mouth_box: tuple[float, float, float, float]  # where the mouth opens (x0, y0, x1, y1)
    eye_boxes: tuple[tuple[float, float, float, float], ...]

    # -- the five steps, as every renderer runs them -------------------------------------------------
    def pose(self, weights: dict[str, float], t: float) -> Points:
        """Vertex positions for track weights at time t (steps 1-3: drivers, lips meet, head motion)."""
        p = self.vertices.copy()
        for driver in self.drivers:
            a = driver.amount(weights)
            if a > 0.0:
                p += a * driver.offsets
        for up, lo in self.lip_pairs:
            if p[lo, 1] < p[up, 1]:
                mid = 0.5 * (p[lo, 1] + p[up, 1])
                p[lo, 1] = p[up, 1] = mid
        angle, dx, dy = self.head_motion(t)
        if angle or dx or dy:
            px, py = self.head_pivot
            h = self.head_weights
            c, s = np.cos(angle * h), np.sin(angle * h)
            x, y = p[:, 0] - px, p[:, 1] - py
            p[:, 0] = px + c * x - s * y + h * dx
            p[:, 1] = py + s * x + c * y + h * dy
        return p

    def head_motion(self, t: float) -> tuple[float, float, float]:
        out = {"angle": 0.0, "dx": 0.0, "dy": 0.0}
        for o in self.oscillations:
            out[o.what] += o.amplitude * (math.sin(2 * math.pi * t / o.period + o.phase) - math.sin(o.phase))
        return out["angle"], out["dx"], out["dy"]

    def mouth_uva(self, posed: Points) -> Points:
        """Mouth texture coordinates and opacity (u, v, alpha) for every vertex; only the inner lips' count."""
        uva = np.zeros((len(self.vertices), 3), dtype=np.float32)
        ring = self.mouth_ring
        n = len(ring) // 2 + 1  # upper lip incl. both corners
        for i, v in enumerate(ring[:n]):
            uva[v, 0] = i / (n - 1)
        for (up, lo), rest, i in zip(self.lip_pairs, self.rest_gaps, range(1, n - 1), strict=True):
            gap = float(posed[lo, 1] - posed[up, 1])
            if gap >= rest:
                depth, alpha = min(1.0, gap / self.cavity_height), min(1.0, (gap - rest) / self.fade)
            else:
                depth, alpha = 0.5, min(1.0, (rest - gap) / self.fade)
            uva[lo] = (i / (n - 1), max(0.0, depth), alpha)
            uva[up, 1:] = (0.0 if gap >= rest else 0.5, alpha)
        return uva

    def as_dict(self) -> dict[str, object]:
        """The JSON form the bridge serves to the browser (the same numbers, rounded)."""

        def r(a: npt.NDArray[np.float32]) -> list[float]:
            return [round(float(v), 5) for v in a.reshape(-1)]

        return {
            "model": MODEL,
            "vertices": r(self.vertices),
            "triangles": [int(i) for i in self.triangles.reshape(-1)],
            "mouthTriangles": [int(i) for i in self.mouth_triangles.reshape(-1)],
            "mouthRing": list(self.mouth_ring),
            "lipPairs": [list(p) for p in self.lip_pairs],
            "restGaps": [round(g, 5) for g in self.rest_gaps],
            "cavityHeight": round(self.cavity_height, 5),
            "fade": round(self.fade, 5),
            "mouthBox": [round(c, 5) for c in self.mouth_box],
            "drivers": [{"name": d.name, "inputs": d.inputs, "offsets": r(d.offsets)} for d in self.drivers],
            "head": {
                "pivot": list(self.head_pivot),
                "weights": r(self.head_weights),
                "oscillations": [
                    {"what": o.what, "amplitude": o.amplitude, "period": o.period, "phase": o.phase}
                    for o in self.oscillations
                ],
            },
        }


# -- building a face from landmarks ---------------------------------------------------------------------
def crop_of(points: Points, width: int, height: int) -> tuple[float, float, float]:
    """A square around the face with room for hair and shoulders, inside the image."""
    oval = points[list(FACE_OVAL)]
    fx0, fy0 = oval.min(axis=0)
    fx1, fy1 = oval.max(axis=0)
    fw, fh = fx1 - fx0, fy1 - fy0
    side = float(min(max(fw, fh) * 1.9, width, height))
    cx, cy = (fx0 + fx1) / 2, fy0 + 0.55 * fh
    x0 = float(np.clip(cx - side / 2, 0, width - side))
    y0 = float(np.clip(cy - side / 2, 0, height - side))
    return x0, y0, side


def _choose(points: Points, face_width: float) -> list[int]:
    """The landmarks the mesh uses: every contour, and others at least a fraction of the face apart."""
    keep: list[int] = []
    for i in _contour_points():
        if i not in keep:
            keep.append(i)
    spacing = 0.075 * face_width
    chosen = points[keep]
    for i in range(468):
        if i in keep:
            continue
        if np.min(np.hypot(*(chosen - points[i]).T)) >= spacing:
            keep.append(i)
            chosen = np.vstack([chosen, points[i : i + 1]])
    return keep


def _delaunay(points: Points) -> npt.NDArray[np.int32]:
    from scipy.spatial import Delaunay

    return np.asarray(Delaunay(points.astype(np.float64)).simplices, dtype=np.int32)


def _inside(poly: Points, q: npt.NDArray[np.float32]) -> bool:
    import cv2

    return bool(cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (float(q[0]), float(q[1])), False) > 0)


def build(landmarks: Sequence[Sequence[float]], image_width: int, image_height: int) -> FaceMesh:
    """The face mesh of a portrait from its 478 stored landmarks (in the portrait's pixels)."""
    src = np.asarray(landmarks, dtype=np.float32)
    if src.shape != (478, 2):
        raise ValueError(f"a face needs the 478 landmarks of {MODEL}, got {src.shape}")
    x0, y0, side = crop_of(src, image_width, image_height)
    pts = (src - (x0, y0)) / side
    oval = pts[list(FACE_OVAL)]
    face_w = float(oval[:, 0].max() - oval[:, 0].min())
    face_h = float(pts[CHIN, 1] - pts[FOREHEAD, 1])
    keep = _choose(pts, face_w)
    vid = {mp: k for k, mp in enumerate(keep)}
    face_pts = pts[keep]
    centre = oval.mean(axis=0)
    # A still ring around the head (the motion fades into it) and the crop's border.
    ring = np.clip(centre + (oval - centre) * 1.35, 0.0, 1.0)[::2]
    edge = np.linspace(0.0, 1.0, 5, dtype=np.float32)
    border = np.unique(
        np.concatenate([np.stack([edge, np.zeros(5)], 1), np.stack([edge, np.ones(5)], 1),
                        np.stack([np.zeros(5), edge], 1), np.stack([np.ones(5), edge], 1)]).astype(np.float32),
        axis=0,
    )  # fmt: skip
    far = np.min(np.hypot(*(ring[:, None, :] - border[None, :, :]).transpose(2, 0, 1)), axis=1) > 0.04
    # None beside or below the jaw: the chin must be free to drop over the neck.
    ring = ring[far & (ring[:, 1] < pts[61, 1])]
    vertices = np.vstack([face_pts, ring, border]).astype(np.float32)
    n = len(vertices)
    head_weights = np.zeros(n, dtype=np.float32)
    head_weights[: len(keep)] = 1.0

    mouth_left, mouth_right = pts[61], pts[291]
    mw = float(np.hypot(*(mouth_right - mouth_left)))
    mcx = float((mouth_left[0] + mouth_right[0]) / 2)

    def v(mp_index: int) -> int:
        return vid[mp_index]

    # The lips and the mouth's inside are strips between their contours; the rest is a Delaunay mesh.
    skin_outside = _delaunay(vertices)
    strips: list[list[int]] = []
    for top, bottom in [(OUTER_UPPER, OUTER_LOWER)] + [(e["upper"], e["lower"]) for e in EYES.values()]:
        contour = [v(i) for i in top + bottom[-2:0:-1]]
        centroids = vertices[skin_outside].mean(axis=1)
        outside = np.array([not _inside(vertices[contour], c) for c in centroids], dtype=bool)
        skin_outside = skin_outside[outside]
        _check_edges(skin_outside, contour)
    for e in EYES.values():  # the eyes' inside closes in a blink: it may thin to nothing
        strips += _strip([v(i) for i in e["upper"]], [v(i) for i in e["lower"]])
    closing = len(strips)
    strips += _strip([v(i) for i in OUTER_UPPER], [v(i) for i in INNER_UPPER])
    strips += _strip([v(i) for i in INNER_LOWER], [v(i) for i in OUTER_LOWER])
    mouth_tris = np.asarray(_strip([v(i) for i in INNER_UPPER], [v(i) for i in INNER_LOWER]), dtype=np.int32)
    skin = np.vstack([skin_outside, np.asarray(strips, dtype=np.int32)])
    ring_ids = tuple(v(i) for i in INNER_UPPER) + tuple(v(i) for i in INNER_LOWER[1:-1])
    pairs = tuple((v(u), v(lo)) for u, lo in zip(INNER_UPPER[1:-1], INNER_LOWER[1:-1], strict=True))
    # The rules set the contours (lips, eyes, brows, nose, the face's outline); the skin between
    # them follows smoothly, as a membrane would.
    contours = {v(i) for i in _contour_points()} | set(range(len(keep), n))
    drivers = [
        Driver(d.name, d.inputs, d.offsets if d.name.startswith("blink") else _relax(d.offsets, skin, contours))
        for d in driver_rules(vertices, len(keep), v, pts, mw, mcx, face_h)
    ]
    _check_folds(vertices, skin[: len(skin_outside)], drivers)
    _check_folds(vertices, skin[len(skin_outside) + closing :], drivers)

    def box(ids: Sequence[int], pad: float) -> tuple[float, float, float, float]:
        q = pts[list(ids)]
        (ax, ay), (bx, by) = q.min(axis=0), q.max(axis=0)
        return (float(ax - pad), float(ay - pad), float(bx + pad), float(by + pad))

    return FaceMesh(
        crop=(x0, y0, side),
        vertices=vertices,
        triangles=skin,
        mouth_triangles=mouth_tris,
        mouth_ring=ring_ids,
        lip_pairs=pairs,
        rest_gaps=tuple(float(vertices[lo, 1] - vertices[up, 1]) for up, lo in pairs),
        cavity_height=0.5 * mw,
        fade=0.05 * mw,
        drivers=tuple(drivers),
        head_pivot=(float(pts[CHIN, 0]), float(pts[CHIN, 1] + 0.25 * face_h)),
        head_weights=head_weights,
        oscillations=tuple(Oscillation(*o) for o in _OSCILLATIONS),
        mouth_box=(mcx - 0.75 * mw, float(pts[0, 1]) - 0.2 * mw, mcx + 0.75 * mw, float(pts[17, 1]) + 0.45 * mw),
        # An eye's region: from its brow to the fold below it.
        eye_boxes=tuple(box([i for g in e.values() for i in g] + list(BROW[side]), 0.0) for side, e in EYES.items()),
    )


def _contour_points() -> list[int]:
    out = [*OUTER_UPPER, *OUTER_LOWER, *INNER_UPPER, *INNER_LOWER, *FACE_OVAL, *BROWS, *NOSE]
    for eye in EYES.values():
        for group in eye.values():
            out += group
    return out


def _relax(offsets: Points, tris: npt.NDArray[np.int32], fixed: set[int], rounds: int = 80) -> Points:
    """Offsets of the vertices not in `fixed` become the mean of their neighbours' (a harmonic fill)."""
    from scipy.sparse import coo_matrix

    n = len(offsets)
    rows = np.concatenate([tris[:, [0, 1, 2, 1, 2, 0]].reshape(-1)])
    cols = np.concatenate([tris[:, [1, 2, 0, 0, 1, 2]].reshape(-1)])
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # duplicate edges count once
    degree = np.asarray(adj.sum(axis=1)).reshape(-1)
    free = np.array([i not in fixed and degree[i] > 0 for i in range(n)])
    out = offsets.astype(np.float64).copy()
    for _ in range(rounds):
        mean = adj @ out / np.maximum(degree, 1)[:, None]
        out[free] = mean[free]
    return out.astype(np.float32)


def _strip(top: Sequence[int], bottom: Sequence[int]) -> list[list[int]]:
    """Triangles between two contours of equal length that share their end points (the mouth corners)."""
    tris: list[list[int]] = []
    for k in range(len(top) - 1):
        a, b, c, d = top[k], top[k + 1], bottom[k + 1], bottom[k]
        if a == d:
            tris.append([a, b, c])
        elif b == c:
            tris.append([a, b, d])
        else:
            tris += [[a, b, c], [a, c, d]]
    return tris


def _check_edges(tris: npt.NDArray[np.int32], contour: Sequence[int]) -> None:
    edges = {frozenset((int(t[i]), int(t[(i + 1) % 3]))) for t in tris for i in range(3)}
    pairs = zip(contour, [*contour[1:], contour[0]], strict=True)
    missing = [(a, b) for a, b in pairs if frozenset((a, b)) not in edges]
    if missing:
        raise ValueError(f"the mesh does not follow the lips' outline at vertices {missing}: check the landmarks")


def _signed_areas(p: Points, tris: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
    a, b, c = p[tris[:, 0]], p[tris[:, 1]], p[tris[:, 2]]
    return np.asarray((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _check_folds(rest: Points, tris: npt.NDArray[np.int32], drivers: Sequence[Driver]) -> None:
    """No skin triangle may turn over in any driver's extreme, alone or with the jaw open."""
    sign = np.sign(_signed_areas(rest, tris))
    jaw = drivers[0].offsets
    for d in drivers:
        for pose in (rest + d.offsets, rest + d.offsets + jaw):
            flipped = np.sign(_signed_areas(pose, tris)) * sign < 0
            if flipped.any():
                raise ValueError(
                    f"{int(flipped.sum())} skin triangles fold over under {d.name!r}: check the landmarks "
                    f"(triangles {tris[flipped].tolist()})"
                )


def mouth_texture(size: tuple[int, int] = (128, 64)) -> npt.NDArray[np.uint8]:
    """The inside of a mouth in (u, v) space: upper teeth at the top, a dark cavity, the tongue below."""
    w, h = size
    u = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    v = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    shade = (1.0 - 0.6 * u**2)[..., None]  # darker towards the corners
    # The cavity: dark red, darker with depth.
    cavity = np.array([74, 30, 34], dtype=np.float32) * (1.0 - 0.45 * smoothstep(v / 0.6))[..., None]
    img = cavity * shade
    # The upper teeth: a band under the upper lip, its lower edge soft and slightly curved, a shadow under
    # the lip, faint gaps between teeth (the two front ones wider).
    bottom = 0.22 - 0.03 * u**2
    teeth = np.clip((bottom - v) / 0.035, 0.0, 1.0) * smoothstep((0.92 - np.abs(u)) / 0.1)
    pos = np.abs(u) / 0.2  # a tooth every 0.2 of the half width, front teeth centred on u = 0
    gaps = 1.0 - 0.12 * np.exp(-(((pos - np.round(pos)) / 0.05) ** 2)) * (np.abs(u) > 0.05)
    lip_shadow = 0.75 + 0.25 * smoothstep(v / 0.07)
    colour = np.array([232, 226, 214], dtype=np.float32)[None, None, :] * (gaps * lip_shadow)[..., None]
    img = img * (1 - teeth[..., None]) + colour * shade * teeth[..., None]
    tongue = smoothstep((v - 0.7) / 0.2) * (1.0 - u**2)
    tongue_colour = np.array([156, 70, 76], dtype=np.float32) * (0.8 + 0.2 * v)[..., None]
    img = img * (1 - tongue[..., None]) + tongue_colour * shade * tongue[..., None]
    return np.asarray(np.clip(img, 0, 255), dtype=np.uint8)
