"""The bridge's edges against a fake gRPC AvatarService: refusals → HTTP statuses, a client that leaves
mid-Interact, WebSocket close codes. The bridge is the real app under real uvicorn on a loopback port."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rest_bridge.app import create_app
from rest_bridge.errors import from_grpc
from rest_bridge.routes.interact import unless_client_leaves
from rest_bridge.settings import ROOT, BridgeSettings

INTERACT = "/api/v1/avatar/interact"
CONVERSE = "/api/v1/avatar/converse"
SHUTDOWN_MESSAGE = "The server is shutting down; reconnect shortly."

InteractHandler = Callable[[pb.InteractRequest, grpc.aio.ServicerContext], Awaitable[pb.InteractResponse]]
ConverseHandler = Callable[
    [AsyncIterator[pb.ConverseRequest], grpc.aio.ServicerContext], AsyncIterator[pb.ConverseResponse]
]


class FakeAvatar(pb_grpc.AvatarServiceServicer):  # type: ignore[misc]
    """Each test says what Interact and Converse do."""

    def __init__(self) -> None:
        self.interact: InteractHandler | None = None
        self.converse: ConverseHandler | None = None

    async def Interact(self, request: pb.InteractRequest, context: grpc.aio.ServicerContext) -> pb.InteractResponse:
        assert self.interact is not None
        return await self.interact(request, context)

    async def Converse(
        self, requests: AsyncIterator[pb.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConverseResponse]:
        assert self.converse is not None
        async for event in self.converse(requests, context):
            yield event


@dataclass
class Stack:
    fake: FakeAvatar
    port: int
    media: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The fake gRPC server and the bridge in front of it, both on this test's event loop."""
    fake = FakeAvatar()
    server = grpc.aio.server()
    pb_grpc.add_AvatarServiceServicer_to_server(fake, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = BridgeSettings(
        grpc_target=f"127.0.0.1:{grpc_port}",
        grpc_timeout_seconds=10.0,
        media_dir=tmp_path / "media",
        widget_dir=tmp_path / "no-widget",
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    bridge = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    serving = asyncio.create_task(bridge.serve(sockets=[sock]))
    while not bridge.started:
        assert not serving.done(), "uvicorn stopped while starting"
        await asyncio.sleep(0.01)
    try:
        yield Stack(fake, sock.getsockname()[1], settings.media_dir)
    finally:
        bridge.should_exit = True
        await serving
        sock.close()
        await server.stop(None)


def media_files(stack: Stack) -> list[Path]:
    return [p for p in stack.media.rglob("*") if p.is_file()]


def refusing(code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()) -> InteractHandler:
    async def handler(request: pb.InteractRequest, context: grpc.aio.ServicerContext) -> pb.InteractResponse:
        await context.abort(code, details, trailing_metadata=trailing)
        raise AssertionError("abort returned")

    return handler


def answer(text: str = "hello") -> pb.InteractResponse:
    return pb.InteractResponse(
        transcription=text,
        reply_text="Hi there.",
        session_id="s1",
        turn_id="t1",
        audio=pb.Media(data=b"RIFF....WAVEfake", duration_seconds=0.5),
    )


async def post_text(stack: Stack) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.http, timeout=10.0) as client:
        return await client.post(INTERACT, data={"text": "hello"})


# --- Interact: gRPC status → HTTP status ------------------------------------------------------------


def without_id(error: dict[str, object]) -> dict[str, object]:
    """The error body less its correlation id, which must be there: 12 hex digits, logged with the details."""
    error = dict(error)
    assert re.fullmatch(r"[0-9a-f]{12}", str(error.pop("error_id")))
    return error


async def test_load_refusal_is_429_with_retry_after(stack: Stack) -> None:
    stack.fake.interact = refusing(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many turns in flight.", (("retry-after-ms", "1500"),)
    )
    resp = await post_text(stack)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"  # 1.5 s rounded up to whole seconds
    assert without_id(resp.json()["error"]) == {
        "code": "RESOURCE_EXHAUSTED",
        "message": "Too many turns in flight.",
        "retry_after_ms": 1500,
    }


@pytest.mark.parametrize(("ms", "header"), [("0", "1"), ("1", "1"), ("1000", "1"), ("1001", "2"), ("30000", "30")])
def test_retry_after_rounds_up_to_at_least_one_second(ms: str, header: str) -> None:
    trailing = grpc.aio.Metadata(("retry-after-ms", ms))
    exc = grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), trailing, "busy")
    error = from_grpc(exc)
    assert (error.status, error.headers, error.retry_after_ms) == (429, {"Retry-After": header}, int(ms))


