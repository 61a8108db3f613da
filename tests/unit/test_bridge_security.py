"""The bridge's access rules as logic, and wired into the app (in process; no avatar_server is called)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.testclient import WebSocketDenialResponse

from rest_bridge.app import create_app
from rest_bridge.guard import SecurityHeaders
from rest_bridge.security import (
    KeySet,
    OriginPolicy,
    SecurityConfigError,
    TicketBook,
    bearer_token,
    check_exposure,
    is_loopback,
    normalize_origin,
)
from rest_bridge.settings import BridgeSettings

KEY = "k-3f9a2c7e-unit"
CONVERSE = "/api/v1/avatar/converse"
TICKET = "/api/v1/avatar/converse/ticket"


def test_keys_plain_and_hashed_are_accepted_and_nothing_else() -> None:
    hashed = "sha256:" + hashlib.sha256(b"second").hexdigest().upper()
    keys = KeySet.parse(f" {KEY} , {hashed} ,")
    assert keys.enabled and len(keys.digests) == 2
    assert keys.accepts(KEY) and keys.accepts("second")
    for wrong in ("", None, KEY + "x", KEY[:-1], hashed, "sha256:" + hashlib.sha256(b"second").hexdigest()):
        assert not keys.accepts(wrong), wrong
    assert not KeySet.parse("").enabled and not KeySet.parse(" , ").accepts("")


def test_a_malformed_hash_is_refused_without_showing_the_keys() -> None:
    with pytest.raises(SecurityConfigError) as caught:
        KeySet.parse(f"{KEY},sha256:abc123")
    assert "entry 2" in str(caught.value) and "64 hex" in str(caught.value)
    assert KEY not in str(caught.value) and "abc123" not in str(caught.value)


def test_settings_keep_keys_secret() -> None:
    settings = BridgeSettings(api_keys=SecretStr(KEY), grpc_api_key=SecretStr("g-" + KEY))
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None), (None, None)],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_tickets_are_single_use_and_expire() -> None:
    now = [100.0]
    book = TicketBook(ttl=30.0, clock=lambda: now[0])
    first, second, third = book.issue(), book.issue(), book.issue()
    assert len({first, second, third}) == 3 and len(first) >= 40
    assert book.redeem(first)
    assert not book.redeem(first)  # spent
    now[0] += 29.9
    assert book.redeem(second)
    now[0] += 0.2
    assert not book.redeem(third)  # expired
    assert not book.redeem("forged") and not book.redeem("") and not book.redeem(None)
    book.issue()  # issuing purges expired ones
    assert len(book._expiry) == 1


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://App.Example.org", "https://app.example.org"),
        ("https://app.example.org:443/", "https://app.example.org"),
        ("http://localhost:5173", "http://localhost:5173"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("https://app.example.org/page", None),
        ("ftp://app.example.org", None),
        ("https://user@app.example.org", None),
        ("https://app.example.org:99999", None),
    ],
)
def test_normalize_origin(raw: str, origin: str | None) -> None:
    assert normalize_origin(raw) == origin


def test_origin_policy_same_origin_by_host_and_the_list() -> None:
    same_only = OriginPolicy.parse("")
    assert same_only.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_only.allows("https://avatar.example.org", "avatar.example.org")  # TLS proxy in front
    assert same_only.allows("https://avatar.example.org", "avatar.example.org:443")
    assert not same_only.allows("https://evil.example", "avatar.example.org")
    assert not same_only.allows("http://127.0.0.1:5173", "127.0.0.1:8000")  # another port is another origin
    assert not same_only.allows("null", "avatar.example.org")
    assert not same_only.allows("https://avatar.example.org", None)
    listed = OriginPolicy.parse("https://shop.example, http://localhost:5173")
    assert listed.allowed == ("https://shop.example", "http://localhost:5173")
    assert listed.allows("https://SHOP.example", "avatar.example.org")
    assert listed.allows("https://avatar.example.org", "avatar.example.org")  # its own origin stays allowed
    assert not listed.allows("http://shop.example", "avatar.example.org")  # scheme matters for listed ones


@pytest.mark.parametrize("raw", ["*", "shop.example", "https://shop.example/path"])
def test_origin_policy_refuses_wildcards_and_non_origins(raw: str) -> None:
    with pytest.raises(SecurityConfigError, match="AVATAR_ALLOWED_ORIGINS"):
        OriginPolicy.parse(raw)


def test_exposure_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("avatar.example.org")
    open_settings = BridgeSettings()
    check_exposure(open_settings, "127.0.0.1", KeySet())
    check_exposure(open_settings, "0.0.0.0", KeySet.parse(KEY))
    check_exposure(BridgeSettings(allow_insecure=True), "0.0.0.0", KeySet())
    with pytest.raises(SecurityConfigError, match=r"refusing to listen on 0\.0\.0\.0 without authentication"):
        check_exposure(open_settings, "0.0.0.0", KeySet())


def test_csp_per_response_kind() -> None:
    headers = SecurityHeaders(lambda s, r, w: None, allowed_origins=("https://shop.example",))  # type: ignore[arg-type, return-value]
    page = headers.csp("/", "text/html; charset=utf-8", "avatar.example.org")
    assert "frame-ancestors 'self' https://shop.example" in page
    assert "connect-src 'self' ws://avatar.example.org wss://avatar.example.org;" in page
    assert "media-src 'self' blob:" in page and "img-src 'self' data: blob:" in page
    assert "'unsafe-inline'" not in page
    assert "ws://" not in headers.csp("/", "text/html", "evil;script-src *")  # a Host header cannot add directives
    assert headers.csp("/api/v1/avatars", "application/json", "h").startswith("default-src 'none'; frame-ancestors")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    widget = tmp_path_factory.mktemp("widget")
    (widget / "index.html").write_text("<!doctype html><title>w</title>")
    settings = BridgeSettings(
        api_keys=SecretStr(f"other,{KEY}"),
        allowed_origins="https://shop.example",
        grpc_target="127.0.0.1:9",  # nothing is called
        media_dir=tmp_path_factory.mktemp("media"),
        widget_dir=widget,
    )
    with TestClient(create_app(settings), base_url="http://bridge.test") as c:
        yield c


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_api_needs_the_key(client: TestClient) -> None:
    for headers in ({}, auth("wrong"), {"Authorization": KEY}):
        resp = client.post(TICKET, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "UNAUTHENTICATED"
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/api/v1/avatars").status_code == 401
    resp = client.post(TICKET, headers=auth())
    assert resp.status_code == 200 and resp.json()["expires_in"] == 30 and resp.headers["cache-control"] == "no-store"
    page = client.get("/")  # the widget page is open
    assert (
        page.status_code == 200
        and "frame-ancestors 'self' https://shop.example" in page.headers["content-security-policy"]
    )
    for resp in (page, client.post(TICKET)):
        assert resp.headers["x-content-type-options"] == "nosniff" and resp.headers["referrer-policy"] == "no-referrer"


def test_foreign_origin_post_refused_listed_one_gets_cors(client: TestClient) -> None:
    resp = client.post(TICKET, headers={**auth(), "Origin": "https://evil.example"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "FORBIDDEN"
    assert "evil.example" in resp.json()["error"]["message"]
    resp = client.post(TICKET, headers={**auth(), "Origin": "http://bridge.test"})  # its own page
    assert resp.status_code == 200
    resp = client.post(TICKET, headers={**auth(), "Origin": "https://shop.example"})
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-credentials" not in resp.headers
    preflight = client.options(
        TICKET,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    foreign = client.options(
        TICKET, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in foreign.headers


def denied(client: TestClient, url: str, headers: dict[str, str] | None = None) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as caught, client.websocket_connect(url, headers=headers or {}):
        pass
    return caught.value


def test_websocket_upgrade_refused_before_accept(client: TestClient) -> None:
    refusal = denied(client, CONVERSE)
    assert refusal.status_code == 401 and refusal.json()["error"]["code"] == "UNAUTHENTICATED"
    assert denied(client, f"{CONVERSE}?ticket=forged").status_code == 401
    ticket = client.post(TICKET, headers=auth()).json()["ticket"]
    refusal = denied(client, f"{CONVERSE}?ticket={ticket}", {"Origin": "https://evil.example"})
    assert refusal.status_code == 403 and refusal.json()["error"]["code"] == "FORBIDDEN"


def test_bad_settings_stop_the_app_with_a_named_setting(tmp_path: Path) -> None:
    with pytest.raises(SecurityConfigError, match="AVATAR_GRPC_CA_FILE"):
        create_app(BridgeSettings(grpc_ca_file=tmp_path / "missing.pem"))
    with pytest.raises(SecurityConfigError, match="AVATAR_ALLOWED_ORIGINS"):
        create_app(BridgeSettings(allowed_origins="*"))
    with pytest.raises(SecurityConfigError, match="without authentication"):
        create_app(BridgeSettings(bridge_host="0.0.0.0"))


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()  # open, like /docs
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the bridge's AVATAR_API_KEYS",
    }
    interact = schema["paths"]["/api/v1/avatar/interact"]["post"]
    assert interact["security"] == [{"bearer": []}] and {"401", "403"} <= set(interact["responses"])
    health = schema["paths"]["/healthz"]["get"]
    assert "security" not in health and "401" not in health["responses"]
