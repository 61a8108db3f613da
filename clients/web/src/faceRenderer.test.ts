import { afterEach, describe, expect, it, vi } from "vitest";

import type { FaceData } from "./faceMesh";
import fixture from "./faceMesh.fixture.json";
import { FaceRenderer } from "./faceRenderer";

const face = fixture.face as unknown as FaceData;

afterEach(() => vi.restoreAllMocks());

describe("FaceRenderer without WebGL", () => {
  it("draws the still portrait with canvas 2D, never anything else", () => {
    const drawImage = vi.fn();
    const ctx = { drawImage } as unknown as CanvasRenderingContext2D;
    const getContext = vi
      .spyOn(HTMLCanvasElement.prototype, "getContext")
      .mockImplementation(((kind: string) => (kind === "2d" ? ctx : null)) as unknown as HTMLCanvasElement["getContext"]);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 320;
    const renderer = new FaceRenderer(canvas);
    expect(getContext.mock.calls.map(([kind]) => kind)).toEqual(["webgl2", "webgl", "2d"]);
    expect(renderer.mode).toBe("2d");
    expect(canvas.dataset.renderer).toBe("2d");
    const portrait = document.createElement("img");
    renderer.draw({ jawOpen: 1 }, 1); // nothing to draw yet
    expect(drawImage).not.toHaveBeenCalled();
    renderer.setFace(face, { portrait, mouth: document.createElement("img") });
    renderer.draw({ jawOpen: 1 }, 1);
    renderer.draw({}, 2);
    expect(drawImage).toHaveBeenCalledTimes(2);
    expect(drawImage).toHaveBeenLastCalledWith(portrait, 0, 0, 320, 320);
    expect(renderer.frames).toBe(2);
  });

  it("says so when the canvas has no context at all", () => {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
    const renderer = new FaceRenderer(document.createElement("canvas"));
    expect(renderer.mode).toBe("none");
    renderer.setFace(face, { portrait: document.createElement("img"), mouth: document.createElement("img") });
    renderer.draw({}, 0);
    expect(renderer.frames).toBe(0);
  });
});