async def test_size_refusal_is_413_without_retry_after(stack: Stack) -> None:
    stack.fake.interact = refusing(grpc.StatusCode.RESOURCE_EXHAUSTED, "The audio is over 60 s.")
    resp = await post_text(stack)
    assert resp.status_code == 413
    assert "Retry-After" not in resp.headers
    assert without_id(resp.json()["error"]) == {"code": "PAYLOAD_TOO_LARGE", "message": "The audio is over 60 s."}


async def test_stage_timeout_is_504(stack: Stack) -> None:
    stack.fake.interact = refusing(grpc.StatusCode.DEADLINE_EXCEEDED, "The language model timed out after 30 s.")
    resp = await post_text(stack)
    assert resp.status_code == 504
    assert without_id(resp.json()["error"]) == {
        "code": "DEADLINE_EXCEEDED",
        "message": "The language model timed out after 30 s.",
    }


# --- Interact: the client leaves ---------------------------------------------------------------------


async def test_normal_interact_still_answers_and_stores_media(stack: Stack) -> None:
    async def ok(request: pb.InteractRequest, context: grpc.aio.ServicerContext) -> pb.InteractResponse:
        return answer(request.text)

    stack.fake.interact = ok
    resp = await post_text(stack)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["transcription"] == "hello" and body["audio_url"].startswith("/static/audio/")
    assert len(media_files(stack)) == 1


