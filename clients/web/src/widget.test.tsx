import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { ApiError, buildForm, extensionFor, interact } from "./api";
import { AvatarChatWidget } from "./AvatarChatWidget";
import { fallbackReply } from "./fallback";
import { preferredMimeType } from "./recorder";
import { fakes, installLiveFakes, lastSocket } from "./testing/liveFakes";
import { sampleTrack, type AnimationTrack } from "./track";

const RESULT = {
  transcription: "Who are you?",
  reply_text: "I am Grace Hopper.",
  audio_url: "/static/audio/a.wav",
  video_url: "/static/video/v.mp4",
  processing_time: 1.5,
  session_id: "s1",
  turn_id: "t1",
  language: "en",
  animation_url: null,
  audio_duration: 1.2,
  timings: { stt: 0, llm: 0.5, tts: 0.4, animation: 0.3, total: 1.5 },
};

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("api", () => {
  it("builds the seed's multipart form", () => {
    const form = buildForm({ text: "hi", sessionId: "s", outputs: ["audio", "video"] });
    expect(form.get("text")).toBe("hi");
    expect(form.get("session_id")).toBe("s");
    expect(form.get("outputs")).toBe("audio,video");
    expect(form.get("audio")).toBeNull();
    expect(extensionFor("audio/webm;codecs=opus")).toBe("webm");
    expect(extensionFor("audio/ogg")).toBe("ogg");
  });

  it("turns the bridge's error JSON into an ApiError", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse({ error: { code: "INVALID_ARGUMENT", message: "No speech was recognized in the audio." } }, 422)));
    const err = await interact("", { text: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(422);
    expect((err as ApiError).message).toBe("No speech was recognized in the audio.");
    expect((err as ApiError).unreachable).toBe(false);
  });

  it("reports an unreachable backend", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    const err = (await interact("", { text: "x" }).catch((e: unknown) => e)) as ApiError;
    expect(err.unreachable).toBe(true);
  });
});

describe("track and helpers", () => {
  const track: AnimationTrack = { fps: 10, names: ["jawOpen", "mouthClose"], times: [0, 0.1, 0.2], frames: [[0, 0], [0.8, 0], [0.4, 0.4]] };

  it("samples the frame that has started", () => {
    expect(sampleTrack(track, 0.05).jawOpen).toBe(0);
    expect(sampleTrack(track, 0.1).jawOpen).toBe(0.8);
    expect(sampleTrack(track, 99).jawOpen).toBe(0.4);
    expect(sampleTrack(track, -1).jawOpen).toBe(0);
  });

  it("prefers webm/opus for recording", () => {
    expect(preferredMimeType((t) => t.startsWith("audio/webm"))).toBe("audio/webm;codecs=opus");
    expect(preferredMimeType(() => false)).toBe("");
  });

  it("marks fallback replies", () => {
    expect(fallbackReply("hello")).toContain("offline");
  });
});

