"""Transport-neutral types of a turn: what the pipeline takes and gives."""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar_server.animation.track import Track


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
    """Seconds per stage of a turn; the last three are measured by live (Converse) turns."""

    stt: float = 0.0
    llm: float = 0.0
    tts: float = 0.0
    animation: float = 0.0
    total: float = 0.0
    llm_first_token: float = 0.0
    tts_first_byte: float = 0.0
    voice_to_first_audio: float = 0.0


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
