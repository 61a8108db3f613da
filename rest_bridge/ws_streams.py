"""The two queues of a WebSocket session: browser → gRPC requests, and gRPC events → browser frames.

RequestStream is a plain async iterator, not an async generator: grpc.aio's task iterates it while the route
ends the session, and an async generator finalised then logs "aclose(): asynchronous generator is already
running". Outbox bounds in bytes what waits for a browser that reads slowly or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from avatar.v1 import avatar_pb2 as pb
from starlette.websockets import WebSocket

CLOSE_WAIT_SECONDS = 30.0


class RequestStream:
    """What the browser sent, for grpc.aio to read; finish() ends the iteration whatever is queued."""

    def __init__(self, max_items: int = 256) -> None:
        self._queue: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue(maxsize=max_items)
        self._finished = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> pb.ConverseRequest:
        if self._finished:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None or self._finished:
            raise StopAsyncIteration
        return message

    async def put(self, message: pb.ConverseRequest) -> None:
        if not self._finished:
            await self._queue.put(message)

    def finish(self) -> None:
        """End the stream now: queued requests are dropped (the session is over), a waiting reader wakes."""
        self._finished = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Outbox:
    """Frames for the browser, sent in order by one task (run), at most `max_bytes` of them waiting."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self._queue: asyncio.Queue[str | bytes | _Close] = asyncio.Queue()

    def put(self, *frames: str | bytes, force: bool = False) -> bool:
        """Queue the frames together, or none and False when that would pass the byte bound (unless forced:
        a last error event)."""
        size = sum(len(f) for f in frames)
        if not force and self.queued_bytes + size > self.max_bytes:
            return False
        for frame in frames:
            self._queue.put_nowait(frame)
        self.queued_bytes += size
        return True

    def close(self, code: int, reason: str) -> None:
        """After what is queued, close the socket with this code."""
        self._queue.put_nowait(_Close(code, reason))

    async def run(self, ws: WebSocket) -> None:
        """Send until a close; returns after the close frame went out (or could not)."""
        while True:
            frame = await self._queue.get()
            if isinstance(frame, _Close):
                await close_socket(ws, frame.code, frame.reason)
                return
            self.queued_bytes -= len(frame)
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_text(frame)


async def close_socket(ws: WebSocket, code: int, reason: str) -> None:
    """Send the close frame, waiting at most CLOSE_WAIT_SECONDS for a browser that reads nothing to make room for it
    (the server holds sends until the socket is writable); past that, the connection is simply dropped."""
    # A close reason may hold at most 123 bytes of UTF-8; a longer one would make the close itself fail.
    reason = reason.encode()[:123].decode(errors="ignore")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_WAIT_SECONDS):
            await ws.close(code=code, reason=reason)
