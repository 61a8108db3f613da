/** Live conversation over the bridge's WebSocket: microphone PCM16 up, events + PCM16 reply audio down. */

import { converseTicket } from "./api";
import type { Weights } from "./track";

export interface LiveEvent {
  type: string;
  turn_id: string;
  session_id: string;
  [key: string]: unknown;
}

export interface LiveOptions {
  sessionId?: string;
  avatarId?: string;
  language?: string;
  bargeIn?: boolean;
  /** The bridge's API key: a one-use ticket is fetched with it just before the socket opens. */
  apiKey?: string;
  /** The waits before each try to reconnect when the server goes away (a replica restarts or dies: close 1012,
   * 1013, 1001 or a dropped connection); the session goes on under its last session_id. [] turns it off. */
  reconnectDelaysMs?: number[];
}

export const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000];
/** Close codes after which the same session is worth opening again: going away (1001), dropped (1006),
 * service restart (1012), try again later (1013). Not a normal end, a policy violation or an internal error. */
export const RECONNECT_CODES = new Set([1001, 1006, 1012, 1013]);
/** A connection that lived this long, or carried an event, was a working one: its loss starts the tries anew. */
const SETTLED_MS = 10_000;

export interface LiveHandlers {
  /** A server event. An audio_chunk is handed on once its audio is scheduled; the chunks and animation frames
   * of a dropped turn (interrupted) are not handed on. */
  onEvent(event: LiveEvent): void;
  /** The session ended and will not reconnect (a normal end, an error, or every reconnect failed). */
  onClose(reason: string): void;
  /** The connection was lost; try `attempt` to reconnect comes in `delayMs`. */
  onReconnecting?(attempt: number, delayMs: number): void;
  /** A new connection carries on the session. */
  onReconnected?(): void;
  /** Reply audio began (true) or stopped (false) playing. */
  onPlayback?(playing: boolean): void;
}

interface Frames {
  turn?: string; // the turn whose audio they animate
  start: number; // AudioContext time of the turn's audio clock zero
  fps: number;
  names: string[];
  times: number[];
  frames: number[][];
}

export function websocketUrl(apiBase: string, location: Location, ticket?: string): string {
  const base = apiBase || `${location.protocol}//${location.host}`;
  const url = `${base.replace(/^http/, "ws")}/api/v1/avatar/converse`;
  return ticket ? `${url}?ticket=${encodeURIComponent(ticket)}` : url;
}

/** Float32 [-1, 1] → little-endian PCM16. */
export function toPcm16(input: Float32Array): ArrayBuffer {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const s = Math.max(-1, Math.min(1, input[i]));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out.buffer;
}

export function fromPcm16(data: ArrayBuffer): Float32Array<ArrayBuffer> {
  const pcm = new Int16Array(data);
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 0x8000;
  return out;
}

/** The frame showing at audio-context time `now` among scheduled frame batches. */
export function weightsAt(batches: Frames[], now: number): Weights {
  for (let b = batches.length - 1; b >= 0; b--) {
    const batch = batches[b];
    const t = now - batch.start;
    if (batch.times.length === 0 || t < batch.times[0] || t > batch.times[batch.times.length - 1] + 1 / batch.fps) continue;
    let k = batch.times.length - 1;
    while (k > 0 && batch.times[k] > t) k--;
    const out: Weights = {};
    batch.names.forEach((name, i) => (out[name] = batch.frames[k][i] ?? 0));
    return out;
  }
  return {};
}

// The microphone is read on the audio thread (an AudioWorklet), so a busy page (the face is drawn 60 times
// a second) cannot make it drop sound; blocks of 2048 samples are posted to the page, which sends them.
const CAPTURE_WORKLET = `
class PcmCapture extends AudioWorkletProcessor {
  constructor() { super(); this.block = new Float32Array(2048); this.filled = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let i = 0;
      while (i < channel.length) {
        const n = Math.min(channel.length - i, this.block.length - this.filled);
        this.block.set(channel.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block, [this.block.buffer]);
          this.block = new Float32Array(2048);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
`;

/** An AudioWorklet that posts the microphone's samples; a ScriptProcessor where worklets are unavailable
 * (pages served over plain http from another host than localhost). */
async function captureNode(ctx: AudioContext, send: (pcm: Float32Array) => void): Promise<AudioNode> {
  if (ctx.audioWorklet && typeof AudioWorkletNode !== "undefined") {
    const url = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "application/javascript" }));
    try {
      await ctx.audioWorklet.addModule(url);
      const node = new AudioWorkletNode(ctx, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
      node.port.onmessage = (e: MessageEvent<Float32Array>) => send(e.data);
      return node;
    } catch {
      // fall through to the ScriptProcessor
    } finally {
      URL.revokeObjectURL(url);
    }
  }
  const processor = ctx.createScriptProcessor(2048, 1, 1);
  processor.onaudioprocess = (e) => send(e.inputBuffer.getChannelData(0));
  return processor;
}

