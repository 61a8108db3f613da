"""Two avatar_server replicas behind one bridge (AVATAR_GRPC_TARGET=ipv4:127.0.0.1:A,127.0.0.1:B) on loopback.

The replicas share AVATAR_SESSION_SECRET and, when Redis memory is available, AVATAR_MEMORY_URL (a real
redis-server). Under continuous load from three clients one replica is killed with SIGKILL: every call at the
bridge must still succeed (gRPC retries UNAVAILABLE on the other replica) and a live session on the killed
replica must get a clear error event, then go on under the same session id on the other within 2 s. Then a
replica drained with SIGTERM must get no new calls (client-side health checking) while the other serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import websockets
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from avatar_client.channel import DEFAULT_OPTIONS, make_channel
from avatar_client.client import AvatarClient

from tests.conftest import ROOT, BridgeProcess, free_port, start_bridge, stop_bridge

pytestmark = pytest.mark.slow

LOAD_SECONDS = 30.0
RECOVERY_LIMIT = 2.0  # seconds from the error event to the first event of the same session on the other replica
SECRET = "failover-test-secret-0123456789abcdef"


@dataclass
class Replica:
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """`python -m avatar_server` on this replica's port (the same after a restart), until SERVING."""
        self.starts += 1
        env = {**os.environ, **self.env, "AVATAR_HOST": "127.0.0.1", "AVATAR_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start {self.starts} ---\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "avatar_server"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        with AvatarClient(self.address) as client:
            deadline = time.monotonic() + 600  # a busy machine warms the engines up slowly
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"avatar_server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
                with contextlib.suppress(grpc.RpcError):
                    if client.health(timeout=1.0) == "SERVING":
                        return
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise TimeoutError(f"avatar_server not SERVING:\n{self.log()[-3000:]}")
                time.sleep(0.1)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Cluster:
    replicas: list[Replica]
    bridge: BridgeProcess
    redis_url: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return "ipv4:" + ",".join(r.address for r in self.replicas)


def _redis_memory() -> Any:
    """A started tests.redis_server.RedisServer when Redis memory is available here, else None."""
    try:
        from avatar_server.memory import redis_store  # noqa: F401
        from avatar_server.settings import Settings
        from tests.redis_server import REDIS_SERVER, RedisServer
    except ImportError:
        return None
    if "memory_url" not in Settings.model_fields or not Path(REDIS_SERVER).exists():
        return None
    return RedisServer().start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("failover")
    redis = _redis_memory()
    env = {"AVATAR_SESSION_SECRET": SECRET, "AVATAR_GRACE_SECONDS": "10"}
    if redis is not None:
        env["AVATAR_MEMORY_URL"] = redis.url
    replicas = [Replica(free_port(), folder / f"replica-{n}.log", env) for n in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:  # the two load their models side by side
            list(pool.map(Replica.start, replicas))
        target = "ipv4:" + ",".join(r.address for r in replicas)
        bridge = start_bridge(folder, target)
        try:
            yield Cluster(replicas, bridge, None if redis is None else redis.url)
        finally:
            stop_bridge(bridge)
    finally:
        for r in replicas:
            r.stop()
        if redis is not None:
            redis.close()


def interact_form(text: str, session_id: str = "") -> dict[str, str]:
    return {"text": text, "session_id": session_id, "outputs": "audio"}  # no video: a cheap turn


@dataclass
class Load:
    """Three clients sending typed turns through the bridge, each carrying on its own session."""

    url: str
    results: list[tuple[float, float, int, str]] = field(default_factory=list)  # start, end, status, failure
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, n: int) -> None:
        session = ""
        with httpx.Client(base_url=self.url, timeout=120) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                started = time.monotonic()
                resp = http.post(
                    "/api/v1/avatar/interact", data=interact_form(f"Client {n}, question {i}: hi!", session)
                )
                failure = "" if resp.status_code == 200 else resp.text
                self.results.append((started, time.monotonic(), resp.status_code, failure))
                if resp.status_code == 200:
                    session = resp.json()["session_id"]


def replica_of_turn(cluster: Cluster, turn_id: str) -> Replica:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [r for r in cluster.replicas if f"turn {turn_id} " in r.log()]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no replica logged turn {turn_id}")


async def next_event(ws: Any, types: tuple[str, ...], within: float = 60) -> dict[str, Any]:
    """The next JSON event of one of `types` (binary audio and other events skipped)."""
    end = time.monotonic() + within
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
        if isinstance(message, str):
            event: dict[str, Any] = json.loads(message)
            if event["type"] in types:
                return event


def ws_url(cluster: Cluster) -> str:
    return cluster.bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse"


async def live_session_fails_over(cluster: Cluster, kill_at: float) -> dict[str, Any]:
    """Open a live session, kill its replica at `kill_at` (monotonic), reconnect as the widget does."""
    out: dict[str, Any] = {}
    async with websockets.connect(ws_url(cluster), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "outputs": ["audio"]}))
        await ws.send(json.dumps({"type": "text", "text": "My name is Ada. Please remember it."}))
        done = await next_event(ws, ("turn_completed", "error"))
        assert done["type"] == "turn_completed", done
        session_id = done["session_id"]
        victim = replica_of_turn(cluster, done["turn_id"])
        out.update(session_id=session_id, victim=victim)
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        assert victim.proc is not None
        victim.proc.kill()  # SIGKILL: no drain, no goodbye
        out["killed"] = time.monotonic()
        error = await next_event(ws, ("error",), within=10)
        out["error_after"] = time.monotonic() - out["killed"]
        out["error"] = error
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        out["close_code"] = closed.value.rcvd.code if closed.value.rcvd else None
    lost = time.monotonic()
    # The widget's first reconnect comes 0.25 s after the close, with the last session id it was sent.
    await asyncio.sleep(0.25)
    async with websockets.connect(ws_url(cluster), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "session_id": session_id, "outputs": ["audio"]}))
        await ws.send(json.dumps({"type": "text", "text": "What is my name?"}))
        first = await next_event(ws, ("transcript", "reply_text_delta", "audio_chunk", "turn_completed", "error"))
        out["recovered_after"] = time.monotonic() - lost
        out["back_after_kill"] = time.monotonic() - out["killed"]
        out["first"] = first
        done = await next_event(ws, ("turn_completed", "error")) if first["type"] != "turn_completed" else first
        out["done"] = done
    return out


