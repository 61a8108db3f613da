"""`python -m rest_bridge [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from rest_bridge import log_filters
from rest_bridge.app import create_app
from rest_bridge.security import SecurityConfigError
from rest_bridge.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="rest_bridge", description="REST bridge for the avatar gRPC service")
    parser.add_argument("--host", default=settings.bridge_host)
    parser.add_argument("--port", type=int, default=settings.bridge_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings.model_copy(update={"bridge_host": args.host}))
    except SecurityConfigError as exc:
        print(f"rest_bridge: {exc}", file=sys.stderr)
        return 2
    log_filters.install()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        ws_max_size=settings.ws_max_message_bytes,  # the WebSocket layer refuses bigger messages (close 1009)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
