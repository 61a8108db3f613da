"""Health reflects engine loading; SIGTERM shuts down gracefully."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ServerProcess, start_server, stop_server

pytestmark = pytest.mark.slow


def test_not_serving_until_engines_load_then_graceful_sigterm(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server.log")
    try:
        assert server.statuses[-1] == "SERVING"
        assert "NOT_SERVING" in server.statuses, server.statuses  # port open while engines load
    finally:
        code = stop_server(server)
    assert code == 0, server.log()
    log = server.log()
    assert "engines loaded" in log and "shutting down" in log


def test_bad_engine_setting_fails_at_startup_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        start_server(tmp_path / "server.log", extra_env={"AVATAR_TTS_ENGINE": "nonexistent"}, timeout=60)
    assert "unknown TTS engine 'nonexistent'" in str(err.value)


def test_container_healthcheck_command(server: ServerProcess) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    ok = subprocess.run([sys.executable, "-m", "avatar_server.healthcheck", "--target", server.target], timeout=30)
    assert ok.returncode == 0
    down = subprocess.run(
        [sys.executable, "-m", "avatar_server.healthcheck", "--target", f"127.0.0.1:{free_port()}", "--timeout", "1"],
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1 and "unhealthy" in down.stderr