def test_kill_9_under_load_fails_no_call_and_live_sessions_carry_on(cluster: Cluster) -> None:
    load = Load(cluster.bridge.url)
    threads = [threading.Thread(target=load.client, args=(n,), daemon=True) for n in range(3)]
    began = time.monotonic()
    for t in threads:
        t.start()
    try:
        live = asyncio.run(live_session_fails_over(cluster, kill_at=began + LOAD_SECONDS / 2))
        time.sleep(max(0.0, began + LOAD_SECONDS - time.monotonic()))
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=150)
    victim: Replica = live["victim"]
    survivor = next(r for r in cluster.replicas if r is not victim)
    killed = live["killed"]
    failed = [(round(t - began, 1), code, body[:200]) for t, _, code, body in load.results if code != 200]
    after_kill = [r for r in load.results if r[0] >= killed]
    in_flight = [r for r in load.results if r[0] < killed < r[1]]  # some on the killed replica, mid-turn
    print(
        f"\nfailover: {len(load.results)} calls in {time.monotonic() - began:.0f} s, {len(failed)} failed, "
        f"{len(in_flight)} in flight at the kill, {len(after_kill)} after it; "
        f"error event {live['error_after']:.2f} s after the kill; "
        f"live session back {live['recovered_after']:.2f} s after the close ({live['back_after_kill']:.2f} s after "
        f"the kill); redis={cluster.redis_url is not None}"
    )
    assert not failed, (failed, cluster.bridge.log()[-3000:])
    assert in_flight and len(after_kill) >= 3, "calls in flight at the kill, and the load going on after it"
    assert f"turn {live['done']['turn_id']} " in survivor.log()  # the session went on on the other replica
    # The live session on the killed replica: a clear error event, then a close that says "come back".
    error = live["error"]
    assert error["code"] == "UNAVAILABLE" and "unavailable" in error["message"].lower(), error
    assert "Traceback" not in error["message"] and error.get("error_id")
    assert live["close_code"] in (1012, 1013), live["close_code"]
    # ... and the same session goes on on the other replica, in time.
    assert live["first"]["type"] != "error" and live["done"]["type"] == "turn_completed", live["done"]
    assert live["done"]["session_id"] == live["session_id"]  # not a fresh session: the shared secret
    assert live["recovered_after"] <= RECOVERY_LIMIT, live["recovered_after"]
    if cluster.redis_url is not None:  # the session's memory moved with it
        import redis

        stored = redis.Redis.from_url(cluster.redis_url).get(f"avatar:mem:{live['session_id']}")
        assert stored is not None, "the session's memory is not in Redis"
        said = [user for user, _, _ in json.loads(stored)["turns"]]
        assert said[0].startswith("My name is Ada") and said[-1] == "What is my name?", said


