"""Produced media on disk under unguessable names, deleted after a retention time."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = {"audio": ".wav", "video": ".mp4", "animation": ".json"}
CONTENT_TYPES = {"audio": "audio/wav", "video": "video/mp4", "animation": "application/json"}
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class MediaStore:
    def __init__(self, root: Path, retention_seconds: float) -> None:
        self.root = root
        self.retention = retention_seconds
        for kind in KINDS:
            (root / kind).mkdir(parents=True, exist_ok=True)

    def save(self, kind: str, data: bytes) -> str:
        """Write atomically; the id is 128 random bits, URL-safe."""
        media_id = secrets.token_urlsafe(16)
        folder = self.root / kind
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / f"{media_id}{KINDS[kind]}")
        return media_id

    def path(self, kind: str, media_id: str) -> Path | None:
        if kind not in KINDS or not _MEDIA_ID.match(media_id):
            return None
        path = self.root / kind / f"{media_id}{KINDS[kind]}"
        return path if path.is_file() else None

    def purge(self, now: float | None = None) -> int:
        """Delete media older than the retention time; returns how many files went."""
        deadline = (now if now is not None else time.time()) - self.retention
        removed = 0
        for kind in KINDS:
            for path in (self.root / kind).iterdir():
                try:
                    if path.stat().st_mtime < deadline:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    async def purge_forever(self) -> None:
        interval = max(1.0, min(60.0, self.retention / 2))
        while True:
            await asyncio.sleep(interval)
            removed = await asyncio.to_thread(self.purge)
            if removed:
                log.info("deleted %d expired media files", removed)
