/** What the widget shows in a live conversation, from the server's events and the reply audio playing. */

import type { LiveEvent } from "./live";

export type LivePhase = "listening" | "thinking" | "speaking";

/**
 * "listening" while the microphone is live and the avatar is not replying; "thinking" from the end of the
 * person's turn (speech_ended, which the server sends once it is sure the turn is over, or a typed text) until
 * the reply's audio plays; "speaking" while it plays, then "listening" again.
 *
 * speech_started changes nothing: a pause inside the person's utterance is no end of the turn, and speech
 * while the avatar speaks (a barge-in) leaves it speaking until its interrupted turn_completed stops the audio.
 */
export class LiveStatus {
  private playing = false;
  /** Turns whose audio has begun and whose turn_completed has not come (a gap in the stream is no end). */
  private replying = new Set<string>();
  /** The turn whose reply is due; turn null: a typed text's, the first turn not in `known`. */
  private awaited: { turn: string | null; known: Set<string> } | null = null;
  private seen = new Set<string>();

  get phase(): LivePhase {
    if (this.playing || this.replying.size > 0) return "speaking";
    return this.awaited ? "thinking" : "listening";
  }

  event(event: LiveEvent): void {
    const turn = event.turn_id;
    switch (event.type) {
      case "speech_ended":
        this.awaited = { turn, known: new Set() };
        break;
      case "audio_chunk": // handed on once its audio is scheduled
        this.replying.add(turn);
        if (this.isAwaited(turn)) this.awaited = null;
        break;
      case "turn_completed":
      case "error":
        if (!turn && event.type === "error") {
          this.replying.clear(); // the session's error: no turn goes on
          this.awaited = null;
        }
        this.replying.delete(turn);
        if (this.isAwaited(turn)) this.awaited = null; // a reply without audio, or none
        break;
    }
    if (turn) this.seen.add(turn);
  }

  /** A typed text was sent: its reply is due. */
  textSent(): void {
    this.awaited = { turn: null, known: new Set(this.seen) };
  }

  /** Reply audio began or stopped playing. */
  playback(playing: boolean): void {
    this.playing = playing;
  }

  /** The person stopped the reply (the Interrupt button): what was playing is over. */
  interrupted(): void {
    this.replying.clear();
  }

  private isAwaited(turn: string): boolean {
    const a = this.awaited;
    return a !== null && (a.turn === null ? !a.known.has(turn) : a.turn === turn);
  }
}
