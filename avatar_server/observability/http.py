"""`/metrics` over plain HTTP on its own port, in a daemon thread (the event loop never serves a scrape).

With API keys, a scrape needs `Authorization: Bearer <key>` like any gRPC call, unless the operator opens the
endpoint on purpose (a scraper on a private network that cannot send a key).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

Authorize = Callable[[str | None], bool]  # the bearer token (None: none sent) → allowed?


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class MetricsServer:
    """Serves the registry at /metrics on host:port (port 0: a free one, see `.port`) until `close()`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, authorize: Authorize | None = None) -> None:
        self.registry = registry
        self.authorize = authorize
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a scrape every few seconds is not news for the log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        if path != "/metrics":
            self._plain(req, 404, "Not found: the metrics are at /metrics.\n")
            return
        if self.authorize is not None:
            token = _bearer(req.headers.get("Authorization"))
            if not self.authorize(token):
                reason = "Missing API key: send 'Authorization: Bearer <key>'" if token is None else "Invalid API key"
                log.info("metrics scrape refused from %s: %s", req.client_address[0], reason)
                self._plain(req, 401, reason + "\n", {"WWW-Authenticate": 'Bearer realm="metrics"'})
                return
        encoder, content_type = choose_encoder(req.headers.get("Accept", ""))
        self._send(req, 200, encoder(self.registry), content_type)

    def _plain(
        self, req: BaseHTTPRequestHandler, status: int, text: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(req, status, text.encode(), "text/plain; charset=utf-8", headers)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(body)
