"""Speech over the avatar's reply: its own voice coming back through the microphone, a listener's
"mm-hm", or a real interruption.

- `ReplyEcho` keeps the loudness of the reply as the listener hears it. Microphone audio no louder than
  that reply's echo would be (`echo_return_loss_db` below it, with a margin) is the avatar hearing itself:
  the VAD gets silence for it. Browsers cancel most echo; this catches what leaks through.
- `is_backchannel` judges the transcript of a short fragment: listener sounds and acknowledgements
  ("mm-hm", "yeah", "okay", "right", a laugh, a cough) do not take the turn; a question, a word that
  stops or objects do.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_server.errors import AvatarError

_BLOCK = 320  # 20 ms at 16 kHz: the gate's resolution
_LEAD = 0.08  # clients schedule a turn's first chunk this far ahead of its arrival
_HANGOVER_BLOCKS = 3  # once the person is heard, 60 ms more pass the gate (the quiet ends of words)
_DELAY = (-0.05, 0.6)  # the echo arrives this many seconds after the listener plays that audio


class ReplyEcho:
    """The reply's loudness on the listener's clock, and the microphone gate it implies."""

    def __init__(self, return_loss_db: float = 20.0, margin_db: float = 6.0) -> None:
        # Input quieter than the reply's loudness times this is taken for its echo.
        self._ratio = 10 ** (-(return_loss_db - margin_db) / 20)
        self._anchor = 0.0  # wall time the listener started the current reply (its clock's zero)
        self._blocks: list[float] = []  # RMS per 20 ms of the reply, from its start
        self._end = 0.0  # seconds of reply audio sent
        self._turn = ""
        self._open = 0  # blocks left in the hangover

    @property
    def turn_id(self) -> str:
        return self._turn

    def add(self, turn_id: str, samples: npt.NDArray[np.float32], rate: int, start: float, now: float) -> None:
        """A reply chunk went out at `now`; it plays at `start` seconds on its turn's clock."""
        if turn_id != self._turn:  # a new reply: its own clock, from when its first chunk went out
            self._turn, self._blocks, self._anchor, self._end = turn_id, [], now + _LEAD, 0.0
        step = max(1, rate // 50)
        first = round(start * 50)
        levels = [float(np.sqrt(np.mean(samples[k : k + step] ** 2))) for k in range(0, len(samples), step)]
        if len(self._blocks) < first:
            self._blocks.extend([0.0] * (first - len(self._blocks)))
        self._blocks[first : first + len(levels)] = levels
        self._end = max(self._end, start + len(samples) / rate)

    def stop(self) -> None:
        """The listener stopped hearing the reply (interrupted)."""
        self._turn, self._blocks, self._end = "", [], 0.0

    def audible(self, now: float, tail: float = 0.3) -> bool:
        """The listener is still hearing the reply (or its echo may still come back)."""
        return bool(self._turn) and now < self._anchor + self._end + tail

    def heard_fraction(self, now: float) -> float:
        """How much of the reply sent so far the listener has heard."""
        return min(1.0, max(0.0, (now - self._anchor) / self._end)) if self._end else 0.0

    def level(self, at: float) -> float:
        """The loudest the reply's echo can be in the microphone audio recorded at wall time `at`."""
        lo = int((at - self._anchor - _DELAY[1]) * 50)
        hi = int((at - self._anchor - _DELAY[0]) * 50) + 1
        window = self._blocks[max(0, lo) : max(0, hi)]
        return max(window) if window else 0.0

    def gate(self, samples: npt.NDArray[np.float32], arrived: float) -> npt.NDArray[np.float32]:
        """`samples` (16 kHz, the last of them recorded just before `arrived`) with the blocks that are only
        the reply's echo silenced: what the VAD should hear."""
        if not self._turn or not self.audible(arrived, tail=_DELAY[1]):
            self._open = 0
            return samples
        out = samples.copy()
        for k in range(0, len(samples), _BLOCK):
            block = samples[k : k + _BLOCK]
            at = arrived - (len(samples) - k) / 16000
            if float(np.sqrt(np.mean(block**2))) > self.level(at) * self._ratio:
                self._open = _HANGOVER_BLOCKS
            elif self._open > 0:
                self._open -= 1
            else:
                out[k : k + _BLOCK] = 0.0
        return out


# Words that take the turn even in a short fragment: stopping, objecting, asking (English and Ukrainian).
# Anything else short is a listener sound: Whisper writes "mm-hm" in many ways ("Mm-hmm.", "MMA-CAM"), so
# the fragment is judged by what would make it more than one.
_TAKES_TURN = frozenset(
    {
    "stop", "wait", "no", "nope", "hold", "hang", "sorry", "excuse", "pardon", "but", "what", "why", "how",
    "who", "where", "when", "which", "hey", "listen", "actually", "question", "again", "repeat", "louder",
    "enough", "cancel", "quiet", "shut", "pause", "tell", "can", "could", "please", "let", "i'm", "don't",
    "стоп", "зачекай", "зачекайте", "чекай", "стривай", "ні", "вибач", "вибачте", "але", "що", "чому", "як",
    "хто", "де", "коли", "слухай", "повтори", "досить", "скажи", "можна",
    }
)  # fmt: skip
_NON_SPEECH = re.compile(r"[\[(*♪][^\])*♪]*[\])*♪]")  # "[laughs]", "(coughing)", "*cough*", "♪"


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return [w.strip("-'") for w in re.split(r"[^\w'-]+", text) if w.strip("-'")]


def is_backchannel(text: str) -> bool:
    """A short fragment (under a second of speech: longer ones take the turn anyway) the listener said while
    the avatar spoke: True if it only acknowledges or is no speech at all (a hum, a cough, a laugh), False if
    it takes the turn: a question, or a word that stops or objects ("wait", "no", "sorry", "what"). The
    number of words does not count: on a hum Whisper may loop ("MMA change MMA changed MMA changes")."""
    if "?" in text:
        return False
    words = _words(_NON_SPEECH.sub(" ", text))
    return not any(w in _TAKES_TURN for w in words)


_FRAGMENT = 3 * 16000  # the most of a fragment that is transcribed


@dataclass(eq=False)
class Fragment:
    """Speech that began while the listener heard the reply: a backchannel or a new turn, not yet known."""

    start: int  # stream position of its start
    heard: list[npt.NDArray[np.float32]]  # the microphone audio since just before it, the reply's echo gated out
    voiced: int = 0  # samples of it heard as speech, pauses not counted
    ended: int | None = None  # where it ended, once the endpointer said so before the verdict


class OverReply:
    """Judges speech over the reply. The session feeds it what the VAD heard; at the fragment's pause it is
    transcribed (`transcribe`, on the STT worker) and `on_backchannel(fragment, text)` or
    `on_turn(fragment, why)` is called; a fragment longer than `max_voiced` samples takes the turn at once."""

    def __init__(
        self,
        max_voiced: int,
        transcribe: Callable[[npt.NDArray[np.float32]], Awaitable[str]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        on_backchannel: Callable[[Fragment, str], None],
        on_turn: Callable[[Fragment, str], Awaitable[None]],
    ) -> None:
        self.fragment: Fragment | None = None
        self._max_voiced = max_voiced
        self._transcribe = transcribe
        self._spawn = spawn
        self._on_backchannel = on_backchannel
        self._on_turn = on_turn
        self._recent: deque[npt.NDArray[np.float32]] = deque(maxlen=16)  # the last chunks the VAD heard
        self._pauses = 0  # pauses and resumes seen: a verdict about an earlier pause is stale

    def hear(self, chunk: npt.NDArray[np.float32]) -> None:
        self._recent.append(chunk)
        if self.fragment is not None:
            self.fragment.heard.append(chunk)

    def begin(self, start: int, voiced: int) -> None:
        self.fragment = Fragment(start, list(self._recent), voiced)

    def take(self) -> Fragment | None:
        """The fragment, judged now (by the caller): no verdict about it follows."""
        fragment, self.fragment = self.fragment, None
        return fragment

    async def voiced(self, samples: int) -> None:
        fragment = self.fragment
        if fragment is not None:
            fragment.voiced += samples
            if fragment.voiced > self._max_voiced:
                self.fragment = None
                await self._on_turn(fragment, "longer than a backchannel")

    def resumed(self) -> None:
        self._pauses += 1

    def paused(self) -> None:
        """A pause: transcribe the fragment so far; if the person goes on, a later pause or its length decides."""
        self._pauses += 1
        fragment, pause = self.fragment, self._pauses
        if fragment is None:
            return
        audio = np.concatenate(fragment.heard)[-_FRAGMENT:]  # without the reply's echo: only the person

        async def judge() -> None:
            text: str | None = None
            with contextlib.suppress(AvatarError, RuntimeError):  # unheard: it takes the turn
                text = (await self._transcribe(audio)).strip()
            if self.fragment is not fragment or pause != self._pauses:
                return
            self.fragment = None
            if text is not None and is_backchannel(text):
                self._on_backchannel(fragment, text)
            else:
                await self._on_turn(fragment, f"heard {text!r}")

        self._spawn(judge())
