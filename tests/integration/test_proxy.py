"""The shipped TLS reverse proxy (deploy/nginx) in front of a real bridge and server: nginx runs the repository's
config, with only the listen address, the upstream, the certificate and the run-time paths substituted, and
everything is reached over https/wss with a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
import websockets

from tests.conftest import ROOT, BridgeProcess, free_port
from tests.helpers import wav_duration

pytestmark = pytest.mark.slow
CONF = ROOT / "deploy" / "nginx"
FILES = ("nginx.conf", "avatar.conf", "proxy_headers.conf")


@dataclass
class Proxy:
    url: str
    port: int
    ssl: ssl.SSLContext
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    assert found, "nginx is not installed: run `make setup` (it installs Debian's nginx-light)"
    return found


def render(folder: Path, upstream: str, port: int, ca: trustme.CA) -> Path:
    """The shipped config with this machine's paths and ports; each substituted text must be in it as shipped."""
    (folder / "conf").mkdir()
    (folder / "run").mkdir()
    certs = folder / "certs"
    certs.mkdir()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(certs / "proxy-tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(certs / "proxy-tls.crt"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certs / "proxy-tls.crt"), append=True)
    substitutions = {
        "nginx.conf": {"/tmp/nginx/": f"{folder / 'run'}/", "/etc/nginx/avatar/": f"{folder / 'conf'}/"},
        "avatar.conf": {
            "server bridge:8000;": f"server {upstream};",
            "listen 8443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "/run/secrets/": f"{certs}/",
            "/etc/nginx/avatar/": f"{folder / 'conf'}/",
        },
        "proxy_headers.conf": {},
    }
    for name in FILES:
        text = (CONF / name).read_text()
        for old, new in substitutions[name].items():
            assert old in text, f"deploy/nginx/{name} no longer contains {old!r}: update this test's substitutions"
            text = text.replace(old, new)
        (folder / "conf" / name).write_text(text)
    return folder / "conf" / "nginx.conf"


def nginx_command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    # As root (CI containers), nginx's workers would drop to `nobody`, who cannot enter pytest's private temp
    # folders; `user root` keeps them as the current user, as they are anyway when not root.
    globals_ = "daemon off;" + (" user root root;" if os.geteuid() == 0 else "")
    return [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", globals_, *extra]


def start_proxy(folder: Path, upstream: str) -> Proxy:
    ca = trustme.CA()
    port = free_port()
    conf = render(folder, upstream, port, ca)
    checked = subprocess.run(nginx_command(folder, conf, "-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the shipped config:\n{checked.stderr}"
    log_path = folder / "nginx.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(nginx_command(folder, conf), stdout=log, stderr=log)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    proxy = Proxy(f"https://127.0.0.1:{port}", port, context, proc, log_path)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{proxy.log()}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return proxy
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"nginx did not accept TLS on {port}:\n{proxy.log()}") from None
            time.sleep(0.05)


def stop_proxy(proxy: Proxy) -> None:
    proxy.proc.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
    try:
        proxy.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proxy.proc.kill()
        proxy.proc.wait()


@pytest.fixture(scope="module")
def proxy(bridge: BridgeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    p = start_proxy(tmp_path_factory.mktemp("proxy"), bridge.url.removeprefix("http://"))
    yield p
    stop_proxy(p)


@pytest.fixture(scope="module")
def https(proxy: Proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, verify=proxy.ssl, timeout=120) as client:
        yield client


def test_healthz_over_tls_with_hsts(https: httpx.Client) -> None:
    resp = https.get("/healthz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "SERVING"
    assert resp.headers["strict-transport-security"].startswith("max-age=")
    assert resp.extensions["http_version"] == b"HTTP/1.1"


def test_typed_turn_and_its_media_through_the_proxy(https: httpx.Client) -> None:
    resp = https.post("/api/v1/avatar/interact", data={"text": "Who are you?", "outputs": "audio"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["reply_text"] and body["audio_url"].startswith("/static/audio/")
    audio = https.get(body["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert wav_duration(audio.content) == pytest.approx(body["audio_duration"], abs=1e-3)
    part = https.get(body["audio_url"], headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == audio.content[10:110]


def test_uploads_up_to_the_bridge_cap_reach_the_bridge(https: httpx.Client) -> None:
    # Under the cap: the bridge itself judges the (not audio) bytes.
    files = {"audio": ("noise.wav", os.urandom(20 * 1024 * 1024), "audio/wav")}
    resp = https.post("/api/v1/avatar/interact", files=files)
    assert 400 <= resp.status_code < 500 and resp.status_code != 413, resp.text
    assert resp.headers["content-type"].startswith("application/json") and "error" in resp.json()
    # Far over it: refused by whichever comes first, in the same JSON shape.
    files = {"audio": ("big.wav", b"\0" * (27 * 1024 * 1024), "audio/wav")}
    resp = https.post("/api/v1/avatar/interact", files=files)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_websocket_over_wss_completes_a_typed_turn(proxy: Proxy) -> None:
    url = proxy.url.replace("https://", "wss://") + "/api/v1/avatar/converse"
    # The widget served by the proxy opens the socket from the proxy's own origin.
    async with websockets.connect(url, ssl=proxy.ssl, origin=proxy.url, max_size=None) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "config"}))
        await ws.send(json.dumps({"type": "text", "text": "Hello there."}))
        events: list[dict[str, object]] = []
        audio = 0
        end = time.monotonic() + 90
        while not events or events[-1]["type"] not in ("turn_completed", "error"):
            message = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
            if isinstance(message, bytes):
                audio += len(message)
            else:
                events.append(json.loads(message))
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "turn_completed", events[-1]
    assert "reply_text" in kinds or "audio_chunk" in kinds, kinds
    assert audio > 0


async def test_foreign_origin_websocket_refused_through_the_proxy(proxy: Proxy) -> None:
    url = proxy.url.replace("https://", "wss://") + "/api/v1/avatar/converse"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, ssl=proxy.ssl, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


def test_plain_http_to_the_tls_port_is_refused(proxy: Proxy) -> None:
    resp = httpx.get(f"http://127.0.0.1:{proxy.port}/healthz", timeout=10)
    assert resp.status_code == 400
    assert "plain HTTP request was sent to HTTPS port" in resp.text
    assert "SERVING" not in resp.text


def test_an_untrusted_certificate_is_not_accepted(proxy: Proxy) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{proxy.url}/healthz", timeout=10)  # the system's CAs do not know the test CA


def test_bridge_down_answers_json_503(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    p = start_proxy(tmp_path, dead)
    try:
        resp = httpx.get(f"{p.url}/healthz", verify=p.ssl, timeout=30)
    finally:
        stop_proxy(p)
    assert resp.status_code == 503
    assert resp.json() == {
        "error": {"code": "UNAVAILABLE", "message": "The avatar service is unavailable; try again shortly."}
    }
