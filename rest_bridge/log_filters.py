"""Log hygiene for what the WebSocket layer (uvicorn) reports about a client's mistakes."""

from __future__ import annotations

import logging

_INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


class ClientFaultFilter(logging.Filter):
    """uvicorn logs a text message that is not UTF-8 as an ERROR with a traceback, then closes with 1007; it is
    the client's fault, not the bridge's: one INFO line without the traceback instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _INVALID_UTF8:
            record.msg, record.args = "WebSocket closed with 1007: the client sent a text message not in UTF-8.", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    """On uvicorn's logger; its logging config (applied later by uvicorn.run) keeps a logger's filters."""
    logging.getLogger("uvicorn.error").addFilter(ClientFaultFilter())
