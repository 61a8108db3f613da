"""Conversation memory and the LLM's prompt cache: first-token latency per turn of a long typed session.

A session of `--turns` (20) typed questions goes to the real embedded LLM in this process (the engine
`engines/factory.py` builds, the prompt `engines/llm/reply.py` builds, the server's `ConversationMemory`),
turn after turn, as the server runs them: the reply is cut at the reply limits and remembered. Printed per
turn: the exchanges in the prompt, its tokens, the LLM's first-token latency and, where the memory trimmed
its history after the turn, the time spent warming the model's prompt cache for the next turn (the server
does that while the reply is spoken). llama.cpp keeps the last prompt evaluated and reuses its longest
common prefix, so a turn is fast while its prompt starts with the previous one; the target is turn 20's
first token within 1.5x of turn 2's.

`--threads-vs-tts` measures llama.cpp with `n_threads` 1 and 2, alone and while Piper synthesizes in another
thread at the same time, and taking turns with it as the server's one compute slot makes them:
first-token latency of an uncached prompt, decode rate, and Piper's real-time factor meanwhile.

Saves bench/results/memory-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("BENCH_KEEP_PATH"):  # set: benchmark the avatar_server found on PYTHONPATH (an old tree)
    sys.path.insert(0, str(ROOT))

from avatar_server.engines import factory  # noqa: E402
from avatar_server.engines.llm.reply import build_messages, collect_reply  # noqa: E402
from avatar_server.memory import ConversationMemory  # noqa: E402
from avatar_server.personas import load_avatars  # noqa: E402
from avatar_server.settings import Settings  # noqa: E402
from avatar_server.values import ChatMessage, Exchange  # noqa: E402

try:
    from avatar_server.engines.llm import budget
except ImportError:  # an older tree (BENCH_KEEP_PATH): no token budget
    budget = None  # type: ignore[assignment]

QUESTIONS = [
    "Hello! Who are you?",
    "Where were you born?",
    "What did you study at university?",
    "Which computer did you program during the war?",
    "What was it like to work on it?",
    "What is a compiler, in simple words?",
    "Why did people doubt your compiler?",
    "What was the name of your first compiler?",
    "How did COBOL come about?",
    "Why should programs read like English?",
    "Is it true you found a real bug in a computer?",
    "What did you do in the Navy?",
    "When did you retire?",
    "What advice would you give a young programmer?",
    "What do you think of modern computers?",
    "Can you explain a nanosecond to me?",
    "What was your favourite saying?",
    "Did you like teaching?",
    "What should I learn first, Python or C?",
    "Thank you, goodbye!",
]

TTS_TEXT = (
    "The first compiler I wrote was the A-0 System, in 1952. It turned mathematical notation into machine "
    "code, and people told me computers could only do arithmetic."
)


def timed(deltas: Iterator[str], clock: dict[str, float]) -> Iterator[str]:
    try:
        for delta in deltas:
            clock.setdefault("first", time.perf_counter())
            yield delta
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


def prompt_tokens(llm: Any, messages: list[Any]) -> list[int]:
    """The prompt's tokens as llama-cpp-python makes them from the model's chat template (with the cue)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    model = llm._llm
    text = Jinja2ChatFormatter(
        template=model.metadata["tokenizer.chat_template"],
        eos_token=model.detokenize([model.token_eos()], special=True).decode(),
        bos_token=model.detokenize([model.token_bos()], special=True).decode(),
    )(messages=[{"role": m.role, "content": m.content} for m in messages]).prompt
    return list(model.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def session(settings: Settings, turns: int, warm: bool) -> list[dict[str, Any]]:
    """One conversation of `turns` typed questions, as the server's turn runs it."""
    llm = factory.build_llm(settings)
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    system = avatar.system_prompt("en")
    count = budget.TokenCounter(llm) if budget is not None else None
    memory_args: dict[str, Any] = {}
    if count is not None:
        memory_args["max_tokens"] = settings.memory_max_tokens
    memory = ConversationMemory(max_turns=settings.memory_turns, ttl_seconds=3600, max_sessions=10, **memory_args)
    # Warm the engine as a server start does (the persona's prompt is evaluated once).
    list(llm.stream(build_messages(system, [], "Hi."), max_tokens=4, temperature=0.0))
    rows = []
    for k in range(turns):
        question = QUESTIONS[k % len(QUESTIONS)]
        messages = build_messages(system, memory.history("s"), question)
        if count is not None:
            messages = budget.fit_to_context(
                messages, count=count, context_tokens=settings.llm_context_tokens, reply_tokens=settings.llm_max_tokens
            )
        tokens = prompt_tokens(llm, messages)
        cached = common_prefix(list(llm._llm.eval_tokens), tokens)
        clock: dict[str, float] = {}
        t0 = time.perf_counter()
        deltas = llm.stream(messages, max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature)
        text = collect_reply(
            timed(deltas, clock), max_sentences=settings.reply_max_sentences, max_chars=settings.reply_max_chars
        )
        total = time.perf_counter() - t0
        first = clock.get("first", time.perf_counter()) - t0
        exchange = Exchange(question, text or "Sorry, I have no answer to that.")
        if count is not None:
            trimmed = bool(memory.add("s", exchange, tokens=count.exchange(exchange)))
        else:
            before = len(memory.history("s"))
            memory.add("s", exchange)
            trimmed = len(memory.history("s")) <= before
        warm_s = 0.0
        if trimmed and warm and hasattr(llm, "warm"):  # the server does this while the reply is spoken
            t1 = time.perf_counter()
            prefix = build_messages(system, memory.history("s"), "")[:-1]
            while llm.warm(prefix):
                pass
            warm_s = time.perf_counter() - t1
        rows.append(
            {
                "turn": k + 1,
                "exchanges": len([m for m in messages if m.role == "user"]) - 1,
                "prompt_tokens": len(tokens),
                "evaluated_tokens": len(tokens) - cached,
                "first_token_s": round(first, 4),
                "reply_s": round(total, 3),
                "trimmed_after": trimmed,
                "warm_s": round(warm_s, 4),
                "load_average": round(os.getloadavg()[0], 2),  # other work on the machine meanwhile
                "reply": text,
            }
        )
        print(
            f"turn {k + 1:2d}  exchanges {rows[-1]['exchanges']:2d}  prompt {len(tokens):4d} tok, "
            f"{len(tokens) - cached:4d} evaluated  first token {first:6.3f} s  reply {total:5.2f} s"
            + (f"  trimmed after it, warm {warm_s:.3f} s" if trimmed else ""),
            flush=True,
        )
    return rows


PIECE = "The first compiler I wrote was the A-0 System."


def _one_run(llm: Any, piper: Any, messages: list[Any], mode: str) -> tuple[float, float | None, float | None]:
    """First token of an uncached prompt, tokens/s after it, Piper's real-time factor meanwhile.

    turn: only the first token of a prompt whose history is cached (what a turn costs). alone: the LLM by
    itself. with-tts: Piper synthesizes a reply over and over in another thread at the
    same time (two compute slots, or another process on the machine). turns: as the server's one compute
    slot makes them, one after the other in one thread: a piece of 9 words is synthesized after every 8
    tokens, so each engine starts while the other's thread pool has just stopped."""
    stop = threading.Event()
    spoken: list[float] = []

    def speak(text: str = TTS_TEXT) -> None:
        t = time.perf_counter()
        speech = piper.synthesize(text, voice="", language="en")
        spoken.append((time.perf_counter() - t) / speech.duration)

    def speak_on() -> None:
        while not stop.is_set():
            speak()

    if mode == "turn":  # a turn as the server sees it: all but the question is in the prompt cache
        list(llm.stream([*messages[:-1], ChatMessage("user", "Hm?")], max_tokens=1, temperature=0.0))
        t0 = time.perf_counter()
        deltas = llm.stream(messages, max_tokens=1, temperature=0.0)
        next(deltas)
        first = time.perf_counter() - t0
        deltas.close()
        return first, None, None
    tts = threading.Thread(target=speak_on, daemon=True) if mode == "with-tts" else None
    if tts is not None:
        tts.start()
        time.sleep(0.3)
    llm._llm.reset()  # an uncached prompt each run
    t0 = time.perf_counter()
    stamps: list[float] = []
    paused = 0.0  # turns: time the LLM waited for the synthesis
    for _ in llm.stream(messages, max_tokens=48, temperature=0.0):
        stamps.append(time.perf_counter() - paused)
        if mode == "turns" and len(stamps) % 8 == 0:
            t = time.perf_counter()
            speak(PIECE)
            paused += time.perf_counter() - t
    stop.set()
    if tts is not None:
        tts.join()
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return stamps[0] - t0, rate, statistics.median(spoken) if spoken else None


def threads_vs_tts(settings: Settings, runs: int) -> list[dict[str, Any]]:
    """llama.cpp n_threads 1 vs 2: alone, with Piper synthesizing at the same time in another thread, and
    taking turns with it (the server's one compute slot); the runs interleave, so the machine's
    other load falls on every variant alike."""
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    history = [Exchange(q, "I am Grace Hopper, and I wrote the first compiler in 1952.") for q in QUESTIONS[:4]]
    messages = build_messages(avatar.system_prompt("en"), history, "What is a compiler?")
    piper = factory.build_tts("piper", settings)
    piper.synthesize("Warm up.", voice="", language="en")
    llms = {n: factory.build_llm(settings.model_copy(update={"llm_threads": n})) for n in (1, 2)}
    for llm in llms.values():
        list(llm.stream(messages, max_tokens=4, temperature=0.0))
    modes = ("turn", "alone", "with-tts", "turns")
    seen: dict[tuple[int, str], list[tuple[float, float | None, float | None]]] = {
        (n, m): [] for n in llms for m in modes
    }
    piper_alone: dict[str, list[float]] = {TTS_TEXT: [], PIECE: []}
    for run in range(runs):
        for text, rtfs in piper_alone.items():
            t = time.perf_counter()
            speech = piper.synthesize(text, voice="", language="en")
            rtfs.append((time.perf_counter() - t) / speech.duration)
        for n, llm in llms.items():
            for mode in modes:
                seen[n, mode].append(_one_run(llm, piper, messages, mode))
                first, rate, rtf = seen[n, mode][-1]
                print(
                    f"run {run + 1}/{runs}  n_threads {n}  {mode:8s}  first token {first:.3f} s  "
                    f"{rate or 0:.1f} tokens/s  Piper RTF {rtf or 0:.3f}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    rows = []
    for (n, mode), runs_seen in seen.items():
        rates = [r for _, r, _ in runs_seen if r is not None]
        rtfs = [x for _, _, x in runs_seen if x is not None]
        row = {
            "n_threads": n,
            "mode": mode,
            "first_token_s": round(statistics.median(f for f, _, _ in runs_seen), 3),
            "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
            "piper_rtf": round(statistics.median(rtfs), 3) if rtfs else None,
        }
        row["piper_rtf_alone"] = round(statistics.median(piper_alone[PIECE if mode == "turns" else TTS_TEXT]), 3)
        rows.append(row)
        print(
            f"n_threads {n}  {mode:8s}  first token {row['first_token_s']:.3f} s  {row['tokens_per_s']} tokens/s  "
            f"Piper RTF {row['piper_rtf']} (alone: reply {statistics.median(piper_alone[TTS_TEXT]):.3f}, "
            f"piece {statistics.median(piper_alone[PIECE]):.3f})",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2, help="sessions (and threads runs) to take medians over")
    parser.add_argument("--seed", type=int, default=7, help="the LLM's sampling seed (replies repeat)")
    parser.add_argument("--no-warm", action="store_true", help="do not warm the prompt cache after a trim")
    parser.add_argument("--threads-vs-tts", action="store_true", help="also measure n_threads 1 vs 2 with Piper")
    parser.add_argument("--sessions", type=int, default=None, help="sessions to run (default: --runs; 0: none)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory-latest.json")
    args = parser.parse_args()
    settings = Settings(llm_seed=args.seed)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "model": str(settings.llm_model_path or getattr(settings, "llm_bundled", "smollm2")),
        "threads": settings.threads,
        "memory_turns": settings.memory_turns,
        "sessions": [],
    }
    sessions = args.runs if args.sessions is None else args.sessions
    for run in range(sessions):
        print(f"-- session {run + 1}/{sessions}", flush=True)
        result["sessions"].append(session(settings, args.turns, warm=not args.no_warm))
    per_turn = [
        statistics.median(s[k]["first_token_s"] for s in result["sessions"]) for k in range(args.turns) if sessions
    ]
    result["first_token_median_per_turn"] = [round(x, 4) for x in per_turn]
    if sessions and args.turns >= 20:
        ratio = per_turn[19] / per_turn[1]
        result["turn20_over_turn2"] = round(ratio, 2)
        late = per_turn[7:]
        print(
            f"first token, median over sessions: turn 2 {per_turn[1]:.3f} s, turn 20 {per_turn[19]:.3f} s "
            f"({ratio:.2f}x); turns 8-20: median {statistics.median(late):.3f} s, max {max(late):.3f} s"
        )
    if args.threads_vs_tts:
        result["threads_vs_tts"] = threads_vs_tts(settings, args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
