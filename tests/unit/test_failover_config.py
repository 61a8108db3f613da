"""The service config of the bridge's and the Python client's channels, checked against real gRPC servers.

Two in-process grpc.aio servers stand in for two avatar_server replicas (a health service and handlers that
count their calls): gRPC's client-side health checking must keep new calls off a NOT_SERVING or draining
replica, Interact must be tried again after UNAVAILABLE, and Converse (a stream) must not be.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from avatar_client.channel import DEFAULT_OPTIONS, SERVICE_CONFIG, make_aio_channel, make_channel
from avatar_client.client import AvatarClient
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rest_bridge import grpc_channel
from rest_bridge.settings import BridgeSettings

SERVICE = "avatar.v1.AvatarService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Replica:
    """A stand-in replica: `fail` makes its calls end UNAVAILABLE, as a draining avatar_server refuses them."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    address: str
    calls: dict[str, int] = field(default_factory=dict)
    fail: bool = False

    async def set(self, status: int) -> None:
        await self.health.set(SERVICE, status)
        await asyncio.sleep(0.3)  # the client's health watch sees it


async def start_replica() -> Replica:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    replica = Replica(server, servicer, f"127.0.0.1:{port}")

    def counted(method: str) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Any]:
        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            replica.calls[method] = replica.calls.get(method, 0) + 1
            if replica.fail:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
            return request

        return unary

    async def converse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        replica.calls["Converse"] = replica.calls.get("Converse", 0) + 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        yield b""  # pragma: no cover - a generator that never gets here

    handlers = {m: grpc.unary_unary_rpc_method_handler(counted(m)) for m in ("Interact", "GetCapabilities")}
    handlers["Converse"] = grpc.stream_stream_rpc_method_handler(converse)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    await servicer.set(SERVICE, SERVING)
    await server.start()
    return replica


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = await start_replica(), await start_replica()
    yield a, b
    await asyncio.gather(a.server.stop(None), b.server.stop(None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target(a: Replica, b: Replica) -> str:
    return f"ipv4:{a.address},{b.address}"


def bridge_channel(a: Replica, b: Replica) -> grpc.aio.Channel:
    settings = BridgeSettings(grpc_target=target(a, b))
    return grpc_channel.open_channel(settings, None)


async def interact(channel: grpc.aio.Channel, n: int, method: str = "Interact") -> None:
    call = channel.unary_unary(f"/{SERVICE}/{method}")
    for _ in range(n):
        assert await call(b"turn", timeout=5) == b"turn"


def test_the_bridge_and_the_client_use_one_service_config() -> None:
    for options in (grpc_channel.CHANNEL_OPTIONS, DEFAULT_OPTIONS):
        opts = dict(options)
        assert json.loads(opts["grpc.service_config"]) == SERVICE_CONFIG
        assert opts["grpc.enable_retries"] == 1
        assert opts["grpc.max_receive_message_length"] == 64 << 20  # the message sizes stay
    (method,) = SERVICE_CONFIG["methodConfig"]
    retried = {n["method"] for n in method["name"]}
    assert retried == {"Interact", "GetCapabilities", "GetAvatarFace"}  # not Converse: a stream
    policy = method["retryPolicy"]
    assert 3 <= policy["maxAttempts"] <= 5 and policy["retryableStatusCodes"] == ["UNAVAILABLE"]


async def test_calls_go_round_robin_and_skip_a_not_serving_replica(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    channel = bridge_channel(a, b)
    try:
        await interact(channel, 2)
        await asyncio.sleep(0.3)  # both connections up
        a.calls.clear()
        b.calls.clear()
        await interact(channel, 10)
        assert a.calls["Interact"] == b.calls["Interact"] == 5  # round robin
        await a.set(NOT_SERVING)
        await interact(channel, 10)
        assert (a.calls["Interact"], b.calls["Interact"]) == (5, 15)  # none to the NOT_SERVING one
        await a.set(SERVING)
        await interact(channel, 10)
        assert a.calls["Interact"] > 5  # back in the rotation
    finally:
        await channel.close()


async def test_a_draining_replica_gets_no_new_calls(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    channel = make_aio_channel(target(a, b))  # the Python client's asyncio channel
    try:
        await interact(channel, 4)
        before = a.calls["Interact"]
        await a.health.enter_graceful_shutdown()  # what avatar_server does on SIGTERM
        await asyncio.sleep(0.3)
        await interact(channel, 10)
        assert a.calls["Interact"] == before
    finally:
        await channel.close()


async def test_the_blocking_client_channel_skips_a_not_serving_replica(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    await a.set(NOT_SERVING)
    channel = make_channel(target(a, b))
    try:
        call = channel.unary_unary(f"/{SERVICE}/GetCapabilities")
        # blocking calls in a thread: this loop goes on serving both replicas
        await asyncio.to_thread(lambda: [call(b"caps", timeout=5) for _ in range(6)])
        assert a.calls.get("GetCapabilities", 0) == 0 and b.calls["GetCapabilities"] == 6
    finally:
        channel.close()


async def test_the_client_still_reads_a_not_serving_health(replicas: tuple[Replica, Replica]) -> None:
    a, _ = replicas
    await a.set(NOT_SERVING)  # e.g. loading its engines: `avatar health` and wait_until_serving must see it

    def ask() -> str:
        with AvatarClient(a.address) as client:
            return client.health(timeout=5)

    assert await asyncio.to_thread(ask) == "NOT_SERVING"


async def test_interact_refused_unavailable_is_tried_again_on_the_other_replica(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    a.fail = True  # refuses before answering, as a replica that has begun to drain (its health not yet seen)
    channel = bridge_channel(a, b)
    try:
        await interact(channel, 10)  # every call succeeds
        assert a.calls["Interact"] >= 1 and b.calls["Interact"] == 10
    finally:
        await channel.close()


async def test_converse_is_not_retried(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    channel = bridge_channel(a, b)
    try:
        call = channel.stream_stream(f"/{SERVICE}/Converse")(iter([b"config"]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert a.calls.get("Converse", 0) + b.calls.get("Converse", 0) == 1  # one attempt, the error surfaces
    finally:
        await channel.close()


async def test_the_plaintext_key_warning_looks_at_every_replica(caplog: pytest.LogCaptureFixture) -> None:
    loopback = BridgeSettings(grpc_target="ipv4:127.0.0.1:1,127.0.0.1:2", grpc_api_key="k")  # type: ignore[arg-type]
    remote = BridgeSettings(grpc_target="ipv4:127.0.0.1:1,10.0.0.2:2", grpc_api_key="k")  # type: ignore[arg-type]
    await grpc_channel.open_channel(loopback, None).close()
    assert "plaintext" not in caplog.text
    await grpc_channel.open_channel(remote, None).close()
    assert "10.0.0.2" in caplog.text


# A replica in its own process (so it can be killed): an Interact that takes 2 s and prints what it got.
_SLOW_REPLICA = """
import asyncio, sys, grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
async def main(port):
    server = grpc.aio.server()
    async def interact(request, context):
        print(request.decode(), flush=True)
        await asyncio.sleep(2.0)
        return request
    handler = grpc.method_handlers_generic_handler(
        "avatar.v1.AvatarService", {"Interact": grpc.unary_unary_rpc_method_handler(interact)})
    server.add_generic_rpc_handlers((handler,))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("avatar.v1.AvatarService", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1])))
"""


async def test_a_call_in_flight_on_a_killed_replica_is_answered_by_the_other() -> None:
    """SIGKILL mid-call: the client sees UNAVAILABLE before any response headers (a unary handler sends them
    with its answer), so the call is not committed and the retry policy runs it on the other replica."""
    ports = [free_port(), free_port()]
    out = asyncio.subprocess.PIPE
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _SLOW_REPLICA, str(p), stdout=out) for p in ports
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and (await proc.stdout.readline()).strip() == b"ready"
        channel = grpc.aio.insecure_channel(
            f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", grpc_channel.CHANNEL_OPTIONS
        )
        call = channel.unary_unary(f"/{SERVICE}/Interact")
        try:
            await channel.channel_ready()
            await asyncio.sleep(0.3)  # both replicas connected
            calls = asyncio.gather(*(call(f"c{i}".encode(), timeout=20) for i in range(4)))
            await asyncio.sleep(0.5)  # all four running, two on each replica
            procs[0].kill()
            assert sorted(await calls) == [b"c0", b"c1", b"c2", b"c3"]
        finally:
            await channel.close()
        procs[1].kill()
        got = [(await proc.communicate())[0].split() for proc in procs]
        assert got[0] and set(got[0]) <= set(got[1]), got  # what the killed one had was run again
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
