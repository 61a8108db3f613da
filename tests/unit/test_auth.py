"""API keys, the start-up refusals, TLS settings, secrets in settings and SadTalker's scrubbed environment."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trustme
from pydantic import SecretStr, ValidationError

from avatar_server.engines.animator.sadtalker import SadTalkerOptions, SadTalkerRunner, scrubbed_env
from avatar_server.settings import Settings
from avatar_server.transport.auth import KeyRing, bearer_token, caller_id, key_id
from avatar_server.transport.security import (
    StartupRefused,
    check_exposure,
    describe,
    is_loopback,
    reflection_enabled,
    server_credentials,
)
from avatar_server.values import Speech

KEY = "k3y-0f-the-0perator-7d1c"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", f"Bearer {KEY}")], KEY),
        ([("Authorization", f"bearer   {KEY} ")], KEY),
        ([("x-other", "1"), ("authorization", f"Bearer {KEY}".encode())], KEY),
        ([("authorization", "Bearer ")], None),
        ([("authorization", f"Basic {KEY}")], None),
        ([("authorization", KEY)], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token(metadata: list[tuple[str, str | bytes]] | None, token: str | None) -> None:
    assert bearer_token(metadata) == token


def test_caller_id_is_the_first_16_hex_of_the_tokens_sha256() -> None:
    assert caller_id([("authorization", f"Bearer {KEY}")]) == sha(KEY)[:16]
    assert caller_id([("authorization", "Bearer other")]) != caller_id([("authorization", f"Bearer {KEY}")])
    assert caller_id([]) == "" and caller_id(None) == ""
    assert key_id(KEY) == sha(KEY)[:8]


def test_session_ids_bind_to_the_same_caller_id() -> None:
    """avatar_server.session_ids computes the caller's identity on its own: both must agree."""
    from avatar_server.session_ids import caller_id as session_caller_id

    for metadata in ([("authorization", f"Bearer {KEY}")], [("Authorization", f"bearer {KEY} ")], [], None):
        assert session_caller_id(metadata) == caller_id(metadata)


def test_key_ring_takes_plain_keys_and_their_sha256() -> None:
    ring = KeyRing([SecretStr(KEY), SecretStr(f"sha256:{sha('second-key')}")])
    assert len(ring) == 2 and ring
    assert ring.accepts(KEY) and ring.accepts("second-key")
    assert not ring.accepts(f"sha256:{sha('second-key')}")  # the hash is not itself a key
    for wrong in ("", KEY + "x", KEY[:-1], "second-key ", None):
        assert not ring.accepts(wrong)
    assert KEY not in repr(ring) and not KeyRing([])


def test_api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_API_KEYS", f" {KEY}, ,sha256:{sha('b').upper()},{KEY}")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, f"sha256:{sha('b').upper()}"]
    assert KeyRing(settings.api_keys).accepts("b")
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


def test_a_malformed_sha256_entry_is_refused_without_quoting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_API_KEYS", f"{KEY},sha256:{KEY}")
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "entry 2" in str(err.value) and KEY not in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "openai_api_kye: {key}\n",  # a typo: extra inputs are forbidden
        "openai_api_key: [{key}]\n",  # the wrong type
        "llm_api_key: {{nested: {key}}}\n",
        "api_keys: {{a: {key}}}\n",
        "port: {key}\n",  # a secret pasted into the wrong line
    ],
)
def test_a_bad_config_file_does_not_print_the_secret(tmp_path: Path, text: str) -> None:
    config = tmp_path / "avatar.yaml"
    config.write_text(text.format(key=KEY))
    with pytest.raises(ValidationError) as err:
        Settings(config_file=config)
    assert KEY not in str(err.value) and KEY not in repr(err.value)  # what the start-up error prints


