import { describe, expect, it } from "vitest";

import { driverAmount, headMotion, mouthUva, pose, type FaceData } from "./faceMesh";
import fixture from "./faceMesh.fixture.json";

// faceMesh.fixture.json: grace's face (FaceMesh.as_dict()) and what avatar_server's Python face model computes
// for the same weights and times; made by `.venv/bin/python clients/web/scripts/face_fixture.py`.
interface Case {
  weights: Record<string, number>;
  t: number;
  amounts: Record<string, number>;
  head: number[];
  crossedPairs: number[];
  posed: number[];
  uva: number[];
}
const face = fixture.face as unknown as FaceData;
const cases = fixture.cases as unknown as Case[];
const nv = face.vertices.length / 2;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let most = 0;
  for (let i = 0; i < a.length; i++) most = Math.max(most, Math.abs(a[i] - b[i]));
  return most;
}

describe("the face model, as the server's renderer computes it", () => {
  it("clamps a driver's linear inputs to 0..1", () => {
    const jaw = face.drivers.find((d) => d.name === "jaw")!;
    expect(jaw.inputs).toEqual({ jawOpen: 1, mouthClose: -1 });
    expect(driverAmount(jaw, { jawOpen: 0.4 })).toBeCloseTo(0.4);
    expect(driverAmount(jaw, { jawOpen: 2.5 })).toBe(1);
    expect(driverAmount(jaw, { jawOpen: 0.2, mouthClose: 0.9 })).toBe(0);
    expect(driverAmount(jaw, { jawOpen: 0.9, mouthClose: 0.3 })).toBeCloseTo(0.6);
    expect(driverAmount(jaw, {})).toBe(0);
    for (const c of cases) {
      for (const d of face.drivers) expect(driverAmount(d, c.weights)).toBeCloseTo(c.amounts[d.name], 6);
    }
  });

  it("keeps the head still at t = 0 and moves it as Python does later", () => {
    expect(headMotion(face, 0)).toEqual([0, 0, 0]);
    expect(maxAbsDiff(pose(face, {}, 0), face.vertices)).toBeLessThan(1e-7); // float32 of the same numbers
    for (const c of cases) {
      const [angle, dx, dy] = headMotion(face, c.t);
      expect(angle).toBeCloseTo(c.head[0], 9);
      expect(dx).toBeCloseTo(c.head[1], 9);
      expect(dy).toBeCloseTo(c.head[2], 9);
    }
    // Idle motion is a few pixels at most, and the ring and the crop's border stay still.
    const later = pose(face, {}, 4.2);
    for (let i = 0; i < nv; i++) {
      const moved = Math.hypot(later[2 * i] - face.vertices[2 * i], later[2 * i + 1] - face.vertices[2 * i + 1]);
      expect(moved).toBeLessThan(0.03);
      if (face.head.weights[i] === 0) expect(moved).toBeLessThan(1e-7);
    }
  });

  it("poses every vertex as FaceMesh.pose does", () => {
    for (const c of cases) expect(maxAbsDiff(pose(face, c.weights, c.t), c.posed)).toBeLessThan(2e-6);
  });

  it("lets the lips meet but never cross", () => {
    const c = cases.find((x) => x.crossedPairs.length > 0)!;
    const posed = pose(face, c.weights, c.t);
    for (const j of c.crossedPairs) {
      const [up, lo] = face.lipPairs[j];
      expect(posed[2 * lo + 1]).toBe(posed[2 * up + 1]); // moved, both, to their middle
    }
    for (const w of cases.map((x) => x.weights)) {
      const p = pose(face, w, 0);
      for (const [up, lo] of face.lipPairs) expect(p[2 * lo + 1]).toBeGreaterThanOrEqual(p[2 * up + 1]);
    }
  });

  it("computes the mouth's (u, v, alpha) as FaceMesh.mouth_uva does", () => {
    for (const c of cases) {
      const uva = mouthUva(face, Float32Array.from(c.posed));
      expect(maxAbsDiff(uva, c.uva)).toBeLessThan(1e-4);
    }
    // Closed in the still portrait; open, with teeth at the top (v = 0) and u along the lips, with the jaw.
    const rest = mouthUva(face, pose(face, {}, 0));
    for (let i = 0; i < nv; i++) expect(rest[3 * i + 2]).toBeLessThan(0.01); // the JSON's 5 decimals
    const open = mouthUva(face, pose(face, { jawOpen: 1 }, 0));
    const ring = face.mouthRing;
    const n = ring.length / 2 + 1;
    expect(open[3 * ring[0]]).toBe(0);
    expect(open[3 * ring[n - 1]]).toBe(1);
    expect(open[3 * ring[0] + 2]).toBe(0); // the corners never show the inside
    for (const [up, lo] of face.lipPairs) {
      expect(open[3 * up + 1]).toBe(0);
      expect(open[3 * lo + 1]).toBeGreaterThan(0);
      expect(open[3 * up + 2]).toBe(open[3 * lo + 2]);
    }
    expect(Math.max(...face.lipPairs.map(([, lo]) => open[3 * lo + 2]))).toBe(1);
  });

  it("writes into the buffers it is given", () => {
    const p = new Float32Array(2 * nv);
    const uva = new Float32Array(3 * nv).fill(7);
    expect(pose(face, cases[3].weights, cases[3].t, p)).toBe(p);
    expect(mouthUva(face, p, uva)).toBe(uva);
    expect(maxAbsDiff(uva, cases[3].uva)).toBeLessThan(1e-4);
  });
});
