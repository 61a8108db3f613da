"""Conversation memory in Redis behaves as the in-process store does (the same cases run against both, on a
real redis-server); what only Redis has: sharing between replicas, its failures at run time and at startup."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from avatar_server.memory import ConversationMemory, Memory, MemoryUnavailable, open_memory
from avatar_server.memory.redis_store import KEY_PREFIX, RedisMemory, redact
from avatar_server.settings import Settings
from avatar_server.values import Exchange, Outputs, TurnRequest
from tests.redis_server import RedisServer
from tests.unit.fakes import fake_core
from tests.unit.test_memory_cache import CachingLLM

NO_MEDIA = Outputs(audio=False, video=False, animation=False)
MakeStore = Callable[..., Memory]


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def client(redis_srv: RedisServer) -> Iterator[redis.Redis]:
    redis_srv.start()  # a test may have stopped it
    c = redis.Redis.from_url(redis_srv.url)
    c.flushdb()
    yield c
    c.close()


@pytest.fixture(params=["local", "redis"])
def make_store(request: pytest.FixtureRequest, client: redis.Redis, redis_srv: RedisServer) -> Iterator[MakeStore]:
    """Builds a store of the kind under test; Redis stores built by one test share one Redis (replicas)."""
    built: list[Memory] = []

    def make(*, max_turns: int = 6, ttl_seconds: float = 60, max_tokens: int | None = None) -> Memory:
        store: Memory
        if request.param == "local":
            store = ConversationMemory(
                max_turns=max_turns, ttl_seconds=ttl_seconds, max_sessions=100, max_tokens=max_tokens
            )
        else:
            store = RedisMemory(redis_srv.url, max_turns=max_turns, ttl_seconds=ttl_seconds, max_tokens=max_tokens)
        built.append(store)
        return store

    yield make
    for store in built:
        store.close()


def users(store: Memory, session: str) -> list[str]:
    return [e.user for e in store.history(session)]


# -- the same behaviour in both stores -----------------------------------------------------------------


def test_a_full_memory_drops_its_oldest_half_at_once(make_store: MakeStore) -> None:
    mem = make_store(max_turns=6)
    sizes, trims = [], []
    for i in range(12):
        trims.append(mem.add("a", Exchange(f"u{i}", f"a{i}")))
        sizes.append(len(mem.history("a")))
    assert sizes == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4]  # the prompt's beginning changes every fourth turn
    assert trims == [i in (6, 10) for i in range(12)]
    assert users(mem, "a") == ["u8", "u9", "u10", "u11"]


def test_the_token_budget_trims_in_blocks_too(make_store: MakeStore) -> None:
    mem = make_store(max_turns=100, max_tokens=1000)
    trims = [mem.add("s", Exchange(f"q{k}", f"a{k}"), tokens=300) for k in range(8)]
    assert trims == [False, False, False, True, False, False, True, False]
    assert users(mem, "s") == ["q6", "q7"]
    assert mem.add("s", Exchange("huge", "huge"), tokens=1200)  # larger than the whole budget: nothing kept
    assert mem.history("s") == []


def test_sessions_are_kept_apart_and_text_is_kept_exactly(make_store: MakeStore) -> None:
    mem = make_store()
    mem.add("a", Exchange("Мене звати Оксана.", 'Привіт, Оксано! "quoted" \\ \n'))
    mem.add("b", Exchange("My name is Ada.", "Hello Ada."))
    assert mem.history("a") == [Exchange("Мене звати Оксана.", 'Привіт, Оксано! "quoted" \\ \n')]
    assert mem.history("b") == [Exchange("My name is Ada.", "Hello Ada.")]
    assert mem.history("c") == []


def test_an_idle_session_expires_and_each_exchange_restarts_its_clock(make_store: MakeStore) -> None:
    mem = make_store(ttl_seconds=1.5)
    mem.add("kept", Exchange("q1", "a1"))
    mem.add("idle", Exchange("q1", "a1"))
    time.sleep(0.9)
    mem.add("kept", Exchange("q2", "a2"))
    time.sleep(0.9)  # 1.8 s after the first exchanges, 0.9 s after the last
    assert users(mem, "kept") == ["q1", "q2"]
    assert mem.history("idle") == []
    time.sleep(0.9)
    assert mem.history("kept") == []


def test_concurrent_adds_lose_no_exchange(make_store: MakeStore) -> None:
    # Two stores on one Redis are two replicas; the in-process store is shared by the threads.
    first = make_store(max_turns=1000)
    stores = [first, make_store(max_turns=1000)] if isinstance(first, RedisMemory) else [first]
    threads, per_thread = 8, 15
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for k in range(per_thread):
            stores[t % len(stores)].add("shared", Exchange(f"t{t}-{k}", "ok"))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    got = users(first, "shared")
    assert sorted(got) == sorted(f"t{t}-{k}" for t in range(threads) for k in range(per_thread))
    for t in range(threads):  # each thread's exchanges in its own order
        assert [u for u in got if u.startswith(f"t{t}-")] == [f"t{t}-{k}" for k in range(per_thread)]


# -- Redis only ----------------------------------------------------------------------------------------


def test_a_session_is_one_namespaced_json_key_with_the_ttl(redis_srv: RedisServer, client: redis.Redis) -> None:
    mem = RedisMemory(redis_srv.url, max_turns=6, ttl_seconds=30)
    mem.add("abc.tag", Exchange("hi", "hello"), tokens=7)
    assert client.keys("*") == [f"{KEY_PREFIX}abc.tag".encode()]
    assert json.loads(client.get(f"{KEY_PREFIX}abc.tag") or b"") == {"turns": [["hi", "hello", 7]]}
    assert 29_000 < client.pttl(f"{KEY_PREFIX}abc.tag") <= 30_000
    # A replica started later (another process, here another client) reads the same history.
    other = RedisMemory(redis_srv.url, max_turns=6, ttl_seconds=30)
    assert other.history("abc.tag") == [Exchange("hi", "hello")]
    client.set(f"{KEY_PREFIX}bad", b"not json")  # not written by this store: starts again, not a failure
    assert other.history("bad") == []
    assert not other.add("bad", Exchange("q", "a")) and other.history("bad") == [Exchange("q", "a")]
    mem.close()
    other.close()


def test_redis_down_at_run_time_serves_without_memory_then_recovers(
    redis_srv: RedisServer, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[int] = []
    mem = RedisMemory(redis_srv.url, max_turns=6, ttl_seconds=60, on_error=lambda: errors.append(1), retry_after=0.3)
    mem.add("s", Exchange("before", "a"))
    redis_srv.stop()
    caplog.set_level(logging.INFO, logger="avatar_server.memory.redis_store")
    t0 = time.monotonic()
    assert mem.history("s") == []  # memory off for this turn, no exception
    assert mem.add("s", Exchange("during", "a")) is False
    assert mem.history("s") == []  # within retry_after: Redis is not even asked
    assert time.monotonic() - t0 < 1.0
    assert len(errors) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "turns go on without memory" in warnings[0].getMessage()
    time.sleep(0.35)
    assert mem.history("s") == [] and len(errors) == 2  # tried again, still down: counted, not logged again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    redis_srv.start()  # back, empty (nothing is saved): memory works again on its own
    time.sleep(0.35)
    assert mem.add("s", Exchange("after", "a")) is False
    assert users(mem, "s") == ["after"]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    mem.close()


def test_a_stalled_redis_costs_one_timeout_not_one_per_call() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        errors: list[int] = []
        mem = RedisMemory(
            f"redis://127.0.0.1:{port}/0", max_turns=6, ttl_seconds=60, timeout=0.3, on_error=lambda: errors.append(1)
        )
        t0 = time.monotonic()
        assert mem.history("s") == []
        assert 0.25 < time.monotonic() - t0 < 1.0
        t1 = time.monotonic()
        for _ in range(20):
            assert mem.add("s", Exchange("q", "a")) is False and mem.history("s") == []
        assert time.monotonic() - t1 < 0.1 and errors == [1]
        mem.close()


def test_unreachable_at_startup_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    settings = Settings(memory_url=f"redis://:hunter2@127.0.0.1:{port}/0")  # type: ignore[arg-type]
    with pytest.raises(MemoryUnavailable) as err:
        open_memory(settings)
    message = str(err.value)
    assert "AVATAR_MEMORY_URL" in message and f"127.0.0.1:{port}" in message and "hunter2" not in message
    assert "\n" not in message
    with pytest.raises(MemoryUnavailable, match=r"AVATAR_MEMORY_URL .* is not a Redis URL"):
        open_memory(Settings(memory_url="http://:hunter2@127.0.0.1:6379/0"))  # type: ignore[arg-type]
    assert isinstance(open_memory(Settings()), ConversationMemory)  # unset: in this process


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:p%40ss@[::1]:6380/2") == "rediss://user:***@[::1]:6380/2"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "pw" not in redact("redis://:pw@host:notaport/0")


# -- through the core ------------------------------------------------------------------------------------


async def test_two_cores_on_one_redis_share_a_session_and_a_down_redis_serves_turns(
    redis_srv: RedisServer, client: redis.Redis
) -> None:
    settings = Settings(memory_url=redis_srv.url, memory_turns=4, llm_max_tokens=60)  # type: ignore[arg-type]
    llm_a, llm_b = CachingLLM(), CachingLLM()
    llm_a.vary = llm_b.vary = True  # replies that differ: none is taken for a repeat and asked again
    core_a, _ = fake_core(llm_a, settings)
    core_b, _ = fake_core(llm_b, settings)
    assert isinstance(core_a.memory, RedisMemory)  # type: ignore[attr-defined]
    await core_a.interact(TurnRequest(text="My name is Ada.", session_id="s", outputs=NO_MEDIA))  # type: ignore[attr-defined]
    await core_b.interact(TurnRequest(text="What is my name?", session_id="s", outputs=NO_MEDIA))  # type: ignore[attr-defined]
    # The second replica's prompt held the first replica's exchange.
    assert [m.content for m in llm_b.seen[0][1:]] == ["My name is Ada.", "Reply 0: I am fine.", "What is my name?"]
    stored = json.loads(client.get(f"{KEY_PREFIX}s") or b"")
    assert [t[0] for t in stored["turns"]] == ["My name is Ada.", "What is my name?"]

    redis_srv.stop()
    result = await core_a.interact(TurnRequest(text="Still there?", session_id="s", outputs=NO_MEDIA))  # type: ignore[attr-defined]
    assert result.reply_text == llm_a.reply  # served, without memory
    assert [m.role for m in llm_a.seen[-1]] == ["system", "user"]
    metrics = core_a.metrics.registry  # type: ignore[attr-defined]
    assert (metrics.get_sample_value("avatar_memory_errors_total") or 0) >= 1
    redis_srv.start()
    for core in (core_a, core_b):
        core.shutdown()  # type: ignore[attr-defined]
