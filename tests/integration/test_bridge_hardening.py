"""The bridge's hardening against real processes (bridge + avatar_server, loopback, no keys): malformed
WebSocket messages, media kept while it is read and 404 JSON once gone, an unreachable server's plain 503."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import BridgeProcess, ServerProcess, free_port, start_bridge, stop_bridge

pytestmark = pytest.mark.slow
ERROR_ID = re.compile(r"^[0-9a-f]{12}$")
DEEP = "[" * 5000 + "]" * 5000
CONFIG = '{"type": "config"}'


def ws_url(bridge: BridgeProcess) -> str:
    return bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse"


@pytest.fixture(scope="module")
def hardened(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """A bridge of this module's own: its log holds only what these tests did."""
    b = start_bridge(tmp_path_factory.mktemp("hardened"), server.target, {"AVATAR_MEDIA_RETENTION_SECONDS": "3"})
    yield b
    stop_bridge(b)


async def error_then_close(bridge: BridgeProcess, *messages: str | bytes) -> tuple[dict[str, Any], int, str]:
    """Send the messages; the bridge's answer must be one error event, then a close frame."""
    async with websockets.connect(ws_url(bridge), max_size=None) as ws:
        for message in messages:
            await ws.send(message)
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, "no close frame"
    return error, closed.value.rcvd.code, closed.value.rcvd.reason


MALFORMED = [
    pytest.param(['{"type":"config","sample_rate":1e400}'], "sample_rate must be a whole number", id="rate-1e400"),
    pytest.param(['{"type":"config","sample_rate":NaN}'], "not a JSON number", id="rate-nan"),
    pytest.param(['{"type":"config","sample_rate":Infinity}'], "not a JSON number", id="rate-inf"),
    pytest.param(['{"type":"config","sample_rate":-16000}'], "sample_rate must be", id="rate-negative"),
    pytest.param(['{"type":"config","sample_rate":' + "9" * 50 + "}"], "sample_rate must be", id="rate-huge"),
    pytest.param(['{"type":"config","sample_rate":true}'], "sample_rate must be", id="rate-bool"),
    pytest.param(['{"type":"config","sample_rate":"48000"}'], "sample_rate must be", id="rate-str"),
    pytest.param(['{"type":"config","outputs":[[1]]}'], "outputs must be a list", id="outputs-unhashable"),
    pytest.param([CONFIG, '{"type":"text","text":"\\ud800"}'], "not valid Unicode", id="text-lone-surrogate"),
    pytest.param([CONFIG, '{"type":"text","text":42}'], "text must be a string", id="text-not-a-string"),
    pytest.param([DEEP], "nested too deeply", id="deep-array-first"),
    pytest.param([CONFIG, DEEP], "nested too deeply", id="deep-array-later"),
    pytest.param(["42"], "JSON objects", id="json-number"),
    pytest.param(['["config"]'], "JSON objects", id="json-list"),
    pytest.param(['"config"'], "JSON objects", id="json-string"),
    pytest.param(["{not json"], "JSON objects", id="invalid-json"),
    pytest.param([b"\0\0\0\0"], "first message must be the JSON config", id="audio-before-config"),
    pytest.param([CONFIG, b"\0\0\0"], "even number of bytes", id="audio-odd-length"),
    pytest.param([CONFIG, b"\0" * 40_000], "at most 1 s of audio", id="audio-frame-too-big"),
    pytest.param([CONFIG, '{"type":"text","text":"' + "a" * 70_000 + '"}'], "at most 64 KiB", id="text-frame-big"),
    pytest.param(['{"type":"config","end_silence_ms":-5}'], "end_silence_ms must be", id="end-silence-negative"),
    pytest.param(['{"type":"config","end_silence_ms":99999}'], "end_silence_ms must be", id="end-silence-huge"),
    pytest.param(['{"type":"config","session_id":"' + "s" * 129 + '"}'], "longer than 128", id="session-id-long"),
    pytest.param(['{"type":"config","avatar_id":"' + "a" * 500 + '"}'], "longer than 128", id="avatar-id-long"),
    pytest.param(['{"type":"config","language":"' + "e" * 6000 + '"}'], "language must be", id="language-long"),
    pytest.param([CONFIG, '{"type":"config"}'], "only once", id="config-twice"),
]


@pytest.mark.parametrize(("messages", "detail"), MALFORMED)
async def test_each_malformed_message_gets_an_error_event_then_1008(
    hardened: BridgeProcess, messages: list[str | bytes], detail: str
) -> None:
    error, code, reason = await error_then_close(hardened, *messages)
    assert error["type"] == "error" and error["code"] == "INVALID_ARGUMENT", error
    assert detail in error["message"] and len(error["message"]) < 200
    assert ERROR_ID.match(error["error_id"]) and error["error_id"] in hardened.log()
    assert code == 1008 and reason


