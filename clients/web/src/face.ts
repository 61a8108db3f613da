/** A 2D canvas face driven by ARKit-style weights: for replies without video. */

import type { Weights } from "./track";

export function drawFace(ctx: CanvasRenderingContext2D, w: Weights, size: number): void {
  const s = size / 200;
  ctx.clearRect(0, 0, size, size);
  ctx.save();
  ctx.scale(s, s);
  // head
  ctx.fillStyle = "#f2c9a0";
  ctx.beginPath();
  ctx.ellipse(100, 100, 72, 88, 0, 0, Math.PI * 2);
  ctx.fill();
  // eyes (blink closes them)
  for (const [x, name] of [
    [72, "eyeBlinkLeft"],
    [128, "eyeBlinkRight"],
  ] as const) {
    const open = 1 - Math.min(1, w[name] ?? 0);
    ctx.fillStyle = "#2b2b2b";
    ctx.beginPath();
    ctx.ellipse(x, 80, 9, Math.max(0.8, 8 * open), 0, 0, Math.PI * 2);
    ctx.fill();
  }
  // mouth: jaw opens it, smile/stretch widen it, pucker/funnel narrow it
  const jaw = Math.max(0, (w.jawOpen ?? 0) - 0.5 * (w.mouthClose ?? 0));
  const smile = ((w.mouthSmileLeft ?? 0) + (w.mouthSmileRight ?? 0)) / 2;
  const stretch = ((w.mouthStretchLeft ?? 0) + (w.mouthStretchRight ?? 0)) / 2;
  const pucker = Math.max(w.mouthPucker ?? 0, 0.7 * (w.mouthFunnel ?? 0));
  const width = 26 * (1 + 0.25 * smile + 0.15 * stretch - 0.4 * pucker);
  const height = 2 + 26 * jaw;
  ctx.fillStyle = "#7a2630";
  ctx.beginPath();
  ctx.ellipse(100, 142 + height / 2, width, height / 2, 0, 0, Math.PI * 2);
  ctx.fill();
  ctx.restore();
}

/** Mouth opening in [0, 1] as drawn, for tests and accessibility. */
export function mouthOpening(w: Weights): number {
  return Math.max(0, Math.min(1, (w.jawOpen ?? 0) - 0.5 * (w.mouthClose ?? 0)));
}
