"""The reply harness: what the avatar says, checked automatically, over 42 questions in English and Ukrainian.

Each question (bench/eval_questions.yaml) goes to a real server as a typed Interact turn (no audio, video or
track: only the reply matters here); follow-ups that need memory share a session. Each reply is checked:

- in_character: no "as an AI"/"language model"/"assistant", no other name for itself, no system-prompt text;
- not_echo: not the question said back;
- language: in the question's language (lingua-language-detector over English, Ukrainian and Russian);
- fact: states the persona's fact when asked (one of the expected keywords), only for questions that expect one;
- complete: ends at a sentence end, within the reply length limit.

Prints a table per kind and language, every check's pass rate, a sample of replies for a person to read,
and saves bench/results/eval-latest.json. `make eval` runs it; `make bench` too. Without --target it starts
`python -m avatar_server` (the embedded engines) on a free loopback port; with --target it asks that server
(e.g. one configured with AVATAR_LLM=openai-compatible). tests/integration/test_eval.py asks the questions
marked `subset` with the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "eval_questions.yaml"
CHECKS = ("in_character", "not_echo", "language", "fact", "complete")

# Phrases a persona never says about itself (lower case).
_OUT_OF_CHARACTER = (
    "as an ai", "an ai ", "ai model", "language model", "artificial intelligence", "i'm an assistant",
    "i am an assistant", "ai assistant", "virtual assistant", "chatbot", "openai", "chatgpt", "smollm",
    "qwen", "штучний інтелект", "мовна модель", "асистент", "чат-бот", "я робот", "я комп'ютер", "я програма",
    "відповідай українською",
    # the system prompt's own words
    "facts about you", "use only these", "always answer in", "when talking about yourself",
    "what you say about yourself", "only these facts",
)  # fmt: skip
_SELF_NAME = (
    re.compile(r"\b(?i:I am|I'm|my name is|call me)\s+([A-Z][a-z]+)"),
    re.compile(r"(?:^|[\s,.!?])(?:я|Я|мене звати|Мене звати|моє ім'я|Моє ім'я)\s+([А-ЯІЇЄҐ][а-яіїєґ'’]+)"),
)
# "I'm a robot." / "I am just a computer," (not "I am a computer pioneer").
_A_MACHINE = re.compile(r"(?i)\bI(?:'m| am) (?:just |only )?an? (?:computer|robot|machine|program)\s*(?:[.,!?;]|$)")
_END = re.compile(r"[.!?…][\"'”»)\]]*\s*$")


@dataclass(frozen=True)
class Question:
    id: str
    lang: str
    kind: str
    text: str
    expect: tuple[str, ...] = ()
    session: str = ""
    subset: bool = False


@dataclass
class Scored:
    question: Question
    reply: str
    seconds: float
    checks: dict[str, bool | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v is not False for v in self.checks.values())


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    return [
        Question(
            id=q["id"],
            lang=q["lang"],
            kind=q["kind"],
            text=q["text"],
            expect=tuple(str(e) for e in q.get("expect", ())),
            session=q.get("session", ""),
            subset=bool(q.get("subset", False)),
        )
        for q in raw
    ]


@cache
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.UKRAINIAN, Language.RUSSIAN).build()


def language_of(text: str) -> str:
    """ "en", "uk", "ru" or "" (nothing to tell)."""
    found = _detector().detect_language_of(text)
    return {"ENGLISH": "en", "UKRAINIAN": "uk", "RUSSIAN": "ru"}.get(found.name, "") if found else ""


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def check_reply(q: Question, reply: str, *, persona_names: Iterable[str], max_chars: int) -> dict[str, bool | None]:
    """Every check for one reply: True passed, False failed, None does not apply."""
    low = f" {reply.lower()} "
    names = {n.lower() for n in persona_names}
    others = [m.group(1) for p in _SELF_NAME for m in p.finditer(reply) if m.group(1).lower() not in names]
    says_ai = re.search(r"\bAI\b", reply) is not None  # the persona is a person, not "a brilliant AI"
    says_ai = says_ai or _A_MACHINE.search(reply) is not None
    in_character = bool(reply.strip()) and not any(p in low for p in _OUT_OF_CHARACTER) and not others
    in_character = in_character and not says_ai
    a, b = _norm(reply), _norm(q.text)
    not_echo = bool(a) and a != b and not a.startswith(b) and SequenceMatcher(None, a, b).ratio() < 0.8
    fact = None
    if q.expect:
        fact = any(e.lower() in reply.lower() for e in q.expect)
    return {
        "in_character": in_character,
        "not_echo": not_echo,
        "language": language_of(reply) == q.lang,
        "fact": fact,
        "complete": bool(_END.search(reply)) and len(reply) <= max_chars,
    }


def subset(questions: list[Question]) -> list[Question]:
    """The questions marked `subset`, with the turns before them in their sessions (memory needs them)."""
    wanted = {q.session for q in questions if q.subset and q.session}
    return [q for q in questions if q.subset or (q.session and q.session in wanted)]


def persona_names(name: str, questions: Iterable[Question]) -> set[str]:
    """The names the persona may call itself: its own, and how the identity questions expect it written."""
    return set(name.split()) | {e for q in questions if q.kind == "identity" for e in q.expect if " " not in e}


def ask_all(
    questions: list[Question],
    interact: Callable[[str, str], tuple[str, str]],
    score: Callable[[Question, str], dict[str, bool | None]],
) -> list[Scored]:
    """Ask in order; questions of one `session` share a conversation, every other question gets its own."""
    sessions: dict[str, str] = {}  # the harness's session name → the id the server issued for it
    out = []
    for q in questions:
        t0 = time.perf_counter()
        reply, issued = interact(q.text, sessions.get(q.session, "") if q.session else "")
        if q.session:
            sessions[q.session] = issued
        out.append(Scored(q, reply, time.perf_counter() - t0, score(q, reply)))
    return out


def grpc_interact(target: str, avatar_id: str = "") -> Callable[[str, str], tuple[str, str]]:
    import grpc
    from avatar.v1 import avatar_pb2 as pb
    from avatar.v1 import avatar_pb2_grpc as pb_grpc

    stub = pb_grpc.AvatarServiceStub(grpc.insecure_channel(target))
    text_only = pb.OutputOptions(audio=False, video=False, animation=False)

    def interact(text: str, session: str) -> tuple[str, str]:
        request = pb.InteractRequest(text=text, session_id=session, avatar_id=avatar_id, outputs=text_only)
        response = stub.Interact(request, timeout=120)
        return str(response.reply_text), str(response.session_id)

    return interact


def rates(results: list[Scored], key: Callable[[Scored], str]) -> dict[str, dict[str, float]]:
    """Per group: each check's pass rate (over the replies it applies to) and the share of replies passing all."""
    groups: dict[str, list[Scored]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    table = {}
    for name, rs in sorted(groups.items()):
        row = {}
        for c in CHECKS:
            vals = [r.checks[c] for r in rs if r.checks[c] is not None]
            row[c] = sum(map(bool, vals)) / len(vals) if vals else float("nan")
        row["all"] = sum(r.passed for r in rs) / len(rs)
        row["n"] = len(rs)
        table[name] = row
    return table


def check_pass_rate(results: list[Scored], lang: str | None = None) -> float:
    """The share of applicable checks that pass (the issue's "% of the harness's checks")."""
    vals = [v for r in results if lang in (None, r.question.lang) for v in r.checks.values() if v is not None]
    return sum(map(bool, vals)) / len(vals) if vals else 0.0


def _print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"\n{title:<14} {'n':>3} " + " ".join(f"{c:>12}" for c in (*CHECKS, "all")))
    for name, row in table.items():
        cells = " ".join(f"{'—' if row[c] != row[c] else f'{row[c] * 100:.0f}%':>12}" for c in (*CHECKS, "all"))
        print(f"{name:<14} {int(row['n']):>3} {cells}")


