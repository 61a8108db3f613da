"""Produced media on disk under unguessable names, kept for a retention time after it was last read.

- A file's last access is its atime, set whenever it is served (each Range read included); its mtime stays
  the creation time, so the ETag and Last-Modified that browsers seek with do not change.
- The purger deletes files not read for `retention` seconds: a video someone is playing keeps itself alive.
- A byte quota: saving a file that would pass it evicts the least recently read files first, sparing those
  read in the last `grace_seconds` as long as others can go.
- The purger logs a failing pass or file and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

KINDS = {"audio": ".wav", "video": ".mp4", "animation": ".json"}
CONTENT_TYPES = {"audio": "audio/wav", "video": "video/mp4", "animation": "application/json"}
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    last_access: float


def last_access(st: os.stat_result) -> float:
    return max(st.st_atime, st.st_mtime)


class MediaStore:
    def __init__(
        self,
        root: Path,
        retention_seconds: float,
        *,
        max_bytes: int = 2 * 1024**3,
        grace_seconds: float = 60.0,
    ) -> None:
        self.root = root
        self.retention = retention_seconds
        self.max_bytes = max_bytes
        self.grace = grace_seconds
        self._lock = threading.Lock()  # saves run in worker threads; one quota decision at a time
        for kind in KINDS:
            (root / kind).mkdir(parents=True, exist_ok=True)

    def save(self, kind: str, data: bytes) -> str:
        """Write atomically, evicting old files first if the quota needs it; the id is 128 random bits."""
        media_id = secrets.token_urlsafe(16)
        folder = self.root / kind
        with self._lock:
            self._make_room(len(data))
            folder.mkdir(parents=True, exist_ok=True)  # an operator may have emptied the media folder
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, folder / f"{media_id}{KINDS[kind]}")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return media_id

    def path(self, kind: str, media_id: str) -> Path | None:
        if kind not in KINDS or not _MEDIA_ID.match(media_id):
            return None
        path = self.root / kind / f"{media_id}{KINDS[kind]}"
        return path if path.is_file() else None

    @staticmethod
    def open_for_read(path: Path) -> tuple[BinaryIO, os.stat_result] | None:
        """Open a file to serve and mark it read now; None if it vanished since path() found it."""
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(f.fileno())
            os.utime(f.fileno(), (time.time(), st.st_mtime))  # last access now; mtime (ETag) unchanged
        except OSError:
            f.close()
            raise
        return f, st

    def _entries(self) -> list[_Entry]:
        entries = []
        for kind in KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("media: cannot stat %s: %s", path.name, exc)
                    continue
                entries.append(_Entry(path, st.st_size, last_access(st)))
        return entries

    def _remove(self, entry: _Entry) -> bool:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("media: cannot delete %s: %s", entry.path.name, exc)
            return False
        return True

    def _make_room(self, incoming: int, now: float | None = None) -> int:
        """Evict least recently read files until `incoming` more bytes fit the quota; returns how many went."""
        entries = self._entries()
        total = sum(e.size for e in entries) + incoming
        if total <= self.max_bytes:
            return 0
        now = now if now is not None else time.time()
        # Files outside the grace period first (oldest read first), then, only if still needed, recent ones.
        order = sorted(entries, key=lambda e: (now - e.last_access < self.grace, e.last_access))
        evicted = 0
        for entry in order:
            if total <= self.max_bytes:
                break
            if self._remove(entry):
                total -= entry.size
                evicted += 1
        log.info("media quota: evicted %d least recently read files (quota %d bytes)", evicted, self.max_bytes)
        if total > self.max_bytes:
            log.warning("media quota: still %d bytes over after evicting all it could", total - self.max_bytes)
        return evicted

    def purge(self, now: float | None = None) -> int:
        """Delete media not read for the retention time; returns how many files went."""
        deadline = (now if now is not None else time.time()) - self.retention
        return sum(self._remove(e) for e in self._entries() if e.last_access < deadline)

    async def purge_forever(self) -> None:
        interval = max(1.0, min(60.0, self.retention / 2))
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await asyncio.to_thread(self.purge)
            except Exception as exc:  # a pass that fails must not end the purger: the next one may succeed
                log.warning("media purge failed (%s: %s); trying again in %.0f s", type(exc).__name__, exc, interval)
                continue
            if removed:
                log.info("deleted %d expired media files", removed)
