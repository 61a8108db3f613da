/** The REST bridge's contract, as the widget uses it. */

export interface StageTimings {
  stt: number;
  llm: number;
  tts: number;
  animation: number;
  total: number;
}

export interface InteractResult {
  transcription: string;
  reply_text: string;
  audio_url: string | null;
  video_url: string | null;
  processing_time: number;
  session_id: string;
  turn_id: string;
  language: string;
  animation_url: string | null;
  audio_duration: number | null;
  timings: StageTimings;
}

export interface InteractInput {
  audio?: Blob;
  text?: string;
  sessionId?: string;
  avatarId?: string;
  language?: string;
  outputs?: Array<"audio" | "video" | "animation">;
}

/** An error the bridge answered with ({"error": {"code", "message"}}), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** True when the backend cannot be reached at all (the widget then offers the browser fallback). */
  get unreachable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

export function extensionFor(type: string): string {
  if (type.includes("webm")) return "webm";
  if (type.includes("ogg")) return "ogg";
  return "wav";
}

export function buildForm(input: InteractInput): FormData {
  const form = new FormData();
  if (input.audio) form.append("audio", input.audio, `speech.${extensionFor(input.audio.type)}`);
  if (input.text !== undefined) form.append("text", input.text);
  if (input.sessionId) form.append("session_id", input.sessionId);
  if (input.avatarId) form.append("avatar_id", input.avatarId);
  if (input.language) form.append("language", input.language);
  if (input.outputs) form.append("outputs", input.outputs.join(","));
  return form;
}

async function errorFrom(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.message) return new ApiError(response.status, body.error.code ?? "ERROR", body.error.message);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, "HTTP_ERROR", `The server answered ${response.status}.`);
}

/** The header that carries the bridge's API key (none when the bridge needs no key). */
export function authHeaders(apiKey?: string): Record<string, string> {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

export async function interact(
  apiBase: string,
  input: InteractInput,
  signal?: AbortSignal,
  apiKey?: string,
): Promise<InteractResult> {
  let response: Response;
  try {
    response = await fetch(`${apiBase}/api/v1/avatar/interact`, {
      method: "POST",
      body: buildForm(input),
      headers: authHeaders(apiKey),
      signal,
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(0, "UNREACHABLE", "The avatar server cannot be reached.");
  }
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as InteractResult;
}

/** A one-use ticket for the converse WebSocket (browsers cannot send the key's header on an upgrade). */
export async function converseTicket(apiBase: string, apiKey: string, signal?: AbortSignal): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${apiBase}/api/v1/avatar/converse/ticket`, {
      method: "POST",
      headers: authHeaders(apiKey),
      signal,
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(0, "UNREACHABLE", "The avatar server cannot be reached.");
  }
  if (!response.ok) throw await errorFrom(response);
  const body = (await response.json()) as { ticket?: unknown };
  if (typeof body.ticket !== "string" || !body.ticket) throw new ApiError(response.status, "BAD_TICKET", "No ticket in the answer.");
  return body.ticket;
}

export async function backendHealthy(apiBase: string): Promise<boolean> {
  try {
    const response = await fetch(`${apiBase}/healthz`);
    return response.ok;
  } catch {
    return false;
  }
}

export function absolute(apiBase: string, url: string | null): string | null {
  return url ? `${apiBase}${url}` : null;
}

export interface AvatarInfo {
  id: string;
  name: string;
  description: string;
  voice: string;
  language: string;
}

export interface AvatarList {
  default: string;
  avatars: AvatarInfo[];
}

/** The avatars the server has (GET /api/v1/avatars); an empty list when the bridge cannot say. */
export async function listAvatars(apiBase: string, signal?: AbortSignal, apiKey?: string): Promise<AvatarList> {
  try {
    const response = await fetch(`${apiBase}/api/v1/avatars`, { headers: authHeaders(apiKey), signal });
    if (!response.ok) return { default: "", avatars: [] };
    const body = (await response.json()) as Partial<AvatarList>;
    const avatars = Array.isArray(body.avatars) ? body.avatars.filter((a) => a && typeof a.id === "string") : [];
    return { default: typeof body.default === "string" ? body.default : (avatars[0]?.id ?? ""), avatars };
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    return { default: "", avatars: [] };
  }
}

/** Where an avatar's face model is (GET /api/v1/avatars/{id}/face). */
export function faceUrl(apiBase: string, avatarId: string): string {
  return `${apiBase}/api/v1/avatars/${encodeURIComponent(avatarId)}/face`;
}
