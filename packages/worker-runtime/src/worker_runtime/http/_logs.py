"""The log of a served process: JSON lines on stderr, yoi's own loggers at the configured
level, third-party loggers capped whatever that level (they would log headers, SSE chunks and
URLs below their caps)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["OWN_LOGGERS", "THIRD_PARTY_LOG_CAPS", "configure_logging"]


class _JsonFormatter(logging.Formatter):
    """One JSON object per line. Messages never carry secrets: nothing logs the token."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["error"] = type(record.exc_info[1]).__name__
        return json.dumps(entry)


#: yoi's own loggers: they log at the configured level (they never log a secret).
OWN_LOGGERS = frozenset({"worker_runtime", "yoi_workspace_server", "yoi"})

#: Third-party loggers and the most they may say, whatever yoi's own level: below these the
#: HTTP libraries log request and response headers (a provider may echo a key) and every SSE
#: chunk (the conversation), and httpx logs each request's URL at INFO. Any other
#: third-party logger is capped at WARNING.
THIRD_PARTY_LOG_CAPS: dict[str, int] = {
    "openai": logging.INFO,
    "anthropic": logging.INFO,
    "llama_cpp": logging.INFO,
    "uvicorn": logging.INFO,
    "uvicorn.access": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "httpx2": logging.WARNING,
    "httpcore2": logging.WARNING,
    "aiohttp": logging.WARNING,
    "sse_starlette": logging.WARNING,
}


def _log_cap(name: str) -> int | None:
    """The cap of a logger name (``None``: one of yoi's own)."""
    if name.partition(".")[0] in OWN_LOGGERS or name == "root":
        return None
    while True:
        cap = THIRD_PARTY_LOG_CAPS.get(name)
        if cap is not None:
            return cap
        name, dot, _ = name.rpartition(".")
        if not dot:
            return THIRD_PARTY_LOG_CAPS.get(name, logging.WARNING)


class _ThirdPartyCap(logging.Filter):
    """Drops a third-party record below its cap, even if the library lowered its own level
    (the SDKs do, from an environment variable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        cap = _log_cap(record.name)
        return cap is None or record.levelno >= cap


def configure_logging(level: str) -> None:
    """JSON lines on stderr at ``level`` for yoi's own loggers; third-party loggers capped
    (:data:`THIRD_PARTY_LOG_CAPS`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_ThirdPartyCap())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    wanted = logging.getLevelName(level.upper())
    for name, cap in THIRD_PARTY_LOG_CAPS.items():
        logging.getLogger(name).setLevel(max(cap, wanted))
