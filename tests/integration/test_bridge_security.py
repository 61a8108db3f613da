"""The bridge's keys, WebSocket tickets, Origin allowlist, CORS and headers against a real keyed avatar_server.

One server (AVATAR_API_KEYS set) and two bridges in front of it: one holding the server's key, one without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from tests.conftest import ROOT, BridgeProcess, ServerProcess, start_bridge, start_server, stop_bridge, stop_server

pytestmark = pytest.mark.slow

SERVER_KEY = "srv-7d41c0a9e2b54f1f9c3e"  # the bridge's key for avatar_server
USER_KEY = "usr-52b8e61f0d9a4c77a0b1"  # what callers of the bridge present
SHOP = "https://shop.example"
EVIL = "https://evil.example"
TICKET_SECONDS = 2.0
INTERACT = "/api/v1/avatar/interact"
TICKET = "/api/v1/avatar/converse/ticket"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("keyed-server") / "server.log"
    srv = start_server(log, {"AVATAR_API_KEYS": SERVER_KEY}, timeout=600)  # a busy machine warms up slowly
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def guarded(keyed_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    env = {
        "AVATAR_API_KEYS": f"another-key,{USER_KEY}",
        "AVATAR_GRPC_API_KEY": SERVER_KEY,
        "AVATAR_ALLOWED_ORIGINS": SHOP,
        "AVATAR_WS_TICKET_SECONDS": str(TICKET_SECONDS),
    }
    bridge = start_bridge(tmp_path_factory.mktemp("guarded-bridge"), keyed_server.target, env)
    yield bridge
    stop_bridge(bridge)


@pytest.fixture(scope="module")
def keyless(keyed_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """A bridge the operator forgot to give the server's key (its own users need none: loopback)."""
    env = {"AVATAR_API_KEYS": "", "AVATAR_GRPC_API_KEY": ""}
    bridge = start_bridge(tmp_path_factory.mktemp("keyless-bridge"), keyed_server.target, env)
    yield bridge
    stop_bridge(bridge)


@pytest.fixture(scope="module")
def http(guarded: BridgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=120) as client:
        yield client


def auth(key: str = USER_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_headers(resp: httpx.Response) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff", resp.headers
    assert resp.headers["referrer-policy"] == "no-referrer", resp.headers
    assert f"frame-ancestors 'self' {SHOP}" in resp.headers["content-security-policy"], resp.headers


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code, error
    return error


def test_rest_needs_the_key_and_serves_with_it(http: httpx.Client) -> None:
    for headers in ({}, auth("wrong-key"), {"Authorization": USER_KEY}, auth(SERVER_KEY)):
        resp = http.post(INTERACT, data={"text": "Hello"}, headers=headers)
        assert_error(resp, 401, "UNAUTHENTICATED")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert_headers(resp)
    assert_error(http.get("/api/v1/avatars"), 401, "UNAUTHENTICATED")
    assert http.get("/api/v1/avatars", headers=auth("another-key")).status_code == 200

    resp = http.post(INTERACT, data={"text": "Hello there", "outputs": "audio"}, headers=auth())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["transcription"] == "Hello there" and body["reply_text"]
    assert_headers(resp)
    # Media URLs are unguessable capabilities fetched by <audio>/<video>, which cannot send headers: open.
    audio = http.get(body["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert_headers(audio)
    assert audio.headers["content-security-policy"].startswith("default-src 'none'")


def test_health_and_page_are_open(http: httpx.Client) -> None:
    health = http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "SERVING"}  # no backend address
    assert_headers(health)
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_headers(page)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' blob:" in csp and "media-src 'self' blob:" in csp and "'unsafe-inline'" not in csp


def ws_url(bridge: BridgeProcess, ticket: str | None = None) -> str:
    url = bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse"
    return url if ticket is None else f"{url}?ticket={ticket}"


def refused(url: str, **kwargs: Any) -> int:
    """The HTTP status a refused WebSocket upgrade got."""
    with pytest.raises(InvalidStatus) as caught, connect(url, open_timeout=10, **kwargs):
        pass
    return caught.value.response.status_code


def ticket(http: httpx.Client, **headers: str) -> str:
    resp = http.post(TICKET, headers={**auth(), **headers})
    assert resp.status_code == 200, resp.text
    assert resp.json()["expires_in"] >= 1 and resp.headers["cache-control"] == "no-store"
    value: str = resp.json()["ticket"]
    return value


def typed_turn(ws: Connection, text: str) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "config", "sample_rate": 16000, "outputs": ["audio"]}))
    ws.send(json.dumps({"type": "text", "text": text}))
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            events.append(json.loads(message))
            if events[-1]["type"] in ("turn_completed", "error"):
                return events
    raise AssertionError(f"no turn_completed: {events}")