describe("AvatarChatWidget", () => {
  it("sends typed text and shows the exchange and the video", async () => {
    const fetchMock = vi.fn(async (url: string) => (String(url).endsWith("/healthz") ? jsonResponse({ status: "SERVING" }) : jsonResponse(RESULT)));
    vi.stubGlobal("fetch", fetchMock);
    render(<AvatarChatWidget apiBase="http://bridge" />);
    fireEvent.change(screen.getByTestId("text"), { target: { value: "Who are you?" } });
    await act(async () => {
      fireEvent.click(screen.getByTestId("send"));
    });
    await waitFor(() => expect(screen.getByTestId("log").textContent).toContain("I am Grace Hopper."));
    expect(screen.getByTestId("log").textContent).toContain("Who are you?");
    expect(screen.getByTestId("state").textContent).toBe("Speaking");
    expect((screen.getByTestId("avatar-video") as HTMLVideoElement).src).toBe("http://bridge/static/video/v.mp4");
    const [, init] = fetchMock.mock.calls.find(([u]) => String(u).includes("interact")) as unknown as [string, RequestInit];
    expect((init.body as FormData).get("text")).toBe("Who are you?");
  });

  it("shows the server's message and the fallback when the backend is down", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse({ error: { code: "UNAVAILABLE", message: "The avatar service is unavailable: connection refused" } }, 503)));
    render(<AvatarChatWidget />);
    await waitFor(() => expect(screen.getByTestId("offline")).toBeTruthy());
    fireEvent.change(screen.getByTestId("text"), { target: { value: "hi" } });
    await act(async () => {
      fireEvent.click(screen.getByTestId("send"));
    });
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("Error"));
    expect(screen.getByTestId("error").textContent).toContain("connection refused");
    expect(screen.getByTestId("fallback").textContent).toContain("fallback");
  });

  const AVATARS = {
    default: "grace",
    avatars: [
      { id: "grace", name: "Grace Hopper", description: "Computer pioneer", voice: "piper:a", language: "en" },
      { id: "eileen", name: "Eileen Collins", description: "Astronaut", voice: "piper:b", language: "en" },
    ],
  };

  function bridgeMock() {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null); // jsdom draws nothing
    return vi.fn(async (url: string) => {
      const u = String(url);
      if (u.endsWith("/healthz")) return jsonResponse({ status: "SERVING" });
      if (u.endsWith("/api/v1/avatars")) return jsonResponse(AVATARS);
      if (u.includes("/api/v1/avatars/")) return jsonResponse({ error: { code: "NOT_FOUND", message: "no face here" } }, 404);
      return jsonResponse(RESULT);
    });
  }

  it("lists the avatars, starts with the server's default and sends the one picked", async () => {
    const fetchMock = bridgeMock();
    vi.stubGlobal("fetch", fetchMock);
    const onAvatarChange = vi.fn();
    render(<AvatarChatWidget video={false} onAvatarChange={onAvatarChange} />);
    const picker = (await screen.findByTestId("avatar-picker")) as HTMLSelectElement;
    expect(Array.from(picker.options).map((o) => o.textContent)).toEqual(["Grace Hopper", "Eileen Collins"]);
    expect(picker.value).toBe("grace");
    await waitFor(() => expect(fetchMock.mock.calls.some(([u]) => String(u).endsWith("/api/v1/avatars/grace/face"))).toBe(true));
    fireEvent.change(picker, { target: { value: "eileen" } });
    expect(onAvatarChange).toHaveBeenCalledWith("eileen");
    await waitFor(() => expect(fetchMock.mock.calls.some(([u]) => String(u).endsWith("/api/v1/avatars/eileen/face"))).toBe(true));
    fireEvent.change(screen.getByTestId("text"), { target: { value: "Who are you?" } });
    await act(async () => {
      fireEvent.click(screen.getByTestId("send"));
    });
    const [, init] = fetchMock.mock.calls.find(([u]) => String(u).includes("interact")) as unknown as [string, RequestInit];
    expect((init.body as FormData).get("avatar_id")).toBe("eileen");
  });

  it("starts with the avatar the page names", async () => {
    const fetchMock = bridgeMock();
    vi.stubGlobal("fetch", fetchMock);
    render(<AvatarChatWidget video={false} avatarId="eileen" />);
    const picker = (await screen.findByTestId("avatar-picker")) as HTMLSelectElement;
    expect(picker.value).toBe("eileen");
    await waitFor(() => expect(fetchMock.mock.calls.some(([u]) => String(u).endsWith("/api/v1/avatars/eileen/face"))).toBe(true));
    expect(fetchMock.mock.calls.some(([u]) => String(u).endsWith("/api/v1/avatars/grace/face"))).toBe(false);
  });
});

