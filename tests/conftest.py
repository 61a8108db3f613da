"""Shared fixtures: real speech clips and a real avatar_server process on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / ".data"
SERVICE = "avatar.v1.AvatarService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    target: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    statuses: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180.0,
    root: Path = ROOT,
    credentials: grpc.ChannelCredentials | None = None,
) -> ServerProcess:
    """Start `python -m avatar_server` (of the checkout at `root`) and wait for SERVING, recording the health
    states seen. `credentials`: TLS for the health polling, when the server serves only TLS."""
    port = free_port()
    env = {**os.environ, "AVATAR_PORT": str(port), "AVATAR_HOST": "127.0.0.1", **(extra_env or {})}
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "avatar_server"], cwd=root, env=env, stdout=log, stderr=log)
    server = ServerProcess(target=f"127.0.0.1:{port}", proc=proc, log_path=log_path)
    if credentials is None:
        channel = grpc.insecure_channel(server.target)
    else:
        channel = grpc.secure_channel(server.target, credentials)
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"avatar_server exited with {proc.returncode}:\n{server.log()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1.0).status
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                if not server.statuses or server.statuses[-1] != name:
                    server.statuses.append(name)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return server
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"avatar_server not SERVING after {timeout} s:\n{server.log()}")
            time.sleep(0.05)
    finally:
        channel.close()


def stop_server(server: ServerProcess, timeout: float = 30.0) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server") / "server.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    ch = grpc.insecure_channel(server.target, options=options)
    yield ch
    ch.close()


@dataclass(frozen=True)
class Clip:
    """A speech recording and what it says."""

    name: str
    path: Path
    text: str
    source: str


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """Synthesized (espeak-ng, flite) and human (CMU ARCTIC, ALSA voice prompt) speech."""
    folder = tmp_path_factory.mktemp("clips")
    out: dict[str, Clip] = {}
    espeak = shutil.which("espeak-ng")
    flite = shutil.which("flite")
    assert espeak and flite, "espeak-ng and flite come from `make test` (apt-get); run it, or install them"
    text = "Please tell me about the first compiler."
    subprocess.run([espeak, "-w", str(folder / "espeak.wav"), text], check=True)
    out["espeak"] = Clip("espeak", folder / "espeak.wav", text, "espeak-ng (synthetic)")
    text = "Hello, how are you doing today?"
    subprocess.run([flite, "-t", text, "-o", str(folder / "flite.wav")], check=True)
    out["flite"] = Clip("flite", folder / "flite.wav", text, "flite (synthetic, 8 kHz)")
    arctic = DATA / "arctic_a0007.wav"
    assert arctic.is_file(), f"{arctic} comes from `make test` (pysptk sdist); run it first"
    out["arctic"] = Clip(
        "arctic", arctic, "And you always want to see it in the superlative degree.", "CMU ARCTIC (human)"
    )
    alsa = Path("/usr/share/sounds/alsa/Front_Center.wav")
    assert alsa.is_file(), "alsa-utils voice prompts come from `make test` (apt-get)"
    out["alsa"] = Clip("alsa", alsa, "Front center", "ALSA voice prompt (human, 48 kHz)")
    return out


@dataclass
class BridgeProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    media_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_bridge(folder: Path, grpc_target: str, extra_env: dict[str, str] | None = None) -> BridgeProcess:
    """Start `python -m rest_bridge` on a free port and wait until it answers HTTP."""
    import httpx

    port = free_port()
    media = folder / "media"
    env = {
        **os.environ,
        "AVATAR_GRPC_TARGET": grpc_target,
        "AVATAR_MEDIA_DIR": str(media),
        **(extra_env or {}),
    }
    log_path = folder / "bridge.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rest_bridge", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    bridge = BridgeProcess(f"http://127.0.0.1:{port}", proc, log_path, media)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"rest_bridge exited with {proc.returncode}:\n{bridge.log()}")
        try:
            httpx.get(f"{bridge.url}/openapi.json", timeout=1.0)
            return bridge
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"rest_bridge did not start:\n{bridge.log()}") from None
            time.sleep(0.1)


def stop_bridge(bridge: BridgeProcess) -> int:
    bridge.proc.send_signal(signal.SIGTERM)
    try:
        return bridge.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        bridge.proc.kill()
        return bridge.proc.wait()


@pytest.fixture(scope="session")
def bridge(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    b = start_bridge(tmp_path_factory.mktemp("bridge"), server.target)
    yield b
    stop_bridge(b)
