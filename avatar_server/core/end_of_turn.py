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

import re
from dataclasses import dataclass

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
        if self.probability < self.unsure:
            return self.incomplete_ms
        if self.text is None:
            return None  # complete by its sound: the words decide (they arrive before the reply could)
        if hangs(self.text):
            return self.incomplete_ms
        return self.confirm_ms if self.probability >= self.threshold else self.fallback_ms