describe("AvatarChatWidget, live", () => {
  const TIMINGS = {
    stt: 0.2,
    llm: 0.5,
    llm_first_token: 0.2,
    tts: 0.4,
    tts_first_byte: 0.1,
    voice_to_first_audio: 0.6,
    total: 1.2,
  };
  let uninstall = () => {};
  afterEach(() => uninstall());

  /** Renders the widget and starts a live conversation on fake audio and a fake WebSocket; `history` lists
   * every label the state showed, in order (a label shown and replaced between two checks counts too). */
  async function startLive() {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
    const noFace = () => jsonResponse({ error: { code: "NOT_FOUND", message: "none" } }, 404);
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => (String(url).endsWith("/healthz") ? jsonResponse({ status: "SERVING" }) : noFace())),
    );
    uninstall = installLiveFakes();
    render(<AvatarChatWidget />);
    await act(async () => {
      fireEvent.click(screen.getByTestId("live-start"));
    });
    await waitFor(() => expect(screen.queryByTestId("live-stop")).toBeTruthy());
    const label = screen.getByTestId("state");
    const history = [label.textContent];
    new MutationObserver(() => {
      if (label.textContent !== history[history.length - 1]) history.push(label.textContent);
    }).observe(label, { childList: true, characterData: true, subtree: true });
    const ws = lastSocket();
    // Each server message in its own task, as a WebSocket delivers them; the observer runs in between.
    const server = async (f: () => void) => {
      await act(async () => f());
    };
    return { ws, label, history, server };
  }

  it("listens, thinks from speech_ended, speaks while the reply plays, then listens again", async () => {
    const { ws, label, history, server } = await startLive();
    expect(label.textContent).toBe("Listening");
    await server(() => ws.event("speech_started", "t1", { time_seconds: 0.4 }));
    expect(label.textContent).toBe("Listening");
    await server(() => ws.event("transcript", "t1", { text: "Who", is_final: false })); // a pause inside the turn
    await server(() => ws.event("speech_started", "t1", { time_seconds: 1.9 }));
    expect(label.textContent).toBe("Listening");
    await server(() => ws.event("speech_ended", "t1", { time_seconds: 2.6 }));
    expect(label.textContent).toBe("Thinking…");
    await server(() => ws.event("transcript", "t1", { text: "Who are you?", is_final: true }));
    await server(() => ws.event("reply_text_delta", "t1", { text: "I am" }));
    expect(label.textContent).toBe("Thinking…");
    await server(() => ws.chunk("t1", 0));
    expect(label.textContent).toBe("Speaking");
    await server(() => ws.chunk("t1", 0.1));
    await server(() =>
      ws.event("turn_completed", "t1", { interrupted: false, reply_text: "I am Grace.", timings: TIMINGS }),
    );
    expect(label.textContent).toBe("Speaking"); // the audio streamed ahead plays on
    await server(() => fakes.sources[0].end());
    expect(label.textContent).toBe("Speaking");
    await server(() => fakes.sources[1].end());
    expect(label.textContent).toBe("Listening");
    expect(history).toEqual(["Listening", "Thinking…", "Speaking", "Listening"]);
    expect(screen.getByTestId("log").textContent).toContain("I am Grace.");
  });

  it("speaks on through an accepted barge-in until the interrupted turn_completed stops the audio", async () => {
    const { ws, label, history, server } = await startLive();
    await server(() => ws.event("speech_ended", "t1"));
    await server(() => ws.chunk("t1", 0));
    await server(() => ws.chunk("t1", 0.1));
    expect(label.textContent).toBe("Speaking");
    await server(() => ws.event("speech_started", "t2", { time_seconds: 5 }));
    expect(label.textContent).toBe("Speaking");
    expect(fakes.sources.some((s) => s.stopped)).toBe(false);
    await server(() => ws.event("turn_completed", "t1", { interrupted: true, reply_text: "I", timings: TIMINGS }));
    expect(fakes.sources.every((s) => s.stopped)).toBe(true);
    expect(label.textContent).toBe("Listening");
    await server(() => ws.chunk("t1", 0.2)); // already on its way: dropped
    expect(label.textContent).toBe("Listening");
    expect(screen.getByTestId("avatar-face").dataset.chunks).toBe("2");
    await server(() => ws.event("speech_ended", "t2"));
    expect(label.textContent).toBe("Thinking…");
    expect(history).toEqual(["Listening", "Thinking…", "Speaking", "Listening", "Thinking…"]);
  });

  it("thinks after a typed text and listens again after the Interrupt button", async () => {
    const { ws, label, server } = await startLive();
    fireEvent.change(screen.getByTestId("text"), { target: { value: "Who are you?" } });
    await act(async () => {
      fireEvent.click(screen.getByTestId("send"));
    });
    expect(label.textContent).toBe("Thinking…");
    expect(JSON.parse(String(ws.sent[ws.sent.length - 1]))).toEqual({ type: "text", text: "Who are you?" });
    await server(() => ws.chunk("t1", 0));
    expect(label.textContent).toBe("Speaking");
    await act(async () => {
      fireEvent.click(screen.getByTestId("interrupt"));
    });
    expect(fakes.sources[0].stopped).toBe(true);
    expect(label.textContent).toBe("Listening");
  });

  it("keeps push-to-talk's label", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse({ status: "SERVING" })));
    uninstall = installLiveFakes();
    vi.stubGlobal(
      "MediaRecorder",
      class {
        static isTypeSupported = () => true;
        mimeType = "audio/webm";
        start() {}
      },
    );
    render(<AvatarChatWidget />);
    await act(async () => {
      fireEvent.click(screen.getByTestId("record"));
    });
    expect(screen.getByTestId("state").textContent).toBe("Listening…");
  });
});
