"""The WebSocket message checks (rest_bridge.ws_protocol) and its two queues (rest_bridge.ws_streams)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvicorn
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from rest_bridge.app import create_app
from rest_bridge.settings import BridgeSettings
from rest_bridge.ws_protocol import (
    MAX_TEXT_FRAME_BYTES,
    ProtocolError,
    audio_message,
    config_message,
    control_message,
    parse_text_frame,
)
from rest_bridge.ws_streams import Outbox, RequestStream


def config(**fields: Any) -> dict[str, Any]:
    return {"type": "config", **fields}


def test_a_good_config_becomes_a_converse_config() -> None:
    msg = config_message(
        parse_text_frame(
            json.dumps(
                config(
                    sample_rate=48000,
                    session_id="s" * 128,
                    avatar_id="grace",
                    language="pt-BR",
                    barge_in=True,
                    end_silence_ms=700,
                    outputs=["audio", "animation"],
                )
            )
        )
    )
    assert msg.input_format.sample_rate_hertz == 48000 and msg.session_id == "s" * 128
    assert (msg.language, msg.barge_in, msg.end_silence_ms) == ("pt-BR", True, 700)
    assert (msg.outputs.audio, msg.outputs.video, msg.outputs.animation) == (True, False, True)
    default = config_message({"type": "config", "session_id": None})
    assert default.input_format.sample_rate_hertz == 16000 and not default.HasField("outputs")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"config","sample_rate":1e400}', "sample_rate must be a whole number from 8000 to 192000"),
        ('{"type":"config","sample_rate":NaN}', "NaN is not a JSON number"),
        ('{"type":"config","sample_rate":Infinity}', "Infinity is not a JSON number"),
        ('{"type":"config","sample_rate":-Infinity}', "-Infinity is not a JSON number"),
        ('{"type":"config","sample_rate":-16000}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":0}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":7999}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":192001}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":1' + "0" * 400 + "}", "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":true}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":"16000"}', "sample_rate must be a whole number"),
        ('{"type":"config","sample_rate":16000.5}', "sample_rate must be a whole number"),
        ('{"type":"config","outputs":[[1]]}', "outputs must be a list of audio, video, animation"),
        ('{"type":"config","outputs":[{"a":1}]}', "outputs must be a list"),
        ('{"type":"config","outputs":"audio"}', "outputs must be a list"),
        ('{"type":"config","outputs":["smell"]}', "outputs must be a list"),
        ('{"type":"config","end_silence_ms":-1}', "end_silence_ms must be a whole number from 0 to 10000"),
        ('{"type":"config","end_silence_ms":10001}', "end_silence_ms must be a whole number"),
        ('{"type":"config","end_silence_ms":1e400}', "end_silence_ms must be a whole number"),
        ('{"type":"config","barge_in":"yes"}', "barge_in must be true or false"),
        ('{"type":"config","interim_results":1}', "interim_results must be true or false"),
        ('{"type":"config","session_id":"' + "x" * 129 + '"}', "session_id is longer than 128 characters"),
        ('{"type":"config","avatar_id":"' + "x" * 129 + '"}', "avatar_id is longer than 128 characters"),
        ('{"type":"config","voice":"' + "x" * 129 + '"}', "voice is longer than 128 characters"),
        ('{"type":"config","session_id":"\\ud800"}', "session_id is not valid Unicode"),
        ('{"type":"config","session_id":42}', "session_id must be a string"),
        ('{"type":"config","language":"' + "e" * 36 + '"}', "language must be a language tag"),
        ('{"type":"config","language":"en; DROP"}', "language must be a language tag"),
        ('{"type":"text","text":"hi"}', "first message must be the config"),
        ("[" * 100_000 + "]" * 100_000, "at most 64 KiB"),
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
        ("42", "JSON objects, not a JSON int"),
        ('"config"', "JSON objects, not a JSON str"),
        ('[{"type":"config"}]', "JSON objects, not a JSON list"),
        ("null", "JSON objects, not a JSON NoneType"),
        ("not json", "must be JSON objects"),
        ("", "must be JSON objects"),
        ('{"type":"config"', "must be JSON objects"),
    ],
)
def test_each_malformed_config_is_a_protocol_error(text: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        config_message(parse_text_frame(text))
    assert expected in str(refused.value)
    assert len(str(refused.value)) < 200  # a plain message, never the input echoed whole


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "text", "text": "\ud800"}, "text is not valid Unicode"),
        ({"type": "text", "text": 5}, "text must be a string"),
        ({"type": "text", "text": None}, "text must be a string"),
        ({"type": "text", "text": ["a"]}, "text must be a string"),
        ({"type": "text", "text": "a" * 2001}, "over 2000 characters"),
        ({"type": "config"}, "only once"),
        ({"type": "dance"}, "Unknown message type 'dance'"),
        ({"type": ["text"]}, "Unknown message type missing or not a string"),
        ({}, "Unknown message type missing"),
    ],
)
def test_each_malformed_control_message_is_a_protocol_error(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        control_message(data, max_text_chars=2000)
    assert expected in str(refused.value)


def test_good_control_messages() -> None:
    assert control_message({"type": "text", "text": "hello"}, 2000).text == "hello"
    assert control_message({"type": "end_of_utterance"}, 2000).HasField("end_of_utterance")
    assert control_message({"type": "interrupt"}, 2000).HasField("interrupt")


def test_the_text_frame_cap_counts_utf8_bytes() -> None:
    fits = '{"type":"text","text":"' + "a" * (MAX_TEXT_FRAME_BYTES - 30) + '"}'
    assert parse_text_frame(fits)["type"] == "text"
    wide = '{"type":"text","text":"' + "я" * (MAX_TEXT_FRAME_BYTES // 2) + '"}'  # 2 bytes each in UTF-8
    with pytest.raises(ProtocolError, match="at most 64 KiB"):
        parse_text_frame(wide)


@pytest.mark.parametrize(
    ("frame", "rate", "expected"),
    [
        (b"\0\0", None, "first message must be the JSON config"),
        (b"\0\0\0", 16000, "even number of bytes"),
        (b"\0" * 32002, 16000, "at most 1 s of audio (32000 bytes at 16000 Hz)"),
        (b"\0" * 384_002, 192000, "at most 1 s of audio"),
    ],
)
def test_bad_audio_frames(frame: bytes, rate: int | None, expected: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        audio_message(frame, rate)
    assert expected in str(refused.value)


def test_good_audio_frames() -> None:
    request = audio_message(b"\1\0" * 16000, 16000)
    assert request is not None and request.audio == b"\1\0" * 16000
    assert audio_message(b"", 16000) is None  # nothing to send


async def test_request_stream_ends_when_finished_even_while_read_and_full() -> None:
    stream = RequestStream(max_items=2)
    await stream.put(pb.ConverseRequest(text="a"))
    got = [m.text async for m in _take(stream, 1)]
    assert got == ["a"]

    async def read_all() -> list[pb.ConverseRequest]:
        return [m async for m in stream]

    reading = asyncio.create_task(read_all())
    await asyncio.sleep(0.01)  # the reader waits inside __anext__
    stream.finish()
    assert await asyncio.wait_for(reading, 1) == []
    full = RequestStream(max_items=1)
    await full.put(pb.ConverseRequest(text="queued"))
    full.finish()  # a full queue does not keep the end marker out
    assert [m async for m in full] == []
    await full.put(pb.ConverseRequest(text="late"))  # ignored, does not block
    assert [m async for m in full] == []


async def _take(stream: RequestStream, n: int) -> Any:
    for _ in range(n):
        yield await anext(stream)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_outbox_is_bounded_in_bytes_and_sends_in_order_then_closes() -> None:
    outbox = Outbox(max_bytes=100)
    assert outbox.put("e" * 40, b"a" * 40)
    assert not outbox.put("x" * 30)  # 80 + 30 > 100: refused whole
    assert outbox.queued_bytes == 80
    assert outbox.put("x" * 10, force=True) and outbox.put("y" * 20, force=True)  # a last error event goes anyway
    outbox.close(1008, "r" * 200)
    ws = FakeSocket()
    await asyncio.wait_for(outbox.run(ws), 1)  # type: ignore[arg-type]
    assert ws.sent == ["e" * 40, b"a" * 40, "x" * 10, "y" * 20]
    assert outbox.queued_bytes == 0
    assert ws.closed is not None and ws.closed[0] == 1008 and len(ws.closed[1].encode()) <= 123


async def test_a_browser_that_reads_nothing_is_closed_not_buffered(tmp_path: Path) -> None:
    """The real bridge (uvicorn, in this loop) before a fake server that streams audio as fast as it can; the
    client's socket has a small receive buffer and is not read: the bridge ends the call and closes with 1008."""
    sent, cancelled = 0, asyncio.Event()
    chunk = b"\0" * 32768

    class Flood(pb_grpc.AvatarServiceServicer):  # type: ignore[misc]
        async def Converse(self, requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            nonlocal sent
            await anext(aiter(requests))  # the config
            try:
                for _ in range(4000):  # 128 MiB if nothing stops it
                    sent += 1
                    yield pb.ConverseResponse(audio_chunk=pb.AudioChunk(pcm=chunk, sample_rate_hertz=16000))
            finally:  # cancelled or closed by grpc: the bridge ended the call
                cancelled.set()

    server = grpc.aio.server()
    pb_grpc.add_AvatarServiceServicer_to_server(Flood(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = BridgeSettings(
        grpc_target=f"127.0.0.1:{grpc_port}",
        media_dir=tmp_path / "media",
        widget_dir=tmp_path / "none",
        ws_outbox_bytes=512 * 1024,
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    bridge = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=2))
    serving = asyncio.create_task(bridge.serve(sockets=[listener]))
    while not bridge.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.01)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # fixed and small: no autotuning
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, listener.getsockname())
    # A raw WebSocket client: a library would read in the background; this one reads nothing until told.
    reader, writer = await asyncio.open_connection(sock=client)
    try:
        try:
            writer.write(
                b"GET /api/v1/avatar/converse HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
            writer.write(masked_text_frame(json.dumps({"type": "config"}).encode()))
            await asyncio.wait_for(cancelled.wait(), 30)  # the bridge gave up on this browser and ended the call
            assert sent < 4000
            received = b""
            while close_code(received) is None:  # now read what was on its way, then the close
                chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
                assert chunk, "the connection ended without a close frame"
                received += chunk
            assert close_code(received) == 1008
        finally:
            writer.close()
    finally:
        bridge.should_exit = True
        await serving
        listener.close()
        await server.stop(None)


def masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code(stream: bytes) -> int | None:
    """The code of the close frame among the server's (unmasked) frames, or None."""
    i = 0
    while i + 2 <= len(stream):
        opcode, length = stream[i] & 0x0F, stream[i + 1] & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(stream[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(stream[i : i + 8], "big"), i + 8
        if opcode == 0x8:
            return int.from_bytes(stream[i : i + 2], "big")
        i += length
    return None


def test_uvicorns_invalid_utf8_error_becomes_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    from rest_bridge.log_filters import ClientFaultFilter

    logger = logging.getLogger("test.uvicorn.error")
    logger.addFilter(ClientFaultFilter())
    with caplog.at_level(logging.INFO, logger.name):
        try:
            b"\xff".decode()
        except UnicodeDecodeError:
            logger.exception("Invalid UTF-8 sequence received from client.")
        logger.error("something else")
    first, other = caplog.records
    assert (first.levelname, first.exc_info) == ("INFO", None) and "1007" in first.getMessage()
    assert "Traceback" not in caplog.text and other.levelname == "ERROR"
