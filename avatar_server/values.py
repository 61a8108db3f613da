"""Shared value types at the bottom of the import graph: every layer may use them, they import nothing of ours.

The blendshape vocabulary (ARKit names, Oculus visemes), audio and speech, transcripts and chat messages,
portrait landmarks, animation tracks, and the transport-neutral types of a turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

# -- the animation wire vocabulary ---------------------------------------------------------------

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
VISEME_NAMES = tuple(f"viseme_{v}" for v in VISEMES)
ARKIT_NAMES = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "tongueOut",
    "eyeBlinkLeft",
    "eyeBlinkRight",
)
TRACK_NAMES = ARKIT_NAMES + VISEME_NAMES


# -- speech and text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme (IPA) on the audio clock."""

    phoneme: str
    start: float
    end: float


@dataclass(frozen=True)
class Speech:
    """Synthesized mono audio and, when the engine knows them, phoneme timings."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    phonemes: list[PhonemeTiming] | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Transcript:
    """What was said, and in which language."""

    text: str
    language: str
    language_probability: float = 1.0


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Track:
    """weights[frame, name] for names TRACK_NAMES; frame k is at k / fps seconds."""

    fps: float
    weights: npt.NDArray[np.float32]
    names: tuple[str, ...] = TRACK_NAMES

    @property
    def times(self) -> npt.NDArray[np.float64]:
        return np.arange(len(self.weights), dtype=np.float64) / self.fps

    def column(self, name: str) -> npt.NDArray[np.float32]:
        return self.weights[:, self.names.index(name)]


@dataclass(frozen=True)
class Landmarks:
    """A portrait's face landmarks in its pixels: the 478 points of `model` (MediaPipe's face mesh)."""

    model: str
    points: tuple[tuple[float, float], ...]

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Landmarks:
        raw = d["points"]
        if not isinstance(raw, list):
            raise TypeError("landmarks.points must be a list of [x, y] pairs")
        return cls(model=str(d["model"]), points=tuple((float(x), float(y)) for x, y in raw))


@dataclass(frozen=True)
class Exchange:
    user: str
    assistant: str


# -- a turn ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    audio: bool = True
    video: bool = True
    animation: bool = True


@dataclass(frozen=True)
class AudioData:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class TurnRequest:
    """Exactly one of `text` and `audio`."""

    text: str | None = None
    audio: AudioData | None = None
    session_id: str = ""
    avatar_id: str = ""
    language: str = ""
    voice: str = ""
    outputs: Outputs = field(default_factory=Outputs)


@dataclass
class Timings:
    """Seconds per stage of a turn; the last five are measured by live (Converse) turns."""

    stt: float = 0.0
    llm: float = 0.0
    tts: float = 0.0
    animation: float = 0.0
    total: float = 0.0
    llm_first_token: float = 0.0
    tts_first_byte: float = 0.0
    voice_to_first_audio: float = 0.0
    end_of_turn: float = 0.0
    end_of_turn_probability: float = -1.0


@dataclass(frozen=True)
class MediaFile:
    data: bytes
    mime_type: str
    duration: float


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    turn_id: str
    transcription: str
    reply_text: str
    language: str
    audio: MediaFile | None
    video: MediaFile | None
    track: Track | None
    timings: Timings


@dataclass(frozen=True)
class SessionConfig:
    """A live conversation's settings: the first message of Converse."""

    session_id: str = ""
    avatar_id: str = ""
    language: str = ""
    voice: str = ""
    encoding: str = "pcm16"
    sample_rate: int = 16000
    outputs: Outputs = field(default_factory=lambda: Outputs(audio=True, video=False, animation=True))
    barge_in: bool = False
    end_silence_ms: int = 0
    interim_results: bool = False
