"""The state of one turn: what it is asked for (`TurnPlan`) and what it holds while it runs (`Turn`)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from avatar_server.core.events import Event
from avatar_server.core.playback import Playback
from avatar_server.personas import Avatar
from avatar_server.values import AudioData, Outputs, Timings


@dataclass(frozen=True)
class TurnPlan:
    """What a turn is asked for, validated."""

    avatar: Avatar
    session_id: str
    language: str  # as asked; "" = detect
    voice: str  # as asked; "" = the avatar's
    outputs: Outputs
    # Live (Converse): short pieces while the listener has little audio, ahead of Interact at every
    # engine. Not live (Interact): the whole reply as one piece (one synthesis, one mp4).
    live: bool


def _go() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass(eq=False)
class Turn:
    """The state of one turn, owned by it."""

    id: str
    speech_end_wall: float = field(default_factory=time.perf_counter)
    user_text: str = ""
    audio: AudioData | None = None  # encoded audio to decode (Interact)
    samples: npt.NDArray[np.float32] | None = None  # 16 kHz audio of the utterance (Converse)
    language: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    llm_go: threading.Event = field(default_factory=_go)  # cleared while the first piece is synthesized
    spoken: list[str] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    generating: bool = False  # the LLM is still writing this turn's reply
    asked_again: bool = False  # the reply opened as an earlier one: the model was asked without the history
    playback: Playback | None = None  # the reply's audio at the listener, once some of it went out
    completed: bool = False
    playback_wait: float = 0.0  # seconds this turn stepped aside for other live replies
    # Converse: a turn started at the first pause is held back until the silence confirms it.
    confirmed: bool = True
    held: list[Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
