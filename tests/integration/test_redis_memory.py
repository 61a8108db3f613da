"""Conversation memory in Redis across real server processes: a second replica and a restarted server carry a
session on, Redis going away at run time leaves turns served without memory, an unreachable Redis at
startup is refused with a clear message.

The LLM is the reply harness's reference endpoint (bench/reference_llm.py): it answers a follow-up such as
"What is my name?" only when the prompt really holds the session's earlier turns, and says "I don't know."
otherwise, so what the server put in the prompt shows in the reply, without a model's whims.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.memory.redis_store import KEY_PREFIX
from bench.reference_llm import MODEL, running
from tests.conftest import ServerProcess, start_server, stop_server
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow
NO_MEDIA = pb.OutputOptions(audio=False, video=False, animation=False)
SECRET = "replicas-share-this-secret"


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def env(redis_srv: RedisServer) -> Iterator[dict[str, str]]:
    with running("Grace Hopper") as url:
        yield {
            "AVATAR_MEMORY_URL": redis_srv.url,
            "AVATAR_SESSION_SECRET": SECRET,
            "AVATAR_LLM_ENGINE": "openai-compatible",
            "AVATAR_LLM_BASE_URL": url,
            "AVATAR_LLM_MODEL": MODEL,
        }


def ask(server: ServerProcess, text: str, session_id: str = "") -> pb.InteractResponse:
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        request = pb.InteractRequest(text=text, session_id=session_id, outputs=NO_MEDIA)
        response: pb.InteractResponse = stub.Interact(request, timeout=120)
        return response


def stored(redis_srv: RedisServer, session_id: str) -> list[str]:
    """The user's side of the exchanges Redis holds for a session."""
    with redis.Redis.from_url(redis_srv.url) as client:
        raw = client.get(KEY_PREFIX + session_id)
        assert raw is None or client.pttl(KEY_PREFIX + session_id) > 0  # every session expires
    return [turn[0] for turn in json.loads(raw)["turns"]] if raw else []


def test_a_session_moves_between_replicas_and_survives_a_restart(
    tmp_path: Path, redis_srv: RedisServer, env: dict[str, str]
) -> None:
    a = start_server(tmp_path / "a.log", env, timeout=600)
    b: ServerProcess | None = None
    try:
        first = ask(a, "My name is Taras.")
        session = first.session_id
        assert first.reply_text == "Nice to meet you, Taras!"
        assert stored(redis_srv, session) == ["My name is Taras."]

        # A second replica (same Redis, same secret) honours the id and reads the first one's memory.
        b = start_server(tmp_path / "b.log", env, timeout=600)
        follow_up = ask(b, "What is my name?", session)
        assert follow_up.session_id == session
        assert follow_up.reply_text == "Your name is Taras."
        assert ask(b, "What is my name?").reply_text == "I don't know."  # a fresh session: nothing to read
        assert ask(b, "I live in Kyiv and I study physics.", session).session_id == session
        assert stored(redis_srv, session) == [
            "My name is Taras.",
            "What is my name?",
            "I live in Kyiv and I study physics.",
        ]
    finally:
        for server in (a, b):
            if server is not None:
                assert stop_server(server) == 0

    # Every process gone: a restarted server has only Redis to remember by.
    restarted = start_server(tmp_path / "restarted.log", env, timeout=600)
    try:
        again = ask(restarted, "Which city do I live in?", session)
        assert again.session_id == session
        assert again.reply_text == "You live in Kyiv."
        assert len(stored(redis_srv, session)) == 4

        # Redis goes away: the turn is still served, without memory, and the log says why (password-free).
        redis_srv.stop()
        t0 = time.monotonic()
        blind = ask(restarted, "What is my name?", session)
        assert blind.session_id == session and blind.reply_text == "I don't know."
        assert time.monotonic() - t0 < 30
        log = restarted.log()
        assert "turns go on without memory" in log and "Traceback" not in log

        # Back (empty: nothing was saved): memory works again on its own, after the short retry pause.
        redis_srv.start()
        time.sleep(2.5)
        ask(restarted, "My name is Taras.", session)
        assert stored(redis_srv, session) == ["My name is Taras."]
        assert ask(restarted, "What is my name?", session).reply_text == "Your name is Taras."
        assert "answers again" in restarted.log()
    finally:
        redis_srv.start()
        assert stop_server(restarted) == 0


def test_an_unreachable_redis_stops_the_start_with_a_clear_message(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    log_path = tmp_path / "refused.log"
    with pytest.raises(RuntimeError, match="avatar_server exited with 1"):
        start_server(log_path, {**env, "AVATAR_MEMORY_URL": url}, timeout=600)
    log = log_path.read_text(errors="replace")
    refusals = [line for line in log.splitlines() if "cannot start" in line]
    assert len(refusals) == 1, log
    assert "AVATAR_MEMORY_URL" in refusals[0] and f"redis://:***@127.0.0.1:{port}/0" in refusals[0]
    assert "hunter2" not in log
    # The refusal is that line, no traceback of ours before it. (What grpc.aio's Server.__del__ may print
    # after it, as the loop is gone, belongs to server.py's start-up failure path, not to the memory.)
    assert "Traceback" not in log[: log.index(refusals[0])]