async def test_client_leaving_mid_interact_cancels_the_call_and_stores_nothing(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    started, cancelled = asyncio.Event(), asyncio.Event()
    cancelled_at = 0.0
    answer_after = 1.2  # seconds; if the bridge never cancels, the answer (with audio) comes then

    async def slow(request: pb.InteractRequest, context: grpc.aio.ServicerContext) -> pb.InteractResponse:
        nonlocal cancelled_at
        started.set()
        try:
            await asyncio.sleep(answer_after)
        except asyncio.CancelledError:  # grpc.aio cancels the handler when the client cancels the RPC
            cancelled_at = loop.time()
            cancelled.set()
            raise
        return answer()

    stack.fake.interact = slow
    boundary = "edgeboundary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nhello\r\n--{boundary}--\r\n'.encode()
    head = (
        f"POST {INTERACT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    # A raw socket, because an HTTP client library cannot be made to hang up in the middle of a request.
    _reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(head + body)
    await writer.drain()
    await asyncio.wait_for(started.wait(), 5.0)
    writer.close()
    left_at = loop.time()
    await writer.wait_closed()
    await asyncio.wait_for(cancelled.wait(), 1.0)
    assert cancelled_at - left_at < 1.0
    # Past the moment the fake would have answered: had the bridge gone on, its media would be on disk now.
    await asyncio.sleep(max(0.0, left_at + answer_after + 0.3 - loop.time()))
    assert media_files(stack) == []


async def test_disconnect_watcher_does_not_outlive_a_finished_call() -> None:
    receive_cancelled = asyncio.Event()

    async def receive_never() -> dict[str, Any]:  # a client that stays connected
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            receive_cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await unless_client_leaves(receive_never, work()) == "answer"
    assert receive_cancelled.is_set()  # cancelled before unless_client_leaves returned, not later


# --- Converse: close codes -------------------------------------------------------------------------


async def converse_until_closed(stack: Stack) -> tuple[list[dict[str, Any]], int | None, str]:
    """Open the WebSocket, send the config, collect the JSON events until the bridge closes it."""
    events: list[dict[str, Any]] = []
    async with connect(f"ws://127.0.0.1:{stack.port}{CONVERSE}", open_timeout=5) as ws:
        try:
            await ws.send(json.dumps({"type": "config", "sample_rate": 16000}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 5.0)
                if isinstance(message, str):
                    events.append(json.loads(message))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the bridge did not send a close frame"
            await no_task_left("_consume_request_iterator")  # grpc's sender of the bridge's requests
            return events, closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


async def no_task_left(coro_name: str) -> None:
    """The bridge shares this event loop: its tasks of that name end within a second (none leaks)."""
    for _ in range(100):
        alive = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == coro_name]
        if not alive:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still running: {alive}")


def event(**fields: Any) -> pb.ConverseResponse:
    return pb.ConverseResponse(turn_id="t1", session_id="s1", **fields)


async def test_converse_load_refusal_closes_1013_with_retry_hint(stack: Stack) -> None:
    async def refuse(
        requests: AsyncIterator[pb.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConverseResponse]:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Too many live sessions.",
            trailing_metadata=(("retry-after-ms", "2500"),),
        )
        yield event()  # never reached; makes this an async generator

    stack.fake.converse = refuse
    events, code, reason = await converse_until_closed(stack)
    assert [without_id(e) for e in events] == [
        {
            "type": "error",
            "code": "RESOURCE_EXHAUSTED",
            "message": "Too many live sessions.",
            "retry_after_ms": 2500,
            "turn_id": "",
        }
    ]
    assert code == 1013 and reason


async def test_converse_size_refusal_keeps_1011(stack: Stack) -> None:
    async def too_big(
        requests: AsyncIterator[pb.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConverseResponse]:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "The utterance is over 60 s.")
        yield event()

    stack.fake.converse = too_big
    events, code, _ = await converse_until_closed(stack)
    assert [(e["code"], "retry_after_ms" in e) for e in events] == [("RESOURCE_EXHAUSTED", False)]
    assert code == 1011


@pytest.mark.parametrize("ending", ["event then end", "event then UNAVAILABLE", "UNAVAILABLE only"])
async def test_converse_server_shutdown_closes_1012(stack: Stack, ending: str) -> None:
    async def draining(
        requests: AsyncIterator[pb.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConverseResponse]:
        await anext(aiter(requests))  # the config
        yield event(reply_text_delta=pb.ReplyTextDelta(text="Hel"))
        if ending != "UNAVAILABLE only":
            yield event(error=pb.ErrorEvent(code="UNAVAILABLE", message=SHUTDOWN_MESSAGE))
        if ending != "event then end":
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)

    stack.fake.converse = draining
    events, code, reason = await converse_until_closed(stack)
    assert [e["type"] for e in events] == ["reply_text_delta", "error"]  # one error event, never two
    # The server's own shutdown event is passed on; a bare UNAVAILABLE status could as well come from gRPC core
    # (addresses in its text), so the bridge words that one itself. The close code says "come back" either way.
    expected = (
        SHUTDOWN_MESSAGE if ending != "UNAVAILABLE only" else "The avatar service is unavailable; try again shortly."
    )
    assert (events[1]["code"], events[1]["message"]) == ("UNAVAILABLE", expected)
    assert code == 1012 and reason


# --- Structure ---------------------------------------------------------------------------------------


def test_only_main_imports_the_app() -> None:
    """deps ↔ app was an import cycle; the app imports the routes, so nothing but __main__ may import it."""
    offenders = []
    for path in sorted((ROOT / "rest_bridge").rglob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING blocks included
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if "rest_bridge.app" in names:
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []
