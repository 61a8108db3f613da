"""The face model and the mesh warp: each viseme moves the vertices it should, on both bundled avatars."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_server.animation import face_model
from avatar_server.animation.portrait import PortraitRenderer
from avatar_server.animation.visemes import VISEME_TO_ARKIT
from avatar_server.personas import load_avatars
from avatar_server.values import ARKIT_NAMES, VISEMES

AVATARS = Path(__file__).resolve().parents[2] / "avatar_server" / "avatars"


@cache
def renderer(avatar_id: str) -> PortraitRenderer:
    avatar = load_avatars(AVATARS)[avatar_id]
    image = cv2.cvtColor(cv2.imread(str(avatar.portrait.path)), cv2.COLOR_BGR2RGB)
    return PortraitRenderer(np.asarray(image, dtype=np.uint8), avatar.portrait.landmarks, 256)


def viseme(name: str) -> dict[str, float]:
    row = VISEME_TO_ARKIT[VISEMES.index(name)]
    return {n: float(w) for n, w in zip(ARKIT_NAMES, row, strict=True) if w}


def lips(mesh: face_model.FaceMesh, posed: np.ndarray) -> tuple[float, float]:
    """(opening between the inner lips at the middle, width between the outer corners)."""
    up, lo = mesh.lip_pairs[len(mesh.lip_pairs) // 2]
    gap = float(posed[lo, 1] - posed[up, 1])
    left, right = mesh.mouth_ring[0], mesh.mouth_ring[len(mesh.mouth_ring) // 2]
    return gap, float(posed[right, 0] - posed[left, 0])


@pytest.mark.parametrize("avatar_id", ["grace", "eileen"])
def test_visemes_move_the_lips_as_they_should(avatar_id: str) -> None:
    mesh = renderer(avatar_id).mesh
    rest_gap, rest_width = lips(mesh, mesh.pose({}, 0.0))
    shape = {v: lips(mesh, mesh.pose(viseme(v), 0.0)) for v in ("aa", "E", "I", "O", "U", "PP", "FF")}
    mw = rest_width
    assert shape["PP"][0] <= 0.005 * mw, "M, B, P: the lips meet"
    assert max(shape, key=lambda v: shape[v][0]) == "aa", "A opens the mouth widest"
    assert shape["aa"][0] - rest_gap > 0.25 * mw
    for rounded in ("O", "U"):
        assert shape[rounded][1] < 0.93 * rest_width, f"{rounded} rounds the lips (narrower)"
    for spread in ("E", "I"):
        assert shape[spread][1] > 1.03 * rest_width, f"{spread} spreads the lips (wider)"
    assert shape["FF"][0] < 0.1 * mw + rest_gap, "F keeps the mouth almost closed"


@pytest.mark.parametrize("avatar_id", ["grace", "eileen"])
def test_the_inner_mouth_shows_only_when_open(avatar_id: str) -> None:
    r = renderer(avatar_id)
    rest = r.render({}, 0.0)
    assert np.array_equal(rest, r.base), "at rest and t=0 the frame is the portrait itself"
    x0, y0, x1, y1 = r.mouth_box
    opened = r.render(viseme("aa"), 0.0)[y0:y1, x0:x1].astype(int)
    cavity = np.array([52, 20, 24])  # dark red of the mouth texture's depth
    dark = np.abs(opened - cavity).sum(axis=2) < 60
    assert dark.sum() > 0.08 * dark.size
    assert (np.abs(rest[y0:y1, x0:x1].astype(int) - cavity).sum(axis=2) < 60).sum() < 0.01 * dark.size
    closed = r.render(viseme("PP"), 0.0)[y0:y1, x0:x1].astype(int)
    line = (np.abs(closed - cavity).sum(axis=2) < 60).sum(axis=0)
    assert line.max() <= 0.3 * dark.sum(axis=0).max(), "M, B, P: at most a dark line where the lips meet"


@pytest.mark.parametrize("avatar_id", ["grace", "eileen"])
def test_blinks_stay_inside_the_eyes(avatar_id: str) -> None:
    r = renderer(avatar_id)
    mesh = r.mesh
    for driver in mesh.drivers:
        if not driver.name.startswith("blink"):
            continue
        moved = np.abs(driver.offsets).max(axis=1) > 0
        assert moved.any()
        inside = np.zeros(len(moved), dtype=bool)
        for x0, y0, x1, y1 in mesh.eye_boxes:
            p = mesh.vertices
            inside |= (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
        assert not (moved & ~inside).any(), f"{driver.name} moves vertices outside the eyes"
    blink = r.render({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}, 0.0)
    changed = np.abs(blink.astype(int) - r.base.astype(int)).sum(axis=2) > 24
    allowed = np.zeros_like(changed)
    for x0, y0, x1, y1 in mesh.eye_boxes:
        s = r.size
        allowed[int(y0 * s) - 2 : int(y1 * s) + 3, int(x0 * s) - 2 : int(x1 * s) + 3] = True
    assert changed.sum() > 20 and not (changed & ~allowed).any()


def test_the_head_moves_at_rest_but_the_background_does_not() -> None:
    r = renderer("grace")
    later = r.render({}, 1.7)
    diff = np.abs(later.astype(int) - r.base.astype(int)).sum(axis=2)
    assert (diff > 30).sum() > 200, "the idle head motion shows"
    y0 = r.mouth_box[1]
    above = diff[:y0]  # the background beside and above the head stays put
    assert above[:, :10].max() == 0 and above[:, -10:].max() == 0 and diff[:10].max() == 0


def test_the_served_face_is_the_same_model() -> None:
    mesh = renderer("eileen").mesh
    data = mesh.as_dict()
    n = len(mesh.vertices)
    assert len(data["vertices"]) == 2 * n  # type: ignore[arg-type]
    assert max(data["triangles"]) < n and max(data["mouthTriangles"]) < n  # type: ignore[type-var]
    for d in data["drivers"]:  # type: ignore[attr-defined]
        assert len(d["offsets"]) == 2 * n
    assert face_model.mouth_texture().shape == (64, 128, 3)


def test_make_landmarks_stores_the_points_in_the_avatar_file(tmp_path: Path) -> None:
    """The storing half of scripts/face_landmarks.py (the finding half needs MediaPipe's own environment)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "face_landmarks", AVATARS.parents[1] / "scripts" / "face_landmarks.py"
    )
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    source = (AVATARS / "eileen.yaml").read_text(encoding="utf-8")
    before = source[: source.index("  # 478 points")]  # the file as a person writes it, before `make landmarks`
    path = tmp_path / "new.yaml"
    path.write_text(before + "extra: kept\n", encoding="utf-8")
    points = [(float(i), float(2 * i)) for i in range(478)]
    tool.store(path, points)
    tool.store(path, [(x + 1, y) for x, y in points])  # again: replaced, not added
    avatar = load_avatars(tmp_path)["eileen"]
    assert avatar.portrait.landmarks.points[5] == (6.0, 10.0) and len(avatar.portrait.landmarks.points) == 478
    text = path.read_text(encoding="utf-8")
    assert text.count("landmarks:") == 1 and "extra: kept" in text and "package: skimage" in text