function stopNodes(sources: Array<{ node: AudioBufferSourceNode }>): void {
  for (const s of sources) {
    try {
      s.node.stop();
    } catch {
      // already stopped
    }
  }
}

export class LiveSession {
  private ws: WebSocket | null = null;
  private input: AudioContext | null = null;
  private output: AudioContext | null = null;
  private stream: MediaStream | null = null;
  private capture: AudioNode | null = null;
  /** How the microphone is read: "worklet" (the audio thread) or "script-processor" (the page's thread). */
  captureKind = "";
  private pendingChunk: LiveEvent | null = null;
  private turnStart = new Map<string, number>();
  private sources: Array<{ node: AudioBufferSourceNode; turn: string }> = [];
  private frames: Frames[] = [];
  private dropped = new Set<string>();
  private playing = false;
  chunksPlayed = 0;
  /** The last session id the server sent: a reconnect carries on that session. */
  sessionId = "";
  private stopped = false;
  private attempts = 0; // reconnect tries since the last working connection
  private settled = false; // the current connection carried an event or lived SETTLED_MS
  private openedAt = 0;
  private retryAfterMs = 0; // from the last error event (a busy server says how long to wait)
  private wakeUp: (() => void) | null = null;

  constructor(
    private readonly apiBase: string,
    private readonly options: LiveOptions,
    private readonly handlers: LiveHandlers,
  ) {}

