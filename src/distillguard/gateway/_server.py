"""The HTTP server side of ``distillguard serve``: a bounded request head.

uvicorn's httptools protocol puts no limit on the request line and headers: the parser
accumulates one header value by concatenation, so a single 100 MB header costs hundreds of MB
and minutes of CPU before the application sees anything. :class:`HeadLimitedHttpToolsProtocol`
counts the bytes of each request's head as they arrive and, once more than ``max_head_bytes``
came without the head being complete, answers ``431 Request Header Fields Too Large`` and closes
the connection. The count is exact for a request that starts a read (every request of a
non-pipelined connection); for a request pipelined behind another in the same read, that read
is not counted, so at most one read (256 KiB) more than the limit is ever buffered.

:func:`uvicorn_options` gives the keyword arguments of ``uvicorn.run`` that apply the limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["HeadLimitedHttpToolsProtocol", "uvicorn_options"]

logger = logging.getLogger(__name__)

_431_BODY = b"the request line and headers are too large\n"
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_431_BODY)).encode() + b"\r\n"
    b"connection: close\r\n"
    b"\r\n" + _431_BODY
)


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request line and headers.

    Args:
        config, server_state, app_state, _loop: as for ``HttpToolsProtocol``.
        max_head_bytes: most bytes of one request's line and headers (refused with 431 beyond).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_head_bytes: int = 65_536,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = max_head_bytes
        self._head_bytes = 0
        self._in_head = True  # a connection starts with a request's head
        self._skip_read = False  # the current head began inside the current read
        self._completed_in_read = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        """Feed ``data`` to the parser, then refuse the request if its head grew too large."""
        if self._refused:
            return
        self._completed_in_read = False
        super().data_received(data)
        if not self._in_head or self.parser is None:
            return
        if self._skip_read:
            self._skip_read = False  # pipelined: where this head began in the read is unknown
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        """A new request: its head starts."""
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._skip_read = self._completed_in_read

    def on_headers_complete(self) -> None:
        """The head is complete: the limit no longer applies to this request."""
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request (body included) is complete."""
        self._completed_in_read = True
        super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        logger.warning(
            "request head over %d bytes refused (431)",
            self.max_head_bytes,
            extra={"event": "head_too_large", "limit": self.max_head_bytes},
        )
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy:  # no response of an earlier pipelined request is being written
            self.transport.write(_431)
        self.transport.close()


def uvicorn_options(*, max_header_bytes: int) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` for the gateway's HTTP protocol and its limits.

    The protocol is a :func:`functools.partial` of a module-level class, so that it pickles into
    uvicorn's worker processes. uvicorn's own ``X-Forwarded-For`` handling is off: the gateway
    reads the forwarded headers itself, and only with ``[gateway] trust_forwarded_for``.
    """
    return {
        "http": functools.partial(HeadLimitedHttpToolsProtocol, max_head_bytes=max_header_bytes),
        "proxy_headers": False,
    }