def no_retry_channel(target: str) -> grpc.Channel:
    """The Python client's channel with retries off: a call picked onto a draining replica would fail."""
    options = [(k, 0 if k == "grpc.enable_retries" else v) for k, v in DEFAULT_OPTIONS]
    return make_channel(target, options=options)


def test_a_draining_replica_gets_no_new_calls(cluster: Cluster) -> None:
    for r in cluster.replicas:  # the killed one comes back on its port
        if not r.alive:
            r.start()
    draining, other = cluster.replicas
    if not other.alive:
        draining, other = other, draining
    cheap = pb.InteractRequest(text="Hi!", outputs=pb.OutputOptions(audio=False, video=False, animation=False))
    long_turn = pb.InteractRequest(
        text="Tell me, in four full sentences, how the first compilers changed programming.",
        outputs=pb.OutputOptions(audio=True, video=False, animation=False),
    )
    with (
        no_retry_channel(cluster.target) as probe_channel,
        grpc.insecure_channel(draining.address) as direct,
        ThreadPoolExecutor(8) as pool,
    ):
        probe = pb_grpc.AvatarServiceStub(probe_channel)
        probe.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=30)  # connected to both
        # Turns running on the replica to drain hold it alive, NOT_SERVING, while it finishes them.
        held = [pool.submit(pb_grpc.AvatarServiceStub(direct).Interact, long_turn, timeout=120) for _ in range(2)]
        time.sleep(0.5)
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)
        with AvatarClient(draining.address) as watch:
            deadline = time.monotonic() + 5
            while watch.health(timeout=2) != "NOT_SERVING":
                assert time.monotonic() < deadline, "the drained replica never said NOT_SERVING"
                time.sleep(0.02)
            time.sleep(0.3)  # the clients' health watches hear it
            probes = [pool.submit(probe.Interact, cheap, timeout=120) for _ in range(4)]
            through_bridge = [
                pool.submit(
                    httpx.post, f"{cluster.bridge.url}/api/v1/avatar/interact", data=interact_form("Hi!"), timeout=120
                )
                for _ in range(2)
            ]
            time.sleep(0.2)
            assert watch.health(timeout=2) == "NOT_SERVING"  # still there, draining, while the calls were placed
        results = [f.result() for f in probes]  # a call placed on the draining replica would raise UNAVAILABLE
        assert all(r.session_id for r in results)
        assert [f.result().status_code for f in through_bridge] == [200, 200]
        assert all(f.result().turn_id for f in held)  # the drain let its running turns finish
    assert draining.proc.wait(timeout=30) == 0
    assert other.alive
