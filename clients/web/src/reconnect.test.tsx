import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { AvatarChatWidget } from "./AvatarChatWidget";
import { LiveSession, RECONNECT_DELAYS_MS, type LiveOptions } from "./live";
import { FakeWebSocket, fakes, installLiveFakes, lastSocket } from "./testing/liveFakes";

const UNAVAILABLE = { code: "UNAVAILABLE", message: "The avatar service is unavailable; try again shortly." };

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** The config message a socket sent first. */
function config(ws: FakeWebSocket): Record<string, unknown> {
  return JSON.parse(String(ws.sent[0])) as Record<string, unknown>;
}

/** A replica dies under the session: the bridge sends the error event and closes with 1012. */
function replicaDies(ws: FakeWebSocket): void {
  ws.event("error", "", { ...UNAVAILABLE, session_id: "", error_id: "e1" });
  ws.serverClose(1012, "Server restarting; reconnect shortly.");
}

describe("LiveSession reconnects", () => {
  let uninstall = () => {};
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  });
  afterEach(() => {
    uninstall();
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  async function started(options: LiveOptions = {}) {
    uninstall = installLiveFakes();
    const log: string[] = [];
    const session = new LiveSession("http://bridge", options, {
      onEvent: (e) => log.push(`event ${e.type}`),
      onClose: (reason) => log.push(`close ${reason}`),
      onReconnecting: (attempt, delay) => log.push(`reconnecting ${attempt} ${delay}`),
      onReconnected: () => log.push("reconnected"),
    });
    await session.start();
    return { session, log };
  }

  it("opens a new socket after 1012 and carries on the session under its last id", async () => {
    const { session, log } = await started({ sessionId: "old" });
    const first = lastSocket();
    expect(config(first).session_id).toBe("old");
    first.event("transcript", "t1", { text: "Hi", is_final: true, session_id: "abc.tag" });
    replicaDies(first);
    expect(log).toEqual(["event transcript", "event error", `reconnecting 1 ${RECONNECT_DELAYS_MS[0]}`]);
    await vi.advanceTimersByTimeAsync(RECONNECT_DELAYS_MS[0] - 1);
    expect(fakes.sockets).toHaveLength(1); // it waits first
    await vi.advanceTimersByTimeAsync(1);
    expect(fakes.sockets).toHaveLength(2);
    const second = lastSocket();
    expect(config(second)).toMatchObject({ type: "config", session_id: "abc.tag", outputs: ["audio", "animation"] });
    expect(log[log.length - 1]).toBe("reconnected");
    expect(log.some((l) => l.startsWith("close"))).toBe(false);
    session.sendText("Still there?");
    expect(JSON.parse(String(second.sent[1]))).toEqual({ type: "text", text: "Still there?" });
    expect(first.sent).toHaveLength(1); // nothing more to the dead socket
  });

  it("sends the microphone's audio to the new socket", async () => {
    const { session } = await started();
    replicaDies(lastSocket());
    await vi.advanceTimersByTimeAsync(RECONNECT_DELAYS_MS[0]);
    const capture = (session as unknown as { capture: { onaudioprocess: (e: unknown) => void } }).capture;
    capture.onaudioprocess({ inputBuffer: { getChannelData: () => new Float32Array(2048) } });
    const sent = lastSocket().sent;
    expect(sent[sent.length - 1]).toBeInstanceOf(ArrayBuffer);
  });

  it("backs off between tries while no server answers, then goes on", async () => {
    const { log } = await started();
    FakeWebSocket.refuse = 2;
    lastSocket().serverClose(1006); // the connection dropped (no close frame)
    await vi.advanceTimersByTimeAsync(250 + 500 + 1000);
    expect(log.filter((l) => l.startsWith("reconnecting"))).toEqual([
      "reconnecting 1 250",
      "reconnecting 2 500",
      "reconnecting 3 1000",
    ]);
    expect(fakes.sockets).toHaveLength(4); // the first, two refused, the one that opened
    expect(log[log.length - 1]).toBe("reconnected");
  });

  it("gives up after its tries and says why, once", async () => {
    const { log } = await started({ reconnectDelaysMs: [10, 20] });
    FakeWebSocket.refuse = 10;
    replicaDies(lastSocket());
    await vi.advanceTimersByTimeAsync(1000);
    expect(log.filter((l) => l.startsWith("reconnecting"))).toHaveLength(2);
    expect(log.filter((l) => l.startsWith("close"))).toEqual(["close Server restarting; reconnect shortly."]);
  });

  it("counts a socket that opens and is closed again at once as a failed try: no endless loop", async () => {
    const { log } = await started({ reconnectDelaysMs: [10, 20, 40] });
    for (let i = 0; i < 4; i++) {
      replicaDies(lastSocket()); // every replica down: each new socket gets the error and 1012 at once
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(fakes.sockets).toHaveLength(4);
    expect(log.filter((l) => l.startsWith("close"))).toHaveLength(1);
  });

  it("does not reconnect after a normal end, a refused message or an internal error", async () => {
    for (const code of [1000, 1008, 1011]) {
      const { log } = await started();
      lastSocket().serverClose(code, `closed ${code}`);
      await vi.advanceTimersByTimeAsync(5000);
      expect(fakes.sockets).toHaveLength(1);
      expect(log).toEqual([`close closed ${code}`]);
      uninstall();
    }
  });

  it("waits as long as a busy server asks (1013 with retry_after_ms)", async () => {
    const { log } = await started();
    const ws = lastSocket();
    ws.event("error", "", { code: "RESOURCE_EXHAUSTED", message: "busy", retry_after_ms: 3000, session_id: "" });
    ws.serverClose(1013, "Server busy; retry later.");
    expect(log[log.length - 1]).toBe("reconnecting 1 3000");
    await vi.advanceTimersByTimeAsync(2999);
    expect(fakes.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fakes.sockets).toHaveLength(2);
  });

  it("stops waiting when the person ends the session", async () => {
    const { session, log } = await started();
    replicaDies(lastSocket());
    session.stop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(fakes.sockets).toHaveLength(1);
    expect(log.some((l) => l.startsWith("close") || l === "reconnected")).toBe(false);
  });

  it("fetches a fresh ticket for every socket when there is a key", async () => {
    let n = 0;
    const fetchMock = vi.fn(async () => jsonResponse({ ticket: `ticket-${++n}`, expires_in: 30 }));
    vi.stubGlobal("fetch", fetchMock);
    await started({ apiKey: "browser-key" });
    replicaDies(lastSocket());
    await vi.advanceTimersByTimeAsync(RECONNECT_DELAYS_MS[0]);
    expect(fakes.sockets.map((s) => new URL(s.url).searchParams.get("ticket"))).toEqual(["ticket-1", "ticket-2"]);
    expect(fetchMock).toHaveBeenCalledTimes(2);
  });
});

describe("AvatarChatWidget, live, when the server goes away", () => {
  let uninstall = () => {};
  afterEach(() => {
    uninstall();
    vi.unstubAllGlobals();
  });

  it("says it is reconnecting, then carries on the session with the id it had", async () => {
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
    const first = lastSocket();
    await act(async () => first.event("transcript", "t1", { text: "Hi", is_final: true, session_id: "abc.tag" }));
    await act(async () => replicaDies(first));
    expect(screen.getByTestId("error").textContent).toContain("reconnecting");
    await waitFor(() => expect(fakes.sockets).toHaveLength(2), { timeout: 2000 });
    await waitFor(() => expect(screen.queryByTestId("error")).toBeNull());
    expect(config(lastSocket()).session_id).toBe("abc.tag");
    expect(screen.queryByTestId("live-stop")).toBeTruthy(); // still live
    expect(screen.getByTestId("state").textContent).toBe("Listening");
  });
});
