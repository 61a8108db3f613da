import { afterEach, describe, expect, it, vi } from "vitest";

import { fromPcm16, LiveSession, toPcm16, websocketUrl, weightsAt, type LiveEvent } from "./live";
import { LiveStatus } from "./liveStatus";
import { audioTime, fakes, installLiveFakes, lastSocket } from "./testing/liveFakes";

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

describe("LiveSession", () => {
  let uninstall = () => {};
  afterEach(() => {
    uninstall();
    vi.unstubAllGlobals();
  });

  async function started(bargeIn = true) {
    uninstall = installLiveFakes();
    const events: LiveEvent[] = [];
    const playback: boolean[] = [];
    const session = new LiveSession("http://bridge", { bargeIn }, {
      onEvent: (e) => events.push(e),
      onClose: () => {},
      onPlayback: (playing) => playback.push(playing),
    });
    await session.start();
    return { session, ws: lastSocket(), events, playback };
  }

  const frames = () => ({ fps: 10, names: ["jawOpen"], times: [0, 0.1, 0.2], frames: [[0.5], [0.6], [0.7]] });

  it("stops a reply's audio when the server ends its turn as interrupted, not on speech_started", async () => {
    const { session, ws, events, playback } = await started();
    ws.chunk("t1", 0);
    ws.chunk("t1", 0.1);
    ws.event("animation_frames", "t1", frames());
    expect(fakes.sources).toHaveLength(2);
    expect(session.speaking).toBe(true);
    audioTime(0.2); // the turn's clock starts at 0.08 s
    expect(session.weightsNow().jawOpen).toBe(0.6);

    // Speech the server accepted as the person's turn: the reply plays on until the server decides.
    ws.event("speech_started", "t2", { time_seconds: 3.2 });
    expect(fakes.sources.some((s) => s.stopped)).toBe(false);
    expect(session.speaking).toBe(true);

    ws.event("turn_completed", "t1", { interrupted: true, reply_text: "I am", timings: {} });
    expect(fakes.sources.every((s) => s.stopped)).toBe(true);
    expect(session.speaking).toBe(false);
    expect(session.weightsNow()).toEqual({});
    expect(playback).toEqual([true, false]);
    expect(events.map((e) => e.type)).toEqual([
      "audio_chunk",
      "audio_chunk",
      "animation_frames",
      "speech_started",
      "turn_completed",
    ]);

    // What of that turn still arrives is dropped: not played, not animated, not handed on.
    ws.chunk("t1", 0.2);
    ws.event("animation_frames", "t1", frames());
    expect(fakes.sources).toHaveLength(2);
    expect(session.weightsNow()).toEqual({});
    expect(session.chunksPlayed).toBe(2);
    expect(events).toHaveLength(5);

    // The next turn plays.
    ws.chunk("t2", 0);
    expect(fakes.sources).toHaveLength(3);
    expect(fakes.sources[2].stopped).toBe(false);
    expect(session.speaking).toBe(true);
    expect(events[5]).toMatchObject({ type: "audio_chunk", turn_id: "t2" });
    session.stop();
  });

  it("stops only the interrupted turn and plays a completed turn to its end", async () => {
    const { session, ws, playback } = await started(false);
    ws.chunk("t1", 0);
    ws.event("turn_completed", "t1", { interrupted: false, reply_text: "Hi.", timings: {} });
    expect(fakes.sources[0].stopped).toBe(false); // streamed ahead: it plays on after its turn_completed
    ws.chunk("t2", 0);
    ws.event("turn_completed", "t2", { interrupted: true, reply_text: "", timings: {} });
    expect(fakes.sources.map((s) => s.stopped)).toEqual([false, true]);
    expect(session.speaking).toBe(true);
    fakes.sources[0].end();
    expect(session.speaking).toBe(false);
    expect(playback).toEqual([true, false]);
    session.stop();
  });

  it("still stops everything and tells the server when the person presses Interrupt", async () => {
    const { session, ws } = await started();
    ws.chunk("t1", 0);
    session.interrupt();
    expect(fakes.sources[0].stopped).toBe(true);
    const sent = ws.sent.map((m) => (typeof m === "string" ? JSON.parse(m).type : "binary"));
    expect(sent).toEqual(["config", "interrupt"]);
    ws.chunk("t1", 0.1);
    expect(fakes.sources).toHaveLength(1);
    session.stop();
  });
});

describe("LiveStatus", () => {
  const ev = (type: string, turnId: string, fields: Record<string, unknown> = {}): LiveEvent => ({
    type,
    turn_id: turnId,
    session_id: "s1",
    ...fields,
  });

  it("thinks from the end of the turn until the reply plays, and not at a pause", () => {
    const status = new LiveStatus();
    const phases = [status.phase];
    const step = (f: () => void) => {
      f();
      phases.push(status.phase);
    };
    step(() => status.event(ev("speech_started", "t1")));
    step(() => status.event(ev("transcript", "t1", { text: "who", is_final: false })));
    step(() => status.event(ev("speech_started", "t1"))); // speech again after a pause
    step(() => status.event(ev("speech_ended", "t1")));
    step(() => status.event(ev("reply_text_delta", "t1", { text: "I" })));
    step(() => status.playback(true));
    step(() => status.event(ev("audio_chunk", "t1")));
    step(() => status.event(ev("turn_completed", "t1", { interrupted: false })));
    step(() => status.playback(false));
    expect(phases).toEqual([
      "listening",
      "listening",
      "listening",
      "listening",
      "thinking",
      "thinking",
      "speaking",
      "speaking",
      "speaking",
      "listening",
    ]);
  });

  it("keeps speaking through a gap in the stream and a barge-in until the turn ends", () => {
    const status = new LiveStatus();
    status.playback(true);
    status.event(ev("audio_chunk", "t1"));
    status.playback(false); // the next chunk is late
    expect(status.phase).toBe("speaking");
    status.playback(true);
    status.event(ev("audio_chunk", "t1"));
    status.event(ev("speech_started", "t2"));
    expect(status.phase).toBe("speaking");
    status.event(ev("turn_completed", "t1", { interrupted: true }));
    status.playback(false);
    expect(status.phase).toBe("listening");
    status.event(ev("speech_ended", "t2"));
    expect(status.phase).toBe("thinking");
    status.event(ev("error", "t2", { message: "No speech was recognized." }));
    expect(status.phase).toBe("listening");
  });

  it("thinks after a typed text until a new turn's reply, or its end without audio", () => {
    const status = new LiveStatus();
    status.event(ev("turn_completed", "t1", { interrupted: false }));
    status.textSent();
    expect(status.phase).toBe("thinking");
    status.event(ev("reply_text_delta", "t2", { text: "Hi" }));
    expect(status.phase).toBe("thinking");
    status.event(ev("turn_completed", "t2", { interrupted: false }));
    expect(status.phase).toBe("listening");
  });
});
