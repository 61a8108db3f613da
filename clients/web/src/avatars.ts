import { useEffect, useState } from "react";

import { authHeaders, faceUrl, listAvatars, type AvatarInfo } from "./api";
import { loadFace, type FaceData } from "./faceMesh";
import { loadImage, type FaceImages } from "./faceRenderer";

/** One avatar's face, ready to draw; `loadedAt` (performance.now()) starts its idle head motion. */
export interface LoadedFace {
  avatarId: string;
  face: FaceData;
  images: FaceImages;
  loadedAt: number;
}

/** A URL the bridge gave: relative to the bridge unless it names its own origin. */
export function fromBridge(apiBase: string, url: string): string {
  return /^([a-z][a-z0-9+.-]*:|\/\/)/i.test(url) ? url : `${apiBase}${url}`;
}

/** An image from the bridge. With a key it is fetched with the key's header (an <img> cannot send one) and
 * shown from a blob: URL. */
export async function loadBridgeImage(url: string, signal: AbortSignal, apiKey?: string): Promise<HTMLImageElement> {
  if (!apiKey) return loadImage(url);
  const response = await fetch(url, { headers: authHeaders(apiKey), signal });
  if (!response.ok) throw new Error(`image ${url}: HTTP ${response.status}`);
  const local = URL.createObjectURL(await response.blob());
  try {
    return await loadImage(local);
  } finally {
    URL.revokeObjectURL(local);
  }
}

export async function loadAvatarFace(
  apiBase: string,
  avatarId: string,
  signal: AbortSignal,
  apiKey?: string,
): Promise<LoadedFace> {
  const face = await loadFace(faceUrl(apiBase, avatarId), signal, apiKey);
  if (!face.portrait || !face.mouth) throw new Error("face: no portrait or mouth image");
  const [portrait, mouth] = await Promise.all([
    loadBridgeImage(fromBridge(apiBase, face.portrait), signal, apiKey),
    loadBridgeImage(fromBridge(apiBase, face.mouth), signal, apiKey),
  ]);
  return { avatarId, face, images: { portrait, mouth }, loadedAt: performance.now() };
}

/** The avatars to pick from (without a choice in the page, the server's default) and the chosen one's face. */
export function useAvatars(apiBase: string, initialAvatar: string, apiKey?: string) {
  const [avatars, setAvatars] = useState<AvatarInfo[]>([]);
  const [avatarId, setAvatarId] = useState(initialAvatar);
  const [face, setFace] = useState<LoadedFace | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    listAvatars(apiBase, abort.signal, apiKey)
      .then((list) => {
        setAvatars(list.avatars);
        setAvatarId((current) => current || list.default);
      })
      .catch(() => undefined);
    return () => abort.abort();
  }, [apiBase, apiKey]);

  useEffect(() => {
    if (!avatarId) return;
    const abort = new AbortController();
    loadAvatarFace(apiBase, avatarId, abort.signal, apiKey)
      .then((loaded) => {
        if (!abort.signal.aborted) setFace(loaded);
      })
      .catch((err: Error) => {
        if (!abort.signal.aborted) console.warn(`The face of ${avatarId} could not be loaded: ${err.message}`);
      });
    return () => abort.abort();
  }, [apiBase, avatarId, apiKey]);

  return { avatars, avatarId, setAvatarId, face };
}