  async start(): Promise<void> {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 },
    });
    this.input = new AudioContext();
    this.output = new AudioContext();
    this.sessionId = this.options.sessionId ?? "";
    await this.connect();
    const source = this.input.createMediaStreamSource(this.stream);
    const send = (pcm: Float32Array) => {
      const ws = this.ws; // the current connection: a reconnect replaces it
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(toPcm16(pcm));
    };
    this.capture = await captureNode(this.input, send);
    this.captureKind = this.capture instanceof ScriptProcessorNode ? "script-processor" : "worklet";
    source.connect(this.capture);
    this.capture.connect(this.input.destination); // silent: it only keeps the graph pulling
  }

  /** Opens a socket (with a fresh ticket when there is a key) and sends the config, with the last session id. */
  private async connect(): Promise<void> {
    // Fetched after the microphone prompt, which may take the person longer than the ticket lives.
    const ticket = this.options.apiKey ? await converseTicket(this.apiBase, this.options.apiKey) : undefined;
    if (this.stopped) return;
    const ws = new WebSocket(websocketUrl(this.apiBase, window.location, ticket));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("The live connection could not be opened."));
    });
    if (this.stopped) {
      ws.close();
      return;
    }
    ws.send(
      JSON.stringify({
        type: "config",
        sample_rate: this.input?.sampleRate ?? 48000,
        session_id: this.sessionId,
        avatar_id: this.options.avatarId ?? "",
        language: this.options.language ?? "",
        barge_in: this.options.bargeIn ?? false,
        outputs: ["audio", "animation"],
      }),
    );
    this.openedAt = Date.now();
    this.settled = false;
    this.retryAfterMs = 0;
    ws.onmessage = (m) => this.onMessage(m.data as string | ArrayBuffer);
    ws.onclose = (e) => this.closed(ws, e);
  }

  private closed(ws: WebSocket, e: { code?: number; reason: string }): void {
    if (ws !== this.ws || this.stopped) return;
    this.ws = null;
    this.pendingChunk = null;
    const delays = this.options.reconnectDelaysMs ?? RECONNECT_DELAYS_MS;
    if (!RECONNECT_CODES.has(e.code ?? 1006) || delays.length === 0) {
      this.handlers.onClose(e.reason || "closed");
      return;
    }
    if (this.settled || Date.now() - this.openedAt >= SETTLED_MS) this.attempts = 0;
    this.stopPlayback(); // the reply in flight is gone with its server
    void this.reconnect(delays, e.reason || "closed");
  }

  /** Tries to open the session again, waiting `delays` between tries; onClose when none works. */
  private async reconnect(delays: number[], reason: string): Promise<void> {
    while (this.attempts < delays.length) {
      const delay = Math.max(delays[this.attempts], this.retryAfterMs);
      this.attempts += 1;
      this.handlers.onReconnecting?.(this.attempts, delay);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
      if (this.stopped) return;
      try {
        await this.connect();
        if (this.stopped) return;
        this.handlers.onReconnected?.();
        return;
      } catch {
        this.ws = null; // not opened (or no ticket): the next try
      }
    }
    if (!this.stopped) this.handlers.onClose(reason);
  }

  private onMessage(data: string | ArrayBuffer): void {
    if (typeof data !== "string") {
      this.settled = true;
      const meta = this.pendingChunk;
      this.pendingChunk = null;
      if (meta && !this.dropped.has(meta.turn_id)) {
        this.play(meta, data);
        this.handlers.onEvent(meta);
      }
      return;
    }
    const event = JSON.parse(data) as LiveEvent;
    if (event.session_id) this.sessionId = event.session_id;
    if (event.type !== "error") this.settled = true; // a working session (an error event may end it at once)
    else if (typeof event.retry_after_ms === "number") this.retryAfterMs = event.retry_after_ms;
    if (event.type === "audio_chunk") {
      this.pendingChunk = event; // handed on with its audio, the next binary message
      return;
    }
    if (event.type === "animation_frames") {
      if (this.dropped.has(event.turn_id)) return;
      const start = this.clockFor(event.turn_id);
      this.frames.push({
        turn: event.turn_id,
        start,
        fps: Number(event.fps),
        names: event.names as string[],
        times: (event.times as number[]).map((t) => t),
        frames: event.frames as number[][],
      });
    } else if (event.type === "turn_completed" && event.interrupted) {
      // The person barged in and the server stopped this reply. Its audio is streamed ahead of real time,
      // so much of it is scheduled here already: stop hearing it at once, and play nothing more of it.
      // (speech_started alone stops nothing: the server may still take it for a backchannel or an echo.)
      this.dropTurn(event.turn_id);
    }
    this.handlers.onEvent(event);
  }

  private clockFor(turnId: string): number {
    let start = this.turnStart.get(turnId);
    if (start === undefined) {
      start = (this.output?.currentTime ?? 0) + 0.08; // a small lead so the first chunk is not late
      this.turnStart.set(turnId, start);
    }
    return start;
  }

  private play(meta: LiveEvent, data: ArrayBuffer): void {
    const ctx = this.output;
    if (!ctx) return;
    const samples = fromPcm16(data);
    const buffer = ctx.createBuffer(1, samples.length, Number(meta.sample_rate));
    buffer.copyToChannel(samples, 0);
    const node = ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(ctx.destination);
    // Scheduled on the turn's clock: consecutive chunks play back to back, without gaps.
    const when = Math.max(ctx.currentTime, this.clockFor(meta.turn_id) + Number(meta.start_seconds));
    node.start(when);
    node.onended = () => {
      this.sources = this.sources.filter((s) => s.node !== node);
      this.setPlaying();
    };
    this.sources.push({ node, turn: meta.turn_id });
    this.chunksPlayed += 1;
    this.setPlaying();
  }

  private setPlaying(): void {
    const playing = this.sources.length > 0;
    if (playing === this.playing) return;
    this.playing = playing;
    this.handlers.onPlayback?.(playing);
  }

  /** Stops one turn's audio and animation now; its later chunks and frames are ignored. */
  private dropTurn(turnId: string): void {
    this.dropped.add(turnId);
    const stopping = this.sources.filter((s) => s.turn === turnId);
    this.sources = this.sources.filter((s) => s.turn !== turnId);
    this.frames = this.frames.filter((f) => f.turn !== turnId);
    stopNodes(stopping);
    this.setPlaying();
  }

  /** Whether reply audio is playing now. */
  get speaking(): boolean {
    return this.sources.length > 0;
  }

  /** Face weights for this instant of the reply audio. */
  weightsNow(): Weights {
    return this.output ? weightsAt(this.frames, this.output.currentTime) : {};
  }

  interrupt(): void {
    for (const turnId of this.turnStart.keys()) this.dropped.add(turnId);
    this.stopPlayback();
    this.ws?.send(JSON.stringify({ type: "interrupt" }));
  }

  sendText(text: string): void {
    this.ws?.send(JSON.stringify({ type: "text", text }));
  }

  private stopPlayback(): void {
    stopNodes(this.sources);
    this.sources = [];
    this.frames = [];
    this.setPlaying();
  }

  stop(): void {
    this.stopped = true;
    this.wakeUp?.();
    this.stopPlayback();
    this.capture?.disconnect();
    this.stream?.getTracks().forEach((t) => t.stop());
    this.ws?.close();
    void this.input?.close();
    void this.output?.close();
    this.ws = null;
  }
}
