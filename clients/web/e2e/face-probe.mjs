// What the canvas face shows, measured in the page: how close it is to an avatar's portrait away from the mouth,
// how far the mouth region is from the portrait's, and the frame rate. Used by widget.e2e.mjs.

/** Runs in the page: compares the face canvas with avatar `avatarId`'s portrait (see `probeFace`). */
async function measure({ avatarId, shift, parts }) {
  const canvas = document.querySelector('[data-testid="avatar-face"]');
  const W = canvas.width;
  const H = canvas.height;
  const pixels = (source) => {
    const c = document.createElement("canvas");
    c.width = W;
    c.height = H;
    const ctx = c.getContext("2d");
    ctx.drawImage(source, 0, 0, W, H);
    return ctx.getImageData(0, 0, W, H).data;
  };
  const face = await (await fetch(`/api/v1/avatars/${avatarId}/face`)).json();
  const image = new Image();
  image.src = face.portrait;
  await image.decode();
  const want = pixels(image);
  const got = pixels(canvas);
  // The mouth: the inner lips' box, with room for the lips and the jaw that drops below them.
  const ring = face.mouthRing;
  const n = ring.length / 2 + 1;
  const [l, r] = [ring[0], ring[n - 1]];
  const mw = Math.hypot(face.vertices[2 * r] - face.vertices[2 * l], face.vertices[2 * r + 1] - face.vertices[2 * l + 1]);
  const ys = ring.map((v) => face.vertices[2 * v + 1]);
  const cx = (face.vertices[2 * l] + face.vertices[2 * r]) / 2;
  const [top, bottom] = [Math.min(...ys), Math.max(...ys)];
  const box = (x0, y0, x1, y1) => [Math.floor(x0 * W), Math.floor(y0 * H), Math.ceil(x1 * W), Math.ceil(y1 * H)];
  const mouth = box(cx - 0.6 * mw, top - 0.15 * mw, cx + 0.6 * mw, bottom + 0.35 * mw);
  const lowerFace = box(cx - 1.3 * mw, top - 0.5 * mw, cx + 1.3 * mw, bottom + 1.6 * mw);
  const inside = (b, x, y) => x >= b[0] && x < b[2] && y >= b[1] && y < b[3];
  /** Mean |canvas - portrait| (0..255, RGB) over a region, at the best shift of the portrait within ±shift px. */
  const diff = (keep) => {
    let best = Infinity;
    for (let dy = -shift; dy <= shift; dy++) {
      for (let dx = -shift; dx <= shift; dx++) {
        let sum = 0;
        let count = 0;
        for (let y = shift; y < H - shift; y++) {
          for (let x = shift; x < W - shift; x++) {
            if (!keep(x, y)) continue;
            const a = 4 * (y * W + x);
            const b = 4 * ((y + dy) * W + x + dx);
            sum += Math.abs(got[a] - want[b]) + Math.abs(got[a + 1] - want[b + 1]) + Math.abs(got[a + 2] - want[b + 2]);
            count += 3;
          }
        }
        best = Math.min(best, sum / count);
      }
    }
    return Math.round(best * 100) / 100;
  };
  const out = { shown: canvas.dataset.avatar, renderer: canvas.dataset.renderer };
  if (parts.includes("away")) out.awayFromMouth = diff((x, y) => !inside(lowerFace, x, y));
  if (parts.includes("mouth")) out.mouth = diff((x, y) => inside(mouth, x, y));
  return out;
}

/**
 * { shown, renderer, awayFromMouth, mouth }: the avatar the canvas says it shows, its renderer, and the mean
 * absolute difference (0..255) from `avatarId`'s portrait away from the mouth and in the mouth region, each at
 * the best shift within ±`shift` px (the idle head motion moves the face a few pixels).
 */
export function probeFace(page, avatarId, { shift = 4, parts = ["away", "mouth"] } = {}) {
  return page.evaluate(measure, { avatarId, shift, parts });
}

/** The mouth region's difference from the portrait, `count` times, `gapMs` apart, while `still()` holds. */
export async function mouthSeries(page, avatarId, count, gapMs, still = async () => true) {
  const out = [];
  for (let i = 0; i < count && (await still()); i++) {
    out.push((await probeFace(page, avatarId, { parts: ["mouth"] })).mouth);
    await page.waitForTimeout(gapMs);
  }
  return out;
}

/** Waits until the face canvas shows `avatarId` and has drawn a few frames. */
export async function faceShown(page, avatarId, timeout = 20_000) {
  await page.waitForFunction(
    (id) => {
      const c = document.querySelector('[data-testid="avatar-face"]');
      return c && c.dataset.avatar === id && Number(c.dataset.frames ?? 0) > 5;
    },
    avatarId,
    { timeout },
  );
}

/** Frames the face renderer drew per second over `ms`. */
export async function faceFps(page, ms = 2000) {
  const frames = () => page.evaluate(() => [Number(document.querySelector('[data-testid="avatar-face"]').dataset.frames ?? 0), performance.now()]);
  const [f0, t0] = await frames();
  await page.waitForTimeout(ms);
  const [f1, t1] = await frames();
  return Math.round(((f1 - f0) / (t1 - t0)) * 1000 * 10) / 10;
}
