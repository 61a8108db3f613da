import { useCallback, useEffect, useRef, useState } from "react";

import { absolute, ApiError, backendHealthy, interact, type InteractResult } from "./api";
import { fromBridge, useAvatars } from "./avatars";
import { FaceRenderer } from "./faceRenderer";
import { fallbackReply, recognitionAvailable, recognizeOnce, speak } from "./fallback";
import { LiveSession, type LiveEvent } from "./live";
import { LiveStatus } from "./liveStatus";
import { Recorder } from "./recorder";
import { loadTrack, sampleTrack, type AnimationTrack, type Weights } from "./track";

/** "recording": push-to-talk; "listening": the live conversation's microphone is open, the avatar not replying. */
export type WidgetState = "idle" | "recording" | "listening" | "thinking" | "speaking" | "error";

export interface ChatEntry {
  role: "user" | "avatar";
  text: string;
  fallback?: boolean;
  turnId?: string;
}

export interface AvatarChatWidgetProps {
  /** Where the REST bridge is; "" = same origin. */
  apiBase?: string;
  /** The bridge's API key (AVATAR_API_KEYS), sent as `Authorization: Bearer`; live mode opens its WebSocket
   * with a one-use ticket fetched with it. Anyone who can read the page can read the key: give browsers a key of
   * their own. */
  apiKey?: string;
  /** The avatar shown first; "" = the server's default. The person can pick another. */
  avatarId?: string;
  /** Called when the person picks another avatar (e.g. to put it in the page's URL). */
  onAvatarChange?: (avatarId: string) => void;
  /** Language code, e.g. "en" or "uk"; empty = let the server detect it. */
  language?: string;
  /** Play the lip-synced video (true) or draw a face from the animation track (false). */
  video?: boolean;
  title?: string;
}

/** The canvas's pixels: the widget shows it at 320 CSS px. */
const FACE_PX = Math.round(320 * Math.min(2, Math.max(1, typeof window === "undefined" ? 1 : window.devicePixelRatio || 1)));

const STATE_LABEL: Record<WidgetState, string> = {
  idle: "Ready",
  recording: "Listening…",
  listening: "Listening",
  thinking: "Thinking…",
  speaking: "Speaking",
  error: "Error",
};

