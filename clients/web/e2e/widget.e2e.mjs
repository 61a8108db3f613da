// Drives the real widget in Debian's Chromium with a fake microphone that plays a wav file.
// Usage: node e2e/widget.e2e.mjs <base-url> <clip.wav> <clip-seconds> <screenshot.png> [voice|face|live|parity]
// Prints one JSON line with what the page showed; the pytest wrapper makes the assertions.
// face and live modes also save a screenshot of the second avatar, eileen, next to it (see `second`).
// parity: the widget's face renderer draws fixed weights at fixed times into <screenshot>-<n>.png at the
// portrait's size, for the pytest side to compare with the server's renderer.
import { writeFileSync } from "node:fs";

import { chromium } from "playwright-core";
import { build } from "vite";

import { faceFps, faceShown, mouthSeries, probeFace } from "./face-probe.mjs";

const [baseUrl, clip, clipSeconds, screenshot, mode = "voice"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    // WebGL on the CPU (SwiftShader): the face is drawn with WebGL, and headless Chromium has no GPU here.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${clip}%noloop`,
  ],
});
const result = { console: [] };
// The second avatar's screenshot: widget-face-grace.png → widget-face-eileen.png, widget-live.png → widget-live-eileen.png.
const second = /-grace\.png$/.test(screenshot) ? screenshot.replace(/-grace\.png$/, "-eileen.png") : screenshot.replace(/(\.png)?$/, "-eileen.png");
const stateIs = (page, label) => async () => (await page.getByTestId("state").textContent()) === label;

/** The canvas against both avatars' portraits: which one it shows (see face-probe.mjs). */
async function faceMatch(page, shown, other) {
  const own = await probeFace(page, shown);
  const versus = await probeFace(page, other, { parts: ["away"] });
  return { shown: own.shown, renderer: own.renderer, awayFromMouth: own.awayFromMouth, mouth: own.mouth, otherAwayFromMouth: versus.awayFromMouth };
}
class Done extends Error {}

// Weights and times the parity check draws (the server's renderer draws the same).
const PARITY = [
  { avatar: "grace", weights: {}, t: 0 },
  { avatar: "grace", weights: { jawOpen: 0.8 }, t: 0 },
  { avatar: "grace", weights: { jawOpen: 0.3, mouthFunnel: 0.6, mouthPucker: 0.5, eyeBlinkLeft: 1, eyeBlinkRight: 1 }, t: 2 },
  { avatar: "eileen", weights: { jawOpen: 0.5, mouthSmileLeft: 0.6, mouthSmileRight: 0.6 }, t: 3.3 },
  { avatar: "eileen", weights: { jawOpen: 0.6, mouthRollLower: 0.7, mouthLowerDownLeft: 0.5, mouthLowerDownRight: 0.5 }, t: 5.1 },
];