async def test_invalid_utf8_and_oversized_frames_are_closed_by_the_websocket_layer(hardened: BridgeProcess) -> None:
    """Below the app: invalid UTF-8 in a text frame → 1007, a message over ws_max_size (1 MiB) → 1009."""
    for payload, text, expected in (
        (b'{"type":"config","x":"\xff\xfe"}', True, 1007),
        (b"\0" * (2 << 20), False, 1009),
    ):
        async with websockets.connect(ws_url(hardened), max_size=None) as ws:
            await ws.send(payload, text=text)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == expected


async def test_the_bridge_logs_no_traceback_and_still_converses(hardened: BridgeProcess) -> None:
    """After all the malformed messages above (same bridge), a good session works and the log is clean."""
    async with websockets.connect(ws_url(hardened), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "outputs": ["audio"]}))
        await ws.send(json.dumps({"type": "text", "text": "Hello."}))
        kinds: list[str] = []
        while not kinds or kinds[-1] not in ("turn_completed", "error"):
            message = await asyncio.wait_for(ws.recv(), 90)
            if isinstance(message, str):
                kinds.append(json.loads(message)["type"])
    assert kinds[-1] == "turn_completed", kinds
    await asyncio.sleep(0.5)  # a late log line from a closing session would land now
    log = hardened.log()
    assert "Traceback" not in log and "aclose()" not in log, log[-3000:]


def test_media_read_keeps_it_past_its_creation_retention(hardened: BridgeProcess) -> None:
    """Retention 3 s from the last read: a video read every second outlives 3 s from its creation, then goes."""
    with httpx.Client(base_url=hardened.url, timeout=120) as http:
        body = http.post("/api/v1/avatar/interact", data={"text": "Hi", "outputs": "audio"}).json()
        url = body["audio_url"]
        created = time.monotonic()
        while time.monotonic() - created < 7:  # over twice the retention counted from creation
            part = http.get(url, headers={"Range": "bytes=0-99"})
            assert part.status_code == 206, (time.monotonic() - created, part.text)
            assert len(part.content) == 100
            time.sleep(1.0)
        last_read = time.monotonic()
        path = next((hardened.media_dir / "audio").glob(url.rsplit("/", 1)[1]))
        while path.exists():  # not read any more: deleted within the retention plus a purge interval
            assert time.monotonic() - last_read < 3 + 1 + 3, "media not read for its retention was kept"
            time.sleep(0.2)
        gone = http.get(url, headers={"Range": "bytes=0-99"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
    assert ERROR_ID.match(gone.json()["error"]["error_id"])


def test_deleted_media_is_404_json(hardened: BridgeProcess) -> None:
    with httpx.Client(base_url=hardened.url, timeout=120) as http:
        body = http.post("/api/v1/avatar/interact", data={"text": "Hi", "outputs": "audio,video"}).json()
        for url in (body["audio_url"], body["video_url"]):
            kind, name = url.split("/")[-2:]
            (hardened.media_dir / kind / name).unlink()
            for headers in ({}, {"Range": "bytes=10-20"}, {"Range": "bytes=-5"}):
                resp = http.get(url, headers=headers)
                assert resp.status_code == 404 and resp.headers["content-type"] == "application/json", resp.text
                assert resp.json()["error"]["code"] == "NOT_FOUND"


def test_unreachable_server_is_a_plain_503_with_an_error_id(tmp_path: Path) -> None:
    port = free_port()
    down = start_bridge(tmp_path, f"127.0.0.1:{port}", {"AVATAR_GRPC_TIMEOUT_SECONDS": "5"})
    try:
        answers = [
            httpx.post(f"{down.url}/api/v1/avatar/interact", data={"text": "hi"}, timeout=30),
            httpx.get(f"{down.url}/api/v1/avatars", timeout=30),
        ]
        for resp in answers:
            assert resp.status_code == 503, resp.text
            error = resp.json()["error"]
            assert error["code"] == "UNAVAILABLE"
            assert error["message"] == "The avatar service is unavailable; try again shortly."
            assert str(port) not in resp.text and "127.0.0.1" not in resp.text and "ipv4" not in resp.text
            # The details (gRPC core's text, with the address) are in the bridge's log, under the same id.
            line = next(x for x in down.log().splitlines() if error["error_id"] in x)
            assert str(port) in line or "failed to connect" in line, line

        async def converse() -> tuple[dict[str, Any], int, str]:
            return await error_then_close(down, CONFIG)

        event, code, _ = asyncio.run(converse())
        assert event["code"] == "UNAVAILABLE" and str(port) not in json.dumps(event)
        assert ERROR_ID.match(event["error_id"]) and code == 1012
        assert "Traceback" not in down.log()
    finally:
        stop_bridge(down)
