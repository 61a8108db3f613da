"""Writes src/faceMesh.fixture.json: one avatar's face (the JSON the bridge serves) and what the server's
Python face model computes from it, for faceMesh.test.ts to compare the browser's port against.

    .venv/bin/python clients/web/scripts/face_fixture.py      # from the repository root

The face is rebuilt from its rounded JSON form, so both sides start from the very same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avatar_server.animation.face_model import Driver, FaceMesh, Oscillation, build
from avatar_server.personas import load_avatars

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "clients" / "web" / "src" / "faceMesh.fixture.json"
AVATAR = "grace"

CASES: list[tuple[dict[str, float], float]] = [
    ({}, 0.0),  # the still portrait
    ({}, 2.5),  # idle head motion only
    ({"jawOpen": 0.7}, 0.0),
    ({"jawOpen": 2.5, "mouthFunnel": 0.4}, 1.7),  # the jaw's input is clamped to 1
    ({"jawOpen": 0.05, "mouthClose": 1.0, "mouthPressLeft": 0.8, "mouthPressRight": 0.8}, 0.0),  # lips meet
    ({"eyeBlinkLeft": 1.0, "mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "jawOpen": 0.2}, 3.3),
    ({"jawOpen": 0.35, "mouthRollLower": 0.8, "mouthPucker": 0.5, "mouthLowerDownLeft": 0.4}, 12.9),
    ({"jawOpen": 1.0, "mouthLowerDownLeft": 1.0, "mouthLowerDownRight": 1.0, "mouthUpperUpLeft": 1.0}, 0.4),
]


def from_dict(d: dict) -> FaceMesh:  # type: ignore[type-arg]
    n = len(d["vertices"]) // 2

    def pts(flat: list[float]) -> np.ndarray:  # type: ignore[type-arg]
        return np.asarray(flat, dtype=np.float32).reshape(n, 2)

    return FaceMesh(
        crop=(0.0, 0.0, 1.0),
        vertices=pts(d["vertices"]),
        triangles=np.asarray(d["triangles"], dtype=np.int32).reshape(-1, 3),
        mouth_triangles=np.asarray(d["mouthTriangles"], dtype=np.int32).reshape(-1, 3),
        mouth_ring=tuple(d["mouthRing"]),
        lip_pairs=tuple((int(u), int(lo)) for u, lo in d["lipPairs"]),
        rest_gaps=tuple(d["restGaps"]),
        cavity_height=d["cavityHeight"],
        fade=d["fade"],
        drivers=tuple(Driver(x["name"], x["inputs"], pts(x["offsets"])) for x in d["drivers"]),
        head_pivot=tuple(d["head"]["pivot"]),  # type: ignore[arg-type]
        head_weights=np.asarray(d["head"]["weights"], dtype=np.float32),
        oscillations=tuple(Oscillation(**o) for o in d["head"]["oscillations"]),
        mouth_box=(0.0, 0.0, 0.0, 0.0),
        eye_boxes=(),
    )


def main() -> None:
    from PIL import Image

    avatar = load_avatars(ROOT / "avatar_server" / "avatars")[AVATAR]
    with Image.open(avatar.portrait.path) as im:
        width, height = im.size
    face = json.loads(json.dumps(build(avatar.portrait.landmarks.points, width, height).as_dict()))
    mesh = from_dict(face)

    def r(a: np.ndarray) -> list[float]:  # type: ignore[type-arg]
        return [round(float(v), 6) for v in a.reshape(-1)]

    cases = []
    for weights, t in CASES:
        unmet = mesh.vertices.copy()  # the drivers alone, to see where the lips-never-cross rule acts
        for drv in mesh.drivers:
            unmet += drv.amount(weights) * drv.offsets
        crossed = [i for i, (u, lo) in enumerate(mesh.lip_pairs) if unmet[lo, 1] < unmet[u, 1]]
        posed = mesh.pose(weights, t)
        cases.append({
            "weights": weights,
            "t": t,
            "amounts": {drv.name: drv.amount(weights) for drv in mesh.drivers},
            "head": list(mesh.head_motion(t)),
            "crossedPairs": crossed,
            "posed": r(posed),
            "uva": r(mesh.mouth_uva(posed)),
        })  # fmt: skip
    assert any(c["crossedPairs"] for c in cases), "no case exercises the lips-never-cross rule"
    out = {"avatar": AVATAR, "face": face, "cases": cases}
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