def llm_env(args: argparse.Namespace) -> dict[str, str]:
    """The server's settings for an OpenAI-compatible model, when one is asked for."""
    if not args.llm_url:
        return {}
    import os

    return {
        "AVATAR_LLM_ENGINE": "openai-compatible",
        "AVATAR_LLM_BASE_URL": args.llm_url,
        "AVATAR_LLM_MODEL": args.llm_model,
        "AVATAR_LLM_API_KEY": os.environ.get(args.llm_key_env, ""),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="host:port of a running avatar server (default: start one)")
    parser.add_argument("--avatar", default="", help="avatar id (default: the server's default)")
    parser.add_argument("--subset", action="store_true", help="only the questions `make test` asks")
    parser.add_argument("--show", type=int, default=14, help="how many replies to print for a person to read")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval-latest.json")
    llm = parser.add_argument_group("the model (default: the embedded one)")
    llm.add_argument("--llm-url", help="an OpenAI-compatible endpoint's base URL (e.g. https://api.openai.com/v1)")
    llm.add_argument("--llm-model", default="", help="its model name")
    llm.add_argument("--llm-key-env", default="OPENAI_API_KEY", help="the environment variable holding its key")
    llm.add_argument(
        "--reference", action="store_true", help="the harness's reference replies (bench/reference_llm.py)"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from avatar_server.personas import load_avatars
    from avatar_server.settings import Settings
    from tests.conftest import start_server, stop_server

    settings = Settings()
    avatar = load_avatars(settings.avatars_dir)[args.avatar or settings.default_avatar]
    questions = subset(load_questions()) if args.subset else load_questions()
    server = None
    target = args.target
    stack = contextlib.ExitStack()
    if args.reference:
        from bench.reference_llm import MODEL, running

        args.llm_url, args.llm_model = stack.enter_context(running(avatar.name)), MODEL
    if not target:
        server = start_server(Path(tempfile.mkdtemp()) / "server.log", extra_env=llm_env(args))
        target = server.target
    try:
        names = persona_names(avatar.name, questions)

        def score(q: Question, reply: str) -> dict[str, bool | None]:
            return check_reply(q, reply, persona_names=names, max_chars=settings.reply_max_chars)

        results = ask_all(questions, grpc_interact(target, args.avatar), score)
    finally:
        if server is not None:
            stop_server(server)
        stack.close()

    _print_table("kind", rates(results, lambda r: r.question.kind))
    _print_table("language", rates(results, lambda r: r.question.lang))
    overall = {lang: check_pass_rate(results, lang) for lang in ("en", "uk")}
    print(f"\nchecks passed: English {overall['en'] * 100:.0f}%, Ukrainian {overall['uk'] * 100:.0f}%")
    print(f"median reply time {statistics.median(r.seconds for r in results):.2f} s (typed turn, text only)\n")
    for r in results[: args.show] + [r for r in results[args.show :] if not r.passed][:6]:
        failed = ", ".join(c for c, v in r.checks.items() if v is False) or "ok"
        print(f"[{r.question.id}] {r.question.text}\n    → {r.reply}\n    ({failed})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "target": args.target or ("reference" if args.reference else args.llm_url or "embedded"),
                "avatar": avatar.id,
                "check_pass_rate": overall,
                "replies": [
                    {**asdict(r.question), "reply": r.reply, "seconds": round(r.seconds, 3), "checks": r.checks}
                    for r in results
                ],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"saved {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
