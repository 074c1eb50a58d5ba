"""Structured JSON logs for the gateway: one JSON object per line, secrets redacted.

Each record carries ``ts``, ``level``, ``logger``, ``message`` and the fields passed with
``extra=`` (the access log adds ``exchange_id``, ``account_id``, ``endpoint``, ``status``,
``latency_ms``, ``action``). The message and exception text pass through
:class:`distillguard.privacy.RedactingFilter` (e-mail addresses, tokens, keys...). Request
bodies, passports, signatures and keys are never logged.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_json_logging"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record``."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_json_logging(level: str = "INFO", *, stream: Any = None) -> logging.Handler:
    """Send the ``distillguard`` and ``uvicorn`` loggers to one JSON handler (redacting)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    try:
        from distillguard.privacy import RedactingFilter

        handler.addFilter(RedactingFilter())
    except ImportError:  # privacy not installed: no redaction filter
        pass
    for name in ("distillguard", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(level)
        lg.propagate = False
    return handler
