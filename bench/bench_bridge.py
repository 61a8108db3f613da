"""The REST bridge's cost: the same text turn through the bridge and through gRPC directly, alternating.

The server runs with LLM temperature 0, so both paths do identical work; the difference is the bridge
(multipart parsing, one more gRPC hop, storing media, JSON). Saves bench/results/bridge-latest.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import httpx  # noqa: E402
from avatar.v1 import avatar_pb2 as pb  # noqa: E402
from avatar.v1 import avatar_pb2_grpc as pb_grpc  # noqa: E402

from tests.conftest import start_bridge, start_server, stop_bridge, stop_server  # noqa: E402

QUESTION = "Who are you?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    server = start_server(tmp / "server.log", extra_env={"AVATAR_LLM_TEMPERATURE": "0"})
    bridge = start_bridge(tmp, server.target)
    channel = grpc.insecure_channel(server.target, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = pb_grpc.AvatarServiceStub(channel)
    direct: list[float] = []
    via_bridge: list[float] = []
    overhead: dict[str, list[float]] = {"direct": [], "bridge": []}  # wall time minus the server's own time
    try:
        with httpx.Client(base_url=bridge.url, timeout=300) as http:
            for k in range(args.pairs + 1):  # the first pair warms both paths and is dropped
                order = ("direct", "bridge") if k % 2 == 0 else ("bridge", "direct")
                for path in order:
                    t0 = time.perf_counter()
                    if path == "direct":
                        server_time = stub.Interact(
                            pb.InteractRequest(text=QUESTION), timeout=300
                        ).timings.total_seconds
                    else:
                        resp = http.post("/api/v1/avatar/interact", data={"text": QUESTION})
                        resp.raise_for_status()
                        server_time = resp.json()["processing_time"]
                    elapsed = time.perf_counter() - t0
                    if k > 0:
                        (direct if path == "direct" else via_bridge).append(elapsed)
                        overhead[path].append(elapsed - server_time)
    finally:
        channel.close()
        stop_bridge(bridge)
        stop_server(server)
    d50, b50 = statistics.median(direct), statistics.median(via_bridge)
    # Each pair ran back to back, so its ratio cancels the machine's slow drift; the median of those is
    # the steadier number on a noisy 2-core box.
    pair_ratio = statistics.median(b / d for b, d in zip(via_bridge, direct, strict=True))
    result = {
        "benchmark": "bridge-vs-grpc",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "question": QUESTION,
        "pairs": args.pairs,
        "direct_p50": d50,
        "bridge_p50": b50,
        "bridge_over_direct_p50": b50 / d50,
        "bridge_over_direct_pairwise_median": pair_ratio,
        "added_seconds_p50": b50 - d50,
        "transport_overhead_p50": {k: statistics.median(v) for k, v in overhead.items()},
        "direct": direct,
        "bridge": via_bridge,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bridge-latest.json").write_text(json.dumps(result, indent=2))
    print(f"bridge vs direct gRPC, {args.pairs} alternating pairs, text turn with all outputs")
    print(f"direct p50 {d50:.3f} s   bridge p50 {b50:.3f} s   ratio of p50s {b50 / d50:.3f} (target <= 1.05)")
    print(f"median of pairwise ratios {pair_ratio:.3f}; bridge adds {b50 - d50:+.3f} s at p50")
    od, ob = statistics.median(overhead["direct"]), statistics.median(overhead["bridge"])
    print(
        f"outside the server's own time: direct {od * 1000:.1f} ms, bridge {ob * 1000:.1f} ms p50 -> the bridge adds "
        f"{(ob - od) * 1000:.1f} ms = {(ob - od) / d50 * 100:.1f} % of a turn"
    )
    print(f"saved {out / 'bridge-latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
