"""The GPU deployment files: the compose file validates against the Compose spec (Debian's docker-compose,
offline) and says what the seed's deployment needs; the Dockerfile parses and copies what exists."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    tool = shutil.which("docker-compose")
    assert tool, "Debian's docker-compose comes from `make test` (apt-get)"
    out = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.gpu.yml"), "config"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    config: dict[str, object] = yaml.safe_load(out.stdout)
    return config


def test_avatar_engine_service(compose: dict[str, object]) -> None:
    engine = compose["services"]["avatar-engine"]  # type: ignore[index]
    assert engine["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert {"published": 7860, "target": 7860} in engine["ports"]
    assert any(v.split(":")[0].endswith("/models") and v.split(":")[1] == "/app/checkpoints" for v in engine["volumes"])
    env = engine["environment"]
    assert env["WHISPER_MODEL"] == "medium" and env["AVATAR_PORT"] == "7860" and env["AVATAR_WHISPER_DEVICE"] == "cuda"
    device = engine["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "avatar_server.healthcheck" in engine["healthcheck"]["test"]


def test_bridge_service_points_at_the_engine(compose: dict[str, object]) -> None:
    bridge = compose["services"]["rest-bridge"]  # type: ignore[index]
    assert bridge["environment"]["AVATAR_GRPC_TARGET"] == "avatar-engine:7860"
    assert bridge["depends_on"]["avatar-engine"]["condition"] == "service_healthy"
    assert "rest_bridge" in bridge["command"]


def test_dockerfile_parses_and_copies_what_exists() -> None:
    parser = DockerfileParser(fileobj=io.BytesIO((ROOT / "docker" / "Dockerfile.gpu").read_bytes()))
    instructions = parser.structure
    assert [i["value"].split()[0] for i in instructions if i["instruction"] == "FROM"] == [
        "node:20-bookworm-slim",
        "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04",
    ]
    for i in instructions:
        if i["instruction"] == "COPY" and "--from" not in i["value"]:
            for source in i["value"].split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    text = parser.content
    assert ".[gpu,cloud]" in text and "faster-whisper-medium" in text and "XTTS-v2" in text and "SadTalker" in text
    assert "EXPOSE 7860" in text
    assert (ROOT / "docker" / "entrypoint.sh").stat().st_mode & 0o111
