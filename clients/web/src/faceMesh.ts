/**
 * The face model in the browser: the same steps as the server's video renderer.
 *
 * The spec is the module docstring of avatar_server/animation/face_model.py; this is a line-by-line port of
 * `FaceMesh.pose`, `FaceMesh.head_motion` and `FaceMesh.mouth_uva` over the JSON of `FaceMesh.as_dict()`
 * (served by GET /api/v1/avatars/{id}/face). Coordinates are 0..1 of the square portrait crop, x right, y down.
 */

import type { Weights } from "./track";

export interface FaceDriver {
  name: string;
  /** ARKit weight name → factor; amount = clamp(sum(weight * factor), 0, 1). */
  inputs: Record<string, number>;
  /** Flat (x, y) per vertex: the displacement at amount 1. */
  offsets: number[];
}

export interface Oscillation {
  what: "angle" | "dx" | "dy";
  amplitude: number;
  period: number;
  phase: number;
}

/** `FaceMesh.as_dict()`, plus what the bridge adds (the avatar and its two images). */
export interface FaceData {
  model: string;
  vertices: number[];
  triangles: number[];
  mouthTriangles: number[];
  mouthRing: number[];
  lipPairs: Array<[number, number]>;
  restGaps: number[];
  cavityHeight: number;
  fade: number;
  drivers: FaceDriver[];
  head: { pivot: [number, number]; weights: number[]; oscillations: Oscillation[] };
  avatarId?: string;
  /** URL of the square portrait crop (PNG). */
  portrait?: string;
  /** URL of the mouth texture (PNG): teeth at v = 0, cavity, tongue at v = 1. */
  mouth?: string;
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

/** Step 1's amount of one driver for track weights. */
export function driverAmount(driver: FaceDriver, weights: Weights): number {
  let total = 0;
  for (const name in driver.inputs) total += (weights[name] ?? 0) * driver.inputs[name];
  return clamp01(total);
}

/** Idle head motion at t seconds: [angle (radians), dx, dy (crop units)]; all 0 at t = 0. */
export function headMotion(face: FaceData, t: number): [number, number, number] {
  const out = { angle: 0, dx: 0, dy: 0 };
  for (const o of face.head.oscillations) {
    out[o.what] += o.amplitude * (Math.sin((2 * Math.PI * t) / o.period + o.phase) - Math.sin(o.phase));
  }
  return [out.angle, out.dx, out.dy];
}

/**
 * Vertex positions (flat x, y) for track weights at time t: drivers, lips meet (never cross), head motion.
 * Writes into `out` when given (length 2 * vertices), so a renderer allocates nothing per frame.
 */
export function pose(face: FaceData, weights: Weights, t: number, out?: Float32Array): Float32Array {
  const n2 = face.vertices.length;
  const p = out ?? new Float32Array(n2);
  for (let k = 0; k < n2; k++) p[k] = face.vertices[k];
  for (const driver of face.drivers) {
    const a = driverAmount(driver, weights);
    if (a > 0) {
      const off = driver.offsets;
      for (let k = 0; k < n2; k++) p[k] += a * off[k];
    }
  }
  for (const [up, lo] of face.lipPairs) {
    const yu = p[2 * up + 1];
    const yl = p[2 * lo + 1];
    if (yl < yu) p[2 * up + 1] = p[2 * lo + 1] = 0.5 * (yl + yu);
  }
  const [angle, dx, dy] = headMotion(face, t);
  if (angle || dx || dy) {
    const [px, py] = face.head.pivot;
    const h = face.head.weights;
    for (let i = 0; i < n2 / 2; i++) {
      const w = h[i];
      if (!w) continue;
      const c = Math.cos(angle * w);
      const s = Math.sin(angle * w);
      const x = p[2 * i] - px;
      const y = p[2 * i + 1] - py;
      p[2 * i] = px + c * x - s * y + w * dx;
      p[2 * i + 1] = py + s * x + c * y + w * dy;
    }
  }
  return p;
}

/**
 * Mouth texture coordinates and opacity (flat u, v, alpha per vertex) for a posed face; only the inner
 * lips' vertices count (the others are 0). `out` as in `pose` (length 3 * vertices).
 */
export function mouthUva(face: FaceData, posed: Float32Array, out?: Float32Array): Float32Array {
  const nv = face.vertices.length / 2;
  const uva = out ?? new Float32Array(3 * nv);
  uva.fill(0);
  const ring = face.mouthRing;
  const n = Math.floor(ring.length / 2) + 1; // the upper lip, both corners included
  for (let i = 0; i < n; i++) uva[3 * ring[i]] = i / (n - 1);
  face.lipPairs.forEach(([up, lo], j) => {
    const i = j + 1;
    const gap = posed[2 * lo + 1] - posed[2 * up + 1];
    const rest = face.restGaps[j];
    // Open further than in the portrait: the mouth image from its top (teeth first). Closed tighter (a
    // smiling portrait saying M): the dark cavity, not the portrait's teeth squeezed into a line.
    const alpha = clamp01(Math.abs(gap - rest) / face.fade);
    uva[3 * lo] = i / (n - 1);
    uva[3 * lo + 1] = gap >= rest ? clamp01(gap / face.cavityHeight) : 0.5;
    uva[3 * lo + 2] = alpha;
    uva[3 * up + 1] = gap >= rest ? 0 : 0.5;
    uva[3 * up + 2] = alpha;
  });
  return uva;
}

export async function loadFace(url: string, signal?: AbortSignal, apiKey?: string): Promise<FaceData> {
  const response = await fetch(url, { headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {}, signal });
  if (!response.ok) throw new Error(`face: HTTP ${response.status}`);
  const face = (await response.json()) as FaceData;
  if (!Array.isArray(face.vertices) || !Array.isArray(face.triangles) || !face.head) {
    throw new Error("face: not a face model");
  }
  return face;
}
