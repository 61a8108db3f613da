"""API keys and TLS on real server processes: who is served, who is refused and with which status; keys never
in the log; the start-up refusals; the CLI with --api-key/--ca-file. Certificates come from a throwaway CA
(trustme)."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from avatar_client import AsyncAvatarClient, AvatarClient, make_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from avatar_server.transport.auth import INVALID_KEY, MISSING_KEY, key_id
from tests.conftest import ROOT, SERVICE, ServerProcess, free_port, start_server, stop_server

pytestmark = pytest.mark.slow

KEY = "itest-plain-" + secrets.token_hex(12)
HASHED_KEY = "itest-hashed-" + secrets.token_hex(12)  # the server is given only its sha256
WRONG_KEY = "itest-wrong-" + secrets.token_hex(12)
# Lighter start-up: no turn model, the espeak voice, short replies.
LIGHT = {
    "AVATAR_TURN_MODEL": "false",
    "AVATAR_TTS_ENGINE": "espeak",
    "AVATAR_LLM_LIVE_CONTEXTS": "1",
    "AVATAR_LLM_MAX_TOKENS": "24",
}
QUIET = pb.OutputOptions(audio=False, video=False, animation=False)
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def credentials(self, *, ca: Path | None = None, client: bool = False) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=(ca or self.ca).read_bytes(),
            private_key=self.client_key.read_bytes() if client else None,
            certificate_chain=self.client_cert.read_bytes() if client else None,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("avatar-test-client")
    pki = Pki(*(folder / n for n in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem", "other.pem")))
    ca.cert_pem.write_to_path(str(pki.ca))
    server.private_key_and_cert_chain_pem.write_to_path(str(pki.cert))  # a chain file may hold the key too
    server.private_key_pem.write_to_path(str(pki.key))
    client.private_key_and_cert_chain_pem.write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    other.cert_pem.write_to_path(str(pki.other_ca))
    return pki


@pytest.fixture(scope="module")
def keyed(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """TLS and two keys: one plain, one given as its sha256."""
    env = {
        **LIGHT,
        "AVATAR_API_KEYS": f"{KEY},sha256:{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}",
        "AVATAR_TLS_CERT_FILE": str(pki.cert),
        "AVATAR_TLS_KEY_FILE": str(pki.key),
    }
    srv = start_server(tmp_path_factory.mktemp("keyed") / "server.log", env, credentials=pki.credentials())
    yield srv
    stop_server(srv)


def stub(server: ServerProcess, pki: Pki, key: str | None = None) -> tuple[grpc.Channel, pb_grpc.AvatarServiceStub]:
    channel = make_channel(server.target, api_key=key, ca_file=pki.ca)
    return channel, pb_grpc.AvatarServiceStub(channel)


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """The error that `call(*args, **kwargs)` raises (it must raise one)."""
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    return err.value


def drain(call: Callable[..., Iterator[object]], *args: object, **kwargs: object) -> list[object]:
    """Every message of a streaming call."""
    return list(call(*args, **kwargs))


def converse_error(server: ServerProcess, pki: Pki, key: str | None) -> grpc.RpcError:
    channel, avatar = stub(server, pki, key)
    with channel:
        requests = iter([pb.ConverseRequest(config=pb.ConverseConfig()), pb.ConverseRequest(text="Hello!")])
        return refusal(drain, avatar.Converse, requests, timeout=30)


def test_without_a_key_interact_and_converse_are_unauthenticated(keyed: ServerProcess, pki: Pki) -> None:
    channel, avatar = stub(keyed, pki)
    with channel:
        err = refusal(lambda: avatar.Interact(pb.InteractRequest(text="Hello!", outputs=QUIET), timeout=30))
        assert (err.code(), err.details()) == (UNAUTHENTICATED, MISSING_KEY)
        err = refusal(lambda: avatar.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=30))
        assert err.code() == UNAUTHENTICATED
    err = converse_error(keyed, pki, None)
    assert (err.code(), err.details()) == (UNAUTHENTICATED, MISSING_KEY)


def test_a_wrong_key_is_unauthenticated(keyed: ServerProcess, pki: Pki) -> None:
    for wrong in (WRONG_KEY, f"sha256:{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}", KEY + " x"):
        channel, avatar = stub(keyed, pki, wrong)
        with channel:
            err = refusal(avatar.Interact, pb.InteractRequest(text="Hello!", outputs=QUIET), timeout=30)
        assert (err.code(), err.details()) == (UNAUTHENTICATED, INVALID_KEY)
    err = converse_error(keyed, pki, WRONG_KEY)
    assert (err.code(), err.details()) == (UNAUTHENTICATED, INVALID_KEY)


@pytest.mark.parametrize("key", [KEY, HASHED_KEY], ids=["plain", "sha256"])
def test_a_key_is_served(keyed: ServerProcess, pki: Pki, key: str) -> None:
    with AvatarClient(keyed.target, api_key=key, ca_file=pki.ca) as client:
        reply = client.interact(text="Hello! Who are you?", want_audio=False, want_video=False, want_animation=False)
        assert reply.reply_text.strip() and reply.turn_id
        assert client.capabilities().default_avatar_id


async def test_the_async_client_converses_with_a_key(keyed: ServerProcess, pki: Pki) -> None:
    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=pb.ConverseConfig(outputs=QUIET))
        yield pb.ConverseRequest(text="Hello!")

    async with AsyncAvatarClient(keyed.target, api_key=KEY, ca_file=pki.ca) as client:
        assert (await client.capabilities()).default_avatar_id
        events = [e async for e in client.converse(requests(), timeout=120)]
    done = [e.turn_completed for e in events if e.HasField("turn_completed")]
    assert done and done[0].reply_text.strip(), [e.WhichOneof("event") for e in events]


def test_health_is_open_and_reflection_needs_the_key(keyed: ServerProcess, pki: Pki) -> None:
    with grpc.secure_channel(keyed.target, pki.credentials()) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    for key, refused in ((None, True), (WRONG_KEY, True), (KEY, False)):
        with make_channel(keyed.target, api_key=key, ca_file=pki.ca) as channel:
            info = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
            if refused:
                assert refusal(drain, info, iter([ask]), timeout=10).code() == UNAUTHENTICATED
            else:
                names = [s.name for r in info(iter([ask]), timeout=10) for s in r.list_services_response.service]
                assert SERVICE in names


def test_tls_only_plaintext_and_an_unknown_ca_are_refused(keyed: ServerProcess, pki: Pki) -> None:
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    for channel in (
        grpc.insecure_channel(keyed.target),
        grpc.secure_channel(keyed.target, pki.credentials(ca=pki.other_ca)),
    ):
        with channel:
            err = refusal(health_pb2_grpc.HealthStub(channel).Check, request, timeout=5)
            assert err.code() == grpc.StatusCode.UNAVAILABLE


def avatar_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_API_KEY", "AVATAR_GRPC_"))}
    cmd = [sys.executable, "-m", "avatar_client.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**base, **(env or {})})


def test_the_cli_with_api_key_and_ca_file(keyed: ServerProcess, pki: Pki) -> None:
    out = avatar_cli("--target", keyed.target, "--api-key", KEY, "--ca-file", str(pki.ca), "health")
    assert (out.returncode, out.stdout.strip()) == (0, "SERVING"), out.stderr
    # The container health check: the key and CA from the environment.
    env = {"AVATAR_API_KEY": HASHED_KEY, "AVATAR_GRPC_CA_FILE": str(pki.ca)}
    out = avatar_cli("--target", keyed.target, "interact", "--text", "Hi", "--no-video", "--no-audio", env=env)
    assert out.returncode == 0 and "reply:" in out.stdout, out.stderr
    out = avatar_cli("--target", keyed.target, "--ca-file", str(pki.ca), "capabilities")
    assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr and "Missing API key" in out.stderr
    out = avatar_cli("--target", keyed.target, "--api-key", KEY, "health")  # plaintext against TLS
    assert out.returncode == 1 and "unhealthy: UNAVAILABLE" in out.stderr
    out = avatar_cli("--target", keyed.target, "--ca-file", str(pki.ca.with_name("missing.pem")), "health")
    assert out.returncode == 2 and "cannot read the CA file" in out.stderr


def test_no_key_is_in_the_log(keyed: ServerProcess) -> None:
    log = keyed.log()
    assert "SERVING" in log and "TLS, 2 API key(s), reflection on" in log
    assert f"key id {key_id(WRONG_KEY)}" in log  # refused calls are logged, by key id only
    for secret in (KEY, HASHED_KEY, WRONG_KEY):
        assert secret not in log


def test_mutual_tls_needs_a_client_certificate(pki: Pki, tmp_path: Path) -> None:
    """No keys, so only the certificates decide; the health service answers once the server listens."""
    env = {
        **LIGHT,
        "AVATAR_TLS_CERT_FILE": str(pki.cert),
        "AVATAR_TLS_KEY_FILE": str(pki.key),
        "AVATAR_TLS_CLIENT_CA_FILE": str(pki.ca),
    }
    srv = start_server(tmp_path / "server.log", env, credentials=pki.credentials(client=True))
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    try:
        with grpc.secure_channel(srv.target, pki.credentials()) as channel:
            err = refusal(health_pb2_grpc.HealthStub(channel).Check, request, timeout=5)
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(srv.target) as channel:
            err = refusal(health_pb2_grpc.HealthStub(channel).Check, request, timeout=5)
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        client = AvatarClient(srv.target, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
        with client:
            assert client.health() == "SERVING"
            reply = client.interact(text="Hello!", want_audio=False, want_video=False, want_animation=False)
            assert reply.reply_text.strip()
        assert "mutual TLS, no API keys" in srv.log()
    finally:
        stop_server(srv)


def run_server(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "avatar_server", "--port", str(free_port()), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def test_refuses_a_public_address_without_keys() -> None:
    done, took = run_server({}, "--host", "0.0.0.0")
    assert done.returncode != 0 and took < 20
    assert "refusing to serve on 0.0.0.0 without API keys: set AVATAR_API_KEYS" in done.stderr
    assert "AVATAR_ALLOW_INSECURE=true" in done.stderr
    assert "Traceback" not in done.stderr and "listening" not in done.stderr


def test_allow_insecure_gets_past_the_check() -> None:
    """An engine that cannot be built ends the process right after it listens: no models are loaded."""
    done, _ = run_server({"AVATAR_ALLOW_INSECURE": "true", "AVATAR_TTS_ENGINE": "nonexistent"}, "--host", "0.0.0.0")
    assert "refusing" not in done.stderr
    assert "listening on 0.0.0.0:" in done.stderr and "plaintext, no API keys, reflection off" in done.stderr


def test_tls_settings_that_cannot_work_stop_the_start(pki: Pki, tmp_path: Path) -> None:
    done, _ = run_server({"AVATAR_TLS_CERT_FILE": str(pki.cert)})
    assert done.returncode != 0 and "AVATAR_TLS_CERT_FILE is set but AVATAR_TLS_KEY_FILE is not" in done.stderr
    missing = tmp_path / "missing-key.pem"
    done, _ = run_server({"AVATAR_TLS_CERT_FILE": str(pki.cert), "AVATAR_TLS_KEY_FILE": str(missing)})
    assert done.returncode != 0 and f"cannot read AVATAR_TLS_KEY_FILE {missing}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_settings_file_does_not_print_the_key(tmp_path: Path) -> None:
    config = tmp_path / "avatar.yaml"
    config.write_text(f"openai_api_kye: {KEY}\nllm_api_key: [{HASHED_KEY}]\n")
    done, _ = run_server({}, "--config", str(config))
    assert done.returncode != 0 and "openai_api_kye" in done.stderr
    assert KEY not in done.stderr + done.stdout and HASHED_KEY not in done.stderr + done.stdout
