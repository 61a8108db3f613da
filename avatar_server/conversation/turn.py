"""A turn of a live conversation."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from avatar_server.conversation.events import Event
from avatar_server.conversation.playback import Playback
from avatar_server.domain import Outputs, Timings


def _started() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class Turn:
    """One turn of a live conversation, from the end of the person's utterance to the end of the reply."""

    id: str
    speech_end_wall: float
    stop: threading.Event = field(default_factory=threading.Event)
    llm_go: threading.Event = field(default_factory=_started)  # cleared while the first sentence is spoken
    spoken: list[str] = field(default_factory=list)
    user_text: str = ""
    task: asyncio.Task[None] | None = None
    # A turn started at the first pause is held back until the silence confirms the utterance ended.
    confirmed: bool = True
    held: list[Event] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    generating: bool = False  # the LLM is still writing this turn's reply
    playback: Playback | None = None  # the reply's audio at the listener, once some of it went out


@dataclass(frozen=True)
class SessionConfig:
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
