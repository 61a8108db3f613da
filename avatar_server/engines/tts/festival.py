"""Festival with an HTS voice (Debian's festival + festvox-us-slt-hts): a woman's US English voice, with the
times of its phones for lip-sync.

One long-lived `festival --pipe` process holds the voice (loading it costs about 0.2 s, a sentence then takes
about a tenth of its spoken length). Requests are Scheme calls written to its stdin; it writes the wave to a
private file and prints each phone with its end time, then a marker line. A process that errors, stalls
past the timeout or dies is killed and started again for the next request.
"""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
import wave
from pathlib import Path

import numpy as np

from avatar_server.engines.tts.base import TtsCapabilities, VoiceSpec
from avatar_server.values import PhonemeTiming, Speech

DEFAULT_VOICE = "cmu_us_slt_arctic_hts"
# Festival's US English phone set (radio) in IPA, which the viseme table reads. "pau" is silence.
_IPA = {
    "aa": "ɑ", "ae": "æ", "ah": "ʌ", "ao": "ɔ", "aw": "aʊ", "ax": "ə", "ay": "aɪ", "b": "b", "ch": "tʃ",
    "d": "d", "dh": "ð", "eh": "ɛ", "er": "ɝ", "ey": "eɪ", "f": "f", "g": "ɡ", "hh": "h", "ih": "ɪ",
    "iy": "i", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "ow": "oʊ", "oy": "ɔɪ",
    "p": "p", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "uh": "ʊ", "uw": "u", "v": "v",
    "w": "w", "y": "j", "z": "z", "zh": "ʒ",
}  # fmt: skip
# The vocoder's sound comes this much after the segment times Festival reports (measured by bench/lipsync.py:
# bench/README.md, "Lip-sync").
_SOUND_DELAY = 0.015
_PHONE = re.compile(r"^(\S+) (\d+(?:\.\d+)?)$")
# Typography Festival's Latin-1 text front end does not know, as the ASCII it reads.
_ASCII = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": ", ", "–": ", ", "…": "...", "\u00a0": " "})
# Capitals Festival reads as a word ("US" as "us"): spelled letter by letter.
_SPELLED = re.compile(r"\b(US|USA|UK|EU|UN)\b")
_DEFINE = """
(define (avatar_say text path marker)
  (let ((u (utt.synth (eval (list 'Utterance 'Text text)))))
    (utt.save.wave u path 'riff)
    (mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s 'end))) (utt.relation.items u 'Segment))
    (format t "%s\\n" marker)
    (fflush nil)))
"""


class FestivalError(RuntimeError):
    pass


def festival_text(text: str) -> str:
    """`text` as the ASCII Festival reads ("café" → "cafe"), as the body of a Scheme string."""
    ascii_text = unicodedata.normalize("NFKD", text.translate(_ASCII)).encode("ascii", "ignore").decode("ascii")
    ascii_text = _SPELLED.sub(lambda m: ".".join(m.group(1)) + ".", " ".join(ascii_text.split()))
    return ascii_text.replace("\\", "\\\\").replace('"', '\\"')


def parse_phones(lines: list[str]) -> list[PhonemeTiming]:
    """Festival's (phone, end time) lines as IPA phonemes from the previous end, on the sound's clock
    (`_SOUND_DELAY` later); pauses are left out."""
    out: list[PhonemeTiming] = []
    start = 0.0
    for line in lines:
        m = _PHONE.match(line.strip())
        if m is None:
            continue
        name, end = m.group(1), float(m.group(2))
        if name in _IPA and end > start:
            out.append(PhonemeTiming(_IPA[name], start + _SOUND_DELAY, end + _SOUND_DELAY))
        start = max(start, end)
    return out


