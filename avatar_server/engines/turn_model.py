"""Semantic end of turn: Smart Turn v3.2 (BSD-2-Clause), the ONNX model that ships in the pipecat-ai wheel.

Given the audio of an utterance up to a pause, the model says how likely the speaker has finished their
turn (intonation, rhythm and the words together), so a pause inside a sentence ("how much ... the ticket
costs") is told apart from the end of a question. Input: Whisper-style 80-bin log-mel features of the last
8 s of 16 kHz audio, left-padded with silence; output: a sigmoid probability that the turn is complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16000
SECONDS = 8
# Languages Smart Turn v3 was trained on (ISO 639-1); for others the session falls back to a fixed silence.
LANGUAGES = frozenset(
    "ar bn da de en es fi fr hi id it ja ko mr nl no pl pt ru tr uk vi zh".split()  # noqa: SIM905
)


class SmartTurnModel:
    """One ONNX session shared by every conversation (onnxruntime sessions are thread-safe to run)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)
        self._features = FeatureExtractor(feature_size=80, sampling_rate=RATE, chunk_length=SECONDS)

    def features(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's input for `samples` (16 kHz mono): the last 8 s, left-padded, normalized to zero mean
        and unit variance as the model was trained (transformers' `do_normalize`), as log-mel (80, 800)."""
        n = RATE * SECONDS
        x = np.asarray(samples[-n:], dtype=np.float32)
        if len(x) < n:
            x = np.concatenate([np.zeros(n - len(x), np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self._features(x, padding=0)  # (80, frames + 1): the extractor keeps a trailing frame
        return np.asarray(mel[:, : n // 160], dtype=np.float32)

    def complete(self, samples: npt.NDArray[np.float32]) -> float:
        """The probability (0..1) that the speaker has finished their turn at the end of `samples`."""
        features = self.features(samples)[None]
        out = self._session.run(None, {"input_features": features})
        return float(np.asarray(out[0]).reshape(-1)[0])
