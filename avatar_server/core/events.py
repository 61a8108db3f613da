"""Server events of a live conversation; every event carries its turn id."""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar_server.values import Timings, Track


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


@dataclass(frozen=True)
class TurnCompleted:
    turn_id: str
    transcription: str
    reply_text: str
    timings: Timings = field(default_factory=Timings)
    interrupted: bool = False


@dataclass(frozen=True)
class BackchannelEvent:
    """A listener sound over the reply (`turn_id` is the reply's); the reply goes on."""

    turn_id: str
    start_seconds: float
    end_seconds: float
    text: str


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
    | BackchannelEvent
)
