"""Server events of a live conversation; every event carries its turn id."""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar_server.animation.track import Track


@dataclass(frozen=True)
class SpeechStarted:
    turn_id: str
    time_seconds: float


@dataclass(frozen=True)
class SpeechEnded:
    turn_id: str
    time_seconds: float


@dataclass(frozen=True)
class TranscriptEvent:
    turn_id: str
    text: str
    is_final: bool


@dataclass(frozen=True)
class ReplyDelta:
    turn_id: str
    text: str


@dataclass(frozen=True)
class AudioChunkEvent:
    turn_id: str
    pcm: bytes  # mono PCM16 little-endian
    sample_rate: int
    start_seconds: float


@dataclass(frozen=True)
class AnimationFramesEvent:
    turn_id: str
    track: Track
    start_seconds: float  # frame times are track.times + start_seconds


@dataclass(frozen=True)
class VideoSegmentEvent:
    turn_id: str
    mp4: bytes
    duration: float
    start_seconds: float


@dataclass
class TurnTimings:
    stt: float = 0.0
    llm: float = 0.0
    llm_first_token: float = 0.0
    tts: float = 0.0
    tts_first_byte: float = 0.0
    animation: float = 0.0
    voice_to_first_audio: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class TurnCompleted:
    turn_id: str
    transcription: str
    reply_text: str
    timings: TurnTimings = field(default_factory=TurnTimings)
    interrupted: bool = False


@dataclass(frozen=True)
class ErrorEvent:
    turn_id: str
    code: str
    message: str


Event = (
    SpeechStarted
    | SpeechEnded
    | TranscriptEvent
    | ReplyDelta
    | AudioChunkEvent
    | AnimationFramesEvent
    | VideoSegmentEvent
    | TurnCompleted
    | ErrorEvent
)