/** Draws each PARITY case with the widget's own renderer (src/faceRenderer.ts, bundled here) in a fresh canvas. */
async function parity(page) {
  const bundle = await build({
    configFile: false,
    logLevel: "silent",
    build: { write: false, minify: false, lib: { entry: "src/faceRenderer.ts", formats: ["iife"], name: "FaceKit" } },
  });
  await page.addScriptTag({ content: (Array.isArray(bundle) ? bundle[0] : bundle).output[0].code });
  const cases = [];
  for (const [i, c] of PARITY.entries()) {
    const drawn = await page.evaluate(async ({ avatar, weights, t }) => {
      const face = await (await fetch(`/api/v1/avatars/${avatar}/face`)).json();
      const [portrait, mouth] = await Promise.all([window.FaceKit.loadImage(face.portrait), window.FaceKit.loadImage(face.mouth)]);
      const canvas = document.createElement("canvas");
      canvas.width = portrait.naturalWidth;
      canvas.height = portrait.naturalHeight;
      const renderer = new window.FaceKit.FaceRenderer(canvas);
      renderer.setFace(face, { portrait, mouth });
      renderer.draw(weights, t);
      const png = canvas.toDataURL("image/png");
      renderer.dispose();
      return { renderer: renderer.mode, size: canvas.width, png };
    }, c);
    const file = screenshot.replace(/(\.png)?$/, `-${i}.png`);
    writeFileSync(file, Buffer.from(drawn.png.split(",")[1], "base64"));
    cases.push({ ...c, renderer: drawn.renderer, size: drawn.size, file });
  }
  return cases;
}
try {
  // The parity check injects the renderer's bundle as an inline script, which the page's CSP rightly forbids;
  // every other mode runs under the CSP the bridge sends.
  const page = await browser.newPage({ bypassCSP: mode === "parity" });
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  // Every JSON event the live WebSocket receives, with the time it came, to tell which turn sent what.
  const frames = [];
  page.on("websocket", (ws) =>
    ws.on("framereceived", (f) => {
      if (typeof f.payload !== "string") return;
      const e = JSON.parse(f.payload);
      frames.push({ at: Date.now(), type: e.type, turn: e.turn_id, interrupted: e.interrupted, final: e.is_final });
    }),
  );
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
  await page.goto(mode === "face" ? `${baseUrl}/?video=0` : baseUrl);
  await page.getByTestId("record").waitFor();
  if (mode === "parity") {
    result.cases = await parity(page);
    result.ok = true;
    throw new Done();
  }
  if (mode === "live") {
    await page.getByTestId("live-start").click();
    await page.getByTestId("live-stop").waitFor();
    result.stateWhileListening = await page.getByTestId("state").textContent();
    // While the person speaks, the face is drawn: count its frames. (The microphone is read on the audio
    // thread, an AudioWorklet, so the drawing cannot cut holes in the speech sent.)
    await faceShown(page, "grace");
    result.capture = await page.evaluate(() => document.querySelector('[data-testid="avatar-face"]').dataset.capture);
    result.fps = await faceFps(page, 2000);
    await page.locator('[data-role="avatar"]').first().waitFor({ timeout: 90_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === "Speaking", null, {
      timeout: 30_000,
    });
    result.transcription = await page.locator('[data-role="user"]').first().textContent();
    // The reply plays: the mouth region moves with it.
    result.mouthSpeaking = await mouthSeries(page, "grace", 10, 40, stateIs(page, "Speaking"));
    result.fpsSpeaking = await faceFps(page, 500);
    await page.screenshot({ path: screenshot, fullPage: true });
    // Interrupt: playback stops at once and nothing more of that reply arrives.
    const chunks = () => page.evaluate(() => Number(document.querySelector('[data-testid="avatar-face"]').dataset.chunks));
    const t0 = Date.now();
    const seenBefore = new Set(frames.map((f) => f.turn));
    await page.getByTestId("interrupt").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent !== "Speaking", null, {
      timeout: 5_000,
    });
    result.stopMs = Date.now() - t0;
    const before = await chunks();
    await page.waitForTimeout(2500);
    result.chunksAfterInterrupt = (await chunks()) - before;
    // Server side: the interrupted turns' audio after their closing turn_completed{interrupted}.
    const closed = new Map(frames.filter((f) => f.interrupted).map((f) => [f.turn, f.at]));
    result.interruptedTurns = [...closed.keys()];
    result.audioAfterClose = frames.filter((f) => f.type === "audio_chunk" && closed.has(f.turn) && f.at > closed.get(f.turn)).length;
    // A turn that began after the interrupt (the person spoke again) may speak; it must have heard speech.
    const later = frames.filter((f) => f.at >= t0 && !seenBefore.has(f.turn));
    result.newTurnChunks = later.filter((f) => f.type === "audio_chunk").length;
    result.newTurnsWithoutTranscript = [...new Set(later.filter((f) => f.type === "audio_chunk").map((f) => f.turn))].filter(
      (t) => !frames.some((f) => f.turn === t && f.type === "transcript" && f.final),
    ).length;
    result.eventsAfterInterrupt = frames.filter((f) => f.at >= t0).map((f) => `${f.type}:${(f.turn ?? "").slice(0, 6)}${seenBefore.has(f.turn) ? "" : "(new)"}`);
    result.reply = await page.locator('[data-role="avatar"]').first().textContent();
    result.state = await page.getByTestId("state").textContent();
    result.mouthAfterInterrupt = await mouthSeries(page, "grace", 5, 100);
    // Nothing plays now: the canvas is grace's portrait (the microphone's clip is long over).
    result.rest = await faceMatch(page, "grace", "eileen");
    await page.getByTestId("live-stop").click();
    // The second avatar, live: pick her, start again, and the face is hers.
    await page.getByTestId("avatar-picker").selectOption("eileen");
    await page.getByTestId("live-start").click();
    await page.getByTestId("live-stop").waitFor();
    await faceShown(page, "eileen");
    result.eileen = await faceMatch(page, "eileen", "grace");
    result.mouthSilent = await mouthSeries(page, "eileen", 5, 100, stateIs(page, "Listening")); // listening
    result.url = page.url();
    await page.screenshot({ path: second, fullPage: true });
    await page.getByTestId("live-stop").click();
    result.ok = true;
  } else if (mode === "voice") {
    await page.getByTestId("record").click();
    await page.getByTestId("stop").waitFor();
    result.stateWhileRecording = await page.getByTestId("state").textContent();
    await page.waitForTimeout(Number(clipSeconds) * 1000 + 800);
    await page.getByTestId("stop").click();
  } else if (mode === "face") {
    // Before anything is said: the avatar's portrait, mouth still, at a frame rate worth the name.
    await faceShown(page, "grace");
    result.rest = await faceMatch(page, "grace", "eileen");
    result.mouthSilent = await mouthSeries(page, "grace", 5, 100);
    result.fps = await faceFps(page, 2000);
    await page.getByTestId("text").fill("Who are you?");
    await page.getByTestId("send").click();
  }
  if (mode === "live") throw new Done();
  await page.locator('[data-role="avatar"]').first().waitFor({ timeout: 90_000 });
  result.transcription = await page.locator('[data-role="user"]').first().textContent();
  result.reply = await page.locator('[data-role="avatar"]').first().textContent();
  if (mode === "face") {
    // The canvas face moves with the audio: the mouth region while the reply plays, then in silence.
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === "Speaking", null, {
      timeout: 30_000,
    });
    result.mouthSpeaking = await mouthSeries(page, "grace", 30, 40, stateIs(page, "Speaking"));
    result.fpsSpeaking = await faceFps(page, 500);
    await page.screenshot({ path: screenshot, fullPage: true });
    // A close-up of the canvas with the mouth open, for a person to look at.
    for (let i = 0; i < 40 && (await stateIs(page, "Speaking")()); i++) {
      if ((await probeFace(page, "grace", { parts: ["mouth"] })).mouth > 30) {
        await page.getByTestId("avatar-face").screenshot({ path: screenshot.replace(/(\.png)?$/, "-open.png") });
        result.openShot = true;
        break;
      }
    }
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === "Ready", null, {
      timeout: 60_000,
    });
    result.mouthAfter = await mouthSeries(page, "grace", 5, 100);
    // The second avatar: the face is hers now, and the page's URL says so.
    await page.getByTestId("avatar-picker").selectOption("eileen");
    await faceShown(page, "eileen");
    result.eileen = await faceMatch(page, "eileen", "grace");
    result.url = page.url();
    await page.screenshot({ path: second, fullPage: true });
  } else {
    await page.waitForFunction(
      () => {
        const v = document.querySelector('[data-testid="avatar-video"]');
        return v && v.currentTime > 0.5;
      },
      null,
      { timeout: 30_000 },
    );
    result.videoTime = await page.evaluate(() => document.querySelector('[data-testid="avatar-video"]').currentTime);
    result.videoSrc = await page.evaluate(() => document.querySelector('[data-testid="avatar-video"]').currentSrc);
  }
  result.state = await page.getByTestId("state").textContent();
  result.timings = await page.getByTestId("timings").textContent();
  if (mode !== "face") await page.screenshot({ path: screenshot, fullPage: true });
  result.ok = true;
} catch (err) {
  if (err instanceof Done) {
    // live or parity mode finished its checks
  } else {
    result.ok = false;
  result.error = String(err);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
