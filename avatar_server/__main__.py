"""`python -m avatar_server [--host H] [--port P] [--config FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import sys

from avatar_server.settings import Settings


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate their own arenas (up to 8 per core). With a worker thread per engine,
    memory freed across many arenas is seldom returned and RSS creeps up under load; a few arenas keep it flat.
    MALLOC_ARENA_MAX in the environment wins."""
    if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8 = M_ARENA_MAX, before any worker thread starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar_server", description="Talking-avatar gRPC server")
    parser.add_argument("--host", help="listen address (default 127.0.0.1, or AVATAR_HOST)")
    parser.add_argument("--port", type=int, help="listen port (default 50051, or AVATAR_PORT)")
    parser.add_argument("--config", help="YAML or TOML settings file (or AVATAR_CONFIG_FILE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "config_file": args.config}.items() if v}
    settings = Settings(**overrides)
    _limit_malloc_arenas()

    from avatar_server.server import serve

    try:
        asyncio.run(serve(settings))
    except Exception as exc:
        logging.getLogger("avatar_server").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
