import { describe, expect, it } from "vitest";

import { fromPcm16, toPcm16, websocketUrl, weightsAt } from "./live";

describe("live helpers", () => {
  it("derives the WebSocket URL from the page or the API base", () => {
    expect(websocketUrl("", { protocol: "http:", host: "localhost:8000" } as Location)).toBe(
      "ws://localhost:8000/api/v1/avatar/converse",
    );
    expect(websocketUrl("https://avatar.example.org", {} as Location)).toBe("wss://avatar.example.org/api/v1/avatar/converse");
  });

  it("round-trips PCM16", () => {
    const back = fromPcm16(toPcm16(new Float32Array([0, 0.5, -0.5, 1, -1, 2])));
    expect(Array.from(back).map((x) => Math.round(x * 100) / 100)).toEqual([0, 0.5, -0.5, 1, -1, 1]);
  });

  it("finds the frame showing now on the turn clock", () => {
    const batches = [{ start: 10, fps: 10, names: ["jawOpen"], times: [0, 0.1, 0.2], frames: [[0.1], [0.5], [0.9]] }];
    expect(weightsAt(batches, 10.15).jawOpen).toBe(0.5);
    expect(weightsAt(batches, 10.25).jawOpen).toBe(0.9);
    expect(weightsAt(batches, 9.9)).toEqual({});
    expect(weightsAt(batches, 11)).toEqual({});
  });
});