def test_cloud_keys_are_secret_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "LLM_API_KEY", "ELEVENLABS_API_KEY"):
        monkeypatch.setenv(f"AVATAR_{name}", KEY + name)
    settings = Settings()
    assert settings.openai_api_key.get_secret_value() == KEY + "OPENAI_API_KEY"
    assert settings.llm_api_key.get_secret_value() == KEY + "LLM_API_KEY"
    assert KEY not in repr(settings) and KEY not in str(settings)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("", False),
        ("192.168.1.20", False),
        ("avatar-engine", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_off_loopback_needs_keys_or_an_explicit_insecure() -> None:
    with pytest.raises(StartupRefused) as err:
        check_exposure(Settings(host="0.0.0.0"))
    message = str(err.value)
    assert "AVATAR_API_KEYS" in message and "AVATAR_ALLOW_INSECURE=true" in message and "\n" not in message
    check_exposure(Settings(host="0.0.0.0", api_keys=(SecretStr(KEY),)))
    check_exposure(Settings(host="0.0.0.0", allow_insecure=True))
    check_exposure(Settings(host="127.0.0.1"))


def test_reflection_defaults_to_loopback_only() -> None:
    assert reflection_enabled(Settings(host="127.0.0.1"))
    assert not reflection_enabled(Settings(host="0.0.0.0", allow_insecure=True))
    assert reflection_enabled(Settings(host="0.0.0.0", reflection=True))
    assert not reflection_enabled(Settings(host="::1", reflection=False))


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


def test_tls_settings_that_cannot_work_are_refused(pems: dict[str, Path], tmp_path: Path) -> None:
    def refused(**kw: object) -> str:
        with pytest.raises(StartupRefused) as err:
            server_credentials(Settings(**kw))  # type: ignore[arg-type]
        return str(err.value)

    assert "AVATAR_TLS_KEY_FILE is not" in refused(tls_cert_file=pems["cert"])
    assert "AVATAR_TLS_CERT_FILE is not" in refused(tls_key_file=pems["key"])
    assert "needs AVATAR_TLS_CERT_FILE" in refused(tls_client_ca_file=pems["ca"])
    missing = tmp_path / "nope.pem"
    assert f"cannot read AVATAR_TLS_KEY_FILE {missing}" in refused(tls_cert_file=pems["cert"], tls_key_file=missing)
    assert "is not a PEM file" in refused(tls_cert_file=pems["key"], tls_key_file=pems["key"])
    assert "is not a PEM file" in refused(tls_cert_file=pems["cert"], tls_key_file=pems["cert"])
    assert server_credentials(Settings()) is None
    assert server_credentials(Settings(tls_cert_file=pems["cert"], tls_key_file=pems["key"])) is not None
    mutual = Settings(tls_cert_file=pems["cert"], tls_key_file=pems["key"], tls_client_ca_file=pems["ca"])
    assert server_credentials(mutual) is not None
    assert describe(mutual).startswith("mutual TLS, no API keys")


SECRETS = {
    "AVATAR_API_KEYS": "a",
    "AVATAR_OPENAI_API_KEY": "b",
    "AVATAR_ELEVENLABS_API_KEY": "c",
    "AVATAR_GRPC_API_KEY": "d",
    "OPENAI_API_KEY": "e",
    "AWS_SECRET_ACCESS_KEY": "f",
    "HF_TOKEN": "g",
    "CUDA_API_KEY": "h",  # passes the CUDA_ pattern, but names a key
    "AVATAR_HOST": "0.0.0.0",
    "SSH_AUTH_SOCK": "/tmp/agent",
    "LD_PRELOAD": "/tmp/evil.so",
}
NEEDED = {
    "PATH": "/usr/bin",
    "HOME": "/home/avatar",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "PYTHONPATH": "/opt/SadTalker",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
}


def test_scrubbed_env_keeps_what_sadtalker_needs_and_no_secret() -> None:
    assert scrubbed_env({**SECRETS, **NEEDED}) == NEEDED


FAKE_INFERENCE = """
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(os.path.join(args["--checkpoint_dir"], "env.json"), "w") as f:
    json.dump(dict(os.environ), f)
with open(os.path.join(args["--result_dir"], "out.mp4"), "wb") as f:
    f.write(b"not really a video")
"""


def test_the_sadtalker_process_gets_the_scrubbed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in inference.py (a real subprocess) records the environment it was given."""
    repo, checkpoints = tmp_path / "SadTalker", tmp_path / "checkpoints"
    repo.mkdir()
    checkpoints.mkdir()
    (repo / "inference.py").write_text(FAKE_INFERENCE)
    (checkpoints / "model.safetensors").write_bytes(b"x")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    runner = SadTalkerRunner(SadTalkerOptions(repo, checkpoints, python=sys.executable, jobs_dir=tmp_path))
    image = tmp_path / "face.png"
    image.write_bytes(b"png")
    mp4 = runner.render(image, Speech(np.zeros(1600, dtype=np.float32), 16000))
    assert mp4 == b"not really a video"
    seen = json.loads((checkpoints / "env.json").read_text())
    assert not set(SECRETS) & set(seen)
    assert seen["PATH"] and "AVATAR_API_KEYS" not in seen
