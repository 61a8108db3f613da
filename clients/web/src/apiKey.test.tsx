import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { ApiError, authHeaders, converseTicket, interact, listAvatars } from "./api";
import { AvatarChatWidget } from "./AvatarChatWidget";
import { loadBridgeImage } from "./avatars";
import { LiveSession, websocketUrl } from "./live";
import { installLiveFakes, lastSocket, fakes } from "./testing/liveFakes";

const KEY = "browser-key-1";

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** The Authorization header a fetch call sent ("" when none). */
function authorization(init: RequestInit | undefined): string {
  return new Headers(init?.headers).get("authorization") ?? "";
}

const RESULT = {
  transcription: "Hi",
  reply_text: "Hello.",
  audio_url: null,
  video_url: null,
  processing_time: 1,
  session_id: "s1",
  turn_id: "t1",
  language: "en",
  animation_url: null,
  audio_duration: null,
  timings: { stt: 0, llm: 0.5, tts: 0.4, animation: 0, total: 1 },
};

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("the API key", () => {
  it("goes as a Bearer header, and only when there is one", async () => {
    expect(authHeaders(KEY)).toEqual({ Authorization: `Bearer ${KEY}` });
    expect(authHeaders("")).toEqual({});
    const fetchMock = vi.fn(async (_url: string, _init?: RequestInit) => jsonResponse(RESULT));
    vi.stubGlobal("fetch", fetchMock);
    await interact("http://bridge", { text: "Hi" }, undefined, KEY);
    await interact("http://bridge", { text: "Hi" });
    await listAvatars("http://bridge", undefined, KEY);
    expect(fetchMock.mock.calls.map(([, init]) => authorization(init))).toEqual([`Bearer ${KEY}`, "", `Bearer ${KEY}`]);
  });

  it("a refused key is the server's 401 message, not an unreachable backend", async () => {
    const message = "A valid API key is required: send the header 'Authorization: Bearer <key>'.";
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse({ error: { code: "UNAUTHENTICATED", message } }, 401)));
    const err = (await interact("", { text: "x" }, undefined, "wrong").catch((e: unknown) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect([err.status, err.code, err.message, err.unreachable]).toEqual([401, "UNAUTHENTICATED", message, false]);
    const ticketErr = (await converseTicket("", "wrong").catch((e: unknown) => e)) as ApiError;
    expect([ticketErr.status, ticketErr.code]).toEqual([401, "UNAUTHENTICATED"]);
  });

  it("fetches a ticket with the key and puts it in the WebSocket URL", async () => {
    const fetchMock = vi.fn(async (_url: string, _init?: RequestInit) => jsonResponse({ ticket: "t/+=1", expires_in: 30 }));
    vi.stubGlobal("fetch", fetchMock);
    expect(await converseTicket("https://avatar.example.org", KEY)).toBe("t/+=1");
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("https://avatar.example.org/api/v1/avatar/converse/ticket");
    expect(init?.method).toBe("POST");
    expect(authorization(init)).toBe(`Bearer ${KEY}`);
    expect(websocketUrl("https://avatar.example.org", {} as Location, "t/+=1")).toBe(
      "wss://avatar.example.org/api/v1/avatar/converse?ticket=t%2F%2B%3D1",
    );
  });

  it("fetches images with the key's header when there is a key", async () => {
    const images: string[] = [];
    class FakeImage {
      onload: (() => void) | null = null;
      onerror: (() => void) | null = null;
      crossOrigin = "";
      set src(url: string) {
        images.push(url);
        queueMicrotask(() => this.onload?.());
      }
    }
    vi.stubGlobal("Image", FakeImage);
    vi.spyOn(URL, "createObjectURL").mockReturnValue("blob:http://page/1");
    const revoke = vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    const fetchMock = vi.fn(async (_url: string, _init?: RequestInit) => new Response(new Blob(["png"])));
    vi.stubGlobal("fetch", fetchMock);
    await loadBridgeImage("http://bridge/api/v1/avatars/grace/portrait.png", new AbortController().signal, KEY);
    expect(authorization(fetchMock.mock.calls[0][1])).toBe(`Bearer ${KEY}`);
    expect(images).toEqual(["blob:http://page/1"]);
    expect(revoke).toHaveBeenCalledWith("blob:http://page/1");
    await loadBridgeImage("http://bridge/a.png", new AbortController().signal);
    expect(images[1]).toBe("http://bridge/a.png"); // no key: a plain <img>, no fetch
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });
});

describe("LiveSession with a key", () => {
  let uninstall = () => {};
  afterEach(() => uninstall());

  it("opens the socket with a fresh ticket, and without one when there is no key", async () => {
    uninstall = installLiveFakes();
    const fetchMock = vi.fn(async (_url: string, _init?: RequestInit) => jsonResponse({ ticket: "abc", expires_in: 30 }));
    vi.stubGlobal("fetch", fetchMock);
    const handlers = { onEvent: () => {}, onClose: () => {} };
    const keyed = new LiveSession("http://bridge", { apiKey: KEY }, handlers);
    await keyed.start();
    expect(lastSocket().url).toBe("ws://bridge/api/v1/avatar/converse?ticket=abc");
    expect(authorization(fetchMock.mock.calls[0][1])).toBe(`Bearer ${KEY}`);
    keyed.stop();
    const open = new LiveSession("http://bridge", {}, handlers);
    await open.start();
    expect(lastSocket().url).toBe("ws://bridge/api/v1/avatar/converse");
    expect(fetchMock).toHaveBeenCalledTimes(1);
    open.stop();
  });

  it("does not open a socket when the ticket is refused", async () => {
    uninstall = installLiveFakes();
    const message = "A valid API key is required: send the header 'Authorization: Bearer <key>'.";
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse({ error: { code: "UNAUTHENTICATED", message } }, 401)));
    const session = new LiveSession("http://bridge", { apiKey: "wrong" }, { onEvent: () => {}, onClose: () => {} });
    await expect(session.start()).rejects.toThrow(message);
    expect(fakes.sockets).toHaveLength(0);
    session.stop();
  });
});

describe("AvatarChatWidget with apiKey", () => {
  it("sends the key on its API calls, not on the health check", async () => {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
    const fetchMock = vi.fn(async (url: string, _init?: RequestInit) => {
      const u = String(url);
      if (u.endsWith("/healthz")) return jsonResponse({ status: "SERVING" });
      if (u.endsWith("/api/v1/avatars")) return jsonResponse({ default: "grace", avatars: [{ id: "grace", name: "Grace" }] });
      if (u.includes("/api/v1/avatars/")) return jsonResponse({ error: { code: "NOT_FOUND", message: "none" } }, 404);
      return jsonResponse(RESULT);
    });
    vi.stubGlobal("fetch", fetchMock);
    render(<AvatarChatWidget apiBase="http://bridge" apiKey={KEY} video={false} />);
    await waitFor(() => expect(fetchMock.mock.calls.some(([u]) => String(u).endsWith("/api/v1/avatars/grace/face"))).toBe(true));
    fireEvent.change(screen.getByTestId("text"), { target: { value: "Hi" } });
    await act(async () => {
      fireEvent.click(screen.getByTestId("send"));
    });
    await waitFor(() => expect(fetchMock.mock.calls.some(([u]) => String(u).includes("interact"))).toBe(true));
    for (const [url, init] of fetchMock.mock.calls) {
      const expected = String(url).endsWith("/healthz") ? "" : `Bearer ${KEY}`;
      expect([String(url), authorization(init)]).toEqual([String(url), expected]);
    }
  });
});
