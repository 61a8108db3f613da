/** Animation tracks from the bridge (/static/animation/<id>.json), sampled on the audio clock. */

export interface AnimationTrack {
  fps: number;
  names: string[];
  times: number[];
  frames: number[][];
}

export type Weights = Record<string, number>;

/** The frame showing at `seconds` (the last one that has started), as a name → weight map. */
export function sampleTrack(track: AnimationTrack, seconds: number): Weights {
  const out: Weights = {};
  if (track.frames.length === 0) return out;
  const index = Math.min(track.frames.length - 1, Math.max(0, Math.floor(seconds * track.fps + 1e-6)));
  const row = track.frames[index];
  track.names.forEach((name, i) => {
    out[name] = row[i] ?? 0;
  });
  return out;
}

export async function loadTrack(url: string): Promise<AnimationTrack> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`animation track: HTTP ${response.status}`);
  return (await response.json()) as AnimationTrack;
}
