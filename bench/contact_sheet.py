"""Contact sheet of the mouth for a person to judge: the default avatar's mouth at rest and for the visemes
A, E, I, O, U, M, F at full weight, rendered by the server's portrait renderer.

Each viseme becomes ARKit weights through the track's own mapping (`VISEME_TO_ARKIT`: aa, E, I, O, U, PP,
FF), is rendered with `PortraitRenderer.render`, cropped around `mouth_box` with a margin, enlarged 2x (each
pixel a 2x2 block) and labelled. Only the renderer's public API is used, so this works with whichever
renderer is in the tree. Writes bench/results/mouth_visemes.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from avatar_server.animation.visemes import VISEME_TO_ARKIT  # noqa: E402
from avatar_server.values import ARKIT_NAMES, VISEMES  # noqa: E402

if TYPE_CHECKING:
    from avatar_server.animation.portrait import PortraitRenderer

# (label, viseme): the mouth at rest first.
SHAPES = (
    ("rest", "sil"),
    ("A (aa)", "aa"),
    ("E", "E"),
    ("I", "I"),
    ("O", "O"),
    ("U", "U"),
    ("M (PP)", "PP"),
    ("F (FF)", "FF"),
)
SCALE = 2
MARGIN = 0.35  # of the mouth box's size, on every side


def viseme_weights(viseme: str) -> dict[str, float]:
    """ARKit weights of one viseme at full weight, as the track drives them."""
    row = VISEME_TO_ARKIT[VISEMES.index(viseme)]
    return {name: float(w) for name, w in zip(ARKIT_NAMES, row, strict=True) if w > 0}


def sheet(renderer: PortraitRenderer, title: str) -> npt.NDArray[np.uint8]:
    """Labelled mouth crops in two rows (RGB)."""
    import cv2

    x0, y0, x1, y1 = renderer.mouth_box
    mx, my = round(MARGIN * (x1 - x0)), round(MARGIN * (y1 - y0))
    tiles = []
    for label, viseme in SHAPES:
        frame = np.asarray(renderer.render(viseme_weights(viseme)), dtype=np.uint8)
        h, w = frame.shape[:2]
        crop = frame[max(0, y0 - my) : min(h, y1 + my), max(0, x0 - mx) : min(w, x1 + mx)]
        big = cv2.resize(crop, (crop.shape[1] * SCALE, crop.shape[0] * SCALE), interpolation=cv2.INTER_NEAREST)
        tile = np.full((big.shape[0] + 34, big.shape[1] + 8, 3), 255, dtype=np.uint8)
        tile[4 : 4 + big.shape[0], 4 : 4 + big.shape[1]] = big
        cv2.putText(tile, label, (8, tile.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    half = (len(tiles) + 1) // 2
    grid = np.concatenate([np.concatenate(tiles[:half], axis=1), np.concatenate(tiles[half:], axis=1)], axis=0)
    head = np.full((30, grid.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(head, title, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.asarray(np.concatenate([head, grid], axis=0), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avatar", help="one avatar id (default: every avatar, one sheet under the other)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mouth_visemes.png")
    args = parser.parse_args()

    import cv2

    from avatar_server.engines.animator.portrait import PortraitAnimator
    from avatar_server.personas import load_avatars
    from avatar_server.settings import Settings

    settings = Settings()
    avatars = load_avatars(settings.avatars_dir)
    ids = [args.avatar] if args.avatar else list(avatars)
    animator = PortraitAnimator(
        {i: avatars[i] for i in ids}, video_fps=settings.video_fps, video_size=settings.video_size
    )
    sheets = [
        sheet(animator._renderers[i], f"{avatars[i].name}: mouth for visemes at full weight "
              f"({settings.video_size} px, crops {SCALE}x)")
        for i in ids
    ]  # fmt: skip
    width = max(s.shape[1] for s in sheets)
    image = np.concatenate(
        [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheets], axis=0
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]} px)")


if __name__ == "__main__":
    main()
