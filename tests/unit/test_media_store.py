"""MediaStore: retention from the last read, the byte quota's eviction order, a purger that survives errors."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from rest_bridge.media_store import MediaStore


def file_of(store: MediaStore, kind: str, media_id: str) -> Path:
    path = store.path(kind, media_id)
    assert path is not None
    return path


def age(path: Path, created_ago: float, read_ago: float | None = None) -> None:
    now = time.time()
    os.utime(path, (now - (read_ago if read_ago is not None else created_ago), now - created_ago))


def test_retention_counts_from_the_last_read(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, retention_seconds=100)
    read_lately, never_read = store.save("video", b"v" * 10), store.save("video", b"w" * 10)
    age(file_of(store, "video", read_lately), created_ago=500)
    age(file_of(store, "video", never_read), created_ago=500)
    opened = store.open_for_read(file_of(store, "video", read_lately))  # a Range read, say
    assert opened is not None
    f, st = opened
    f.close()
    assert time.time() - st.st_mtime >= 499  # the creation time (ETag, Last-Modified) is kept
    assert store.purge() == 1
    assert store.path("video", read_lately) is not None and store.path("video", never_read) is None
    assert store.purge(now=time.time() + 101) == 1  # not read again for the retention time: gone
    assert store.path("video", read_lately) is None


def test_open_for_read_of_a_vanished_file_is_none(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, retention_seconds=100)
    path = file_of(store, "audio", store.save("audio", b"RIFF"))
    path.unlink()
    assert store.open_for_read(path) is None


def test_quota_evicts_least_recently_read_first_sparing_the_grace_period(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, retention_seconds=3600, max_bytes=300, grace_seconds=60)
    old_unread, old_read_earlier, playing = (store.save("video", bytes(100)) for _ in range(3))
    age(file_of(store, "video", old_unread), created_ago=1000)
    age(file_of(store, "video", old_read_earlier), created_ago=2000, read_ago=500)
    age(file_of(store, "video", playing), created_ago=3000, read_ago=5)  # oldest, but read 5 s ago
    new = store.save("audio", bytes(100))  # 400 > 300: one must go, the least recently read
    assert store.path("video", old_unread) is None
    assert all(store.path("video", m) for m in (old_read_earlier, playing)) and store.path("audio", new)
    store.save("audio", bytes(100))  # 400 > 300: the next least recently read goes, not the one being played
    assert store.path("video", old_read_earlier) is None
    assert store.path("video", playing) is not None and store.path("audio", new) is not None
    store.save("audio", bytes(250))  # only in-grace files left: the quota still holds, oldest read first
    assert store.path("video", playing) is None
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total <= 300


def test_a_file_that_cannot_be_deleted_is_logged_and_the_rest_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = MediaStore(tmp_path, retention_seconds=10)
    stuck, free = store.save("audio", b"a"), store.save("audio", b"b")
    for media_id in (stuck, free):
        age(file_of(store, "audio", media_id), created_ago=100)
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith(stuck):
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with caplog.at_level(logging.WARNING, "rest_bridge.media_store"):
        assert store.purge() == 1
    assert store.path("audio", free) is None and store.path("audio", stuck) is not None
    assert "cannot delete" in caplog.text and "Permission denied" in caplog.text


async def test_the_purger_survives_a_failing_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = MediaStore(tmp_path, retention_seconds=0.5)
    passes = 0
    real_purge = store.purge

    def flaky_purge(now: float | None = None) -> int:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise OSError(5, "Input/output error")
        return real_purge(now)

    monkeypatch.setattr(store, "purge", flaky_purge)
    old = store.save("audio", b"x")
    age(file_of(store, "audio", old), created_ago=100)
    with caplog.at_level(logging.WARNING, "rest_bridge.media_store"):
        purger = asyncio.create_task(store.purge_forever())
        try:
            deadline = time.monotonic() + 5
            while store.path("audio", old) is not None:
                assert not purger.done(), "the purger died"
                assert time.monotonic() < deadline, "the purger stopped purging after a failed pass"
                await asyncio.sleep(0.05)
        finally:
            purger.cancel()
    assert passes >= 2 and "media purge failed (OSError" in caplog.text


def test_save_recreates_a_removed_folder_and_leaves_no_part_files(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, retention_seconds=10)
    (tmp_path / "audio").rmdir()
    media_id = store.save("audio", b"RIFF")
    assert store.path("audio", media_id) is not None
    assert not [p for p in tmp_path.rglob(".part-*")]


def test_a_file_deleted_between_lookup_and_send_is_404_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The purger (or the quota) may delete a file right after the route found it: 404 JSON, not a 500."""
    from starlette.testclient import TestClient

    from rest_bridge.app import create_app
    from rest_bridge.settings import BridgeSettings

    settings = BridgeSettings(media_dir=tmp_path / "media", widget_dir=tmp_path / "none", grpc_target="127.0.0.1:9")
    with TestClient(create_app(settings)) as client:
        store: MediaStore = client.app.state.backend.media  # type: ignore[attr-defined]
        media_id = store.save("video", b"0123456789" * 100)
        assert client.get(f"/static/video/{media_id}.mp4", headers={"Range": "bytes=0-9"}).content == b"0123456789"
        real_path = store.path

        def path_then_delete(kind: str, media_id: str) -> Path | None:
            found = real_path(kind, media_id)
            if found is not None:
                found.unlink()
            return found

        monkeypatch.setattr(store, "path", path_then_delete)
        for headers in ({}, {"Range": "bytes=100-199"}):
            resp = client.get(f"/static/video/{media_id}.mp4", headers=headers)
            assert resp.status_code == 404 and resp.headers["content-type"] == "application/json"
            error = resp.json()["error"]
            assert error["code"] == "NOT_FOUND" and len(error["error_id"]) == 12


def test_a_file_deleted_while_it_is_sent_is_sent_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from rest_bridge.app import create_app
    from rest_bridge.settings import BridgeSettings

    settings = BridgeSettings(media_dir=tmp_path / "media", widget_dir=tmp_path / "none", grpc_target="127.0.0.1:9")
    with TestClient(create_app(settings)) as client:
        store: MediaStore = client.app.state.backend.media  # type: ignore[attr-defined]
        data = os.urandom(300_000)
        media_id = store.save("video", data)
        real_open = store.open_for_read

        def open_then_delete(path: Path) -> object:
            opened = real_open(path)
            path.unlink()  # after the open: the answer comes from the open file
            return opened

        monkeypatch.setattr(store, "open_for_read", open_then_delete)
        resp = client.get(f"/static/video/{media_id}.mp4", headers={"Range": "bytes=1000-250999"})
        assert resp.status_code == 206 and resp.content == data[1000:251000]
        assert client.get(f"/static/video/{media_id}.mp4").status_code == 404


def test_an_unexpected_exception_in_a_route_is_500_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from rest_bridge.app import create_app
    from rest_bridge.settings import BridgeSettings

    settings = BridgeSettings(media_dir=tmp_path / "media", widget_dir=tmp_path / "none", grpc_target="127.0.0.1:9")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        store: MediaStore = client.app.state.backend.media  # type: ignore[attr-defined]

        def broken(kind: str, media_id: str) -> Path | None:
            raise ZeroDivisionError("secret internal detail /srv/avatar")

        monkeypatch.setattr(store, "path", broken)
        resp = client.get("/static/video/AAAAAAAAAAAAAAAAAAAAAA.mp4")
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert error["code"] == "INTERNAL" and len(error["error_id"]) == 12
    assert "secret" not in resp.text and "ZeroDivision" not in resp.text