export function AvatarChatWidget({
  apiBase = "",
  apiKey = "",
  avatarId: initialAvatar = "",
  onAvatarChange,
  language = "",
  video = true,
  title = "Talk to the avatar",
}: AvatarChatWidgetProps) {
  const [state, setState] = useState<WidgetState>("idle");
  const [error, setError] = useState<string>("");
  const [log, setLog] = useState<ChatEntry[]>([]);
  const [text, setText] = useState("");
  const [offline, setOffline] = useState(false);
  const [timings, setTimings] = useState<InteractResult["timings"] | null>(null);
  const [videoUrl, setVideoUrl] = useState<string | null>(null);
  const sessionId = useRef<string>("");
  const recorder = useRef<Recorder | null>(null);
  const videoRef = useRef<HTMLVideoElement>(null);
  const audioRef = useRef<HTMLAudioElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const track = useRef<AnimationTrack | null>(null);
  const live = useRef<LiveSession | null>(null);
  const liveStatus = useRef<LiveStatus | null>(null);
  const [liveOn, setLiveOn] = useState(false);
  const [bargeIn, setBargeIn] = useState(false);
  const [liveChunks, setLiveChunks] = useState(0);
  const [capture, setCapture] = useState("");
  const { avatars, avatarId, setAvatarId, face } = useAvatars(apiBase, initialAvatar, apiKey);

  useEffect(() => {
    let cancelled = false;
    backendHealthy(apiBase).then((ok) => {
      if (!cancelled) setOffline(!ok);
    });
    return () => {
      cancelled = true;
    };
  }, [apiBase]);

  // Draw the face on the canvas (live mode, and replies without video): the portrait, animated by the weights
  // of the reply playing now (on the Web Audio clock live, the audio element's clock otherwise) and, always,
  // by the idle head motion.
  useEffect(() => {
    if (video && !liveOn) return;
    const canvas = canvasRef.current;
    const renderer = canvas ? new FaceRenderer(canvas) : null;
    if (canvas) canvas.dataset.frames = "0";
    if (renderer && face) {
      try {
        renderer.setFace(face.face, face.images);
      } catch (err) {
        console.warn(`The face cannot be drawn: ${(err as Error).message}`);
      }
    }
    let frame = 0;
    const tick = () => {
      let weights: Weights = {};
      if (live.current) {
        weights = live.current.weightsNow();
      } else {
        const audio = audioRef.current;
        if (track.current && audio && !audio.paused) weights = sampleTrack(track.current, audio.currentTime);
      }
      if (renderer && canvas && face) {
        renderer.draw(weights, (performance.now() - face.loadedAt) / 1000);
        canvas.dataset.frames = String(renderer.frames);
      }
      frame = requestAnimationFrame(tick);
    };
    frame = requestAnimationFrame(tick);
    return () => {
      cancelAnimationFrame(frame);
      renderer?.dispose();
    };
  }, [video, liveOn, face]);

  useEffect(() => () => live.current?.stop(), []);

  const fail = useCallback((message: string) => {
    setError(message);
    setState("error");
  }, []);

  const play = useCallback(
    async (result: InteractResult) => {
      sessionId.current = result.session_id;
      setTimings(result.timings);
      setLog((l) => [...l, { role: "user", text: result.transcription }, { role: "avatar", text: result.reply_text }]);
      setState("speaking");
      if (video && result.video_url) {
        setVideoUrl(absolute(apiBase, result.video_url));
        return; // the video element's onEnded returns to idle
      }
      const audio = audioRef.current;
      const audioUrl = absolute(apiBase, result.audio_url);
      if (!audio || !audioUrl) {
        setState("idle");
        return;
      }
      track.current = result.animation_url ? await loadTrack(absolute(apiBase, result.animation_url)!) : null;
      audio.src = audioUrl;
      await audio.play().catch(() => setState("idle"));
    },
    [apiBase, video],
  );

  const send = useCallback(
    async (input: { audio?: Blob; text?: string }) => {
      setState("thinking");
      setError("");
      try {
        const outputs: Array<"audio" | "video" | "animation"> = video ? ["audio", "video"] : ["audio", "animation"];
        const result = await interact(
          apiBase,
          { ...input, sessionId: sessionId.current, avatarId, language, outputs },
          undefined,
          apiKey,
        );
        setOffline(false);
        await play(result);
      } catch (err) {
        if (err instanceof ApiError) {
          if (err.unreachable) setOffline(true);
          fail(err.message);
        } else {
          fail(String(err));
        }
      }
    },
    [apiBase, apiKey, avatarId, language, video, play, fail],
  );

  const startRecording = async () => {
    setError("");
    try {
      recorder.current = new Recorder();
      await recorder.current.start();
      setState("recording");
    } catch (err) {
      fail(`The microphone is not available: ${(err as Error).message}`);
    }
  };

  const stopRecording = async () => {
    const rec = recorder.current;
    recorder.current = null;
    if (!rec) return;
    const blob = await rec.stop();
    await send({ audio: blob });
  };

  const sendText = async () => {
    const value = text.trim();
    if (!value) return;
    setText("");
    if (live.current) {
      live.current.sendText(value);
      liveStatus.current?.textSent();
      showLive();
      return;
    }
    await send({ text: value });
  };

  /** The live conversation's state: the LiveStatus's phase, from the events and the reply audio playing. */
  const showLive = useCallback(() => {
    if (live.current && liveStatus.current) setState(liveStatus.current.phase);
  }, []);

  const onLiveEvent = useCallback((event: LiveEvent) => {
    switch (event.type) {
      case "transcript":
        if (event.is_final) setLog((l) => [...l, { role: "user", text: String(event.text), turnId: event.turn_id }]);
        break;
      case "reply_text_delta":
        setLog((l) => {
          const last = l[l.length - 1];
          if (last && last.role === "avatar" && last.turnId === event.turn_id) {
            return [...l.slice(0, -1), { ...last, text: last.text + String(event.text) }];
          }
          return [...l, { role: "avatar", text: String(event.text).trimStart(), turnId: event.turn_id }];
        });
        break;
      case "audio_chunk":
        setLiveChunks((n) => n + 1);
        break;
      case "turn_completed": {
        // What was said: the deltas are what the model wrote, which the server may cut (limits, the
        // in-character guard) or replace.
        if (typeof event.reply_text === "string" && event.reply_text) {
          const said = event.reply_text;
          setLog((l) =>
            l.map((entry) => (entry.role === "avatar" && entry.turnId === event.turn_id ? { ...entry, text: said } : entry)),
          );
        }
        const t = event.timings as Record<string, number>;
        setTimings({ stt: t.stt, llm: t.llm, tts: t.tts, animation: 0, total: t.total });
        break;
      }
      case "error":
        setError(String(event.message));
        break;
    }
    if (event.session_id) sessionId.current = event.session_id;
  }, []);

  const startLive = async () => {
    setError("");
    const status = new LiveStatus();
    const session = new LiveSession(apiBase, { sessionId: sessionId.current, avatarId, language, bargeIn, apiKey }, {
      onEvent: (event) => {
        onLiveEvent(event);
        if (live.current !== session) return;
        status.event(event);
        showLive();
      },
      onPlayback: (playing) => {
        if (live.current !== session) return;
        status.playback(playing);
        showLive();
      },
      // The server went away (a replica restarted or died): the session reconnects on its own and goes on.
      onReconnecting: () => {
        if (live.current === session) setError("The connection was lost; reconnecting…");
      },
      onReconnected: () => {
        if (live.current !== session) return;
        setError("");
        showLive();
      },
      onClose: (reason) => {
        if (live.current === session) {
          live.current = null;
          liveStatus.current = null;
          setLiveOn(false);
          setState("idle");
          if (reason && reason !== "closed") setError(reason);
        }
      },
    });
    try {
      live.current = session;
      liveStatus.current = status;
      await session.start();
      setCapture(session.captureKind);
      setLiveOn(true);
      showLive();
    } catch (err) {
      live.current = null;
      liveStatus.current = null;
      session.stop();
      fail(`Live conversation is not available: ${(err as Error).message}`);
    }
  };

  const stopLive = () => {
    const session = live.current;
    live.current = null;
    liveStatus.current = null;
    session?.stop();
    setLiveOn(false);
    setState("idle");
  };

  const interruptLive = () => {
    live.current?.interrupt();
    liveStatus.current?.interrupted();
    showLive();
  };

  const useFallback = async () => {
    const lang = language || navigator.language || "en-US";
    try {
      setState("recording");
      const heard = recognitionAvailable() ? await recognizeOnce(lang) : text.trim();
      setText("");
      const reply = fallbackReply(heard);
      setLog((l) => [...l, { role: "user", text: heard, fallback: true }, { role: "avatar", text: reply, fallback: true }]);
      speak(reply, lang);
      setState("idle");
    } catch (err) {
      fail((err as Error).message);
    }
  };

  const chooseAvatar = (id: string) => {
    if (id === avatarId) return;
    sessionId.current = ""; // another persona: a new conversation
    setAvatarId(id);
    onAvatarChange?.(id);
  };

  const busy = !liveOn && (state === "thinking" || state === "recording");
  return (
    <section className="avatar-widget" data-state={state} aria-label={title}>
      <header>
        <h2>{title}</h2>
        {avatars.length > 0 && (
          <select
            className="avatar-picker"
            aria-label="Avatar"
            data-testid="avatar-picker"
            value={avatarId}
            onChange={(e) => chooseAvatar(e.target.value)}
            disabled={busy || liveOn || state === "speaking"}
            title={liveOn ? "End the live conversation to talk to another avatar" : undefined}
          >
            {avatars.map((a) => (
              <option key={a.id} value={a.id} title={a.description}>
                {a.name}
              </option>
            ))}
          </select>
        )}
        <span className={`state state-${state}`} data-testid="state" role="status">
          {STATE_LABEL[state]}
        </span>
      </header>
      <div className="stage">
        {video && !liveOn ? (
          <video
            ref={videoRef}
            data-testid="avatar-video"
            src={videoUrl ?? undefined}
            poster={face && face.face.portrait ? fromBridge(apiBase, face.face.portrait) : undefined}
            autoPlay
            playsInline
            onEnded={() => setState("idle")}
            onError={() => videoUrl && fail("The reply video could not be played.")}
          />
        ) : (
          <canvas
            ref={canvasRef}
            data-testid="avatar-face"
            data-chunks={liveChunks}
            data-capture={capture}
            data-avatar={face?.avatarId ?? ""}
            width={FACE_PX}
            height={FACE_PX}
          />
        )}
        <audio ref={audioRef} onEnded={() => setState("idle")} />
      </div>
      {offline && (
        <div className="offline" data-testid="offline" role="alert">
          The avatar server is unreachable.{" "}
          <button type="button" onClick={useFallback} data-testid="fallback">
            Use the browser's speech (fallback)
          </button>
        </div>
      )}
      {error && (
        <div className="error" data-testid="error" role="alert">
          {error}
        </div>
      )}
      <ol className="log" data-testid="log">
        {log.map((entry, i) => (
          <li key={i} className={`${entry.role}${entry.fallback ? " fallback" : ""}`} data-role={entry.role}>
            <strong>{entry.role === "user" ? "You" : "Avatar"}{entry.fallback ? " (browser fallback)" : ""}:</strong>{" "}
            {entry.text}
          </li>
        ))}
      </ol>
      <div className="live-controls">
        {liveOn ? (
          <>
            <button type="button" onClick={stopLive} data-testid="live-stop">
              ■ End live
            </button>
            <button type="button" onClick={interruptLive} data-testid="interrupt" disabled={state !== "speaking"}>
              Interrupt
            </button>
          </>
        ) : (
          <button type="button" onClick={startLive} data-testid="live-start" disabled={busy}>
            ◉ Live conversation
          </button>
        )}
        <label>
          <input
            type="checkbox"
            checked={bargeIn}
            onChange={(e) => setBargeIn(e.target.checked)}
            disabled={liveOn}
            data-testid="barge-in"
          />{" "}
          interrupt when I speak
        </label>
      </div>
      <div className="controls">
        {state === "recording" && recorder.current ? (
          <button type="button" onClick={stopRecording} data-testid="stop">
            ■ Stop and send
          </button>
        ) : (
          <button type="button" onClick={startRecording} disabled={busy || liveOn} data-testid="record">
            ● Speak
          </button>
        )}
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void sendText();
          }}
        >
          <input
            value={text}
            onChange={(e) => setText(e.target.value)}
            placeholder="…or type a question"
            aria-label="Message"
            data-testid="text"
            disabled={busy}
          />
          <button type="submit" disabled={busy || !text.trim()} data-testid="send">
            Send
          </button>
        </form>
      </div>
      {timings && (
        <p className="timings" data-testid="timings">
          stt {timings.stt.toFixed(2)} s · llm {timings.llm.toFixed(2)} s · tts {timings.tts.toFixed(2)} s · animation{" "}
          {timings.animation.toFixed(2)} s · total {timings.total.toFixed(2)} s
        </p>
      )}
    </section>
  );
}
