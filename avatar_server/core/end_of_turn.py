"""Whether a pause ends the person's turn: the turn model's verdict on the sound, checked against the words.

At each pause two things arrive: the turn model's probability that the utterance is complete (tens of
milliseconds) and the transcript of the speculative turn (needed for the reply anyway). Together:

- sure it is complete (probability >= `threshold`) and the words do not hang ("... how much the", "could
  you tell me what"): the turn ends after `confirm_ms` of silence;
- unsure (`unsure` <= probability < `threshold`) and the words do not hang: after `fallback_ms`;
- otherwise (incomplete, or the words hang): the person gets up to `incomplete_ms` to go on.

Until the verdict can be made the longest wait holds; a failed model leaves `fallback_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_server.engines.turn_model import SmartTurnModel
from avatar_server.errors import AvatarError
from avatar_server.settings import Settings

log = logging.getLogger("avatar_server.converse")
VERDICT_TIMEOUT = 1.0  # seconds the turn model may take before the fixed silence decides instead

# Words a finished sentence rarely ends on: articles, conjunctions, prepositions, possessives, "what".
_HANGING = frozenset(
    {
    "a", "an", "the", "and", "or", "but", "nor", "because", "since", "although", "though", "if", "unless",
    "whether", "that", "which", "whose", "what", "to", "of", "in", "on", "at", "for", "with", "from", "by",
    "about", "into", "onto", "than", "as", "my", "your", "his", "her", "its", "our", "their", "these", "those",
    "very", "after", "during", "without", "through",
    "і", "й", "та", "а", "але", "або", "чи", "що", "щоб", "бо", "як", "якщо", "коли", "в", "у", "на", "з", "із",
    "зі", "до", "від", "для", "про", "по", "за", "під", "над", "між", "мій", "моя", "моє", "мої", "твій",
    "твоя", "наш", "наша", "ваш", "ваша", "цей", "ця", "ці", "дуже",
    }
)  # fmt: skip


# Questions end on prepositions and pronouns ("Where are you from?", "What is that?"), not on these.
_HANGING_IN_QUESTIONS = frozenset(
    {"a", "an", "the", "and", "or", "but", "because", "if", "my", "your", "his", "her", "our", "their", "very"}
    | {"і", "й", "та", "а", "але", "або", "бо", "якщо", "мій", "моя", "твій", "твоя", "наш", "ваш", "дуже"}
)


def hangs(text: str) -> bool:
    """The transcript stops where a sentence cannot end (or trails off). Whisper often writes a question
    mark on a cut-off question ("Could you tell me what?"), so a question is checked too."""
    stripped = text.strip()
    if not stripped or stripped.endswith(("...", "…", "-", ",")):
        return bool(stripped)
    words = re.findall(r"[\w']+", stripped.lower())
    if not words:
        return False
    if not stripped.endswith("?"):
        return words[-1] in _HANGING
    return words[-1] in _HANGING_IN_QUESTIONS or (words[-1] in ("what", "що") and len(words) >= 4)


@dataclass
class PauseVerdict:
    """What is known about one pause, as it arrives; `required_ms` is the silence that ends the turn there."""

    threshold: float
    unsure: float
    confirm_ms: int
    fallback_ms: int
    incomplete_ms: int
    probability: float | None = None
    text: str | None = None
    failed: bool = False  # the model gave no verdict

    def required_ms(self) -> int | None:
        """The silence that ends the turn at this pause; None while undecided (the longest wait holds)."""
        if self.failed:
            return self.fallback_ms
        if self.probability is None:
            return None
        # Incomplete by its sound: the longest wait, whatever the words (Whisper writes a question mark on
        # a cut-off statement too: "Had he married a more amiable woman he might have been made?").
        if self.probability < self.unsure:
            return self.incomplete_ms
        if self.text is None:
            return None  # complete by its sound: the words decide (they arrive before the reply could start)
        if hangs(self.text):
            return self.incomplete_ms
        return self.confirm_ms if self.probability >= self.threshold else self.fallback_ms


class EndOfTurn:
    """The verdicts of one live session, pause by pause: asks the turn model (through `run`, on its worker)
    and takes the early turn's words; `on_required(ms)` gets the silence that ends the turn at the pause."""

    def __init__(
        self,
        model: SmartTurnModel | None,
        settings: Settings,
        run: Callable[[Callable[[npt.NDArray[np.float32]], float], npt.NDArray[np.float32]], Awaitable[float]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        on_required: Callable[[int], None],
    ) -> None:
        self.model = model
        self._settings = settings
        self._run = run
        self._spawn = spawn
        self._on_required = on_required
        self.verdict: PauseVerdict | None = None  # what is known about the latest pause

    def pause(self, audio: npt.NDArray[np.float32]) -> None:
        """A pause after `audio` (the utterance so far, at most the model's 8 s): ask the model."""
        self.verdict = None
        model = self.model
        if model is None:
            return
        s = self._settings
        verdict = self.verdict = PauseVerdict(
            s.turn_complete_threshold,
            s.turn_unsure_threshold,
            s.turn_confirm_ms,
            s.end_silence_ms,
            s.turn_incomplete_ms,
        )

        async def judge() -> None:
            try:
                verdict.probability = await asyncio.wait_for(self._run(model.complete, audio), VERDICT_TIMEOUT)
            except (AvatarError, TimeoutError, RuntimeError) as exc:
                log.warning("no end-of-turn verdict (%s); the fixed silence decides", exc)
                verdict.failed = True
            self._changed(verdict)

        self._spawn(judge())

    def words(self, text: str) -> None:
        """The early turn's transcript at this pause."""
        if self.verdict is not None:
            self.verdict.text = text
            self._changed(self.verdict)

    def resumed(self) -> None:
        self.verdict = None

    def take(self) -> PauseVerdict | None:
        """The verdict of the pause that ended the utterance (then forgotten)."""
        verdict, self.verdict = self.verdict, None
        return verdict

    def _changed(self, verdict: PauseVerdict) -> None:
        if verdict is not self.verdict:
            return  # the person went on meanwhile: a later pause decides
        required = verdict.required_ms()
        if required is not None:
            self._on_required(required)