def test_websocket_needs_a_fresh_ticket(http: httpx.Client, guarded: BridgeProcess) -> None:
    assert refused(ws_url(guarded)) == 401
    assert refused(ws_url(guarded, "forged-ticket")) == 401
    assert_error(http.post(TICKET), 401, "UNAUTHENTICATED")  # a ticket needs the key

    first = ticket(http)
    with connect(ws_url(guarded, first), open_timeout=10, max_size=None) as ws:
        events = typed_turn(ws, "Hello")
    assert events[-1]["type"] == "turn_completed", events
    assert events[-1]["transcription"] == "Hello" and events[-1]["reply_text"]
    assert refused(ws_url(guarded, first)) == 401  # single use

    stale = ticket(http)
    time.sleep(TICKET_SECONDS + 0.5)
    assert refused(ws_url(guarded, stale)) == 401
    # Clients that can set headers may present the key itself on the upgrade.
    with connect(ws_url(guarded), open_timeout=10, additional_headers=auth()) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": 16000}))
    assert refused(ws_url(guarded), additional_headers=auth("wrong-key")) == 401


def test_foreign_origin_refused_listed_origin_served_with_cors(http: httpx.Client, guarded: BridgeProcess) -> None:
    assert refused(ws_url(guarded, ticket(http)), origin=EVIL) == 403
    assert_error(http.post(INTERACT, data={"text": "Hi"}, headers={**auth(), "Origin": EVIL}), 403, "FORBIDDEN")
    assert_error(http.post(TICKET, headers={**auth(), "Origin": EVIL}), 403, "FORBIDDEN")
    assert_error(http.post(INTERACT, data={"text": "Hi"}, headers={"Origin": EVIL}), 403, "FORBIDDEN")

    preflight = http.options(
        INTERACT,
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    bad_preflight = http.options(INTERACT, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in bad_preflight.headers

    resp = http.post(INTERACT, data={"text": "Hi", "outputs": "audio"}, headers={**auth(), "Origin": SHOP})
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == SHOP
    # The bridge's own page is same-origin; a listed origin's page opens the socket too.
    assert ticket(http, Origin=guarded.url)
    with connect(ws_url(guarded, ticket(http, Origin=SHOP)), open_timeout=10, origin=SHOP) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "config", "sample_rate": 16000}))


def test_bridge_without_the_servers_key_says_so(keyless: BridgeProcess) -> None:
    with httpx.Client(base_url=keyless.url, timeout=60) as client:
        error = assert_error(client.post(INTERACT, data={"text": "Hello"}), 502, "BAD_GATEWAY")
        assert "not authorized by the avatar service" in error["message"]
        assert client.get("/healthz").json() == {"status": "SERVING"}  # health stays open on the server
    assert "Traceback" not in keyless.log()


def test_bridge_refuses_a_public_address_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    out = subprocess.run(
        [sys.executable, "-m", "rest_bridge", "--host", "0.0.0.0", "--port", "9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "AVATAR_API_KEYS" in lines[0] and "AVATAR_ALLOW_INSECURE" in lines[0], out.stderr


def test_keys_never_reach_the_logs(
    http: httpx.Client, guarded: BridgeProcess, keyless: BridgeProcess, keyed_server: ServerProcess
) -> None:
    http.post(INTERACT, data={"text": "x"}, headers=auth("wrong-key"))  # failures are logged too
    logs = {"guarded": guarded.log(), "keyless": keyless.log(), "server": keyed_server.log()}
    assert "POST /api/v1/avatar/interact" in logs["guarded"]  # the access log is captured
    for name, text in logs.items():
        for key in (SERVER_KEY, USER_KEY, "wrong-key"):
            assert key not in text, f"{key} in the {name} log"
        assert "Traceback" not in text, name
