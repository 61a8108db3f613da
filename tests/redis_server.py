"""A real `redis-server` on a free loopback port for tests: nothing persisted, gone when stopped.

    with redis_server() as redis:
        os.environ["AVATAR_MEMORY_URL"] = redis.url

`stop()` then `start()` brings it back on the same port (empty: nothing is saved), which is how tests
take Redis away from a running server and give it back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process in its own temporary directory, bound to 127.0.0.1 only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is not installed (Debian package redis-server; `make setup`)")
        log = self._dir / "redis.log"
        # fmt: off
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self._dir), "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes",
        ]
        # fmt: on
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self._dir)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{text}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the process (its data is gone: nothing is saved); the port may be started again."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    """A started RedisServer, closed (stopped, its directory removed) at the end."""
    with RedisServer(port) as server:
        yield server
