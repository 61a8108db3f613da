"""How soon the embedded model's first words are ready: time from the question to its 3rd and 5th word.

The server's LLM as it is built (llama.cpp, the bundled model, the persona prompt of the default avatar), each
English question of the reply harness asked in a fresh conversation (its system prompt cached, as in a
session), with `n_threads` 1 and 2. Issue 11's target: the first 3-5 words within 0.25 s of the transcript
(median), on 2 cores. Prints a table; saves bench/results/first-words-latest.json.

    python bench/bench_first_words.py [--threads 1 2] [--limit 27]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_server.engines import factory  # noqa: E402
from avatar_server.engines.llm.reply import build_messages  # noqa: E402
from avatar_server.personas import load_avatars  # noqa: E402
from avatar_server.settings import Settings  # noqa: E402
from bench.eval_replies import load_questions  # noqa: E402


def time_to_words(llm: object, messages: list, max_tokens: int) -> tuple[float, float, float]:  # type: ignore[type-arg]
    """(first token, 3rd word, 5th word) seconds; a reply shorter than that counts its end."""
    t0 = time.perf_counter()
    first = third = fifth = 0.0
    text = ""
    stream = llm.stream(messages, max_tokens=max_tokens, temperature=0.0)  # type: ignore[attr-defined]
    try:
        for delta in stream:
            now = time.perf_counter() - t0
            first = first or now
            text += delta
            words = len(text.split()) - (0 if text[-1:].isspace() else 1)  # the last word may still grow
            if words >= 3 and not third:
                third = now
            if words >= 5:
                fifth = now
                break
    finally:
        stream.close()
    end = time.perf_counter() - t0
    return first, third or end, fifth or end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--limit", type=int, default=27, help="at most this many questions")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "first-words-latest.json")
    args = parser.parse_args()
    settings = Settings()
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    questions = [q.text for q in load_questions() if q.lang == "en" and not q.session][: args.limit]
    system = avatar.system_prompt("en")
    rows = []
    for threads in args.threads:
        llm = factory.build_llm(settings.model_copy(update={"llm_threads": threads}))
        time_to_words(llm, build_messages(system, [], "Hello."), 8)  # the system prompt, evaluated once
        samples = [time_to_words(llm, build_messages(system, [], q), 16) for q in questions]
        rows.append(
            {
                "threads": threads,
                "model": llm.capabilities.model,
                "questions": len(samples),
                "first_token_s": round(statistics.median(s[0] for s in samples), 3),
                "three_words_s": round(statistics.median(s[1] for s in samples), 3),
                "five_words_s": round(statistics.median(s[2] for s in samples), 3),
                "five_words_p90_s": round(sorted(s[2] for s in samples)[int(0.9 * (len(samples) - 1))], 3),
            }
        )
        del llm
    print(f"{rows[0]['model']}, {rows[0]['questions']} English questions, medians (target: 3-5 words within 0.25 s)\n")
    print("| n_threads | first token, s | 3 words, s | 5 words, s | 5 words p90, s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['threads']} | {r['first_token_s']:.3f} | {r['three_words_s']:.3f} | {r['five_words_s']:.3f} "
            f"| {r['five_words_p90_s']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
