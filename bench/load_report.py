"""The load benchmark's report: per-kind summaries, the checks against the targets, the markdown table."""

from __future__ import annotations

from bench.bench_interact import pct

SETTLE_SECONDS = 30.0
TARGETS = {"hangs": 0, "failed": 0, "rss_growth_pct": 5.0, "live_voice_to_first_audio_p50": 1.5}


def evaluate(
    measured: dict[str, object], live: dict[str, object], inter: dict[str, object]
) -> tuple[object, object, int | None, float | None, float | None, list[dict[str, object]]]:
    """RSS at start, end and after SETTLE_SECONDS of load, the growth from idle and from there, and the checks."""
    start, end = measured["rss_start_kib"], measured["rss_end_kib"]
    growth = (end - start) / start * 100 if isinstance(start, int) and isinstance(end, int) and start else None
    # The leak check: from the working set of this load (its first SETTLE_SECONDS reach it: concurrent turns,
    # caches and allocator arenas sized to the largest request) to the end. Growth from idle is reported too.
    samples: list[tuple[float, int]] = measured["rss_samples"]  # type: ignore[assignment]
    settled = next((kib for t, kib in samples if t >= SETTLE_SECONDS), None)
    settled_growth = (end - settled) / settled * 100 if isinstance(end, int) and settled else None
    hangs = int(live["hangs"]) + int(inter["hangs"])  # type: ignore[call-overload]
    failed = int(live["failed"]) + int(inter["failed"])  # type: ignore[call-overload]
    v2fa = live["voice_to_first_audio_p50"]
    checks = [
        {"check": "hangs (live + interact)", "value": hangs, "target": "0", "met": hangs == TARGETS["hangs"]},
        {"check": "failed (live + interact)", "value": failed, "target": "0", "met": failed == TARGETS["failed"]},
        {
            "check": f"server RSS growth after the first {SETTLE_SECONDS:.0f} s of load, %",
            "value": settled_growth,
            "target": "< 5",
            "met": settled_growth is not None and settled_growth < TARGETS["rss_growth_pct"],
        },
        {
            "check": "server RSS growth from idle (after one warm-up turn), %",
            "value": growth,
            "target": "-",
            "met": "-",
        },
        {
            "check": "live voice-to-first-audio p50 (server), s",
            "value": v2fa,
            "target": "≤ 1.5",
            "met": isinstance(v2fa, float) and v2fa == v2fa and v2fa <= TARGETS["live_voice_to_first_audio_p50"],
        },
    ]
    return start, end, settled, growth, settled_growth, checks


def summarize(attempts: list[dict[str, object]], kind: str, extra_refusals: int = 0) -> dict[str, object]:
    rows = [a for a in attempts if a["kind"] == kind]
    count = {o: sum(a["outcome"] == o for a in rows) for o in ("served", "refused", "failed", "hang")}
    errors: dict[str, int] = {}
    for a in rows:
        if a["outcome"] in ("failed", "hang", "refused"):
            key = f"{a['code']}: {str(a['message'])[:80]}"
            errors[key] = errors.get(key, 0) + 1
    out: dict[str, object] = {
        "attempts": len(rows),
        "served": count["served"],
        "refused": count["refused"] + extra_refusals,
        "failed": count["failed"],
        "hangs": count["hang"],
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
    }
    served = [a for a in rows if a["outcome"] == "served"]
    if kind == "interact":
        lat = [float(a["latency"]) for a in served if a["latency"] is not None]  # type: ignore[arg-type]
        out["latency_p50"], out["latency_p90"] = pct(lat, 0.5), pct(lat, 0.9)
    else:
        srv = [float(a["server_v2fa"]) for a in served if a["server_v2fa"]]  # type: ignore[arg-type]
        cli = [float(a["client_v2fa"]) for a in served if a["client_v2fa"] is not None]  # type: ignore[arg-type]
        out["voice_to_first_audio_p50"], out["voice_to_first_audio_p90"] = pct(srv, 0.5), pct(srv, 0.9)
        out["client_voice_to_first_audio_p50"], out["client_voice_to_first_audio_p90"] = pct(cli, 0.5), pct(cli, 0.9)
    return out


def no_nan(value: object) -> object:
    """NaN (a percentile of nothing) as null, so the JSON stays standard."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.{digits}f}"
    return str(value)


def report(result: dict[str, object]) -> str:
    live, inter = result["live"], result["interact"]
    assert isinstance(live, dict) and isinstance(inter, dict)
    lines = [
        f"Load benchmark: {result['live_sessions']} live Converse sessions + {result['interact_clients']} Interact "
        f"clients for {result['seconds']} s ({result['elapsed_seconds']} s with the drain), seconds",
        "",
        "| kind | served | refused | failed | hangs | latency | p50 | p90 |",
        "|---|---|---|---|---|---|---|---|",
        f"| live | {live['served']} | {live['refused']} | {live['failed']} | {live['hangs']} | voice-to-first-audio "
        f"(server) | {fmt(live['voice_to_first_audio_p50'])} | {fmt(live['voice_to_first_audio_p90'])} |",
        f"| | | | | | last voiced chunk sent → first audio_chunk (client) | "
        f"{fmt(live['client_voice_to_first_audio_p50'])} | {fmt(live['client_voice_to_first_audio_p90'])} |",
        f"| interact | {inter['served']} | {inter['refused']} | {inter['failed']} | {inter['hangs']} | "
        f"call wall time | {fmt(inter['latency_p50'])} | {fmt(inter['latency_p90'])} |",
        "",
        "| check | value | target | met |",
        "|---|---|---|---|",
    ]
    for c in result["checks"]:  # type: ignore[attr-defined]
        met = c["met"] if isinstance(c["met"], str) else ("yes" if c["met"] else "NO")
        lines.append(f"| {c['check']} | {fmt(c['value'])} | {c['target']} | {met} |")
    lines.append("")
    for kind, s in (("live", live), ("interact", inter)):
        for err, n in s["errors"].items():
            lines.append(f"- {kind} {n}×  {err}")
    return "\n".join(lines)
