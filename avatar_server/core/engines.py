"""The loaded engines of one server."""

from __future__ import annotations

from dataclasses import dataclass

from avatar_server.engines.animator.base import Animator
from avatar_server.engines.llm.base import ChatModel
from avatar_server.engines.stt.base import SpeechToText
from avatar_server.engines.tts.base import TextToSpeech
from avatar_server.engines.turn_model import SmartTurnModel
from avatar_server.engines.vad import SileroModel


@dataclass(frozen=True)
class Engines:
    stt: SpeechToText
    llm: ChatModel
    tts: dict[str, TextToSpeech]  # by engine name; voice ids are "<engine>:<voice>"
    fallback_tts: str
    animator: Animator
    vad: SileroModel | None = None  # for Converse's endpointing
    turn_model: SmartTurnModel | None = None  # whether a pause ends the turn (Converse); None: fixed silence
    primary_tts: str = ""  # speaks when the avatar's own voice is of an engine not loaded
    # Live turns' own model contexts (llama.cpp: more contexts over the same mmapped weights), so a live reply
    # never waits for another reply to be finished. Empty: live turns use `llm`.
    live_llms: tuple[ChatModel, ...] = ()
