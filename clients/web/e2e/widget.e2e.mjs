// Drives the real widget in Debian's Chromium with a fake microphone that plays a wav file.
// Usage: node e2e/widget.e2e.mjs <base-url> <clip.wav> <clip-seconds> <screenshot.png> [text|voice]
// Prints one JSON line with what the page showed; the pytest wrapper makes the assertions.
import { chromium } from "playwright-core";

const [baseUrl, clip, clipSeconds, screenshot, mode = "voice"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
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

/** A hash of the canvas face's pixels: distinct hashes over time mean the face moves. */
function faceHash(page) {
  return page.evaluate(() => {
    const c = document.querySelector('[data-testid="avatar-face"]');
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let k = 0; k < d.length; k += 97) h = (h * 31 + d[k]) >>> 0;
    return h;
  });
}
class Done extends Error {}
try {
  const page = await browser.newPage();
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
  if (mode === "live") {
    await page.getByTestId("live-start").click();
    await page.getByTestId("live-stop").waitFor();
    result.stateWhileListening = await page.getByTestId("state").textContent();
    await page.locator('[data-role="avatar"]').first().waitFor({ timeout: 90_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === "Speaking", null, {
      timeout: 30_000,
    });
    result.transcription = await page.locator('[data-role="user"]').first().textContent();
    const hashes = new Set();
    for (let i = 0; i < 8; i++) {
      hashes.add(await faceHash(page));
      await page.waitForTimeout(60);
    }
    result.distinctFaceFrames = hashes.size;
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
    await page.getByTestId("live-stop").click();
    result.ok = true;
  } else if (mode === "voice") {
    await page.getByTestId("record").click();
    await page.getByTestId("stop").waitFor();
    result.stateWhileRecording = await page.getByTestId("state").textContent();
    await page.waitForTimeout(Number(clipSeconds) * 1000 + 800);
    await page.getByTestId("stop").click();
  } else if (mode === "face") {
    await page.getByTestId("text").fill("Who are you?");
    await page.getByTestId("send").click();
  }
  if (mode === "live") throw new Done();
  await page.locator('[data-role="avatar"]').first().waitFor({ timeout: 90_000 });
  result.transcription = await page.locator('[data-role="user"]').first().textContent();
  result.reply = await page.locator('[data-role="avatar"]').first().textContent();
  if (mode === "face") {
    // The canvas face moves with the audio: sample its pixels while the reply plays.
    const hashes = new Set();
    for (let i = 0; i < 20; i++) {
      hashes.add(await faceHash(page));
      await page.waitForTimeout(100);
    }
    result.distinctFaceFrames = hashes.size;
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
  await page.screenshot({ path: screenshot, fullPage: true });
  result.ok = true;
} catch (err) {
  if (err instanceof Done) {
    // live mode finished its checks
  } else {
    result.ok = false;
  result.error = String(err);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
