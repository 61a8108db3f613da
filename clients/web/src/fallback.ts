/** The seed's local-dev fallback: the browser's Web Speech API when the backend is unreachable. */

interface SpeechRecognitionLike {
  lang: string;
  interimResults: boolean;
  onresult: ((e: { results: ArrayLike<ArrayLike<{ transcript: string }>> }) => void) | null;
  onerror: ((e: { error: string }) => void) | null;
  onend: (() => void) | null;
  start(): void;
}

type RecognitionCtor = new () => SpeechRecognitionLike;

export function recognitionAvailable(): boolean {
  const w = window as unknown as { SpeechRecognition?: RecognitionCtor; webkitSpeechRecognition?: RecognitionCtor };
  return Boolean(w.SpeechRecognition ?? w.webkitSpeechRecognition);
}

export function recognizeOnce(lang: string): Promise<string> {
  const w = window as unknown as { SpeechRecognition?: RecognitionCtor; webkitSpeechRecognition?: RecognitionCtor };
  const Ctor = w.SpeechRecognition ?? w.webkitSpeechRecognition;
  if (!Ctor) return Promise.reject(new Error("This browser has no speech recognition."));
  return new Promise((resolve, reject) => {
    const rec = new Ctor();
    rec.lang = lang;
    rec.interimResults = false;
    let heard = "";
    rec.onresult = (e) => {
      heard = Array.from(e.results)
        .map((r) => r[0]?.transcript ?? "")
        .join(" ");
    };
    rec.onerror = (e) => reject(new Error(`speech recognition: ${e.error}`));
    rec.onend = () => resolve(heard.trim());
    rec.start();
  });
}

export function speak(text: string, lang: string): void {
  if (!("speechSynthesis" in window)) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = lang;
  window.speechSynthesis.speak(utterance);
}

/** What the fallback answers: it has no LLM, so it says so and echoes what it heard. */
export function fallbackReply(userText: string): string {
  return `The avatar server is offline, so this is the browser's own voice. You said: ${userText}`;
}