class _Process:
    """One `festival --pipe` with the voice loaded."""

    def __init__(self, binary: str, voice: str, workdir: Path, timeout: float) -> None:
        self._proc = subprocess.Popen(
            [binary, "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        self._buffer = b""
        self._count = 0
        self.wav_path = workdir / f"say-{os.getpid()}-{id(self)}.wav"
        self._send(f'(voice_{voice})\n{_DEFINE}\n(format t "##ready %l\\n" (symbol-bound? (quote voice_{voice})))\n')
        self._send("(fflush nil)\n")
        lines = self._read_until("##ready", time.monotonic() + timeout)
        if lines[-1].strip() != "##ready t":
            self.close()
            raise FestivalError(
                f"Festival has no voice {voice!r}: install it (Debian: apt-get install festvox-us-slt-hts)"
            )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def say(self, body: str, timeout: float) -> tuple[bytes, list[str]]:
        self._count += 1
        marker = f"##done {self._count}"
        self.wav_path.unlink(missing_ok=True)
        self._send(f'(avatar_say "{body}" "{self.wav_path}" "{marker}")\n')
        lines = self._read_until(marker, time.monotonic() + timeout)
        if not self.wav_path.is_file():
            raise FestivalError("Festival wrote no audio: " + " ".join(lines[:-1])[-300:])
        return self.wav_path.read_bytes(), lines[:-1]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=5)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self.wav_path.unlink(missing_ok=True)

    def _send(self, command: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(command.encode("ascii", "replace"))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise FestivalError(f"Festival exited (code {self._proc.poll()})") from exc

    def _read_until(self, marker: str, deadline: float) -> list[str]:
        """Lines up to and including the first that starts with `marker`."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        lines: list[str] = []
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                lines.append(raw.decode("latin-1"))
                if lines[-1].startswith(marker):
                    return lines
            left = deadline - time.monotonic()
            if left <= 0:
                raise FestivalError(f"Festival gave no answer in time (last output: {lines[-3:]})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise FestivalError(f"Festival exited (code {self._proc.poll()}): {lines[-3:]}")
                self._buffer += chunk


class FestivalTTS:
    """A Festival voice (default: CMU ARCTIC SLT, HTS). Voice id: "festival:<voice>". Calls are serialized."""

    name = "festival"

    def __init__(
        self, voice: str = DEFAULT_VOICE, *, binary: str | None = None, timeout: float = 30.0, warm: bool = True
    ) -> None:
        found = binary or shutil.which("festival")
        if not found or not Path(found).is_file():
            raise FestivalError("Festival is not installed (Debian: apt-get install festival festvox-us-slt-hts)")
        self._binary = found
        self._voice = voice
        self._timeout = timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="avatar-festival-"))
        self._lock = threading.Lock()
        self.voice_id = f"festival:{voice}"
        self._process: _Process | None = _Process(self._binary, voice, self._workdir, timeout)
        self.voice_id = f"festival:{voice}"
        self.sample_rate = 16000
        if warm:  # the first sentence costs more; and it tells the voice's sample rate
            self.sample_rate = self.synthesize("Hi.", voice="", language="en").sample_rate
        self.capabilities = TtsCapabilities(
            phoneme_timings=True, voices=(VoiceSpec(id=self.voice_id, languages=("en",)),)
        )

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        if voice and voice != self.voice_id:
            raise ValueError(f"Festival voice {voice!r} is not loaded (have {self.voice_id})")
        body = festival_text(text)
        if not any(c.isalnum() for c in body):
            return Speech(samples=np.zeros(0, np.float32), sample_rate=self.sample_rate, phonemes=[])
        with self._lock:
            if self._process is None or not self._process.alive():
                self._process = _Process(self._binary, self._voice, self._workdir, self._timeout)
            try:
                data, lines = self._process.say(body, self._timeout)
            except FestivalError:
                self._process.close()  # a fresh process for the next request
                self._process = None
                raise
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if width != 2 or channels != 1:
            raise FestivalError(f"Festival wrote {channels}-channel {8 * width}-bit audio; expected mono 16-bit")
        samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        return Speech(samples=samples, sample_rate=rate, phonemes=parse_phones(lines))

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.close()
                self._process = None
        shutil.rmtree(self._workdir, ignore_errors=True)
