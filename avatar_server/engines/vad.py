"""Streaming voice activity detection with the Silero VAD model that faster-whisper ships,
and the endpointing state machine that turns probabilities into speech start/pause/end."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

WINDOW = 512  # samples at 16 kHz: 32 ms, the model's window
_CONTEXT = 64


class SileroModel:
    """The ONNX session, shared by every stream (onnxruntime sessions are thread-safe to run)."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        if path is None:
            from faster_whisper.utils import get_assets_path

            path = Path(get_assets_path()) / "silero_vad_v6.onnx"
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)

    def stream(self) -> VadStream:
        return VadStream(self)


class VadStream:
    """Speech probability per 32 ms window for one audio stream; keeps the model's state between chunks."""

    def __init__(self, model: SileroModel) -> None:
        self._model = model
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context: npt.NDArray[np.float32] = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._lock = threading.Lock()

    def process(self, samples: npt.NDArray[np.float32]) -> list[float]:
        with self._lock:
            data = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
            n = len(data) // WINDOW
            self._pending = np.asarray(data[n * WINDOW :], dtype=np.float32)
            probs: list[float] = []
            for k in range(n):
                window = data[k * WINDOW : (k + 1) * WINDOW]
                x = np.concatenate([self._context, window])[None, :]
                out, self._h, self._c = self._model.session.run(None, {"input": x, "h": self._h, "c": self._c})
                self._context = np.asarray(window[-_CONTEXT:], dtype=np.float32)
                probs.append(float(np.asarray(out).reshape(-1)[0]))
            return probs


class VadEvent(enum.Enum):
    SPEECH_STARTED = "speech_started"
    PAUSE = "pause"  # first silent window after speech: a good moment to start transcribing early
    RESUMED = "resumed"  # speech again before the utterance ended
    SPEECH_ENDED = "speech_ended"


@dataclass
class Endpointer:
    """Hysteresis over window probabilities: speech after `min_speech_ms`, end after a silence.

    The silence that ends an utterance is `end_silence_ms` unless the pause's own verdict sets another
    (`require`, from the turn model: short after a complete sentence, long inside one)."""

    end_silence_ms: int = 400
    min_speech_ms: int = 160
    pause_ms: int = 64  # a dip shorter than this inside a word is not a pause
    start_threshold: float = 0.5
    end_threshold: float = 0.35

    def __post_init__(self) -> None:
        self.in_speech = False
        self._speech_run = 0
        self._silence_run = 0
        self._paused = False
        self.windows = 0  # windows seen so far: the stream clock
        self.speech_start_window = 0
        self.speech_end_window = 0
        self.required_ms = self.end_silence_ms  # the silence that ends this pause's utterance

    @property
    def paused(self) -> bool:
        """Inside an utterance, in a pause of at least `pause_ms`."""
        return self.in_speech and self._paused

    @property
    def silence_ms(self) -> float:
        return self._silence_run * self.window_ms

    def require(self, silence_ms: int) -> bool:
        """Set the silence this pause needs to end the utterance. True when it has already lasted that long:
        the utterance ends now (as SPEECH_ENDED would)."""
        self.required_ms = silence_ms
        if self.paused and self.silence_ms >= silence_ms:
            self._end()
            return True
        return False

    def _end(self) -> None:
        self.in_speech = False
        self._speech_run = 0
        self._paused = False
        self.required_ms = self.end_silence_ms

    @property
    def window_ms(self) -> float:
        return WINDOW / 16.0

    def reset(self) -> None:
        """Back to silence, keeping the stream clock: window numbers stay stream positions."""
        windows = self.windows
        self.__post_init__()
        self.windows = windows

    def push(self, prob: float) -> VadEvent | None:
        self.windows += 1
        if not self.in_speech:
            self._speech_run = self._speech_run + 1 if prob >= self.start_threshold else 0
            if self._speech_run * self.window_ms >= self.min_speech_ms:
                self.in_speech = True
                self._silence_run = 0
                self._paused = False
                self.speech_start_window = self.windows - self._speech_run
                return VadEvent.SPEECH_STARTED
            return None
        if prob < self.end_threshold:
            self._silence_run += 1
            if self._silence_run == max(1, round(self.pause_ms / self.window_ms)):
                self._paused = True
                self.speech_end_window = self.windows - self._silence_run
                return VadEvent.PAUSE
            if self._silence_run * self.window_ms >= self.required_ms:
                self._end()
                return VadEvent.SPEECH_ENDED
            return None
        self._silence_run = 0
        if self._paused:
            self._paused = False
            self.required_ms = self.end_silence_ms
            return VadEvent.RESUMED
        return None
