/** Stand-ins for the browser's microphone, Web Audio and WebSocket, to drive a LiveSession in tests. */

import { vi } from "vitest";

export class FakeSource {
  buffer: unknown = null;
  startedAt: number | null = null;
  stopped = false;
  onended: (() => void) | null = null;
  connect(): void {}
  start(when: number): void {
    this.startedAt = when;
  }
  stop(): void {
    this.stopped = true;
  }
  /** The chunk played to its end. */
  end(): void {
    this.onended?.();
  }
}

class FakeScriptProcessor {
  onaudioprocess: unknown = null;
  connect(): void {}
  disconnect(): void {}
}

class FakeAudioContext {
  currentTime = 0;
  constructor() {
    fakes.contexts.push(this);
  }
  sampleRate = 48000;
  destination = {};
  createMediaStreamSource() {
    return { connect() {} };
  }
  createScriptProcessor() {
    return new FakeScriptProcessor();
  }
  createBuffer(_channels: number, length: number, rate: number) {
    return { duration: length / rate, copyToChannel() {} };
  }
  createBufferSource(): FakeSource {
    const node = new FakeSource();
    fakes.sources.push(node);
    return node;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export class FakeWebSocket {
  static readonly OPEN = 1;
  /** How many of the next sockets fail to open (no server there). */
  static refuse = 0;
  readyState = 0;
  binaryType = "blob";
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onmessage: ((m: { data: string | ArrayBuffer }) => void) | null = null;

  constructor(readonly url: string) {
    fakes.sockets.push(this);
    const refused = FakeWebSocket.refuse > 0;
    if (refused) FakeWebSocket.refuse -= 1;
    queueMicrotask(() => {
      if (refused) {
        this.readyState = 3;
        this.onerror?.();
        this.onclose?.({ code: 1006, reason: "" });
        return;
      }
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.();
    });
  }
  send(data: unknown): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
  }
  /** The bridge closes the connection. */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** A JSON event from the server. */
  event(type: string, turnId: string, fields: Record<string, unknown> = {}): void {
    this.onmessage?.({ data: JSON.stringify({ type, turn_id: turnId, session_id: "s1", ...fields }) });
  }
  /** An audio chunk: its event, then its PCM16 (0.1 s at 16 kHz). */
  chunk(turnId: string, startSeconds: number): void {
    this.event("audio_chunk", turnId, { sample_rate: 16000, start_seconds: startSeconds, bytes: 3200 });
    this.onmessage?.({ data: new ArrayBuffer(3200) });
  }
}

export const fakes = {
  sources: [] as FakeSource[],
  sockets: [] as FakeWebSocket[],
  contexts: [] as FakeAudioContext[],
};

/** Moves the audio clocks to `seconds`. */
export function audioTime(seconds: number): void {
  for (const ctx of fakes.contexts) ctx.currentTime = seconds;
}

/** Installs the fakes; undo with vi.unstubAllGlobals() and the returned function. */
export function installLiveFakes(): () => void {
  fakes.sources = [];
  fakes.sockets = [];
  fakes.contexts = [];
  FakeWebSocket.refuse = 0;
  vi.stubGlobal("AudioContext", FakeAudioContext);
  vi.stubGlobal("ScriptProcessorNode", FakeScriptProcessor);
  vi.stubGlobal("WebSocket", FakeWebSocket);
  const track = { stop() {} };
  Object.defineProperty(navigator, "mediaDevices", {
    configurable: true,
    value: { getUserMedia: async () => ({ getTracks: () => [track] }) },
  });
  return () => {
    delete (navigator as { mediaDevices?: unknown }).mediaDevices;
  };
}

export function lastSocket(): FakeWebSocket {
  const ws = fakes.sockets[fakes.sockets.length - 1];
  if (!ws) throw new Error("no WebSocket was opened");
  return ws;
}
